"""`predict` and `export` against what the run itself wrote, for a full fine-tuning run and a LoRA run; --quiet."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import tiny_config
from main import main


@pytest.fixture(scope="module")
def trained(tiny_data, tiny_models, tmp_path_factory):
    """A0, B1_v1 (full) and C1_v1 (LoRA on query and value) on the tiny BERT, run through the CLI with --quiet."""
    from transformers.utils import logging as hf_logging

    root = tmp_path_factory.mktemp("trained")
    raw = tiny_config(tiny_data, [tiny_models["bert"]], root / "results",
                      training={"epochs": 2, "batch_size": 16, "eval_batch_size": 16, "learning_rate": 5e-3,
                                "precision": "fp32"},
                      tasks={"A0": {"method": "tfidf_nb"},
                             "B": {"method": "full", "variants": ["v1"]},
                             "C": {"method": "lora", "variants": ["v1"], "training": {"learning_rate": 3e-2},
                                   "lora": {"target_modules": ["query", "value"]}}})
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    hf_logging.enable_progress_bar()  # as in a fresh process: --quiet must turn the bars off itself
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread each is several times faster than contending
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["--config", str(config), "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0, stderr.getvalue()
    return {"config": config, "results": root / "results", "root": root, "model": tiny_models["bert"],
            "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only contend


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()


def test_quiet_keeps_progress_lines_but_no_trainer_bars_or_logs(trained):
    out, err = trained["stdout"], trained["stderr"]
    assert "[1/3] A0" in out and "[3/3] C1_v1" in out and "ETA" in out
    assert "C1_v1 complete" in out and "report:" in out
    for noise in ("{'loss'", "eval_validation_loss", "train_runtime", "Loading weights", "it/s]", "FutureWarning"):
        assert noise not in out + err, noise


@pytest.mark.parametrize("run_id", ["B1_v1", "C1_v1"])
def test_predict_file_gives_the_runs_predictions(trained, run_id, tmp_path, capsys):
    predictions = trained["results"] / run_id / "predictions.csv"
    out = tmp_path / "again.csv"
    command = ["predict", run_id, "--file", str(predictions), "--out", str(out), "--config", str(trained["config"])]
    assert main(command) == 0
    assert f"40 predictions by {run_id} written to {out}" in capsys.readouterr().out
    expected, again = pd.read_csv(predictions), pd.read_csv(out)
    assert again["text"].tolist() == expected["text"].tolist()
    assert again["predicted"].tolist() == expected["predicted"].tolist()
    assert np.abs(_probabilities(again) - _probabilities(expected)).max() <= 1.5e-6  # both rounded to 6 digits
    names = json.loads((trained["results"] / run_id / "metrics.json").read_text())["data"]["class_names"]
    assert again["predicted_label"].tolist() == [names[i] for i in expected["predicted"]]


def test_predict_texts_print_label_and_probabilities(trained, capsys):
    expected = pd.read_csv(trained["results"] / "B1_v1" / "predictions.csv").iloc[[0, 5, 9]]
    assert main(["predict", "B1_v1", *expected["text"], "--config", str(trained["config"])]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    names = ["World", "Sports", "Business", "Sci/Tech"]
    for line, (_, row) in zip(lines, expected.iterrows()):
        label, shares = line.split("|")[0].split(None, 1)
        assert label == names[row["predicted"]] and line.endswith(f"| {row['text']}")
        printed = dict(re.findall(r"(\S+) (0\.\d{4}|1\.0000)", shares))
        assert list(printed) == names
        for name in names:  # 4 printed digits vs 6 stored: within half a unit of the 4th digit
            assert abs(float(printed[name]) - row[f"prob_{name}"]) <= 0.5e-4 + 1e-6


def test_predict_text_file_writes_beside_it_by_default(trained, tmp_path, capsys):
    texts = tmp_path / "news.txt"
    texts.write_text("stocks market oil prices\n\ngame team season coach win\n")
    assert main(["predict", "C1_v1", "--file", str(texts), "--config", str(trained["config"])]) == 0
    written = tmp_path / "news.C1_v1.predictions.csv"
    assert f"2 predictions by C1_v1 written to {written}" in capsys.readouterr().out
    frame = pd.read_csv(written)
    assert frame["text"].tolist() == ["stocks market oil prices", "game team season coach win"]
    assert np.allclose(_probabilities(frame).sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("run_id", ["B1_v1", "C1_v1"])
def test_export_is_a_standalone_model_with_the_runs_predictions(trained, run_id, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from evaluation.inference import predict_probabilities

    folder = tmp_path / "exported"
    assert main(["export", run_id, str(folder), "--config", str(trained["config"])]) == 0
    assert f"{run_id} exported to {folder}" in capsys.readouterr().out
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert not (folder / "adapter_config.json").exists()  # a plain transformers model, no peft needed
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    expected = pd.read_csv(trained["results"] / run_id / "predictions.csv")
    ids = tokenizer(expected["text"].tolist(), truncation=True)["input_ids"]  # max_length from the folder
    assert max(len(i) for i in ids) <= 48
    probabilities, _ = predict_probabilities(model, ids, tokenizer.pad_token_id, 16, torch.device("cpu"), False)
    assert probabilities.argmax(axis=1).tolist() == expected["predicted"].tolist()
    assert np.abs(probabilities - _probabilities(expected)).max() < 1e-5
    assert model.config.id2label == {0: "World", 1: "Sports", 2: "Business", 3: "Sci/Tech"}
    if run_id == "C1_v1":  # the LoRA update is in the weights: the targeted matrices moved, the others did not
        base = AutoModelForSequenceClassification.from_pretrained(trained["model"], num_labels=4)
        layer, base_layer = model.bert.encoder.layer[0].attention.self, base.bert.encoder.layer[0].attention.self
        assert (layer.query.weight - base_layer.query.weight).abs().max() > 1e-4
        assert (layer.value.weight - base_layer.value.weight).abs().max() > 1e-4
        assert torch.equal(layer.key.weight, base_layer.key.weight)


@pytest.mark.parametrize("command, message", [
    (["predict", "B1_v2", "text"],
     r"run 'B1_v2' has no results in .* \(did you mean 'B1_v1'\?\); runs there: A0, B1_v1, C1_v1, Z1_v1 \(pass --config"),
    (["predict", "A0", "text"], r"run A0: method 'tfidf_nb' saved no model"),
    (["export", "A0", "{tmp}/out"], r"run A0: method 'tfidf_nb' saved no model"),
    (["predict", "Z1_v1", "text"], r"run Z1_v1 is not complete \(status 'failed': RuntimeError: boom\); rerun it"),
    (["export", "B1_v1", "{tmp}"], r"export: .* already exists and is not an empty folder"),
    (["predict", "B1_v1"], r"predict: give texts to classify, or --file PATH"),
    (["predict", "B1_v1", "--file", "{tmp}/table.csv"],
     r"--file: .*table.csv: no column 'text' \(dataset.text_column\); its columns are title; set dataset.text_column"),
    (["predict", "B1_v1", "--file", "{tmp}/table.csv", "--set", "dataset.text_column=body"],
     r"--file: .*table.csv: no column 'body' \(dataset.text_column\); its columns are title"),
    (["predict", "B1_v1", "--file", "{tmp}/missing.txt"], r"--file: .*missing.txt does not exist; name a data file"),
    (["predict", "B1_v1", "x", "--out", "{tmp}/x.csv"], r"predict: --out names where --file's predictions go"),
])
def test_unusable_runs_and_bad_arguments_exit_2_with_one_line(trained, tmp_path, capsys, command, message):
    failed = trained["results"] / "Z1_v1"
    failed.mkdir(exist_ok=True)
    (failed / "metrics.json").write_text(json.dumps({"run_id": "Z1_v1", "status": "failed",
                                                     "error": "RuntimeError: boom"}))
    (tmp_path / "table.csv").write_text("title\nsomething\n")
    command = [part.replace("{tmp}", str(tmp_path)) for part in command]
    try:
        assert main([*command, "--config", str(trained["config"])]) == 2
    finally:
        (failed / "metrics.json").unlink()
        failed.rmdir()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert re.search(message, err), err


FORMATS = {  # suffix: how a user's tool would write the frame
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".tsv": lambda frame, path: frame.to_csv(path, sep="\t", index=False),
    ".json": lambda frame, path: frame.to_json(path, orient="records"),
    ".jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True),
    ".parquet": lambda frame, path: frame.to_parquet(path),
}


@pytest.mark.parametrize("suffix", FORMATS)
def test_predict_file_reads_every_data_format_by_the_configs_text_column(trained, suffix, tmp_path, capsys):
    expected = pd.read_csv(trained["results"] / "B1_v1" / "predictions.csv").iloc[:6]
    source = tmp_path / f"news{suffix}"
    FORMATS[suffix](pd.DataFrame({"id": range(6), "body": expected["text"]}), source)  # texts under `body`
    out = tmp_path / "out.csv"
    command = ["predict", "B1_v1", "--file", str(source), "--out", str(out), "--config", str(trained["config"])]
    assert main(command) == 2  # the config's dataset.text_column is the default, `text`
    assert "no column 'text' (dataset.text_column); its columns are id, body" in capsys.readouterr().err
    assert main([*command, "--set", "dataset.text_column=body"]) == 0
    again = pd.read_csv(out)
    assert again["text"].tolist() == expected["text"].tolist()
    assert np.abs(_probabilities(again) - _probabilities(expected)).max() <= 1.5e-6


@pytest.mark.parametrize("run_id, removed", [
    ("B1_v1", "model"), ("B1_v1", "model/model.safetensors"), ("B1_v1", "model/config.json"),
    ("B1_v1", "model/tokenizer_config.json"), ("C1_v1", "model/adapter_model.safetensors"), ("C1_v1", "base model"),
])
def test_a_missing_model_file_is_named(trained, run_id, removed, tmp_path, capsys):
    """predict and export of a run whose model folder, or a file in it, is gone: one line naming the file."""
    output = tmp_path / "results"
    shutil.copytree(trained["results"] / run_id, output / run_id)
    if removed == "base model":  # an adapter is applied to the base model its metrics.json names
        metrics = output / run_id / "metrics.json"
        target = tmp_path / "moved-model"
        metrics.write_text(metrics.read_text().replace(json.dumps(str(trained["model"])), json.dumps(str(target))))
    else:
        target = output / run_id / removed
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    for command in (["predict", run_id, "some text"], ["export", run_id, str(tmp_path / "exported")]):
        assert main([*command, "--config", str(trained["config"]), "--set", f"output_dir={output}"]) == 2
        assert capsys.readouterr().err == (f"error: run {run_id}: its model needs {target}, which is missing; restore"
                                           f" it, or rerun the run with python main.py --only {run_id} --force\n")
    assert not (tmp_path / "exported").exists()


def test_paths_on_the_command_line_are_relative_to_the_current_folder(trained, tmp_path, monkeypatch, capsys):
    """--file, --out, export's DIR and an output_dir given with --set: the current folder, not the config's."""
    shutil.copytree(trained["results"] / "B1_v1", tmp_path / "mine" / "B1_v1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("stocks market oil prices\n")
    options = ["--config", str(trained["config"]), "--set", "output_dir=mine"]
    assert main(["predict", "B1_v1", "--file", "in.txt", "--out", "preds.csv", *options]) == 0
    assert pd.read_csv(tmp_path / "preds.csv")["text"].tolist() == ["stocks market oil prices"]
    assert main(["export", "B1_v1", "exported", *options]) == 0
    assert (tmp_path / "exported" / "model.safetensors").is_file()
    assert main(["predict", "B1_v1", "--file", "gone.txt", *options]) == 2
    assert f"--file: {tmp_path / 'gone.txt'} does not exist" in capsys.readouterr().err  # the resolved path
