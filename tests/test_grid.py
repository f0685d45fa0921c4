"""Many processes, one results folder: each run is claimed by exactly one process through its lock, the others
skip it, and whoever finishes last rebuilds the summary."""
import json
import os
import subprocess
import sys
import time

import pandas as pd

import main
from conftest import ROOT, python_env, tiny_config, write_config


def test_two_processes_started_together_train_every_run_once(tiny_data, tiny_models, tmp_path):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results")
    raw["tasks"] = {key: raw["tasks"][key] for key in ("A0", "A", "B", "C", "D")}
    config = write_config(tmp_path / "config.yaml", raw)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, str(ROOT / "main.py"), "--config", str(config), "--quiet"]
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    runs = ["A0", "A1", "B1_v1", "C1_v1", "D1_v1"]
    for run_id in runs:  # one "running" line per run over both processes; the other process skipped it
        started = [out.count(f"] {run_id}  running") for out, _ in outputs]
        assert sum(started) == 1, outputs
        skipped = [out for out, _ in outputs if f"] {run_id}  skipped: " in out]
        assert len(skipped) == 1
        record = json.loads((tmp_path / "results" / run_id / "metrics.json").read_text())
        assert record["status"] == "complete"
    summary = pd.read_csv(tmp_path / "results" / "summary.csv")
    assert sorted(summary["run_id"]) == sorted(runs)
    report = (tmp_path / "results" / "report.md").read_text()
    assert all(f"| {run_id} |" in report or f"**{run_id}**" in report for run_id in runs)


def test_a_run_held_by_another_process_is_skipped_and_a_dead_holders_lock_taken_over(tiny_data, tiny_models,
                                                                                     tmp_path, capsys):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out")
    path = write_config(tmp_path / "config.yaml", raw)
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        f"import time\n"
        f"from core.lock import run_lock\n"
        f"lock = run_lock({str(out)!r}, 'A0'); assert lock.acquire(); print('locked', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True, env=python_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main.main(["--config", str(path), "--only", "A0", "--quiet"]) == 0  # the holder's to finish
        printed = capsys.readouterr().out
        assert f"A0  skipped: held by process {holder.pid} on " in printed
        assert not (out / "A0").exists()
    finally:
        holder.kill()
        holder.wait()
    assert (out / ".locks" / "A0.lock").is_file()  # left behind by the killed holder: stale
    assert main.main(["--config", str(path), "--only", "A0", "--quiet"]) == 0
    assert json.loads((out / "A0" / "metrics.json").read_text())["status"] == "complete"


def test_two_processes_with_force_rerun_each_run_once(tiny_data, tiny_models, tmp_path):
    """--force takes each run's lock like any run, and a run another process reran since this one started (even
    while this one was still loading its data) is not rerun."""
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results")
    raw["dataset"]["max_train_samples"] = 16
    raw["training"].update(epochs=1, batch_size=8)
    raw["tasks"] = {key: raw["tasks"][key] for key in ("A0", "B")}
    config = write_config(tmp_path / "config.yaml", raw)
    assert main.main(["--config", str(config), "--quiet"]) == 0  # complete: what --force asks to redo
    results = tmp_path / "results"
    first = {run_id: (results / run_id / "metrics.json").read_bytes() for run_id in ("A0", "B1_v1")}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    arguments = ["--config", str(config), "--quiet", "--force"]
    harness = str(ROOT / "tests" / "late_start_harness.py")
    ready, watched = tmp_path / "ready", results / "A0" / "metrics.json"
    commands = [[sys.executable, harness, "first", str(ready), *arguments],  # starts once the other has started
                [sys.executable, harness, "late", str(ready), str(watched), str(watched.stat().st_mtime_ns),
                 *arguments]]  # loads its data only once the first has rerun A0
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for command in commands]
    outputs = [process.communicate(timeout=900) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [(out[-2000:], err[-2000:]) for out, err in outputs]
    assert "prepare: A0 rewritten by the other process" in outputs[1][0]
    for run_id in ("A0", "B1_v1"):
        started = [out.count(f"] {run_id}  running") for out, _ in outputs]
        assert started == [1, 0], outputs  # the first reran it; the late one skipped it
        assert f"] {run_id}  skipped: " in outputs[1][0]
        record = json.loads((results / run_id / "metrics.json").read_text())
        assert record["status"] == "complete" and (results / run_id / "metrics.json").read_bytes() != first[run_id]
    assert "A0  skipped: finished by another process since this one started" in outputs[1][0]
