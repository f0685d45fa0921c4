"""Whether a planned run must run, can resume, or is already done.

A run's fingerprint hashes everything that determines its results (its resolved settings and the
data settings). `results/<RUN_ID>/run.json` records the fingerprint a run started under; its
metrics.json records the one it finished under.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from core.checkpoints import latest_checkpoint
from core.config import PipelineConfig
from core.files import write_json_atomic
from pipeline.plan import Run

RUN = "run"  # from scratch (a changed config, or --force, clears the old folder first)
RESUME = "resume"  # same settings, interrupted: continue from the last complete checkpoint
SKIP = "skip"  # complete with the same settings


def fingerprint(run: Run, config: PipelineConfig) -> str:
    identity = {"run": run.resolved(), "dataset": config.dataset.model_dump(exclude={"cache_dir"}),
                "trust_remote_code": config.trust_remote_code}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def decide(run: Run, config: PipelineConfig, force: bool = False) -> str:
    if force:
        return RUN
    folder = Path(config.output_dir) / run.run_id
    expected = fingerprint(run, config)
    finished = read_json(folder / "metrics.json")
    if finished.get("status") == "complete" and finished.get("fingerprint") == expected:
        return SKIP
    started = read_json(folder / "run.json")
    if started.get("fingerprint") == expected and latest_checkpoint(folder / "checkpoints") is not None:
        return RESUME
    return RUN


def begin(run: Run, config: PipelineConfig, action: str) -> None:
    """Clear a run's folder when it starts over, and record the fingerprint it runs under."""
    folder = Path(config.output_dir) / run.run_id
    if action == RUN and folder.exists():
        shutil.rmtree(folder)
    write_json_atomic(folder / "run.json", {"run_id": run.run_id, "fingerprint": fingerprint(run, config),
                                            "config": run.resolved()})


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
