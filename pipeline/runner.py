"""Executes a plan: each run claimed, run and written by one process; a failure never stops the rest.

Any number of processes (this one, others on the same output_dir, Ray tasks) may work through one plan: a
run is claimed by taking its lock (core/lock.py), and whoever finishes last rebuilds the summaries.

Torch's intra-op threads are chosen before each run (`share_cores`) so that processes sharing a machine do not
oversubscribe its cores: `threads` (`--threads`) when set, else the machine's cores divided by the processes on
this machine working on output_dir (each holds a `worker_lock` from the start of `run_all`), never more than the
process had to begin with (OMP_NUM_THREADS, or torch's default: one per core). A Ray task runs on
`ray.cpus_per_run` threads.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import time
import traceback
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from dataset import DataError, Splits, check_hub_source, is_hub_source, load_splits
from evaluation.epoch_logs import EPOCH_COLUMNS, STEP_COLUMNS, best_row
from evaluation.inference import probability_columns
from evaluation.metrics import classification_metrics
from evaluation.report import rebuild_outputs
from evaluation.summary import format_table, read_records
from core.config import METHODS, ConfigError, PipelineConfig
from pipeline.estimate import clock
from core.files import unwritable, write_csv_atomic, write_json_atomic, write_text_atomic
from core import distributed
from core.hardware import cores, cpu_model, describe, device_model, is_main_process, pick_device, set_threads, threads
from core.lock import LockError, active_lock, local_workers, others_active, run_lock, summary_lock, worker_lock
from core.memory import PeakMemory
from core.quiet import quiet_libraries
from core.record import RunRecord
from core.models import ModelError, check_available, check_max_length
from pipeline.outcome import HELD, Outcome, PlanError
from pipeline.plan import Run
from pipeline.precision import cache_file, resolve_all
from pipeline.run_state import (BLOCKED, RESUME, SKIP, begin, blocked_message, check_blocked, decide,
                                finished_files, fingerprint, identity)
from pipeline.search import Searches, copy_trials
from tasks import runner_for
from tasks.base import RunContext, TaskResult

PACKAGES = ["torch", "transformers", "peft", "datasets", "scikit-learn", "pandas", "numpy", "pyyaml", "pydantic"]


KEPT = "kept"  # claim: the run fails, its folder untouched (not movable aside, or complete and its search failed)
UNRESOLVED = object()  # run_one: the run's precision is not resolved yet


def run_all(config: PipelineConfig, runs: list[Run], force: bool = False, show_progress: bool = True,
            log=print, reprobe: bool = False) -> list[Outcome]:
    """Check everything, then run the plan with the configured executor. PlanError: nothing was run.
    `reprobe`: measure `precision: auto` again rather than read its cache (core/precision.py)."""
    if config.executor == "ray":
        from pipeline.ray_executor import connect

        connect(config)  # before anything is written: ray missing, or no cluster at ray.address, is a PlanError
    before = finished_files(config, runs)  # first: --force must not rerun what another process finishes meanwhile
    created_group = distributed.start(config.training.ddp_timeout)
    worker = worker_lock(Path(config.output_dir))  # counted by this machine's other processes from now on
    try:
        if config.executor != "ray":  # the driver trains nothing; its tasks have ray.cpus_per_run each
            worker.acquire(blocking=True)
        splits = prepare(config, runs)
        if not is_main_process():
            return run_plan(config, runs, splits, force, show_progress, log, before=before, reprobe=reprobe)
        presence = active_lock(Path(config.output_dir))  # shared: says "a process is working on this folder"
        try:
            presence.acquire(blocking=True)
        except LockError as error:
            raise PlanError(str(error)) from None
        try:
            if config.executor == "ray":
                from pipeline.ray_executor import run_with_ray

                outcomes = run_with_ray(config, runs, splits, run_one, force, show_progress, log, reprobe)
            else:
                outcomes = run_plan(config, runs, splits, force, show_progress, log, rebuild=False, before=before,
                                    reprobe=reprobe)
        finally:
            presence.release()
        rebuild_if_last(config, log)
        return outcomes
    finally:
        worker.release()
        worker.path.unlink(missing_ok=True)
        if created_group:
            distributed.stop()


def prepare(config: PipelineConfig, runs: list[Run]) -> Splits:
    """Everything that can fail before the first run: the preflight, then the output folder.
    Nothing is written unless all of it is fine."""
    splits = preflight(config, runs)
    output = Path(config.output_dir)
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise PlanError(f"output_dir: {output} cannot be written ({error.strerror}); choose another folder") from None
    check_writable(config, runs)
    return splits


def preflight(config: PipelineConfig, runs: list[Run], dry_run: bool = False) -> Splits | None:
    """The checks the real run and the dry run share: models available, max_length within each model's, the data
    read with its columns and labels, PEFT settings and targets, training options. Writes nothing (no output_dir,
    no tokenised cache: nothing is tokenised here). The first problem is a PlanError (a ConfigError for training
    options), one line.

    dry_run: nothing is downloaded either. A Hub dataset is only checked to be in the cache or reachable (its
    columns, labels and class weights are checked when the real run loads it; the splits are then None), and a
    Hub model that is not in the cache only to be reachable (its max_length and PEFT targets are checked when the
    real run downloads it)."""
    from core.models import in_hub_cache

    def on_disk(model: str) -> bool:  # its config can be read without a download
        return not dry_run or Path(model).is_absolute() or in_hub_cache(model)

    models = sorted({run.model for run in runs if run.model})
    try:
        for model in models:
            check_available(model, f"models[{config.models.index(model)}]")
            if on_disk(model):
                check_max_length(model, config.dataset.max_length, config.trust_remote_code)
        if is_hub_source(config.dataset):
            check_hub_source(config.dataset)  # at once, where the Hub cannot be used and the data is not cached
        splits = None if dry_run and is_hub_source(config.dataset) else load_splits(config.dataset)
        if any(METHODS[run.method]["settings"] for run in runs):
            from tasks.adapters import check_runs  # loads transformers only when needed

            checkable = [run for run in runs if not run.model or on_disk(run.model)]
            check_runs(checkable, None if splits is None else len(splits.train))  # AdaLoRA: the run's steps
        if any(run.training for run in runs) and splits is not None:
            from tasks.options import check_runs as check_training  # class weights fit the classes, trackers installed

            check_training(runs, splits)
    except (DataError, ModelError) as error:
        raise PlanError(str(error)) from None
    return splits


def check_writable(config: PipelineConfig, runs: list[Run]) -> None:
    """The lock files, run folders and caches the plan writes, checked without writing: a PlanError names the
    first one that cannot be written (a read-only folder, or a file where a folder belongs)."""
    output = Path(config.output_dir)
    locks = [active_lock(output), summary_lock(output), *(run_lock(output, run.run_id) for run in runs)]
    targets = [(lock.path, False, "output_dir", "lock file") for lock in locks]
    targets += [(output / run.run_id, True, "output_dir", "run folder") for run in runs]
    targets.append((Path(config.dataset.cache_dir), True, "dataset.cache_dir", "tokenised-text cache"))
    if any(METHODS[run.method]["uses_models"] and (run.training or config.training).precision == "auto"
           for run in runs):
        targets.append((cache_file(config), False, "dataset.cache_dir", "precision cache"))
    for path, folder, key, what in targets:
        problem = unwritable(path, folder)
        if problem:
            raise PlanError(f"{key}: {what} {path} cannot be written: {problem}; fix that, or choose another {key}")


def run_plan(config: PipelineConfig, runs: list[Run], splits: Splits, force: bool = False,
             show_progress: bool = True, log=print, rebuild: bool = True, before: dict | None = None,
             reprobe: bool = False) -> list[Outcome]:
    """Every run in turn, in this process (skipping complete ones and those another process holds), then
    summary.csv, plots/ and report.md rebuilt from all run folders in output_dir. PlanError before any search or
    training: a run is blocked by complete results of other settings (without --force). `before`: finished_files
    when the invocation started (default: now). Torch's thread count is chosen before each run (`share_cores`)
    and restored at the end."""
    ceiling = threads()["threads"]
    try:
        return _run_plan(config, runs, splits, force, show_progress, log, rebuild, before, reprobe, ceiling)
    finally:
        set_threads(ceiling, None)


def _run_plan(config: PipelineConfig, runs: list[Run], splits: Splits, force: bool, show_progress: bool, log,
              rebuild: bool, before: dict | None, reprobe: bool, ceiling: int) -> list[Outcome]:
    if not show_progress:
        quiet_libraries()
    if not is_main_process():  # under torchrun every rank runs the plan; rank 0 alone reports and writes
        log = _discard
    device = pick_device()
    output = Path(config.output_dir)
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    choices = resolve_all(config, runs, device, reprobe=reprobe)  # auto: once per model (at `ceiling` threads)
    check_blocked(config, runs, choices, force)
    before = finished_files(config, runs) if before is None else before
    actions = {run.run_id: decide(run, config, choices[run.run_id], force) for run in runs}  # for the ETA
    durations: dict[str, list[float]] = {}  # seconds per finished run, by method; earlier invocations count
    for record in read_records(output):
        if record.complete and record.total_seconds:
            durations.setdefault(record.method, []).append(record.total_seconds)
    searches = _searches(config, runs, splits, force, show_progress, log, before)
    for number, run in enumerate(runs, start=1):
        prefix = f"[{number}/{len(runs)}] {run.run_id}"

        def announce(action, number=number, prefix=prefix):
            eta = _eta([r for r in runs[number - 1:] if actions[r.run_id] != SKIP], durations)
            log(f"{prefix}  {'resuming' if action == RESUME else 'running'}"
                f"  elapsed {clock(time.perf_counter() - started)}  ETA {eta}")

        failure = None
        share_cores(config, ceiling)  # other processes may have started or finished meanwhile
        if run.search is not None:  # search first (once per base run), then decide with the chosen settings
            try:
                run = searches.best(run)
                choices[run.run_id] = resolve_all(config, [run], device)[run.run_id]  # the searched settings
            except Exception as error:  # recorded as this run's failure; the next run goes on
                failure = error
        outcome = run_one(run, config, splits, device, force, before, show_progress, announce, choices[run.run_id],
                          failure)
        outcomes.append(outcome)
        if outcome.skipped:
            log(f"{prefix}  skipped: {outcome.note}")
            continue
        durations.setdefault(run.method, []).append(outcome.seconds)
        log(f"      {run.run_id} {outcome.status} in {clock(outcome.seconds)}"
            + (f": {outcome.error}" if outcome.error else ""))
    if rebuild and is_main_process():
        rebuild_if_last(config, log)
    return outcomes


def run_one(run: Run, config: PipelineConfig, splits: Splits, device, force: bool = False,
            before: dict | None = None, show_progress: bool = True, announce=None, choice=UNRESOLVED,
            failure: Exception | None = None) -> Outcome:
    """One run as every executor runs it: claim its lock, decide again (another process may have finished it
    meanwhile), run it, write its files, release the lock. Under torchrun rank 0 claims and decides, and the
    other ranks follow. `choice`: the run's precision; resolved here, on this process's device, when not given
    (a Ray task). `failure`: the run's search failed; the run is recorded as failed with that error."""
    if choice is UNRESOLVED:
        choice = resolve_all(config, [run], device)[run.run_id]
    lock = run_lock(Path(config.output_dir), run.run_id)
    try:
        action, note = claim(lock, run, config, choice, force, before, failure is not None) \
            if is_main_process() else (None, None)
        action, note = distributed.broadcast((action, note))
        if action == KEPT:
            return Outcome(run.run_id, "failed", 0.0, note or f"{type(failure).__name__}: {failure}".splitlines()[0])
        if action in (SKIP, HELD, BLOCKED):
            return Outcome(run.run_id, {SKIP: "complete", HELD: HELD, BLOCKED: BLOCKED}[action], 0.0, skipped=True,
                           note=note)
        if announce is not None:
            announce(action)
        context = RunContext(config, splits, Path(config.output_dir) / run.run_id, device, show_progress, choice)
        return execute(run, context, fingerprint(run, config, choice), task=_raising(failure) if failure else None,
                       run_identity=identity(run, config, choice))
    finally:
        lock.release()


