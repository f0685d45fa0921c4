"""`--executor ray`: each run a Ray task on a local Ray instance of 2 CPUs (one for the whole module: starting
Ray takes seconds). Runs overlap, give the sequential executor's files, fail alone, and a killed worker leaves
a run that the next invocation resumes."""
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import main
from conftest import ROOT, tiny_config, write_config

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def interval(folder):
    record = json.loads((folder / "metrics.json").read_text())
    return dt.datetime.fromisoformat(record["started_at"]), dt.datetime.fromisoformat(record["finished_at"])


def test_ray_runs_overlap_fail_alone_and_equal_the_sequential_executor(local_ray, tiny_data, tiny_models, tmp_path,
                                                                       one_thread, capsys):
    broken = tmp_path / "broken-model"  # config.json is there, the weights are not: fails when the run loads it
    shutil.copytree(tiny_models["bert"], broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    raw = tiny_config(tiny_data, [tiny_models["bert"], broken], tmp_path / "ray")
    raw["tasks"] = {"A0": raw["tasks"]["A0"], "A": raw["tasks"]["A"],
                    "B": {**raw["tasks"]["B"], "models": [1]}, "C": {**raw["tasks"]["C"], "models": [1]}}
    path = write_config(tmp_path / "config.yaml", raw)
    assert main.main(["--config", str(path), "--quiet", "--executor", "ray", "--cpus-per-run", "1"]) == 1
    out = tmp_path / "ray"
    printed = capsys.readouterr().out
    assert "ray: 5 runs as tasks of 1 CPU and 0 GPU each, on 2 CPUs" in printed
    records = {run_id: json.loads((out / run_id / "metrics.json").read_text())
               for run_id in ("A0", "A1", "A2", "B1_v1", "C1_v1")}
    assert records["A2"]["status"] == "failed" and records["A2"]["error"].startswith("SafetensorError")
    assert (out / "A2" / "error.log").is_file() and not (out / "A2" / "predictions.csv").exists()
    assert all(records[run_id]["status"] == "complete" for run_id in ("A0", "A1", "B1_v1", "C1_v1"))
    for run_id in ("A1", "B1_v1", "C1_v1"):  # each task on its --cpus-per-run threads
        environment = records[run_id]["environment"]
        assert environment["threads"] == 1 and environment["threads_chosen_by"] == "ray.cpus_per_run (--cpus-per-run)"
    spans = [interval(out / run_id) for run_id in records]
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if max(a[0], b[0]) < min(a[1], b[1])]
    assert overlapping, spans  # two runs were executing at the same moment

    sequential = subprocess.run([sys.executable, str(ROOT / "main.py"), "--config", str(path), "--quiet", "--only", "A0",
                                 "B1_v1", f"output_dir={tmp_path / 'seq'}"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                                capture_output=True, text=True, timeout=300)  # a fresh process, as a user runs it
    assert sequential.returncode == 0, sequential.stderr[-2000:]
    for run_id in ("A0", "B1_v1"):
        ours, theirs = (out / run_id / "predictions.csv").read_bytes(), (tmp_path / "seq" / run_id / "predictions.csv").read_bytes()
        assert ours == theirs, run_id
    with open(out / "summary.csv") as summary:
        assert sorted(line.split(",")[0] for line in list(summary)[1:]) == ["A0", "A1", "A2", "B1_v1", "C1_v1"]


def test_a_worker_killed_mid_run_leaves_a_run_the_next_invocation_resumes(local_ray, tiny_data, tiny_models,
                                                                          tmp_path, one_thread, capsys):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out")
    raw["training"].update(epochs=4, batch_size=8)
    raw["tasks"] = {"B": raw["tasks"]["B"]}
    path = write_config(tmp_path / "config.yaml", raw)
    run = tmp_path / "out" / "B1_v1"
    killed = []

    def kill_after_the_first_checkpoint():
        deadline = time.time() + 120
        while time.time() < deadline and not list(run.glob("checkpoints/checkpoint-*/trainer_state.json")):
            time.sleep(0.02)
        holder = (tmp_path / "out" / ".locks" / "B1_v1.lock").read_text().split()  # "process PID on HOST"
        os.kill(int(holder[1]), signal.SIGKILL)  # the Ray worker running the task
        killed.append(int(holder[1]))

    killer = threading.Thread(target=kill_after_the_first_checkpoint)
    killer.start()
    code = main.main(["--config", str(path), "--quiet", "--executor", "ray"])
    killer.join()
    assert killed and killed[0] != os.getpid()
    assert code == 1 and "B1_v1  failed" in capsys.readouterr().out
    assert not (run / "metrics.json").exists()
    assert main.main(["--config", str(path), "--dry-run"]) == 0
    assert re.search(r"\[resume: step \d+\]$", capsys.readouterr().out.strip())
    assert main.main(["--config", str(path), "--quiet"]) == 0
    assert json.loads((run / "metrics.json").read_text())["status"] == "complete"
