"""Executes a plan: one run after another, each writing its own files; a failure never stops the rest."""
from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from dataset import DataError, Splits, load_splits
from evaluation.epoch_logs import EPOCH_COLUMNS, best_row
from evaluation.metrics import classification_metrics
from evaluation.report import rebuild_outputs
from evaluation.summary import format_table, read_records
from core.config import METHODS, PipelineConfig
from pipeline.estimate import clock
from core.files import write_csv_atomic, write_json_atomic, write_text_atomic
from core.hardware import describe, is_main_process, pick_device
from core.lock import LockedError, OutputLock
from core.memory import PeakMemory
from core.models import ModelError, check_available
from pipeline.plan import Run
from pipeline.run_state import RESUME, RUN, SKIP, begin, decide, fingerprint
from pipeline.search import Searches, copy_trials
from tasks import runner_for
from tasks.base import RunContext, TaskResult

PACKAGES = ["torch", "transformers", "peft", "datasets", "scikit-learn", "pandas", "numpy", "pyyaml", "pydantic"]


class PlanError(Exception):
    """The plan cannot start (data or models missing). Nothing has been written."""


@dataclass
class Outcome:
    run_id: str
    status: str  # complete | failed
    seconds: float
    error: str | None = None
    skipped: bool = False


def run_all(config: PipelineConfig, runs: list[Run], force: bool = False, show_progress: bool = True,
            log=print) -> list[Outcome]:
    """Check everything, take the output folder's lock, then run the plan. PlanError: nothing was run."""
    splits = prepare(config, runs)
    if not is_main_process():
        return run_plan(config, runs, splits, force, show_progress, log)
    try:
        with OutputLock(Path(config.output_dir)):
            return run_plan(config, runs, splits, force, show_progress, log)
    except LockedError as error:
        raise PlanError(str(error)) from None


def prepare(config: PipelineConfig, runs: list[Run]) -> Splits:
    """Everything that can fail before the first run: models, LoRA targets, data, the output folder.
    Nothing is written unless all of it is fine."""
    models = sorted({run.model for run in runs if run.model})
    try:
        for model in models:
            check_available(model)
        if any(run.lora for run in runs):
            from tasks.adapters import check_runs  # loads transformers only when needed

            check_runs(runs)
        splits = load_splits(config.dataset)
    except (DataError, ModelError) as error:
        raise PlanError(str(error)) from None
    output = Path(config.output_dir)
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise PlanError(f"output_dir: {output} cannot be written ({error.strerror}); choose another folder") from None
    return splits


def run_plan(config: PipelineConfig, runs: list[Run], splits: Splits, force: bool = False,
             show_progress: bool = True, log=print) -> list[Outcome]:
    """Every run in turn (skipping complete ones), then summary.csv, plots/ and report.md rebuilt from all
    run folders in output_dir."""
    if not show_progress:
        quiet_libraries()
    if not is_main_process():  # under torchrun every rank runs the plan; rank 0 alone reports and writes
        log = _discard
    device = pick_device()
    output = Path(config.output_dir)
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    actions = {run.run_id: decide(run, config, force) for run in runs}
    durations: dict[str, list[float]] = {}  # seconds per finished run, by method; earlier invocations count
    for record in read_records(output):
        if record["status"] == "complete" and record.get("total_seconds"):
            durations.setdefault(record["method"], []).append(record["total_seconds"])
    searches = _searches(config, runs, splits, force, show_progress, log)
    for number, run in enumerate(runs, start=1):
        failure = None
        if run.search is not None:  # search first (once per base run), then decide with the chosen settings
            try:
                run = searches.best(run)
            except Exception as error:  # recorded as this run's failure; the next run goes on
                failure = error
            actions[run.run_id] = RUN if failure else decide(run, config, force)
        action = actions[run.run_id]
        if action == SKIP:
            log(f"[{number}/{len(runs)}] {run.run_id}  skipped: complete with the same settings (--force reruns it)")
            outcomes.append(Outcome(run.run_id, "complete", 0.0, skipped=True))
            continue
        eta = _eta([r for r in runs[number - 1:] if actions[r.run_id] != SKIP], durations)
        log(f"[{number}/{len(runs)}] {run.run_id}  {'resuming' if action == RESUME else 'running'}"
            f"  elapsed {clock(time.perf_counter() - started)}  ETA {eta}")
        if is_main_process():
            begin(run, config, action)
            if run.search_result:
                copy_trials(config, run, output / run.run_id)
        context = RunContext(config, splits, output / run.run_id, device, show_progress)
        outcome = execute(run, context, fingerprint(run, config), task=_raising(failure) if failure else None)
        durations.setdefault(run.method, []).append(outcome.seconds)
        outcomes.append(outcome)
        log(f"      {run.run_id} {outcome.status} in {clock(outcome.seconds)}"
            + (f": {outcome.error}" if outcome.error else ""))
    if is_main_process():
        summary = rebuild_outputs(output, config.reference_run)
        if not summary.empty:
            log(format_table(summary))
        log(f"report: {output / 'report.md'}")
    return outcomes


