"""Skip, resume or run again: a complete run is skipped only when its settings are unchanged; a changed setting or
--force runs it again in a cleared folder. End to end through main.py on a tiny model, and decide/begin directly."""
import json

import pytest

import main
from conftest import tiny_config, write_config
from core.config import validate
from pipeline.plan import build_plan
from pipeline.run_state import RESUME, RUN, SKIP, begin, decide, fingerprint

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only contend


# ----------------------------------------------------------------------------------------------
# End to end: main.py twice, then with a changed learning rate, then --force


def _plan(path, capsys, *argv) -> dict:
    capsys.readouterr()
    assert main.main(["--config", str(path), "--dry-run", *argv]) == 0
    return {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()}


def test_changed_setting_reruns_in_a_cleared_folder_unchanged_skips(tmp_path, tiny_data, tiny_models, capsys):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results")
    raw["dataset"]["max_train_samples"] = 16
    raw["training"].update(epochs=1, batch_size=8)
    raw["tasks"] = {"A0": raw["tasks"]["A0"], "B": raw["tasks"]["B"]}
    path = write_config(tmp_path / "config.yaml", raw)
    results = tmp_path / "results"
    assert main.main(["--config", str(path), "--quiet"]) == 0
    first = json.loads((results / "B1_v1" / "metrics.json").read_text())
    assert first["status"] == "complete" and first["config"]["training"]["learning_rate"] == 1e-3
    for run_id in ("A0", "B1_v1"):
        (results / run_id / "marker.txt").write_text("from the first invocation")
    metrics_bytes = {run_id: (results / run_id / "metrics.json").read_bytes() for run_id in ("A0", "B1_v1")}

    # Unchanged: both skipped, nothing touched.
    assert _plan(path, capsys) == {"A0": "[skip]", "B1_v1": "[skip]"}
    assert main.main(["--config", str(path), "--quiet"]) == 0
    assert "B1_v1  skipped: complete with the same settings" in capsys.readouterr().out
    for run_id in ("A0", "B1_v1"):
        assert (results / run_id / "marker.txt").is_file()
        assert (results / run_id / "metrics.json").read_bytes() == metrics_bytes[run_id]

    # --force: everything asked for runs again.
    assert _plan(path, capsys, "--force") == {"A0": "[run]", "B1_v1": "[run]"}

    # A changed learning rate: B1_v1 runs again from scratch in a cleared folder; A0 (which does not train) is skipped.
    changed = ["training.learning_rate=2e-3"]
    assert _plan(path, capsys, *changed) == {"A0": "[skip]", "B1_v1": "[run]"}
    assert main.main(["--config", str(path), "--quiet", *changed]) == 0
    assert not (results / "B1_v1" / "marker.txt").exists()  # the old folder was cleared
    assert (results / "A0" / "marker.txt").is_file() and (results / "A0" / "metrics.json").read_bytes() == metrics_bytes["A0"]
    second = json.loads((results / "B1_v1" / "metrics.json").read_text())
    assert second["status"] == "complete" and second["config"]["training"]["learning_rate"] == 2e-3
    assert second["fingerprint"] != first["fingerprint"]
    assert second["resumed_from"] is None  # started over, not resumed from the old run's checkpoints
    assert _plan(path, capsys, *changed) == {"A0": "[skip]", "B1_v1": "[skip]"}
    assert _plan(path, capsys) == {"A0": "[skip]", "B1_v1": "[run]"}  # back to 1e-3: not the finished run's settings


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
    _write(folder / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json", {"global_step": step, "log_history": []})


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
    assert decide(changed_run, changed_config, None) == RUN  # complete, but under another learning rate


def test_begin_clears_the_folder_only_when_the_run_starts_over(tmp_path):
    config, run = _setup(tmp_path)
    changed_config, changed_run = _setup(tmp_path, learning_rate=2e-3)
    folder = tmp_path / "results" / "B1_v1"
    _write(folder / "run.json", {"fingerprint": fingerprint(run, config, None)})
    _complete_checkpoint(folder)
    (folder / "marker.txt").write_text("old")

    begin(run, config, RESUME, None)
    assert (folder / "marker.txt").is_file() and (folder / "checkpoints" / "checkpoint-13").is_dir()
    assert json.loads((folder / "run.json").read_text())["fingerprint"] == fingerprint(run, config, None)

    action = decide(changed_run, changed_config, None)
    assert action == RUN
    begin(changed_run, changed_config, action, None)
    assert sorted(p.name for p in folder.iterdir()) == ["run.json"]  # marker and checkpoints gone
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
