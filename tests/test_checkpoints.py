"""Checkpoints on hand-made folders: the newest complete one is found by step number, and folders the Trainer
did not finish (no readable trainer_state.json, which it writes last) are removed, the complete ones kept."""
import json

import pytest

from core.checkpoints import latest_checkpoint, remove_incomplete_checkpoints
from evaluation.epoch_logs import epoch_rows


def complete(folder, step):
    """A checkpoint as the Trainer leaves it: weights, then trainer_state.json last."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    log = [{"epoch": step / 10, "step": step, "loss": 1.0 / step},
           {"epoch": step / 10, "step": step, "eval_validation_accuracy": step / 1000, "eval_validation_loss": 0.5}]
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": log}))
    return folder


def incomplete(folder, state: str | None = None):
    """Cut off before (or while) writing trainer_state.json."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "optimizer.pt").write_bytes(b"half")
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    return folder


@pytest.fixture
def checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (9, 13, 100):
        complete(root / f"checkpoint-{step}", step)
    incomplete(root / "checkpoint-50")  # no trainer_state.json
    incomplete(root / "checkpoint-200")  # the newest, but no trainer_state.json
    incomplete(root / "checkpoint-150", state='{"global_step": 150, "log_hi')  # half written
    return root


def test_latest_is_the_highest_step_not_the_last_name(checkpoints):
    # Lexically checkpoint-9 sorts last and checkpoint-100 first; by number 100 is the newest complete one.
    assert latest_checkpoint(checkpoints) == checkpoints / "checkpoint-100"


def test_latest_passes_over_incomplete_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    complete(root / "checkpoint-13", 13)
    incomplete(root / "checkpoint-26")
    assert latest_checkpoint(root) == root / "checkpoint-13"
    assert latest_checkpoint(tmp_path / "nothing-here") is None
    incomplete(tmp_path / "only-broken" / "checkpoint-5", state="not json")
    assert latest_checkpoint(tmp_path / "only-broken") is None


def test_incomplete_checkpoints_are_removed_and_complete_ones_stay(checkpoints):
    remove_incomplete_checkpoints(checkpoints)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-100", "checkpoint-13", "checkpoint-9"]
    for step in (9, 13, 100):  # untouched
        assert (checkpoints / f"checkpoint-{step}" / "model.safetensors").read_bytes() == b"weights"
    assert latest_checkpoint(checkpoints) == checkpoints / "checkpoint-100"


def test_epoch_rows_come_from_the_newest_complete_checkpoint(checkpoints):
    rows = epoch_rows(checkpoints)
    assert [(row["step"], row["validation_accuracy"]) for row in rows] == [(100, 0.1)]


@pytest.mark.parametrize("state", ["{}", "[]", '{"global_step": 7}', '"log_history"'])
def test_a_state_without_a_log_history_is_incomplete(tmp_path, state):
    # JSON that parses but is not the Trainer's state (no log_history mapping): nothing to resume from.
    root = tmp_path / "checkpoints"
    complete(root / "checkpoint-3", 3)
    incomplete(root / "checkpoint-7", state=state)
    assert latest_checkpoint(root) == root / "checkpoint-3"
    remove_incomplete_checkpoints(root)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-3"]


def test_only_checkpoint_step_folders_count(tmp_path):
    root = tmp_path / "checkpoints"
    complete(root / "checkpoint-3", 3)
    complete(root / "checkpoint-9-copy", 9)  # not a name the Trainer writes: never resumed from
    complete(root / "checkpoint-copy-9", 9)
    assert latest_checkpoint(root) == root / "checkpoint-3"
