"""`budget:` gives every training run of a comparison the same training: its config rules, and what the runs
record (optimizer steps, samples seen, estimated FLOPs) checked against the budget and recomputed by hand."""
from __future__ import annotations

import json
import pandas as pd
import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import main
from conftest import tiny_config, write_config
from core.config import ConfigError, validate
from dataset import load_splits

TASKS = {"B": {"method": "full", "variants": ["v1"]}, "C": {"method": "lora", "variants": ["v1"]},
         "HD": {"method": "head", "variants": ["v1"]}}


def _config(budget, tasks=TASKS, **sections):
    return validate({"models": ["m"], "budget": budget, "tasks": tasks, **sections})


def test_the_budget_fixes_steps_and_batch_for_every_method():
    config = _config({"optimizer_steps": 40, "batch_size": 8}, training={"epochs": 3, "batch_size": 32})
    for task in TASKS:
        training = config.task_training(task, "v1")
        assert (training.max_steps, training.batch_size, training.max_train_seconds) == (40, 8, None)
    epochs = _config({"epochs": 2, "batch_size": 8}).task_training("B", "v1")
    assert (epochs.epochs, epochs.max_steps) == (2, None)
    seconds = _config({"train_seconds": 30, "batch_size": 8}).task_training("C", "v1")
    assert (seconds.max_train_seconds, seconds.max_steps) == (30, None)


@pytest.mark.parametrize("budget, tasks, message", [
    ({"batch_size": 8}, TASKS, "budget: give exactly one of optimizer_steps, epochs and train_seconds"),
    ({"optimizer_steps": 5, "epochs": 1, "batch_size": 8}, TASKS, "(got optimizer_steps and epochs)"),
    ({"optimizer_steps": 5, "batch_size": 8}, {"B": {"method": "full", "variants": ["v1"], "training": {"batch_size": 4}}},
     "tasks.B.training.batch_size: budget.batch_size sets it for every method; remove it here, or remove budget.batch_size"),
    ({"optimizer_steps": 5, "batch_size": 8}, {"B": {"method": "full", "variants": ["v1"], "training": {"epochs": 2}}},
     "tasks.B.training.epochs: budget.optimizer_steps sets it for every method"),
    ({"epochs": 1, "batch_size": 8}, {"B": {"method": "full", "variants": ["v1"],
                                            "training": {"early_stopping_patience": 1}}},
     "tasks.B.training.early_stopping_patience: stops runs before the budget is spent"),
    ({"epochs": 1}, TASKS, "budget.batch_size: give one batch size for every method, or search training.batch_size"
                           " in every training task (B, C, HD do not)"),
    ({"epochs": 1, "batch_size": 8}, {"B": {"method": "full", "variants": ["v1"], "search": {
        "n_trials": 2, "space": {"training.batch_size": [4, 8]}}}},
     "tasks.B.search.space.training.batch_size: budget.batch_size fixes it for every method"),
])
def test_what_the_budget_refuses(budget, tasks, message):
    with pytest.raises(ConfigError) as error:
        _config(budget, tasks)
    assert message in str(error.value)


def test_a_batch_size_searched_by_every_task_needs_no_budget_batch_size():
    search = {"n_trials": 2, "space": {"training.batch_size": [4, 8]}}
    config = _config({"epochs": 1}, {k: {**v, "search": search} for k, v in TASKS.items()})
    assert config.task_training("B", "v1").batch_size == 32  # the default until the search chooses


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory, tiny_data, tiny_models):
    root = tmp_path_factory.mktemp("budget")
    raw = tiny_config(tiny_data, [tiny_models["bert"]], root / "results",
                      budget={"optimizer_steps": 5, "batch_size": 8},
                      tasks={**TASKS, "BF": {"method": "bitfit", "variants": ["v1"]}, "A0": {"method": "tfidf_nb"}})
    assert main.main(["--config", str(write_config(root / "config.yaml", raw)), "--quiet"]) == 0
    return root / "results", raw


def test_every_method_trains_exactly_the_budget(budgeted):
    results, _ = budgeted
    summary = pd.read_csv(results / "summary.csv").set_index("run_id")
    trained = ["B1_v1", "C1_v1", "HD1_v1", "BF1_v1"]
    assert summary.loc[trained, "optimizer_steps"].tolist() == [5] * 4
    assert summary.loc[trained, "samples_seen"].tolist() == [40] * 4  # 5 steps x batch 8, within one epoch
    assert pd.isna(summary.loc["A0", "optimizer_steps"])  # fitted, not trained
    for run_id in trained:
        state = json.loads(max((results / run_id / "checkpoints").glob("checkpoint-*/trainer_state.json")).read_text())
        assert state["global_step"] == 5


def test_train_flops_of_full_fine_tuning_recomputed_by_hand(budgeted, tiny_data):
    """3 x forward; forward = 2 x (layer parameters x real tokens + head parameters x texts)."""
    results, raw = budgeted
    record = json.loads((results / "B1_v1" / "metrics.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(results / "B1_v1" / "model")
    per_token = sum(p.numel() for n, p in model.named_parameters() if ".layer." in n)
    per_text = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("classifier", "bert.pooler")))
    tokenizer = AutoTokenizer.from_pretrained(results / "B1_v1" / "model")
    texts = load_splits(validate(raw).dataset).train["text"].tolist()
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=raw["dataset"]["max_length"])["input_ids"]]
    samples = record["budget"]["samples_seen"]
    tokens = round(samples * sum(lengths) / len(lengths))
    flops = record["budget"]["train_flops"]
    assert flops == pytest.approx(3 * 2 * (per_token * tokens + per_text * samples), rel=1e-3)  # 4 digits kept
    head = json.loads((results / "HD1_v1" / "metrics.json").read_text())["budget"]["train_flops"]
    lora = json.loads((results / "C1_v1" / "metrics.json").read_text())["budget"]["train_flops"]
    assert head < lora < flops  # no backward below the head < a backward through every layer < weight gradients too
    assert flops / lora == pytest.approx(1.5, rel=0.05)  # 3 x forward against about 2 x forward


def test_a_time_budget_stops_after_the_step_that_spends_it(tmp_path, tiny_data, tiny_models):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results",
                      budget={"train_seconds": 1e-6, "batch_size": 8}, tasks={"C": TASKS["C"]})
    assert main.main(["--config", str(write_config(tmp_path / "config.yaml", raw)), "--quiet"]) == 0
    record = json.loads((tmp_path / "results" / "C1_v1" / "metrics.json").read_text())
    assert record["budget"]["optimizer_steps"] == 1
    epochs = pd.read_csv(tmp_path / "results" / "C1_v1" / "epochs.csv")
    assert epochs["step"].tolist() == [1] and epochs["validation_accuracy"].notna().all()  # validated where it stopped
