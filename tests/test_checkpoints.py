"""Checkpoints on hand-made folders: the newest complete one is found by step number, and folders the Trainer
did not finish (no readable trainer_state.json, which it writes last) are removed, the complete ones kept; a
complete one with damaged or missing files is not resumed from. Then a tiny model that really trains: a damaged
checkpoint is passed over, and the rerun ends with an uninterrupted run's results."""
import json

import pytest

import main
from conftest import tiny_config, write_config
from core.checkpoints import latest_checkpoint, prepare_resume, remove_incomplete_checkpoints, resumable_checkpoint
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


# ----------------------------------------------------------------------------------------------
# Which checkpoint a run resumes from: every file the Trainer reads back must be there and whole.

def whole(folder, step, best=None, weights="model.safetensors"):
    """A checkpoint with every file the Trainer writes, in the Trainer's formats (safetensors, torch zip)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"weight": torch.ones(4, 4), "bias": torch.zeros(4)}, str(folder / weights))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"state": torch.arange(10)}, folder / name)
    state = {"global_step": step, "log_history": [],
             "best_model_checkpoint": str(folder.parent / f"checkpoint-{best}") if best else None}
    (folder / "trainer_state.json").write_text(json.dumps(state))
    return folder


def cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("harm, problem", [
    (lambda c: cut(c / "model.safetensors"), "model.safetensors is truncated"),
    (lambda c: cut(c / "model.safetensors", keep=0.99), "model.safetensors is truncated"),  # only the last tensor
    (lambda c: (c / "model.safetensors").unlink(), "no model weights"),
    (lambda c: (c / "optimizer.pt").unlink(), "optimizer.pt is missing"),
    (lambda c: cut(c / "optimizer.pt", keep=0.9), "optimizer.pt is truncated"),
    (lambda c: (c / "scheduler.pt").unlink(), "scheduler.pt is missing"),
    (lambda c: cut(c / "rng_state.pth"), "rng_state.pth is truncated"),
    (lambda c: (c / "model.safetensors").write_bytes(b"\xff" * 64), "model.safetensors is truncated"),
])
def test_a_damaged_checkpoint_is_passed_over_for_the_previous_whole_one(tmp_path, harm, problem):
    root = tmp_path / "checkpoints"
    whole(root / "checkpoint-13", 13)
    newest = whole(root / "checkpoint-26", 26)
    assert resumable_checkpoint(root) == (newest, [])
    harm(newest)
    resume, passed_over = resumable_checkpoint(root)
    assert resume == root / "checkpoint-13"
    assert [(folder.name, reason.startswith(problem)) for folder, reason in passed_over] == [("checkpoint-26", True)]
    assert latest_checkpoint(root) == newest  # trainer_state.json still parses: complete, but not resumable


def test_a_checkpoint_whose_best_checkpoint_is_damaged_is_passed_over(tmp_path):
    # load_best_model_at_end reads the best checkpoint's weights at the end of training.
    root = tmp_path / "checkpoints"
    whole(root / "checkpoint-13", 13, best=13)
    whole(root / "checkpoint-26", 26, best=13)
    whole(root / "checkpoint-39", 39, best=13)
    assert resumable_checkpoint(root)[0] == root / "checkpoint-39"
    cut(root / "checkpoint-13" / "model.safetensors")
    resume, passed_over = resumable_checkpoint(root)
    assert resume is None
    assert [f.name for f, _ in passed_over] == ["checkpoint-39", "checkpoint-26", "checkpoint-13"]
    for _, reason in passed_over[:2]:
        assert reason.startswith("its best checkpoint, checkpoint-13, is damaged: model.safetensors is truncated")
    assert passed_over[2][1].startswith("model.safetensors is truncated")


def test_adapter_and_sharded_weights_are_checked(tmp_path):
    root = tmp_path / "checkpoints"
    adapter = whole(root / "checkpoint-13", 13, weights="adapter_model.safetensors")  # a PEFT run's checkpoint
    sharded = whole(root / "checkpoint-26", 26)
    (sharded / "model.safetensors").rename(sharded / "model-00002-of-00002.safetensors")
    (sharded / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"weight": "model-00002-of-00002.safetensors", "bias": "model-00001-of-00002.safetensors"}}))
    resume, passed_over = resumable_checkpoint(root)
    assert resume == adapter
    assert [(f.name, reason) for f, reason in passed_over] == [
        ("checkpoint-26", "model-00001-of-00002.safetensors is missing")]
    cut(adapter / "adapter_model.safetensors")
    assert resumable_checkpoint(root)[0] is None


def test_damaged_checkpoints_are_removed_with_one_line_each(tmp_path):
    root = tmp_path / "B1_v1" / "checkpoints"
    whole(root / "checkpoint-13", 13)
    (whole(root / "checkpoint-26", 26) / "optimizer.pt").unlink()
    incomplete(root / "checkpoint-39")  # half-written by a kill: removed without a word, as before
    lines = []
    assert prepare_resume(root, note=lines.append) == root / "checkpoint-13"
    assert lines == ["      B1_v1: passing over checkpoint-26 (optimizer.pt is missing) and removing it;"
                     " resuming from checkpoint-13"]
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-13"]
    cut(root / "checkpoint-13" / "scheduler.pt")
    lines.clear()
    assert prepare_resume(root, note=lines.append) is None
    assert lines == ["      B1_v1: passing over checkpoint-13 (scheduler.pt is truncated or not a torch file) and removing it;"
                     " starting over"]
    assert list(root.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# A tiny model that really trains: a run stopped at step 30 of 52 leaves checkpoints 13 and 26; one gets
# damaged, and the rerun resumes from the whole one (or starts over) to an uninterrupted run's results.

STOP_AT = 30  # 4 epochs of 13 steps (100 training texts, batch 8)
RUN_ID = "B1_v1"


def four_epochs(root, tiny_data, tiny_models):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], root / "results")
    raw["training"].update(epochs=4, batch_size=8)
    raw["tasks"] = {"B": raw["tasks"]["B"]}
    return write_config(root / "config.yaml", raw)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, tiny_data, tiny_models):
    """(an uninterrupted run's folder, the results folder of the same run stopped by an error at step 30)."""
    import tasks.finetune

    reference = tmp_path_factory.mktemp("uninterrupted")
    assert main.main(["--config", str(four_epochs(reference, tiny_data, tiny_models)), "--quiet"]) == 0
    root = tmp_path_factory.mktemp("stopped")
    original = tasks.finetune.ElapsedTime.on_step_end

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == STOP_AT:
            raise RuntimeError("stopped")
        return original(self, args, state, control, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tasks.finetune.ElapsedTime, "on_step_end", on_step_end)
        assert main.main(["--config", str(four_epochs(root, tiny_data, tiny_models)), "--quiet"]) == 1
    checkpoints = root / "results" / RUN_ID / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-13", "checkpoint-26"]
    return reference / "results" / RUN_ID, root / "results"


RERUNS = {  # damage: (checkpoint resumed from, the lines that say what was passed over)
    "weights truncated": (lambda c: cut(c / "checkpoint-26" / "model.safetensors"), 13,
                          ["passing over checkpoint-26 (model.safetensors is truncated ("]),
    # Resuming from it would run without an error, with a fresh optimizer: not the uninterrupted run's result.
    "optimizer state missing": (lambda c: (c / "checkpoint-26" / "optimizer.pt").unlink(), 13,
                                ["passing over checkpoint-26 (optimizer.pt is missing)"]),
    "both damaged": (lambda c: ((c / "checkpoint-26" / "model.safetensors").unlink(),
                                (c / "checkpoint-13" / "scheduler.pt").unlink()), None,
                     ["passing over checkpoint-26 (no model weights",
                      "passing over checkpoint-13 (scheduler.pt is missing)"]),
}


@pytest.mark.parametrize("case", RERUNS)
def test_a_rerun_passes_over_damaged_checkpoints_to_the_uninterrupted_result(case, stopped, tmp_path, tiny_data,
                                                                           tiny_models, capsys):
    import shutil

    import numpy as np
    import pandas as pd

    expected, results = stopped
    shutil.copytree(results, tmp_path / "results")
    path = four_epochs(tmp_path, tiny_data, tiny_models)
    harm, start, passed = RERUNS[case]
    harm(tmp_path / "results" / RUN_ID / "checkpoints")
    capsys.readouterr()
    assert main.main(["--config", str(path), "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "passing over" in line]
    then = f"resuming from checkpoint-{start}" if start else "starting over"
    assert len(lines) == len(passed)
    for line, fragment in zip(lines, passed):
        assert line.strip().startswith(f"{RUN_ID}: {fragment}") and line.endswith(then), line
    finished = json.loads((tmp_path / "results" / RUN_ID / "metrics.json").read_text())
    reference = json.loads((expected / "metrics.json").read_text())
    assert finished["status"] == "complete"
    assert finished["resumed_from"] == ({"checkpoint": f"checkpoint-{start}", "step": start,
                                         "steps_trained": 52 - start} if start else None)
    assert finished["metrics"] == reference["metrics"]
    ours = pd.read_csv(tmp_path / "results" / RUN_ID / "predictions.csv").filter(like="prob_").to_numpy()
    theirs = pd.read_csv(expected / "predictions.csv").filter(like="prob_").to_numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
