"""Torch's thread count per process (pipeline/runner.py share_cores): the machine's cores divided among the
processes on it that work on one output_dir (counted by their worker locks, core/lock.py), or `--threads`;
recorded in metrics.json's environment. The speed it buys is benchmarked, not tested: bench/threads.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import main
from conftest import ROOT, tiny_config, write_config
from core.lock import local_workers, worker_lock

CORES = len(os.sched_getaffinity(0))
HOLD = ("import sys, time; sys.path.insert(0, sys.argv[2]); from core.lock import worker_lock;"
        " lock = worker_lock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(120)")


@pytest.fixture
def other_process(tmp_path):
    """Starts processes (real ones) that hold their worker lock in a folder, as a plan's process does; killed after."""
    started = []

    def start(folder):
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(ROOT)], stdout=subprocess.PIPE,
                                   text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture
def all_cores():
    """The test process with one thread per core, as a plan's process starts (torch's default)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(CORES)
    yield
    torch.set_num_threads(threads)


def test_local_workers_counts_the_live_processes_of_this_machine(tmp_path, other_process):
    assert local_workers(tmp_path) == 0  # nobody yet
    mine = worker_lock(tmp_path)
    assert mine.acquire()
    assert not (tmp_path / ".locks").exists()  # kept outside output_dir: taken before output_dir is checked
    first, second = other_process(tmp_path), other_process(tmp_path)
    other_process(tmp_path / "elsewhere")  # working on another output_dir: not counted
    stale = mine.path.parent / "999999999.lock"  # a killed process's file: no holder
    stale.write_text("")
    assert local_workers(tmp_path) == 3
    assert not stale.exists()  # removed on the way
    first.kill()
    first.wait()
    assert local_workers(tmp_path) == 2
    mine.release()
    assert local_workers(tmp_path) == 1
    assert second.poll() is None


def _config(tiny_data, tiny_models, tmp_path, **extra) -> str:
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "out", tasks={"A": {"method": "pretrained"}},
                      **extra)
    return str(write_config(tmp_path / "config.yaml", raw))


def _environment(tmp_path) -> dict:
    return json.loads((tmp_path / "out" / "A1" / "metrics.json").read_text())["environment"]


@pytest.mark.skipif(CORES < 2, reason="one core: every share is one thread")
def test_processes_on_one_output_dir_share_the_cores(tiny_data, tiny_models, tmp_path, other_process, all_cores):
    path = _config(tiny_data, tiny_models, tmp_path)
    assert main.main(["--config", path, "--quiet"]) == 0
    alone = _environment(tmp_path)
    assert alone["threads"] == CORES
    assert alone["threads_chosen_by"] == (f"{CORES} cores / 1 process on this machine working on output_dir,"
                                          f" at most {CORES}")
    assert torch.get_num_threads() == CORES  # restored after the plan

    other_process(tmp_path / "out")  # another process working on the same folder
    assert main.main(["--config", path, "--quiet", "--force"]) == 0
    shared = _environment(tmp_path)
    assert shared["threads"] == CORES // 2
    assert shared["threads_chosen_by"].startswith(f"{CORES} cores / 2 processes on this machine")
    assert torch.get_num_threads() == CORES


def test_a_process_never_takes_more_threads_than_it_started_with(tiny_data, tiny_models, tmp_path, one_thread):
    """OMP_NUM_THREADS=1 (or torch.set_num_threads(1) before the plan) stays 1 even when alone."""
    assert main.main(["--config", _config(tiny_data, tiny_models, tmp_path), "--quiet"]) == 0
    assert _environment(tmp_path)["threads"] == 1


def test_threads_option_sets_the_count_and_is_recorded(tiny_data, tiny_models, tmp_path, other_process, one_thread):
    other_process(tmp_path / "out")
    assert main.main(["--config", _config(tiny_data, tiny_models, tmp_path), "--quiet", "--threads", "3"]) == 0
    environment = _environment(tmp_path)
    assert environment["threads"] == 3 and environment["threads_chosen_by"] == "threads (--threads)"
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_thread_count_is_one_line_before_any_work(tiny_data, tiny_models, tmp_path, capsys, value):
    assert main.main(["--config", _config(tiny_data, tiny_models, tmp_path), "--threads", value]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("error: ") and "threads: " in error and value in error
    assert not (tmp_path / "out").exists()
