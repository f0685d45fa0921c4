"""--dry-run: parameter counts built on the meta device equal those of the real models; time estimates; unknowns."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch
import yaml

from conftest import make_texts, tiny_config
from main import main

LINE = re.compile(r"^(?P<run>\S+)\s.*?trainable=(?P<trainable>[\d,]+) of (?P<total>[\d,]+) \([\d.]+%\)"
                  r"\s+time(?P<time>\S+)")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only contend


def _dry_run(tmp_path, capsys, raw, code=0) -> tuple[list[str], str]:
    """(stdout lines: one per run, stderr: the total and how it was estimated, or the error)."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["--config", str(config), "--dry-run"]) == code
    captured = capsys.readouterr()
    return captured.out.strip().splitlines(), captured.err


def _real_count(model_path, method, lora):
    """What the runner would record: the model loaded with weights, wrapped by its method."""
    from core.config import LoraConfig
    from core.models import count_parameters, load_classifier
    from tasks.adapters import apply_method

    model, _ = load_classifier(str(model_path), 4, ["World", "Sports", "Business", "Sci/Tech"])
    if method == "pretrained":
        return 0, count_parameters(model)[1]
    return count_parameters(apply_method(model, method, LoraConfig(**lora) if lora else None))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft on transformers 5, in _real_count
