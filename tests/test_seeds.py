"""`seeds` and `reference_run`: validation, run ids, the summary's mean and std per base run, and seeds reaching training."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_config
from evaluation.summary import rebuild_summaries
from fake_runs import labels, predictions_with_errors, write_run
from core.config import ConfigError, validate
from pipeline.plan import build_plan


def _config(tmp_path, **sections):
    return validate(tiny_config(tmp_path / "data", [tmp_path / "bert"], tmp_path / "out", **sections))


def test_without_seeds_run_ids_are_unchanged(tmp_path):
    runs = build_plan(_config(tmp_path))
    assert [r.run_id for r in runs] == ["A0", "A1", "B1_v1", "C1_v1", "D1_v1", "E1_v1", "F1_v1"]
    assert all(r.base_run_id == r.run_id and r.seed == 42 for r in runs)


def test_seeds_repeat_every_run_once_per_seed(tmp_path):
    runs = build_plan(_config(tmp_path, seeds=[42, 43]))
    assert [r.run_id for r in runs] == [
        "A0_s42", "A1_s42", "B1_v1_s42", "C1_v1_s42", "D1_v1_s42", "E1_v1_s42", "F1_v1_s42",
        "A0_s43", "A1_s43", "B1_v1_s43", "C1_v1_s43", "D1_v1_s43", "E1_v1_s43", "F1_v1_s43"]
    assert {(r.run_id, r.seed, r.base_run_id) for r in runs if r.task == "B"} == {
        ("B1_v1_s42", 42, "B1_v1"), ("B1_v1_s43", 43, "B1_v1")}
    assert all(r.resolved()["seed"] == r.seed and r.resolved()["base_run_id"] == r.base_run_id for r in runs)


def test_only_takes_run_ids_or_base_run_ids(tmp_path):
    config = _config(tmp_path, seeds=[1, 2, 3])
    assert [r.run_id for r in build_plan(config, ["B1_v1"])] == ["B1_v1_s1", "B1_v1_s2", "B1_v1_s3"]
    assert [r.run_id for r in build_plan(config, ["C1_v1_s2", "A0"])] == ["A0_s1", "A0_s2", "C1_v1_s2", "A0_s3"]
    with pytest.raises(ConfigError, match=r"--only: B1_v1_s4 is not a run of this config \(did you mean"):
        build_plan(config, ["B1_v1_s4"])


@pytest.mark.parametrize("sections, message", [
    ({"seeds": [1, 2, 1]}, r"seeds: 1 occurs twice; list each seed once"),
    ({"seeds": []}, r"seeds: \[\] is invalid"),
    ({"seeds": ["one"]}, r"seeds\.0: 'one' is invalid"),
    ({"seed": 7, "seeds": [1, 2]},
     r"seed: 7 is not in seeds \[1, 2\]; `seeds` replaces `seed`, so remove seed or add it"),
    ({"seeds": 5}, r"seeds: 5 is invalid"),
])
def test_bad_seeds_are_explained(tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, **sections)


def test_seed_inside_seeds_is_accepted(tmp_path):
    runs = build_plan(_config(tmp_path, seed=42, seeds=[42, 43]))
    assert sorted({r.seed for r in runs}) == [42, 43] and runs[0].run_id == "A0_s42"


def test_reference_run_must_be_a_base_run_of_the_plan(tmp_path):
    assert build_plan(_config(tmp_path, seeds=[1, 2], reference_run="B1_v1"))
    with pytest.raises(ConfigError,
                       match=r"reference_run: 'B1_v2' is not a run of this config \(did you mean 'B1_v1'\?\)"):
        build_plan(_config(tmp_path, reference_run="B1_v2"))
    with pytest.raises(ConfigError, match=r"without the _s<seed> suffix"):
        build_plan(_config(tmp_path, seeds=[1, 2], reference_run="B1_v1_s1"))
    with pytest.raises(ConfigError, match=r"unknown key 'referance_run' \(did you mean 'reference_run'\?\)"):
        _config(tmp_path, referance_run="A0")


def test_summary_gives_mean_and_std_per_base_run(tmp_path):
    true = labels(400)
    rng = np.random.default_rng(0)
    wrong = {("B1_v1", 1): 40, ("B1_v1", 2): 52, ("B1_v1", 3): 47, ("C1_v1", 1): 60, ("C1_v1", 2): 61}
    for (base, seed), count in wrong.items():
        predicted = predictions_with_errors(true, rng.choice(400, count, replace=False))
        write_run(tmp_path, f"{base}_s{seed}", true, predicted, seed=seed, base_run_id=base)
    write_run(tmp_path, "C1_v1_s3", true, true, seed=3, base_run_id="C1_v1", status="failed")
    rebuild_summaries(tmp_path, reference_run="C1_v1")
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("run_id")  # as written, not as held in memory
    for base in ("B1_v1", "C1_v1"):
        rows = summary[(summary["base_run"] == base) & (summary["status"] == "complete")]
        for metric in ("test_accuracy", "f1_macro"):
            assert rows[f"{metric}_mean"].nunique() == 1 and rows[f"{metric}_std"].nunique() == 1
            assert rows[f"{metric}_mean"].iloc[0] == pytest.approx(np.mean(rows[metric]))
            assert rows[f"{metric}_std"].iloc[0] == pytest.approx(np.std(rows[metric], ddof=1))
    b_accuracies = [1 - wrong[("B1_v1", s)] / 400 for s in (1, 2, 3)]
    assert summary.loc["B1_v1_s2", "test_accuracy_mean"] == pytest.approx(np.mean(b_accuracies))
    assert summary.loc["B1_v1_s2", "test_accuracy_std"] == pytest.approx(np.std(b_accuracies, ddof=1))
    assert summary.loc["C1_v1_s3", "seeds"] == 2 and summary.loc["B1_v1_s1", "seeds"] == 3  # failed seed not counted
    # Comparisons pair runs of the same seed: B1_v1_s2 is compared with C1_v1_s2; C's own runs are the reference.
    assert summary.loc["B1_v1_s2", "compared_to"] == "C1_v1_s2" and summary.loc["C1_v1_s1", "compared_to"] == "C1_v1_s1"
    assert pd.isna(summary.loc["B1_v1_s3", "compared_to"])  # C1_v1_s3 failed
    assert pd.isna(summary.loc["C1_v1_s1", "p_value"]) and summary.loc["B1_v1_s1", "p_value"] < 0.05


def test_a_single_seed_has_no_std(tmp_path):
    true = labels(40)
    write_run(tmp_path, "B1_v1", true, true)
    row = rebuild_summaries(tmp_path).iloc[0]
    assert row["seeds"] == 1 and row["test_accuracy_mean"] == 1.0 and pd.isna(row["test_accuracy_std"])


def test_runner_records_seed_and_base_run(tiny_data, tmp_path):
    """A0 (seconds to run) twice, through the real runner: its files carry the seed and base run."""
    from pipeline.runner import prepare, run_plan

    config = validate(tiny_config(tiny_data, [tmp_path / "unused"], tmp_path / "out", seeds=[5, 6],
                                  tasks={"A0": {"method": "tfidf_nb"}}))
    runs = build_plan(config)
    outcomes = run_plan(config, runs, prepare(config, runs), show_progress=False, log=lambda line: None)
    assert [o.status for o in outcomes] == ["complete", "complete"]
    for seed in (5, 6):
        record = json.loads((tmp_path / "out" / f"A0_s{seed}" / "metrics.json").read_text())
        assert record["base_run_id"] == "A0" and record["config"]["seed"] == seed
        assert record["data"]["max_length"] == 48
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["base_run"].tolist() == ["A0", "A0"] and summary["seeds"].tolist() == [2, 2]
    assert summary["test_accuracy_std"].tolist() == [0.0, 0.0]  # TF-IDF + NB does not depend on the seed


# ----------------------------------------------------------------------------------------------
# Seeds reach training: initial weights, batch order and the saved model follow the seed


@pytest.fixture(scope="module")
def seeded_training(tmp_path_factory, tiny_data, tiny_models):
    """B (full) and C (LoRA) on tiny BERT, 1 epoch of 2 steps, under seeds 1 and 2, then seed 1 again in a fresh
    folder. Per run: the trainable weights right after wrapping (before any step), the token ids of every training
    batch in order, and the saved weights."""
    import torch
    from safetensors.torch import load_file

    import tasks.finetune
    from dataset import load_splits
    from tasks.base import RunContext

    root = tmp_path_factory.mktemp("seeded")
    raw = tiny_config(tiny_data, [tiny_models["bert"]], root / "results", seeds=[1, 2],
                      tasks={"B": {"method": "full", "variants": ["v1"]},
                             "C": {"method": "lora", "variants": ["v1"], "lora": {"target_modules": ["query"]}}})
    raw["dataset"]["max_train_samples"] = 16
    raw["training"].update(epochs=1, batch_size=8)
    config = validate(raw)
    splits = load_splits(config.dataset)
    runs = build_plan(config)
    assert [r.run_id for r in runs] == ["B1_v1_s1", "C1_v1_s1", "B1_v1_s2", "C1_v1_s2"]
    seen: dict = {}
    current: list = []

    def apply_method(model, method, *args):
        wrapped = original_apply(model, method, *args)
        seen[current[0]]["initial"] = {n: p.detach().clone() for n, p in wrapped.named_parameters() if p.requires_grad}
        return wrapped

    def training_step(self, model, inputs, *args, **kwargs):
        seen[current[0]]["batches"].append(inputs["input_ids"].tolist())
        return original_step(self, model, inputs, *args, **kwargs)

    original_apply, original_step = tasks.finetune.apply_method, tasks.finetune.FiniteLossTrainer.training_step
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tasks.finetune, "apply_method", apply_method)
            patch.setattr(tasks.finetune.FiniteLossTrainer, "training_step", training_step)
            for folder, run in [("first", r) for r in runs] + [("again", r) for r in runs if r.run_id.endswith("_s1")]:
                key = (folder, run.run_id)
                current[:] = [key]
                seen[key] = {"batches": []}
                context = RunContext(config, splits, root / folder / run.run_id, torch.device("cpu"), show_progress=False)
                context.run_dir.mkdir(parents=True)
                tasks.finetune.run(run, context)
                weights = "model.safetensors" if run.method == "full" else "adapter_model.safetensors"
                seen[key]["saved"] = load_file(context.run_dir / "model" / weights)
    finally:
        torch.set_num_threads(threads)
    return seen


def _same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("task", ["B", "C"], ids=["full", "lora"])
def test_two_seeds_train_differently(seeded_training, task):
    one, two = seeded_training[("first", f"{task}1_v1_s1")], seeded_training[("first", f"{task}1_v1_s2")]
    assert len(one["batches"]) == len(two["batches"]) == 2  # 16 texts, batch 8, 1 epoch
    assert not _same(one["initial"], two["initial"])  # the new head (and LoRA's A matrices) start from the seed
    assert one["batches"] != two["batches"]  # the data order follows the seed
    assert not _same(one["saved"], two["saved"])


@pytest.mark.parametrize("task", ["B", "C"], ids=["full", "lora"])
def test_the_same_seed_twice_gives_bit_identical_weights(seeded_training, task):
    first, again = seeded_training[("first", f"{task}1_v1_s1")], seeded_training[("again", f"{task}1_v1_s1")]
    assert _same(first["initial"], again["initial"])
    assert first["batches"] == again["batches"]
    assert _same(first["saved"], again["saved"])  # torch.equal: bit for bit
