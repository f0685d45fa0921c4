"""Skip, resume, run again or stop: a complete run is skipped only when its settings are unchanged; complete
results of other settings are kept and stop the plan before any work (naming what changed) unless --force
replaces them; incomplete folders of other settings are replaced. End to end through main.py on a tiny model,
and decide/begin directly."""
import json
import re

import pytest

import main
from test_checkpoints import whole
from conftest import tiny_config, write_config
from core.config import validate
from pipeline.plan import build_plan
from pipeline.run_state import (BLOCKED, RESUME, RUN, SKIP, begin, blocked_message, changes, decide, fate,
                                fingerprint, identity)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only contend


# ----------------------------------------------------------------------------------------------
# End to end: main.py twice, then with a changed learning rate (blocked), then --force


def _plan(path, capsys, *argv, code=0, errors=None) -> dict:
    """Each run's fate in the dry run's listing; its error lines go to `errors`."""
    capsys.readouterr()
    assert main.main(["--config", str(path), "--dry-run", *argv]) == code
    printed = capsys.readouterr()
    if errors is not None:
        errors.extend(line for line in printed.err.splitlines() if line.startswith("error: "))
    return {line.split()[0]: re.search(r"\[([^][]*)\]$", line).group(1) for line in printed.out.splitlines()}


def test_changed_setting_is_blocked_force_replaces_unchanged_skips(tmp_path, tiny_data, tiny_models, capsys):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results")
    raw["dataset"]["max_train_samples"] = 16
    raw["training"].update(epochs=1, batch_size=8)
    raw["tasks"] = {"A0": raw["tasks"]["A0"], "B": raw["tasks"]["B"]}
    path = write_config(tmp_path / "config.yaml", raw)
    results = tmp_path / "results"
    assert main.main(["--config", str(path), "--quiet"]) == 0
    first = json.loads((results / "B1_v1" / "metrics.json").read_text())
    assert first["status"] == "complete" and first["config"]["training"]["learning_rate"] == 1e-3
    assert first["identity"]["run"]["training"]["learning_rate"] == 1e-3  # recorded: what a change is diffed against
    for run_id in ("A0", "B1_v1"):
        (results / run_id / "marker.txt").write_text("from the first invocation")
    metrics_bytes = {run_id: (results / run_id / "metrics.json").read_bytes() for run_id in ("A0", "B1_v1")}

    def untouched():
        for run_id in ("A0", "B1_v1"):
            assert (results / run_id / "marker.txt").is_file()
            assert (results / run_id / "metrics.json").read_bytes() == metrics_bytes[run_id]

    # Unchanged: both skipped, nothing touched.
    assert _plan(path, capsys) == {"A0": "skip: complete", "B1_v1": "skip: complete"}
    assert main.main(["--config", str(path), "--quiet"]) == 0
    assert "B1_v1  skipped: complete with the same settings" in capsys.readouterr().out
    untouched()

    # --force: everything asked for runs again.
    assert _plan(path, capsys, "--force") == {"A0": "run", "B1_v1": "run"}

    # A changed learning rate: B1_v1's complete results are kept; the dry run and the run both stop with exit 2,
    # one line naming the run and what changed, before any work (A0, first in the plan, is not run either).
    changed, errors = ["training.learning_rate=2e-3"], []
    assert _plan(path, capsys, *changed, code=2, errors=errors) == {
        "A0": "skip: complete", "B1_v1": "blocked: settings changed: training.learning_rate (0.001 -> 0.002)"}
    line = ("error: B1_v1: training.learning_rate changed (0.001 -> 0.002); pass --force to replace,"
            " or use another output_dir")
    assert errors == [line]
    assert main.main(["--config", str(path), "--quiet", *changed]) == 2
    printed = capsys.readouterr()
    assert printed.err.strip().splitlines() == [line] and "running" not in printed.out
    untouched()
    assert sorted(p.name for p in results.iterdir() if p.name.startswith(".replaced")) == []  # nothing moved aside

    # With --force it runs again from scratch in a cleared folder; A0 (which does not train) is rerun as asked.
    assert main.main(["--config", str(path), "--quiet", "--force", *changed]) == 0
    assert not (results / "B1_v1" / "marker.txt").exists()  # the old folder was cleared
    assert list((results / ".replaced").iterdir()) == []  # and deleted where it was moved aside
    second = json.loads((results / "B1_v1" / "metrics.json").read_text())
    assert second["status"] == "complete" and second["config"]["training"]["learning_rate"] == 2e-3
    assert second["fingerprint"] != first["fingerprint"]
    assert second["resumed_from"] is None  # started over, not resumed from the old run's checkpoints
    assert _plan(path, capsys, *changed) == {"A0": "skip: complete", "B1_v1": "skip: complete"}
    assert _plan(path, capsys, code=2)["B1_v1"] == "blocked: settings changed: training.learning_rate (0.002 -> 0.001)"


