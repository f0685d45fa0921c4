"""main.py end to end on tiny models: every method on every architecture writes every output file."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

import main
from conftest import tiny_config, write_config
from dataset import read_split_csv
from evaluation.inference import predict_probabilities

ARCHITECTURES = ["bert", "distilbert", "roberta"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_data, tiny_models):
    """One invocation of main.py over tasks A0-F and all three tiny architectures."""
    root = tmp_path_factory.mktemp("run")
    raw = tiny_config(tiny_data, [tiny_models[k] for k in ARCHITECTURES], root / "results")
    path = write_config(root / "config.yaml", raw)
    code = main.main(["--config", str(path), "--quiet"])
    return code, root / "results", raw


def run_ids():
    ids = ["A0"] + [f"A{m}" for m in (1, 2, 3)]
    return ids + [f"{task}{m}_v1" for task in "BCDEF" for m in (1, 2, 3)]


def test_exit_code_and_summary(finished):
    code, results, _ = finished
    assert code == 0
    summary = pd.read_csv(results / "summary.csv")
    assert sorted(summary["run_id"]) == sorted(run_ids())
    assert (summary["status"] == "complete").all()
    trained = summary[summary["method"].isin(["full", "lora"])]
    assert (trained["best_epoch"] >= 1).all() and trained["seconds_per_epoch"].gt(0).all()
    lora = summary[summary["method"] == "lora"]
    assert lora["trainable_percent"].lt(100).all() and (summary.loc[summary.method == "full", "trainable_percent"] == 100).all()
    epochs = pd.read_csv(results / "epochs.csv")
    assert len(epochs) == 2 * len(trained) + 1  # two epochs per trained run; A0's validation of its chosen settings


@pytest.mark.parametrize("run_id", run_ids())
def test_every_run_writes_consistent_files(finished, tiny_data, run_id):
    _, results, raw = finished
    folder = results / run_id
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "complete" and record["error"] is None
    predictions = pd.read_csv(folder / "predictions.csv")
    test = read_split_csv(tiny_data / "test.csv", 4)
    # in input order, aligned with their texts
    assert predictions["index"].tolist() == list(range(len(test)))
    assert predictions["text"].tolist() == test["text"].tolist()
    assert predictions["label"].tolist() == test["label"].tolist()
    probabilities = predictions[[f"prob_{c}" for c in ["World", "Sports", "Business", "Sci/Tech"]]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    assert (probabilities.argmax(axis=1) == predictions["predicted"]).all()
    # metrics.json is recomputable from predictions.csv
    metrics = record["metrics"]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(predictions["label"], predictions["predicted"]))
    assert metrics["f1_macro"] == pytest.approx(f1_score(predictions["label"], predictions["predicted"], average="macro"))
    assert np.array(metrics["confusion_matrix"]).sum() == len(test)
    assert sum(c["support"] for c in metrics["per_class"].values()) == len(test)
    assert record["data"]["sizes"] == {"train": 100, "validation": 20, "test": 40}
    assert record["environment"]["versions"]["torch"] == torch.__version__.split("+")[0] or record["environment"]["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    assert record["timing"]["test_seconds"] > 0 and record["timing"]["test_texts_per_second"] > 0
    assert record["parameters"]["total"] > 0 and record["memory"]["peak_rss_mb"] > 0
    assert record["config"]["run_id"] == run_id
    if record["method"] in ("full", "lora"):
        epochs = pd.read_csv(folder / "epochs.csv")
        assert epochs["epoch"].tolist() == [1.0, 2.0]
        assert epochs[["train_loss", "validation_loss", "validation_accuracy", "learning_rate"]].notna().all().all()
        assert epochs["elapsed_seconds"].is_monotonic_increasing
        best = epochs.loc[epochs["validation_accuracy"].idxmax()]
        assert record["best_epoch"] == {"epoch": best["epoch"], "validation_accuracy": best["validation_accuracy"]}
        assert (folder / "model" / "tokenizer.json").is_file()
        assert len(list((folder / "checkpoints").glob("checkpoint-*"))) <= raw["training"].get("save_total_limit", 2)


@pytest.mark.parametrize("run_id", ["B1_v1", "B2_v1", "B3_v1", "C1_v1", "C2_v1", "C3_v1", "F2_v1"])
def test_saved_model_reloads_and_predicts_the_same(finished, run_id):
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, results, _ = finished
    model_dir = results / run_id / "model"
    if (model_dir / "adapter_config.json").is_file():
        model = AutoPeftModelForSequenceClassification.from_pretrained(model_dir, num_labels=4)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    predictions = pd.read_csv(results / run_id / "predictions.csv")
    ids = tokenizer(predictions["text"].tolist(), truncation=True, max_length=48)["input_ids"]
    probabilities, _ = predict_probabilities(model, ids, tokenizer.pad_token_id, 7, torch.device("cpu"), False)
    saved = predictions.filter(like="prob_").to_numpy()
    np.testing.assert_allclose(probabilities, saved, atol=2e-5)


def test_dry_run_lists_runs_and_writes_nothing(tmp_path, tiny_data, tiny_models, capsys):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out")
    path = write_config(tmp_path / "c.yaml", raw)
    assert main.main(["--config", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["A0", "A1", "B1_v1", "C1_v1", "D1_v1", "E1_v1", "F1_v1"]
    assert [p.name for p in tmp_path.rglob("*")] == ["c.yaml"]  # no output_dir, no tokenised cache (in out/.cache)


def test_a_tasks_label_is_written_to_metrics_json_and_changing_it_reruns_nothing(tmp_path, tiny_data, tiny_models,
                                                                                  capsys):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out")
    raw["tasks"] = {"A0": {"method": "tfidf_nb", "label": "TF-IDF + NB"}, "A": {"method": "pretrained"}}
    path = write_config(tmp_path / "c.yaml", raw)
    assert main.main(["--config", str(path), "--quiet"]) == 0
    records = {run_id: json.loads((tmp_path / "out" / run_id / "metrics.json").read_text()) for run_id in ("A0", "A1")}
    assert records["A0"]["label"] == "TF-IDF + NB" and records["A1"]["label"] is None
    assert "label" not in records["A0"]["config"]  # the resolved settings, which the fingerprint hashes
    written = {run_id: (tmp_path / "out" / run_id / "metrics.json").read_bytes() for run_id in records}
    raw["tasks"]["A0"]["label"], raw["tasks"]["A"]["label"] = "Bag of words", "Untrained head"
    write_config(path, raw)
    capsys.readouterr()
    assert main.main(["--config", str(path), "--dry-run"]) == 0
    assert [line.rsplit("[", 1)[1] for line in capsys.readouterr().out.strip().splitlines()] == ["skip: complete]"] * 2
    assert main.main(["--config", str(path), "--quiet"]) == 0
    assert {run_id: (tmp_path / "out" / run_id / "metrics.json").read_bytes() for run_id in records} == written


@pytest.mark.parametrize("argv, message", [
    (["--only", "Z9"], "--only: Z9 is not a run of this config"),
    (["training.epochs=0"], "training.epochs: 0 is invalid"),
    (["badoverride"], "unknown command 'badoverride'; commands: run, predict, export, report"),
    (["bad.override"], "expected KEY=VALUE"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_usage_and_config_errors_exit_2_with_one_line(tmp_path, tiny_data, tiny_models, capsys, argv, message):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out")
    path = write_config(tmp_path / "c.yaml", raw)
    assert main.main(["--config", str(path)] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_model_folder_stops_before_any_run(tmp_path, tiny_data, capsys):
    raw = tiny_config(tiny_data, [tmp_path / "missing"], tmp_path / "out")
    path = write_config(tmp_path / "c.yaml", raw)
    assert main.main(["--config", str(path), "--only", "B1_v1"]) == 2
    err = capsys.readouterr().err
    assert f"models[0]: local folder {tmp_path / 'missing'} does not exist" in err
    assert not (tmp_path / "out" / "B1_v1").exists()


def test_unresolvable_hub_id_is_one_line_at_once(tmp_path, tiny_data, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    raw = tiny_config(tiny_data, ["bert-base-uncased"], tmp_path / "out")
    path = write_config(tmp_path / "c.yaml", raw)
    assert main.main(["--config", str(path), "--only", "A1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'bert-base-uncased' is not a local folder and not in the Hugging Face cache" in err
    assert len(err.splitlines()) == 1


def test_a_failing_run_is_recorded_and_the_rest_go_on(tmp_path, tiny_data, tiny_models, monkeypatch):
    import tasks.tfidf_nb

    def explode(run, context):
        raise RuntimeError("boom")

    monkeypatch.setattr(tasks.tfidf_nb, "run", explode)
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out")
    path = write_config(tmp_path / "c.yaml", raw)
    assert main.main(["--config", str(path), "--quiet", "--only", "A0", "A1"]) == 1
    failed = json.loads((tmp_path / "out" / "A0" / "metrics.json").read_text())
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: boom"
    assert "RuntimeError: boom" in (tmp_path / "out" / "A0" / "error.log").read_text()
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("run_id")
    assert summary.loc["A0", "status"] == "failed" and summary.loc["A1", "status"] == "complete"


@pytest.mark.parametrize("failure", ["nan_loss", "out_of_memory"])
def test_nan_loss_and_out_of_memory_fail_the_run_not_the_plan(failure, tmp_path, tiny_data, tiny_models, monkeypatch):
    import transformers

    if failure == "nan_loss":
        original = transformers.Trainer.compute_loss

        def nan_loss(self, model, inputs, *args, **kwargs):
            loss = original(self, model, inputs, *args, **kwargs)
            return loss * float("nan") if self.state.global_step >= 2 else loss
        monkeypatch.setattr(transformers.Trainer, "compute_loss", nan_loss)
        expected = "FloatingPointError: the training loss became nan at step 3"
    else:
        import evaluation.inference
        import tasks.pretrained

        def out_of_memory(*args, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        monkeypatch.setattr(tasks.pretrained, "predict_probabilities", out_of_memory)
        expected = "OutOfMemoryError: CUDA out of memory"
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out")
    path = write_config(tmp_path / "c.yaml", raw)
    run_id = "B1_v1" if failure == "nan_loss" else "A1"
    assert main.main(["--config", str(path), "--quiet", "--only", "A0", run_id]) == 1
    record = json.loads((tmp_path / "out" / run_id / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith(expected)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("run_id")
    assert summary.loc[run_id, "status"] == "failed" and summary.loc["A0", "status"] == "complete"
    assert not (tmp_path / "out" / run_id / "predictions.csv").exists()
