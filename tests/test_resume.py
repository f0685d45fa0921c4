"""A run killed at any moment finishes on the next invocation with the metrics of an uninterrupted run,
and leaves every other run's files alone."""
import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import main
from conftest import ROOT, python_env, tiny_config, write_config

KILL_POINTS = ["train_step", "validation", "checkpoint_write", "model_save", "test_evaluation", "metrics_write"]
STEPS_PER_EPOCH = 13  # 100 training texts (120 less 20 for validation), batch 8
TOTAL_STEPS = 3 * STEPS_PER_EPOCH
# The newest complete checkpoint each kill leaves behind: mid-epoch 2, during epoch 2's validation and halfway
# through writing checkpoint-26 all leave checkpoint-13; the later points come after checkpoint-39 was written.
RESUMES_FROM = {"train_step": 13, "validation": 13, "checkpoint_write": 13,
                "model_save": 39, "test_evaluation": 39, "metrics_write": 39}


def config_for(tmp_path, tiny_data, tiny_models, task):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results")
    raw["training"].update(epochs=3, batch_size=8)  # 13 steps an epoch: room to die mid-epoch
    raw["tasks"] = {"A0": raw["tasks"]["A0"], task: raw["tasks"][task]}
    return write_config(tmp_path / "config.yaml", raw)


@pytest.fixture(scope="module", params=["B", "C"], ids=["full", "lora"])
def reference(request, tmp_path_factory, tiny_data, tiny_models):
    """The same plan, uninterrupted."""
    root = tmp_path_factory.mktemp(f"reference_{request.param}")
    path = config_for(root, tiny_data, tiny_models, request.param)
    assert main.main(["--config", str(path), "--quiet"]) == 0
    return request.param, root / "results"


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_run_resumes_to_the_uninterrupted_result(point, reference, tmp_path, tiny_data, tiny_models, capsys):
    task, expected = reference
    run_id = f"{task}1_v1"
    path = config_for(tmp_path, tiny_data, tiny_models, task)
    killed = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_harness.py"), point,
                             "--config", str(path), "--quiet"], capture_output=True, text=True, timeout=300,
                            env=python_env())
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    results = tmp_path / "results"
    assert not _complete(results / run_id), "the kill came too late to test anything"
    baseline = digest(results / "A0")  # finished before the kill
    start = RESUMES_FROM[point]
    on_disk = _complete_checkpoint_steps(results / run_id / "checkpoints")
    assert max(on_disk) == start, on_disk
    if start == TOTAL_STEPS:  # an older complete checkpoint is there too: resuming from it would be wrong
        assert min(on_disk) < start, on_disk

    assert main.main(["--config", str(path), "--dry-run"]) == 0
    plan = {line.split()[0]: line[line.rindex("["):] for line in capsys.readouterr().out.splitlines()}
    assert plan == {"A0": "[skip: complete]", run_id: f"[resume: step {start}]"}  # every kill point is past the first

    assert main.main(["--config", str(path), "--quiet"]) == 0
    assert digest(results / "A0") == baseline  # no other run's files change
    finished = json.loads((results / run_id / "metrics.json").read_text())
    reference_metrics = json.loads((expected / run_id / "metrics.json").read_text())
    assert finished["status"] == "complete"
    assert finished["metrics"] == reference_metrics["metrics"]
    assert finished["best_epoch"] == reference_metrics["best_epoch"]
    # It continued from the newest complete checkpoint and trained only the steps after it.
    assert finished["resumed_from"] == {"checkpoint": f"checkpoint-{start}", "step": start,
                                        "steps_trained": TOTAL_STEPS - start}
    assert reference_metrics["resumed_from"] is None  # the uninterrupted run started fresh
    ours = pd.read_csv(results / run_id / "predictions.csv")
    theirs = pd.read_csv(expected / run_id / "predictions.csv")
    np.testing.assert_allclose(ours.filter(like="prob_").to_numpy(), theirs.filter(like="prob_").to_numpy(), atol=1e-6)
    ours_epochs = pd.read_csv(results / run_id / "epochs.csv")
    theirs_epochs = pd.read_csv(expected / run_id / "epochs.csv")
    columns = ["epoch", "step", "train_loss", "validation_loss", "validation_accuracy"]
    np.testing.assert_allclose(ours_epochs[columns].to_numpy(), theirs_epochs[columns].to_numpy(), atol=1e-6)
    assert set(pd.read_csv(results / "summary.csv")["run_id"]) == {"A0", run_id}


def _complete_checkpoint_steps(folder: Path) -> list[int]:
    """Steps of the checkpoints whose trainer_state.json (the Trainer's last file) was written."""
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file())


def _complete(folder: Path) -> bool:
    try:
        return json.loads((folder / "metrics.json").read_text())["status"] == "complete"
    except (OSError, ValueError):
        return False