def claim(lock, run: Run, config: PipelineConfig, choice, force: bool, before: dict | None,
          failed: bool = False) -> tuple[str, str | None]:
    """(action, why skipped). Taking the lock comes first, the decision after it, with --force too. BLOCKED: complete
    results of other settings appeared since the plan was checked (another process made them); they are kept.
    `failed`: the run's search failed, so it is to be recorded as failed, unless its folder holds complete results
    (KEPT: they stay, --force or not: there is nothing to replace them with)."""
    if not lock.acquire():
        return HELD, f"held by {lock.holder()}"
    if failed:
        record = RunRecord.read(Path(config.output_dir) / run.run_id / "metrics.json")
        if record is not None and record.complete:
            return KEPT, None
        force = True  # whatever is there (failed, interrupted) is replaced by the failure's record
    action = decide(run, config, choice, force)
    if action == SKIP:
        return SKIP, "complete with the same settings (--force reruns it)"
    if action == BLOCKED:
        return BLOCKED, (blocked_message(run, config, choice) or ": complete with other settings").split(": ", 1)[1]
    if force and before is not None and finished_files(config, [run])[run.run_id] not in (None, before.get(run.run_id)):
        return SKIP, "finished by another process since this one started"
    try:
        begin(run, config, action, choice)
    except OSError as error:  # the old folder could not be moved aside: it stays as it was
        return KEPT, (f"{Path(config.output_dir) / run.run_id} could not be replaced ({error.strerror});"
                      " the old folder is kept")
    if run.search_result:
        copy_trials(config, run, Path(config.output_dir) / run.run_id)
    return action, None


