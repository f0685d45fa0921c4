"""The plan under torchrun: two processes on the CPU (gloo), as on several GPUs. Every rank trains; rank 0 alone
logs and writes, and the run folders end up as a single-process run leaves them."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd

from conftest import tiny_config, write_config

ROOT = Path(__file__).resolve().parents[1]


def test_two_processes_write_each_run_once(tiny_data, tiny_models, tmp_path):
    raw = tiny_config(tiny_data, [tiny_models["bert"]], tmp_path / "results")
    raw["tasks"] = {key: raw["tasks"][key] for key in ("A0", "B", "C")}
    config = write_config(tmp_path / "config.yaml", raw)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "main.py"), "--config", str(config), "--quiet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for run_id in ("A0", "B1_v1", "C1_v1"):  # one progress line per run: rank 1 logs nothing
        assert done.stdout.count(f"] {run_id}  running") == 1, done.stdout
        record = json.loads((tmp_path / "results" / run_id / "metrics.json").read_text())
        assert record["status"] == "complete" and record["error"] is None
        predictions = pd.read_csv(tmp_path / "results" / run_id / "predictions.csv")
        assert len(predictions) == 40 and (predictions["index"].to_numpy() == range(40)).all()
    for run_id in ("B1_v1", "C1_v1"):
        model = tmp_path / "results" / run_id / "model"
        assert (model / "tokenizer_config.json").is_file()
        assert list((tmp_path / "results" / run_id / "checkpoints").glob("checkpoint-*"))
    summary = pd.read_csv(tmp_path / "results" / "summary.csv")
    assert sorted(summary["run_id"]) == ["A0", "B1_v1", "C1_v1"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "results" / "summary.csv").stat().st_mode) == 0o666 & ~umask