# ----------------------------------------------------------------------------------------------
# decide and begin on hand-written run folders


def _setup(tmp_path, **training):
    raw = tiny_config(tmp_path / "data", [tmp_path / "bert"], tmp_path / "results",
                      tasks={"B": {"method": "full", "variants": ["v1"]}})
    raw["training"].update(training)
    config = validate(raw)
    (run,) = build_plan(config)
    return config, run


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _complete_checkpoint(folder, step=13):
    """A checkpoint with every file the Trainer reads back on resume, whole."""
    whole(folder / "checkpoints" / f"checkpoint-{step}", step)


def test_fingerprint_follows_settings_that_change_results(tmp_path):
    config, run = _setup(tmp_path)
    other_config, other_run = _setup(tmp_path, learning_rate=2e-3)
    same_config, same_run = _setup(tmp_path)
    assert fingerprint(same_run, same_config, None) == fingerprint(run, config, None)  # stable
    assert fingerprint(other_run, other_config, None) != fingerprint(run, config, None)
    split = config.model_copy(update={"dataset": config.dataset.model_copy(update={"split_seed": 7})})
    assert fingerprint(run, split, None) != fingerprint(run, config, None)  # other validation rows, other results
    cache = config.model_copy(update={"dataset": config.dataset.model_copy(update={"cache_dir": str(tmp_path / "c")})})
    assert fingerprint(run, cache, None) == fingerprint(run, config, None)  # where tokens are cached changes nothing
    bounds = config.model_copy(update={"dataset": config.dataset.model_copy(update={"max_classes": 7,
                                                                                   "max_text_chars": 9})})
    assert fingerprint(run, bounds, None) == fingerprint(run, config, None)  # bounds only refuse data: runs are kept


def test_decide(tmp_path):
    config, run = _setup(tmp_path)
    changed_config, changed_run = _setup(tmp_path, learning_rate=2e-3)
    folder = tmp_path / "results" / "B1_v1"
    assert decide(run, config, None) == RUN  # nothing there

    _write(folder / "run.json", {"fingerprint": fingerprint(run, config, None)})
    assert decide(run, config, None) == RUN  # started, but no checkpoint to resume from
    _complete_checkpoint(folder)
    assert decide(run, config, None) == RESUME
    assert decide(changed_run, changed_config, None) == RUN  # its checkpoints belong to other settings
    assert decide(run, config, None, force=True) == RUN

    _write(folder / "metrics.json", {"run_id": "B1_v1", "status": "failed", "fingerprint": fingerprint(run, config, None)})
    assert decide(run, config, None) == RESUME  # a failed run is not done
    _write(folder / "metrics.json", {"run_id": "B1_v1", "status": "complete", "fingerprint": fingerprint(run, config, None)})
    assert decide(run, config, None) == SKIP
    assert decide(run, config, None, force=True) == RUN
    assert decide(changed_run, changed_config, None) == BLOCKED  # complete, but under another learning rate: kept
    assert decide(changed_run, changed_config, None, force=True) == RUN


