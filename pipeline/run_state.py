"""Whether a planned run must run, can resume, is already done, or is blocked by complete results of other settings.

A run's fingerprint hashes its identity: everything that determines its results: its resolved settings, the
data settings and, for runs with a model, the device type and the resolved precision (pipeline/precision.py),
so a bf16 GPU run and an fp32 CPU run of one config are not "the same settings". `precision: auto`
resolves the same way on every invocation on one machine (the probe's result is cached), so the
fingerprint is stable there. `results/<RUN_ID>/run.json` records the identity and fingerprint a run started
under; its metrics.json records those it finished under.

Complete results are never deleted unless asked: a folder whose metrics.json says complete under another
fingerprint BLOCKS the run (the plan stops before any work, naming what changed) unless --force is given.
Failed or interrupted folders of other settings are replaced. A folder that is replaced is first renamed
into output_dir/.replaced/ (atomic; no reader looks there), then deleted: at every moment the run folder is
the old run, whole, or absent.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from core.checkpoints import latest_checkpoint, read_state, resumable_checkpoint
from core.config import PipelineConfig
from core.files import file_stamp, jsonable, read_json, write_json_atomic
from core.precision import Choice
from core.record import RunRecord
from pipeline.outcome import PlanError
from pipeline.plan import Run, search_folder, search_folder_name

RUN = "run"  # from scratch (a changed config of an incomplete run, or --force, clears the old folder first)
RESUME = "resume"  # same settings, interrupted: continue from the last complete checkpoint
SKIP = "skip"  # complete with the same settings
BLOCKED = "blocked"  # complete with other settings: kept; --force replaces it
REPLACED = ".replaced"  # output_dir/.replaced/: folders being deleted, out of every reader's sight
SHOWN_CHANGES = 3  # changed keys named per blocked run; the rest are counted


# Dataset settings that never change a result (where the cache lives, bounds that only refuse data): a change
# of them keeps complete runs.
UNSCORED = {"cache_dir", "max_classes", "max_text_chars"}


def identity(run: Run, config: PipelineConfig, choice: Choice | None) -> dict:
    """What the fingerprint hashes, as plain JSON (a PEFT dataclass such as `runtime_config` becomes its fields).
    `choice`: the run's resolved precision (pipeline/precision.resolve_all); None for runs without a model.
    Keys added to the dataset settings later are left out while unset, so runs made before them keep their hash."""
    unscored = UNSCORED | ({"class_descriptions"} if config.dataset.class_descriptions is None else set())
    identity = {"run": run.resolved(), "dataset": config.dataset.model_dump(exclude=unscored),
                "trust_remote_code": config.trust_remote_code}
    if choice is not None:
        identity["hardware"] = {"device_type": choice.device_type, "precision": choice.precision}
    return json.loads(json.dumps(identity, default=jsonable))


def fingerprint(run: Run, config: PipelineConfig, choice: Choice | None) -> str:
    return _hash(identity(run, config, choice))


def _hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def decide(run: Run, config: PipelineConfig, choice: Choice | None, force: bool = False) -> str:
    if force:
        return RUN
    folder = Path(config.output_dir) / run.run_id
    expected = fingerprint(run, config, choice)
    finished = RunRecord.read(folder / "metrics.json")
    if finished is not None and finished.complete:
        if finished.fingerprint == expected:
            return SKIP
        if changes(run, config, choice, finished) is not None:
            return BLOCKED
    started = read_json(folder / "run.json")
    if started.get("fingerprint") == expected and latest_checkpoint(folder / "checkpoints") is not None:
        return RESUME  # from the newest whole checkpoint; damaged ones are passed over, and said so (prepare_resume)
    return RUN


def changes(run: Run, config: PipelineConfig, choice: Choice | None,
            record: RunRecord | None = None) -> list[tuple[str, object, object]] | None:
    """Why a complete run of other settings blocks `run`: [(dotted key, old value, new value)], [] where the
    record does not say what changed; None where nothing blocks it (no complete record, or the same settings).

    Records written before identities were recorded are compared on what they hold: their `config`, the
    data source and max_length, and the precision.

    A run with a `search:` is compared on everything but what its search chooses (`search` and the searched
    keys): before the search has run its settings are not known, and a search whose own block changed (more
    trials, another space) is a request for a new search result. So a changed search block retrains the run
    once its search has finished (and replaces its complete folder); any other change blocks it before the
    search starts.
    """
    record = record if record is not None else RunRecord.read(Path(config.output_dir) / run.run_id / "metrics.json")
    if record is None or not record.complete:
        return None
    new = identity(run, config, choice)
    if record.fingerprint == _hash(new):
        return None
    if record.identity is None and new["dataset"].get("files") is not None:
        record = record.model_copy(update={"data": record.data.model_copy(update={"source": None})})  # files, not source
    old, new = _flat(record.identity or _recorded(record)), _flat(new)
    keys = set(old) if record.identity is None else set(old) | set(new)
    if run.search is not None:
        keys = {key for key in keys if not _searched(key, run)}
    differ = [(key, old.get(key, _UNSET), new.get(key, _UNSET)) for key in sorted(keys)
              if old.get(key, _UNSET) != new.get(key, _UNSET)]
    if not differ and run.search is not None:
        return None  # only what the search chooses differs
    return differ


def describe_changes(differ: list[tuple[str, object, object]], verb: str = "") -> str:
    """`dataset.source changed (a -> b), seed changed (42 -> 43) +2 more`, or `settings changed`."""
    if not differ:
        return "settings changed"
    shown = ", ".join(f"{key}{verb} ({_show(old)} -> {_show(new)})" for key, old, new in differ[:SHOWN_CHANGES])
    return shown + (f" +{len(differ) - SHOWN_CHANGES} more" if len(differ) > SHOWN_CHANGES else "")


def blocked_message(run: Run, config: PipelineConfig, choice: Choice | None) -> str | None:
    """The line that stops a plan for this run, or None where it is not blocked."""
    differ = changes(run, config, choice)
    if differ is None:
        return None
    return (f"{run.run_id}: {describe_changes(differ, ' changed')}; pass --force to replace,"
            f" or use another output_dir")


def fate(run: Run, config: PipelineConfig, choice: Choice | None, force: bool = False) -> str:
    """--dry-run's bracket for a run: run, skip: complete, resume: step N, blocked: settings changed: ..."""
    action = decide(run, config, choice, force)
    if action == SKIP:
        return "skip: complete"
    if action == BLOCKED:
        differ = changes(run, config, choice)
        return "blocked: settings changed" + (f": {describe_changes(differ)}" if differ else "")
    if action == RESUME:
        checkpoint = resumable_checkpoint(Path(config.output_dir) / run.run_id / "checkpoints")[0]
        if checkpoint is None:
            return "run: its checkpoints are damaged, so it starts over"
        return f"resume: step {read_state(checkpoint).get('global_step', checkpoint.name.split('-')[-1])}"
    return action


