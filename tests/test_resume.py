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
from conftest import ROOT, tiny_config, write_config

KILL_POINTS = ["train_step", "validation", "checkpoint_write", "model_save", "test_evaluation", "metrics_write"]


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
                             "--config", str(path), "--quiet"], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    results = tmp_path / "results"
    assert not _complete(results / run_id), "the kill came too late to test anything"
    baseline = digest(results / "A0")  # finished before the kill

    assert main.main(["--config", str(path), "--dry-run"]) == 0
    plan = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()}
    assert plan == {"A0": "[skip]", run_id: "[resume]"}  # every kill point is past the first checkpoint

    assert main.main(["--config", str(path), "--quiet"]) == 0
    assert digest(results / "A0") == baseline  # no other run's files change
    finished = json.loads((results / run_id / "metrics.json").read_text())
    reference_metrics = json.loads((expected / run_id / "metrics.json").read_text())
    assert finished["status"] == "complete"
    assert finished["metrics"] == reference_metrics["metrics"]
    assert finished["best_epoch"] == reference_metrics["best_epoch"]
    ours = pd.read_csv(results / run_id / "predictions.csv")
    theirs = pd.read_csv(expected / run_id / "predictions.csv")
    np.testing.assert_allclose(ours.filter(like="prob_").to_numpy(), theirs.filter(like="prob_").to_numpy(), atol=1e-6)
    ours_epochs = pd.read_csv(results / run_id / "epochs.csv")
    theirs_epochs = pd.read_csv(expected / run_id / "epochs.csv")
    columns = ["epoch", "step", "train_loss", "validation_loss", "validation_accuracy"]
    np.testing.assert_allclose(ours_epochs[columns].to_numpy(), theirs_epochs[columns].to_numpy(), atol=1e-6)
    assert set(pd.read_csv(results / "summary.csv")["run_id"]) == {"A0", run_id}


def _complete(folder: Path) -> bool:
    try:
        return json.loads((folder / "metrics.json").read_text())["status"] == "complete"
    except (OSError, ValueError):
        return False