def test_begin_clears_the_folder_only_when_the_run_starts_over(tmp_path):
    config, run = _setup(tmp_path)
    changed_config, changed_run = _setup(tmp_path, learning_rate=2e-3)
    folder = tmp_path / "results" / "B1_v1"
    _write(folder / "run.json", {"fingerprint": fingerprint(run, config, None)})
    _write(folder / "metrics.json", {"run_id": "B1_v1", "status": "failed", "fingerprint": fingerprint(run, config, None)})
    _complete_checkpoint(folder)
    (folder / "marker.txt").write_text("old")

    begin(run, config, RESUME, None)
    assert (folder / "marker.txt").is_file() and (folder / "checkpoints" / "checkpoint-13").is_dir()
    assert json.loads((folder / "run.json").read_text())["fingerprint"] == fingerprint(run, config, None)

    action = decide(changed_run, changed_config, None)
    assert action == RUN  # failed under other settings: replaced, as it is not complete
    begin(changed_run, changed_config, action, None)
    assert sorted(p.name for p in folder.iterdir()) == ["run.json"]  # marker, metrics and checkpoints gone
    assert list((folder.parent / ".replaced").iterdir()) == []  # moved aside there, then deleted
    started = json.loads((folder / "run.json").read_text())
    assert started["fingerprint"] == fingerprint(changed_run, changed_config, None) != fingerprint(run, config, None)
    assert started["config"]["training"]["learning_rate"] == 2e-3


# ----------------------------------------------------------------------------------------------
# The fingerprint's recipe is a stored format: results folders written by earlier versions must keep matching


def _choice(precision="bf16", device_type="cuda"):
    from core.precision import Choice
    return Choice(precision=precision, setting="auto", source="cached", device_type=device_type, device="GPU X",
                  gflops={"fp32": 100.0, "bf16": 250.0}, bf16_speedup=2.5)


def test_fingerprint_is_the_documented_hash_of_run_data_and_hardware(tmp_path):
    import hashlib

    config, run = _setup(tmp_path)
    dataset = config.dataset.model_dump()
    for unscored in ("cache_dir", "max_classes", "max_text_chars", "class_descriptions"):  # the same hash as
        del dataset[unscored]  # before these keys existed (class_descriptions: while unset)
    identity = {"trust_remote_code": config.trust_remote_code, "dataset": dataset, "run": run.resolved()}
    # Recomputed here from the recipe: sha256 of the key-sorted JSON, first 16 hex digits.
    expected = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    assert fingerprint(run, config, None) == expected
    identity["hardware"] = {"precision": "bf16", "device_type": "cuda"}  # not the device's name nor the probe's rates
    with_hardware = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    assert fingerprint(run, config, _choice()) == with_hardware
    assert len(with_hardware) == 16 and with_hardware != expected
    assert fingerprint(run, config, _choice(precision="fp32")) != with_hardware
    assert fingerprint(run, config, _choice(device_type="cpu")) != with_hardware


def test_begin_records_run_id_fingerprint_and_precision(tmp_path):
    config, run = _setup(tmp_path)
    folder = tmp_path / "results" / "B1_v1"
    begin(run, config, RUN, _choice())
    started = json.loads((folder / "run.json").read_text())
    assert started["run_id"] == "B1_v1"
    assert started["fingerprint"] == fingerprint(run, config, _choice()) != fingerprint(run, config, None)
    expected = {"precision": "bf16", "setting": "auto", "source": "cached", "device_type": "cuda", "device": "GPU X",
                "gflops": {"fp32": 100.0, "bf16": 250.0}, "bf16_speedup": 2.5}
    assert {key: started["precision"][key] for key in expected} == expected
    begin(run, config, RUN, None)  # a run without a model
    assert json.loads((folder / "run.json").read_text())["precision"] is None


def test_decide_treats_unreadable_or_non_object_state_files_as_absent(tmp_path):
    config, run = _setup(tmp_path)
    folder = tmp_path / "results" / "B1_v1"
    _complete_checkpoint(folder)
    for content in ("[1, 2]", "not json", '"complete"'):
        (folder / "metrics.json").write_text(content)
        (folder / "run.json").write_text(content)
        assert decide(run, config, None) == RUN