def test_dry_run_counts_parameters_as_training_would(tiny_data, tiny_models, tmp_path, capsys):
    lora = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["query", "value"]}
    models = [tiny_models[kind] for kind in ("bert", "distilbert", "roberta")]
    raw = tiny_config(tiny_data, models, tmp_path / "out", lora=lora, tasks={
        "A0": {"method": "tfidf_nb"}, "A": {"method": "pretrained"}, "B": {"method": "full", "variants": ["v1"]},
        "C": {"method": "lora", "variants": ["v1"]}})
    lines, err = _dry_run(tmp_path, capsys, raw)
    assert len(lines) == 10 and lines[0].startswith("A0 ") and "trainable=known after fitting" in lines[0]
    parsed = {m["run"]: m for m in map(LINE.match, lines[1:])}
    assert set(parsed) == {f"{task}{n}{suffix}" for task, suffix in (("A", ""), ("B", "_v1"), ("C", "_v1"))
                           for n in (1, 2, 3)}
    for number, model in enumerate(models, start=1):
        for task, method in (("A", "pretrained"), ("B", "full"), ("C", "lora")):
            run_id = f"{task}{number}" + ("_v1" if task != "A" else "")
            counted = tuple(int(parsed[run_id][key].replace(",", "")) for key in ("trainable", "total"))
            assert counted == _real_count(model, method, lora if method == "lora" else None), run_id
            assert re.fullmatch(r"≈\dm\d\ds", parsed[run_id]["time"]), parsed[run_id]["time"]
    assert re.match(r"10 runs; estimated time \dm\d\ds\.", err)
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def _files(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _labelled_folder(tmp_path):
    """Labels by name: neg and pos."""
    rows = [f"{text},{'pos' if label % 2 else 'neg'}\n" for text, label in make_texts(60, 1)]
    _write(tmp_path / "named" / "train.csv", "text,label\n" + "".join(rows))
    _write(tmp_path / "named" / "test.csv", "text,label\n" + "".join(rows[:10]))
    return str(tmp_path / "named")


PREFLIGHT_CASES = {  # case: (change to the raw config, the one line both the dry run and the real run print)
    "unknown text column": (lambda r, tmp: r["dataset"].update(text_column="body"),
                            "error: {data}/train.csv: no column 'body' (dataset.text_column); its columns are text,"
                            " label; set dataset.text_column"),
    "label not in class_names": (lambda r, tmp: r["dataset"].update(source=_labelled_folder(tmp), validation_size=4,
                                                                    class_names=["pos", "neutral"]),
                                 "error: {tmp}/named/train.csv: row 2: label 'neg' is not in dataset.class_names"
                                 " (pos, neutral); fix column 'label' or dataset.class_names"),
    "missing model folder": (lambda r, tmp: r.update(models=[str(tmp / "no-such-model")]),
                             "error: models[0]: local folder {tmp}/no-such-model does not exist; name a folder"
                             " holding a Hugging Face model, or a hub id"),
    "Hub model offline": (lambda r, tmp: r.update(models=["no-such-org/no-such-model"]),
                          "error: models[0]: model 'no-such-org/no-such-model' is not a local folder and not in the"
                          " Hugging Face cache, and the Hub cannot be used (HF_HUB_OFFLINE is set); download it where"
                          " the Hub is reachable or name a local folder"),
    "Hub dataset offline": (lambda r, tmp: r["dataset"].update(source="no-such-org/no-such-data"),
                            "error: dataset.source: 'no-such-org/no-such-data' is not a local folder or file and not"
                            " in the Hugging Face cache, and the Hub cannot be used (HF_HUB_OFFLINE is set);"
                            " point dataset.source at local data"),
    "max_length above the model's": (lambda r, tmp: r["dataset"].update(max_length=100),
                                     "error: dataset.max_length: 100 tokens is more than model {model} takes (64);"
                                     " set dataset.max_length to 64 or less"),
}


@pytest.mark.parametrize("case", PREFLIGHT_CASES)
def test_the_dry_run_finds_what_the_real_run_would_refuse(case, tiny_data, tiny_models, tmp_path, capsys,
                                                          monkeypatch):
    """The same preflight, so the same single line and exit 2, found once (not per run), and nothing written."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", seeds=[1, 2], tasks={
        "A0": {"method": "tfidf_nb"}, "B": {"method": "full", "variants": ["v1"]},
        "C": {"method": "lora", "variants": ["v1"]}})
    change, expected = PREFLIGHT_CASES[case]
    change(raw, tmp_path)
    expected = expected.format(tmp=tmp_path, data=tiny_data, model=tiny_models["bert"]) + "\n"
    before = _files(tmp_path)
    lines, err = _dry_run(tmp_path, capsys, raw, code=2)
    assert (lines, err) == ([], expected)
    assert _files(tmp_path) == sorted(before + ["config.yaml"])  # no output_dir, no cache
    assert main(["--config", str(tmp_path / "config.yaml"), "--quiet"]) == 2  # the real run
    assert capsys.readouterr().err == expected
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------
# The estimate's arithmetic, with injected step timings (no wall clock involved)

STEP_SECONDS, INFERENCE_SECONDS = 1.0, 0.5  # per training step, per inference batch


@pytest.fixture
def injected_timings(monkeypatch):
    import pipeline.estimate

    monkeypatch.setattr(pipeline.estimate, "_timing", lambda *args: (STEP_SECONDS, INFERENCE_SECONDS))


def _estimate(tiny_data, tiny_models, tmp_path, epochs=2, max_train_samples=None):
    from dataset import load_splits
    from core.config import validate
    from pipeline.estimate import estimate_run
    from pipeline.plan import build_plan

    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", tasks={"B": {"method": "full", "variants": ["v1"]}})
    raw["training"].update(epochs=epochs, batch_size=10, eval_batch_size=10)
    raw["dataset"]["max_train_samples"] = max_train_samples
    config = validate(raw)
    (run,) = build_plan(config)
    return estimate_run(run, config, load_splits(config.dataset), None, {}).seconds


def test_estimate_is_steps_times_step_seconds_plus_inference(tiny_data, tiny_models, tmp_path, injected_timings):
    # 100 training texts / batch 10 = 10 steps an epoch; 20 validation texts an epoch and 40 test texts,
    # in batches of 10.
    assert _estimate(tiny_data, tiny_models, tmp_path, epochs=2) == pytest.approx(
        10 * 2 * STEP_SECONDS + (20 * 2 + 40) / 10 * INFERENCE_SECONDS)  # 24 s
    assert _estimate(tiny_data, tiny_models, tmp_path, epochs=2, max_train_samples=50) == pytest.approx(
        5 * 2 * STEP_SECONDS + (20 * 2 + 40) / 10 * INFERENCE_SECONDS)  # 14 s


def test_a_pending_search_is_counted_once_for_all_seeds(tiny_data, tiny_models, tmp_path, injected_timings):
    from dataset import load_splits
    from core.config import validate
    from pipeline.estimate import estimate_run
    from pipeline.plan import build_plan

    search = {"n_trials": 3, "space": {"training.learning_rate": [1e-3, 2e-3, 4e-3]}, "sampler": "grid"}
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", seeds=[1, 2],
                      tasks={"B": {"method": "full", "variants": ["v1"], "search": search}})
    raw["training"].update(epochs=2, batch_size=10, eval_batch_size=10)
    config = validate(raw)
    splits, searched = load_splits(config.dataset), set()
    first, second = (estimate_run(run, config, splits, None, {}, None, searched).seconds for run in build_plan(config))
    run_alone = 10 * 2 * STEP_SECONDS + (20 * 2 + 40) / 10 * INFERENCE_SECONDS  # as in the test above: 24 s
    trial = 10 * 2 * STEP_SECONDS + 20 * 2 / 10 * INFERENCE_SECONDS  # trains and scores validation: 22 s
    assert second == pytest.approx(run_alone) and first == pytest.approx(run_alone + 3 * trial)
    # A study that has some of its trials (the dry run says how many are left, pipeline/search.finished):
    # only those are counted.
    started = replace(build_plan(config)[0], search_left=1)
    assert estimate_run(started, config, splits, None, {}, None, set()).seconds == pytest.approx(run_alone + trial)


def test_estimate_scales_with_epochs_and_training_rows(tiny_data, tiny_models, tmp_path, injected_timings):
    base = _estimate(tiny_data, tiny_models, tmp_path, epochs=2, max_train_samples=50)
    twice_the_epochs = _estimate(tiny_data, tiny_models, tmp_path, epochs=4, max_train_samples=50)
    twice_the_rows = _estimate(tiny_data, tiny_models, tmp_path, epochs=2, max_train_samples=100)
    assert 1.5 < twice_the_epochs / base < 2.5
    assert 1.5 < twice_the_rows / base < 2.5


def test_dry_run_prints_the_estimate(tiny_data, tiny_models, tmp_path, capsys, injected_timings):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", tasks={"B": {"method": "full", "variants": ["v1"]}})
    raw["training"].update(epochs=30, batch_size=10, eval_batch_size=10)
    (line,), err = _dry_run(tmp_path, capsys, raw)
    # 10 steps x 30 epochs x 1 s + (20 x 30 + 40) / 10 batches x 0.5 s = 332 s
    assert LINE.match(line)["time"] == "≈5m32s"
    assert err.startswith("1 runs; estimated time 5m32s.")


def test_a_reachable_hub_dataset_is_not_downloaded_by_the_dry_run(tiny_models, tmp_path, capsys, monkeypatch):
    import datasets

    import core.models

    monkeypatch.setattr(core.models, "hub_problem", lambda: None)  # the Hub answers
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: pytest.fail("the dry run downloaded the dataset"))
    raw = tiny_config(tmp_path / "unused", [tiny_models["bert"]], tmp_path / "out",
                      tasks={"C": {"method": "lora", "variants": ["v1"]}})
    raw["dataset"]["source"] = "someone/reviews"
    (line,), err = _dry_run(tmp_path, capsys, raw)
    assert line.startswith("C1_v1 ") and re.search(r"trainable=[\d,]+ of [\d,]+ \([\d.]+%\)  time=unknown \(dataset"
                                                   r" 'someone/reviews' is a Hub dataset \(not loaded in a dry run\)\)",
                                                   line)
    assert _files(tmp_path) == ["config.yaml"]


def test_timing_never_builds_a_batch_larger_than_the_data(tiny_data, tiny_models, tmp_path, monkeypatch, one_thread):
    import torch

    from core.config import validate
    from dataset import load_splits
    from pipeline.estimate import _timing
    from pipeline.plan import build_plan

    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", tasks={"B": {"method": "full",
                                                                                     "variants": ["v1"]}})
    raw["training"].update(batch_size=1000, eval_batch_size=1000)  # a real run's batches hold what there is
    config = validate(raw)
    (run,) = build_plan(config)
    sizes, randint = [], torch.randint
    monkeypatch.setattr(torch, "randint", lambda low, high, size, **kw: sizes.append(size[0]) or randint(low, high,
                                                                                                         size, **kw))
    _timing(run, config, load_splits(config.dataset), run.training, {}, False)
    assert sizes == [100, 100, 40]  # training texts and their labels (120 - 20 validation); the 40 test texts


def test_an_adapter_with_a_runtime_config_dataclass_plans_runs_and_is_recognised(tiny_data, tiny_models, tmp_path,
                                                                                capsys):
    """PEFT types `runtime_config` as a dataclass (LoraRuntimeConfig): the fingerprint and the recorded identity hold
    its fields as JSON, so the dry run plans it, the run records it and a rerun finds it complete (issue 20)."""
    import json

    from core.config import validate
    from pipeline.plan import build_plan
    from pipeline.run_state import fingerprint, identity

    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results",
                      tasks={"P": {"method": "peft", "variants": ["v1"],
                                   "adapter": {"peft_type": "LORA", "r": 2, "target_modules": ["query"],
                                               "runtime_config": {"ephemeral_gpu_offload": False}}}})
    raw["dataset"]["max_train_samples"] = 16
    raw["training"].update(epochs=1, batch_size=8)
    lines, _ = _dry_run(tmp_path, capsys, raw)
    assert len(lines) == 1 and lines[0].startswith("P1_v1 ") and lines[0].endswith("[run]")
    (run,) = build_plan(validate(raw))
    config = validate(raw)
    assert identity(run, config, None)["run"]["adapter"]["runtime_config"] == {"ephemeral_gpu_offload": False}
    assert len(fingerprint(run, config, None)) == 16

    assert main(["--config", str(tmp_path / "config.yaml"), "--quiet"]) == 0
    record = json.loads((tmp_path / "results" / "P1_v1" / "metrics.json").read_text())
    assert record["status"] == "complete", record.get("error")
    assert record["identity"]["run"]["adapter"]["runtime_config"] == {"ephemeral_gpu_offload": False}
    capsys.readouterr()
    assert main(["--config", str(tmp_path / "config.yaml"), "--dry-run"]) == 0
    assert capsys.readouterr().out.strip().endswith("[skip: complete]")
