"""Whether a planned run must run, can resume, or is already done.

A run's fingerprint hashes everything that determines its results: its resolved settings, the data
settings and, for runs with a model, the device type and the resolved precision (pipeline/precision.py),
so a bf16 GPU run and an fp32 CPU run of one config are not "the same settings". `precision: auto`
resolves the same way on every invocation on one machine (the probe's result is cached), so the
fingerprint is stable there. `results/<RUN_ID>/run.json` records the fingerprint a run started under; its
metrics.json records the one it finished under.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from core.checkpoints import latest_checkpoint
from core.config import PipelineConfig
from core.files import read_json, write_json_atomic
from core.precision import Choice
from core.record import RunRecord
from pipeline.plan import Run

RUN = "run"  # from scratch (a changed config, or --force, clears the old folder first)
RESUME = "resume"  # same settings, interrupted: continue from the last complete checkpoint
SKIP = "skip"  # complete with the same settings


# Dataset settings that never change a result (where the cache lives, bounds that only refuse data): a change
# of them keeps complete runs.
UNSCORED = {"cache_dir", "max_classes", "max_text_chars"}


def fingerprint(run: Run, config: PipelineConfig, choice: Choice | None) -> str:
    """`choice`: the run's resolved precision (pipeline/precision.resolve_all); None for runs without a model."""
    unscored = UNSCORED | ({"class_descriptions"} if config.dataset.class_descriptions is None else set())
    identity = {"run": run.resolved(), "dataset": config.dataset.model_dump(exclude=unscored),  # added later: runs
                "trust_remote_code": config.trust_remote_code}  # made before a key existed keep their hash
    if choice is not None:
        identity["hardware"] = {"device_type": choice.device_type, "precision": choice.precision}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def decide(run: Run, config: PipelineConfig, choice: Choice | None, force: bool = False) -> str:
    if force:
        return RUN
    folder = Path(config.output_dir) / run.run_id
    expected = fingerprint(run, config, choice)
    finished = RunRecord.read(folder / "metrics.json")
    if finished is not None and finished.complete and finished.fingerprint == expected:
        return SKIP
    started = read_json(folder / "run.json")
    if started.get("fingerprint") == expected and latest_checkpoint(folder / "checkpoints") is not None:
        return RESUME
    return RUN


def finished_files(config: PipelineConfig, runs: list[Run], choices: dict) -> dict[str, tuple | None]:
    """Per run, (modification time, size) of a complete metrics.json, else None: with --force, a run whose
    metrics.json changed since this process started was rerun by another process, not to be rerun again."""
    stamps = {}
    for run in runs:
        path = Path(config.output_dir) / run.run_id / "metrics.json"
        try:
            stat = path.stat()
            complete = decide(run, config, choices[run.run_id]) == SKIP
            stamps[run.run_id] = (stat.st_mtime_ns, stat.st_size) if complete else None
        except OSError:
            stamps[run.run_id] = None
    return stamps


def begin(run: Run, config: PipelineConfig, action: str, choice: Choice | None) -> None:
    """Clear a run's folder when it starts over, and record the fingerprint it runs under."""
    folder = Path(config.output_dir) / run.run_id
    if action == RUN and folder.exists():
        shutil.rmtree(folder)
    write_json_atomic(folder / "run.json", {"run_id": run.run_id, "fingerprint": fingerprint(run, config, choice),
                                            "config": run.resolved(),
                                            "precision": choice.as_dict() if choice else None})