# ----------------------------------------------------------------------------------------------
# What a blocked run's line says: the changed keys, bounded; records from before identities were recorded


def _complete(folder, run, config, choice=None, **fields):
    record = {"run_id": run.run_id, "status": "complete", "fingerprint": fingerprint(run, config, choice),
              "identity": identity(run, config, choice), **fields}
    _write(folder / "metrics.json", {key: value for key, value in record.items() if value is not None})


def _with_dataset(config, **update):
    return config.model_copy(update={"dataset": config.dataset.model_copy(update=update)})


def test_a_blocked_run_names_each_changed_key_with_bounded_values(tmp_path):
    config, run = _setup(tmp_path)
    folder = tmp_path / "results" / "B1_v1"
    _complete(folder, run, config)
    moved = _with_dataset(config, source="reviews.csv")
    assert decide(run, moved, None) == BLOCKED
    assert blocked_message(run, moved, None) == (
        f"B1_v1: dataset.source changed ({tmp_path / 'data'} -> reviews.csv); pass --force to replace,"
        " or use another output_dir")
    assert fate(run, moved, None) == f"blocked: settings changed: dataset.source ({tmp_path / 'data'} -> reviews.csv)"
    assert fate(run, moved, None, force=True) == "run"

    many_config, many_run = _setup(tmp_path, learning_rate=2e-3, epochs=3, batch_size=4, weight_decay=0.5)
    many = _with_dataset(many_config, source="x" * 5000, split_seed=7)
    message = blocked_message(many_run, many, None)
    assert message.startswith("B1_v1: dataset.source changed (")
    assert f" -> {'x' * 48}...{'x' * 49}), " in message and len(message) < 600  # a long value is cut in the middle
    assert message.endswith(" +3 more; pass --force to replace, or use another output_dir")  # 6 keys, 3 named
    assert [key for key, _, _ in changes(many_run, many, None)] == [
        "dataset.source", "dataset.split_seed", "training.batch_size", "training.epochs", "training.learning_rate",
        "training.weight_decay"]
    assert blocked_message(run, config, None) is None  # the same settings: skipped, not blocked


def test_records_without_an_identity_are_diffed_on_what_they_hold(tmp_path):
    config, run = _setup(tmp_path)
    changed_config, changed_run = _setup(tmp_path, learning_rate=2e-3)
    folder = tmp_path / "results" / "B1_v1"
    old = {"run_id": "B1_v1", "status": "complete", "fingerprint": fingerprint(run, config, None),
           "config": run.resolved(), "data": {"source": str(tmp_path / "data"), "max_length": 48}}
    _write(folder / "metrics.json", old)
    assert decide(run, config, None) == SKIP
    assert changes(changed_run, changed_config, None) == [("training.learning_rate", 1e-3, 2e-3)]
    moved = _with_dataset(config, source="reviews.csv")
    assert changes(run, moved, None) == [("dataset.source", str(tmp_path / "data"), "reviews.csv")]
    assert blocked_message(run, _with_dataset(config, split_seed=7), None) == (  # not in the old record
        "B1_v1: settings changed; pass --force to replace, or use another output_dir")
    _write(folder / "metrics.json", {**old, "precision_choice": {"precision": "bf16", "device_type": "cuda"}})
    from core.precision import Choice
    cpu = Choice("fp32", "auto", "cached", "cpu", "some CPU")
    assert changes(run, config, cpu) == [("hardware.device_type", "cuda", "cpu"), ("hardware.precision", "bf16", "fp32")]
    _write(folder / "metrics.json", {"run_id": "B1_v1", "status": "complete", "fingerprint": "0" * 16})
    assert fate(run, config, None) == "blocked: settings changed"  # nothing to diff: still kept