def finished_files(config: PipelineConfig, runs: list[Run]) -> dict[str, tuple | None]:
    """Per run, (modification time, size) of a complete metrics.json (whatever its settings), else None; per base
    run with a search, under `search/<BASE_RUN_ID>`, that of its search.json. With --force, a run whose
    metrics.json (a search whose search.json) changed since this process started was rerun (searched) by another
    process, not to be redone. Taken first thing, before data and models are loaded, so a slower start does not
    count."""
    stamps = {}
    for run in runs:
        path = Path(config.output_dir) / run.run_id / "metrics.json"
        record = RunRecord.read(path)
        stamps[run.run_id] = file_stamp(path) if record is not None and record.complete else None
        if run.search is not None:
            stamps[search_folder_name(run)] = file_stamp(search_folder(config, run) / "search.json")
    return stamps


def check_blocked(config: PipelineConfig, runs: list[Run], choices: dict, force: bool) -> None:
    """PlanError, one line per run whose folder holds complete results of other settings (unless --force)."""
    if force:
        return
    lines = [line for run in runs if (line := blocked_message(run, config, choices[run.run_id])) is not None]
    if lines:
        raise PlanError("\n".join(lines))


def begin(run: Run, config: PipelineConfig, action: str, choice: Choice | None) -> None:
    """Clear a run's folder when it starts over (whole or not at all: see `discard`), and record the identity and
    fingerprint it runs under. OSError: the old folder could not be moved aside; it is left as it was."""
    folder = Path(config.output_dir) / run.run_id
    if action == RUN and folder.exists():
        discard(folder)
    started = identity(run, config, choice)
    write_json_atomic(folder / "run.json", {"run_id": run.run_id, "fingerprint": _hash(started),
                                            "config": run.resolved(),
                                            "precision": choice.as_dict() if choice else None,
                                            "identity": started})


def discard(folder: Path) -> None:
    """Delete a run folder so that it is whole or absent at every moment: renamed first (one atomic step, within
    output_dir) into output_dir/.replaced/, where no reader looks, then deleted there. A deletion that fails part-way
    leaves its remains in .replaced/, and the next discard in that output_dir removes them."""
    replaced = folder.parent / REPLACED
    replaced.mkdir(exist_ok=True)
    aside = replaced / f"{folder.name}-{os.getpid()}-{os.urandom(4).hex()}"
    os.rename(folder, aside)
    for remains in [aside] + sorted(set(replaced.iterdir()) - {aside}):  # and any an earlier failure left
        try:
            shutil.rmtree(remains)
        except OSError:  # out of sight; the next discard tries again
            pass


_UNSET = object()


def _recorded(record: RunRecord) -> dict:
    """What a record written before identities were recorded says of its identity."""
    recorded: dict = {"run": record.config}
    data = {key: value for key, value in (("source", record.data.source), ("max_length", record.data.max_length))
            if value is not None}
    if data:
        recorded["dataset"] = data
    if record.precision_choice:
        recorded["hardware"] = {key: record.precision_choice[key] for key in ("device_type", "precision")
                                if key in record.precision_choice}
    return recorded


def _flat(identity: dict) -> dict[str, object]:
    """Dotted keys as config.yaml names them: the run's own settings at the top (training.learning_rate, seed),
    dataset.*, hardware.*, trust_remote_code."""
    flat: dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif prefix:  # an empty "run" (a record without `config`) holds no key
            flat[prefix] = value

    for section, value in identity.items():
        walk("" if section == "run" else section, value)
    return flat


def _searched(key: str, run: Run) -> bool:
    return key == "search" or key.startswith("search.") or key in run.search.space


def _show(value, limit: int = 100) -> str:
    """The value as config.yaml would hold it, cut in the middle beyond `limit` characters (a path keeps its end)."""
    if value is _UNSET:
        return "unset"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else f"{text[:limit // 2 - 2]}...{text[-(limit // 2 - 1):]}"