def quiet_libraries() -> None:
    """For --quiet: no progress bars (weight loading, datasets) and only errors from transformers' logger.

    The Trainer's own per-epoch log lines are dropped in tasks/finetune.py (it prints them when its
    tqdm bars are off).
    """
    import warnings

    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")


def execute(run: Run, context: RunContext, run_fingerprint: str | None = None, task=None) -> Outcome:
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
    record = {
        "run_id": run.run_id, "base_run_id": run.base_run_id, "task": run.task, "method": run.method,
        "model": run.model, "model_number": run.model_number, "variant": run.variant,
        "status": "failed" if error else "complete", "error": error, "fingerprint": run_fingerprint,
        "started_at": started_at.isoformat(timespec="seconds"), "total_seconds": round(seconds, 3),
        "config": run.resolved(),
        **({"search": run.search_result} if run.search_result else {}),  # the trial its settings came from
        "data": {"source": context.splits.source, "sizes": context.splits.sizes(),
                 "class_names": list(context.splits.class_names),
                 "max_length": context.config.dataset.max_length},  # tokens; predict and export truncate alike
        "environment": environment(context),
        "memory": {"peak_rss_mb": round(memory.rss_mb, 1),
                   "peak_cuda_mb": round(memory.cuda_mb, 1) if memory.cuda_mb is not None else None},
    }
    if result is not None and error is None:
        record.update(_result_fields(result, context))
        write_csv_atomic(context.run_dir / "predictions.csv", predictions_frame(result, context.splits))
        write_csv_atomic(context.run_dir / "epochs.csv", pd.DataFrame(result.epochs, columns=_epoch_columns(result)))
    write_json_atomic(context.run_dir / "metrics.json", record)
    return Outcome(run.run_id, record["status"], seconds, error)


def predictions_frame(result: TaskResult, splits: Splits) -> pd.DataFrame:
    test = splits.test
    frame = pd.DataFrame({"index": test["row"].to_numpy(), "text": test["text"].to_numpy(),
                          "label": test["label"].to_numpy(), "predicted": result.probabilities.argmax(axis=1)})
    for i, name in enumerate(splits.class_names):
        frame[f"prob_{name}"] = np.round(result.probabilities[:, i], 6)
    return frame


def environment(context: RunContext) -> dict:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"versions": versions, "python": sys.version.split()[0], "platform": platform.platform(),
            "device": str(context.device), "device_name": describe(context.device)}


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


def _searches(config: PipelineConfig, runs: list[Run], splits: Splits, force: bool, show_progress: bool, log):
    """The plan's searches, handed the splits without test: a search cannot read test labels."""
    if not any(run.search is not None for run in runs):
        return None
    return Searches(config, replace(splits, test=None), force, show_progress, log)


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