def share_cores(config: PipelineConfig, ceiling: int) -> None:
    """Torch's intra-op threads for the next run: `threads` (--threads) when set, else this machine's cores
    divided among its processes working on output_dir (at least 1, at most `ceiling`: what the process had)."""
    if config.threads:
        set_threads(config.threads, "threads (--threads)")
        return
    workers = max(1, local_workers(Path(config.output_dir)))
    count = max(1, min(ceiling, cores() // workers))
    set_threads(count, f"{cores()} cores / {workers} process{'es' if workers > 1 else ''} on this machine working"
                       f" on output_dir, at most {ceiling}")


def rebuild_if_last(config: PipelineConfig, log=print) -> None:
    """summary.csv, epochs.csv, plots/ and report.md, rebuilt under the summary lock when no other process is
    still working on output_dir (that one rebuilds when it finishes). Call it after releasing `active_lock`."""
    output = Path(config.output_dir)
    with summary_lock(output):
        if others_active(output):
            log("summary, plots and report: left to the process still working on this output_dir")
            return
        summary = rebuild_outputs(output, config.reference_run)
    if not summary.empty:
        log(format_table(summary))
    log(f"report: {output / 'report.md'}")


def execute(run: Run, context: RunContext, run_fingerprint: str | None = None, task=None,
            run_identity: dict | None = None) -> Outcome:
    """One run: its task (`task`, else its method's), then metrics.json, predictions.csv and epochs.csv
    under results/<RUN_ID>/."""
    context.run_dir.mkdir(parents=True, exist_ok=True)
    started_at = dt.datetime.now(dt.timezone.utc)
    start = time.perf_counter()
    error = None
    result: TaskResult | None = None
    with PeakMemory() as memory:
        try:
            result = (task or runner_for(run.method))(run, context)
            _check_probabilities(result, context.splits)
        except Exception as exception:  # recorded, and the next run goes on
            error = f"{type(exception).__name__}: {exception}".splitlines()[0]
            if is_main_process():
                write_text_atomic(context.run_dir / "error.log", traceback.format_exc())
    seconds = time.perf_counter() - start
    if not is_main_process():
        return Outcome(run.run_id, "failed" if error else "complete", seconds, error)
    fields = {
        "run_id": run.run_id, "base_run_id": run.base_run_id, "task": run.task, "method": run.method,
        "model": run.model, "model_number": run.model_number, "variant": run.variant, "label": run.label,
        "status": "failed" if error else "complete", "error": error, "fingerprint": run_fingerprint,
        **({"identity": run_identity} if run_identity is not None else {}),  # what changed, should settings change
        "started_at": started_at.isoformat(timespec="milliseconds"),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
        "total_seconds": round(seconds, 3),
        "config": run.resolved(),
        **({"search": run.search_result} if run.search_result else {}),  # the trial its settings came from
        "data": {"source": context.splits.source, "sizes": context.splits.sizes(),
                 "class_names": list(context.splits.class_names),
                 "max_length": context.config.dataset.max_length},  # tokens; predict and export truncate alike
        "environment": environment(context),
        "precision_choice": context.precision.as_dict() if context.precision else None,  # what and why
        "memory": {"peak_rss_mb": round(memory.rss_mb, 1), "peak_rss_increase_mb": round(memory.increase_mb, 1),
                   "peak_cuda_mb": round(memory.cuda_mb, 1) if memory.cuda_mb is not None else None},
    }
    if result is not None and error is None:
        fields.update(_result_fields(result, context))
        write_csv_atomic(context.run_dir / "predictions.csv", predictions_frame(result, context.splits))
        write_csv_atomic(context.run_dir / "epochs.csv", pd.DataFrame(result.epochs, columns=_epoch_columns(result)))
        if result.steps:
            write_csv_atomic(context.run_dir / "steps.csv", pd.DataFrame(result.steps, columns=STEP_COLUMNS))
    record = RunRecord.model_validate(fields)  # the schema metrics.json's readers rely on
    write_json_atomic(context.run_dir / "metrics.json", record.dump())
    return Outcome(run.run_id, record.status.value, seconds, error)


def predictions_frame(result: TaskResult, splits: Splits) -> pd.DataFrame:
    test = splits.test
    return pd.DataFrame({"index": test["row"].to_numpy(), "text": test["text"].to_numpy(),
                         "label": test["label"].to_numpy(), "predicted": result.probabilities.argmax(axis=1),
                         **probability_columns(result.probabilities, splits.class_names)})


def environment(context: RunContext) -> dict:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"versions": versions, "python": sys.version.split()[0], "platform": platform.platform(),
            "device": str(context.device), "device_name": describe(context.device),
            "device_model": device_model(context.device), "cpu_model": cpu_model(), **threads()}


def _result_fields(result: TaskResult, context: RunContext) -> dict:
    labels = context.splits.test["label"].to_numpy()
    metrics = classification_metrics(labels, result.probabilities.argmax(axis=1), context.splits.class_names)
    best = best_row(result.epochs)
    epochs_run = max((row["epoch"] for row in result.epochs), default=None)
    n_test = len(labels)
    trainable, total = result.trainable_parameters, result.total_parameters
    return {
        "metrics": metrics,
        "timing": {
            "train_seconds": _round(result.train_seconds),
            "seconds_per_epoch": _round(result.train_seconds / epochs_run) if result.train_seconds and epochs_run else None,
            "test_seconds": _round(result.test_seconds),
            "test_texts_per_second": _round(n_test / result.test_seconds) if result.test_seconds else None,
        },
        "parameters": {"trainable": trainable, "total": total,
                       "trainable_percent": round(100 * trainable / total, 4) if trainable is not None and total else None},
        "best_epoch": {"epoch": best["epoch"], "validation_accuracy": best["validation_accuracy"]} if best else None,
        "precision": result.precision,
        "resumed_from": result.resumed_from,
        **result.extra,
    }


def _check_probabilities(result: TaskResult, splits: Splits) -> None:
    expected = (len(splits.test), len(splits.class_names))
    if result.probabilities.shape != expected:
        raise RuntimeError(f"task returned probabilities of shape {result.probabilities.shape}, expected {expected}")
    if not np.isfinite(result.probabilities).all():
        raise FloatingPointError("the model produced NaN or infinite outputs")


def _epoch_columns(result: TaskResult) -> list[str]:
    extra = sorted({key for row in result.epochs for key in row} - set(EPOCH_COLUMNS))
    return EPOCH_COLUMNS + extra


def _discard(line: str) -> None:
    pass


def _searches(config: PipelineConfig, runs: list[Run], splits: Splits, force: bool, show_progress: bool, log,
              before: dict | None = None):
    """The plan's searches, handed the splits without test: a search cannot read test labels."""
    if not any(run.search is not None for run in runs):
        return None
    return Searches(config, replace(splits, test=None), force, show_progress, log, before)


def _raising(error: Exception):
    """A task that fails with `error` (a search that failed), so the run is recorded like any failure."""
    def task(run, context):
        raise error

    return task


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _eta(remaining: list[Run], durations: dict[str, list[float]]) -> str:
    """Each remaining run timed by the mean of finished runs of its method, else of any method that
    trains (or not) as it does; unknown until such a run has finished."""
    def mean_of(methods):
        seconds = [s for method in methods for s in durations.get(method, [])]
        return sum(seconds) / len(seconds) if seconds else None

    total = 0.0
    for run in remaining:
        trains = METHODS[run.method]["trains"]
        guess = mean_of([run.method]) or mean_of([m for m in METHODS if METHODS[m]["trains"] == trains])
        if guess is None:
            return "unknown until a run of each kind has finished"
        total += guess
    return clock(total)