def test_a_searched_run_is_compared_on_everything_but_what_its_search_chooses(tmp_path):
    raw = tiny_config(tmp_path / "data", [tmp_path / "bert"], tmp_path / "results",
                      tasks={"B": {"method": "full", "variants": ["v1"],
                                   "search": {"n_trials": 2, "space": {"training.learning_rate": [1e-3, 2e-3]}}}})
    config = validate(raw)
    (run,) = build_plan(config)
    from pipeline.search import applied
    result = {"best_trial": 1, "n_trials": 2, "validation_accuracy": 0.5, "params": {"training.learning_rate": 2e-3},
              "folder": "search/B1_v1"}
    searched = applied(run, result)
    _complete(tmp_path / "results" / "B1_v1", searched, config)
    assert decide(searched, config, None) == SKIP
    # Before its search has run (or while it runs again after its block changed): the chosen rate and the search's
    # result are not compared, so the run is not blocked; the search runs and the run retrains.
    assert decide(run, config, None) == RUN and changes(run, config, None) is None
    assert decide(applied(run, {**result, "n_trials": 4}), config, None) == RUN
    moved = _with_dataset(config, source="reviews.csv")  # anything else that changed stops it before the search
    assert [key for key, _, _ in changes(run, moved, None)] == ["dataset.source"]
    assert decide(run, moved, None) == BLOCKED


def test_the_dry_run_fate_of_an_interrupted_run_names_its_checkpoint_step(tmp_path):
    config, run = _setup(tmp_path)
    folder = tmp_path / "results" / "B1_v1"
    _write(folder / "run.json", {"fingerprint": fingerprint(run, config, None)})
    _complete_checkpoint(folder, step=13)
    _complete_checkpoint(folder, step=26)
    assert fate(run, config, None) == "resume: step 26"
    (folder / "checkpoints" / "checkpoint-26" / "optimizer.pt").unlink()  # the real run would pass over it
    assert fate(run, config, None) == "resume: step 13" and decide(run, config, None) == RESUME
    (folder / "checkpoints" / "checkpoint-13" / "scheduler.pt").unlink()  # and start over
    assert fate(run, config, None) == "run: its checkpoints are damaged, so it starts over"


# ----------------------------------------------------------------------------------------------
# Replacing a folder leaves the old run whole, or nothing


def _old_complete_run(tmp_path):
    config, run = _setup(tmp_path)
    folder = tmp_path / "results" / "B1_v1"
    _complete(folder, run, config)
    for name in ("model/model.safetensors", "model/config.json", "predictions.csv", "epochs.csv"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("old")
    return config, run, folder


def test_a_removal_that_fails_part_way_leaves_no_run_folder_behind(tmp_path, monkeypatch):
    import shutil

    import pipeline.run_state as run_state

    config, run, folder = _old_complete_run(tmp_path)
    real = shutil.rmtree

    def fails_part_way(path, *args, **kwargs):  # deletes model/ first, then the disk says no
        real(path / "model")
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(run_state.shutil, "rmtree", fails_part_way)
    begin(run, config, RUN, None)  # --force's action
    # Never metrics.json saying complete beside a missing model/: the old folder is gone as a whole.
    assert sorted(p.name for p in folder.iterdir()) == ["run.json"]
    (remains,) = (tmp_path / "results" / ".replaced").iterdir()  # out of every reader's sight
    assert not (remains / "model").exists() and (remains / "metrics.json").is_file()
    from evaluation.summary import read_records
    assert [r.run_id for r in read_records(tmp_path / "results")] == []
    monkeypatch.setattr(run_state.shutil, "rmtree", real)
    _complete(folder, run, config)
    begin(run, config, RUN, None)  # the next replacement clears what the failed one left
    assert list((tmp_path / "results" / ".replaced").iterdir()) == []


def test_a_folder_that_cannot_be_moved_aside_is_kept_whole(tmp_path, monkeypatch):
    import pipeline.run_state as run_state

    config, run, folder = _old_complete_run(tmp_path)
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))

    def refuse(source, target):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(run_state.os, "rename", refuse)
    with pytest.raises(OSError):
        begin(run, config, RUN, None)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before
    assert json.loads((folder / "metrics.json").read_text())["status"] == "complete"
