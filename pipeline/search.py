"""A base run's hyperparameter search on the validation split, before the run trains (a `search:` block).

Each trial trains on the train split and is scored on the validation split, epoch by epoch, with the
base run's settings plus the trial's values (Optuna: TPE sampler seeded with the config's `seed`,
median pruning on per-epoch validation accuracy). The best complete trial's values become the run's
settings; with `seeds`, one search serves every seed of a base run.

Nothing here can read test labels: the runner hands this module its splits with `test=None`, and the
training it calls (tasks/finetune.fit) reads only train and validation.

Files, in `output_dir/search/<BASE_RUN_ID>/`:
  study.journal  Optuna's JournalStorage (a file guarded by a file lock): the study survives an
                 interrupted search, which resumes and runs only the trials still missing, and
                 several processes can share it
  search.json    what the search was started under; a change (settings, data, space, pruner, seed:
                 everything but n_trials) or --force starts it over. A grid's choices are the exception:
                 a grid trial trains the same whatever else is in the grid, so a widened (or narrowed)
                 grid keeps the study, counts the finished trials whose values are still in it, and runs
                 only its new points
  search.csv     one row per finished trial: trial, one column per searched setting,
                 validation_accuracy (a pruned trial: at its last epoch), state
Each run trained from a search also gets a copy of search.csv in its own folder, and its metrics.json
and fingerprint carry the chosen trial (`search`).
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import random
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
from transformers import TrainerCallback

from core import distributed
from core.config import PipelineConfig, SearchConfig, search_dimensions
from core.files import file_stamp, write_csv_atomic, write_json_atomic, write_text_atomic
from core.hardware import is_main_process, pick_device
from dataset import Splits
from pipeline.plan import Run, search_folder, search_folder_name
from core.files import read_json
from pipeline.run_state import fingerprint
from core.lock import run_lock
from pipeline.precision import resolve_all
from tasks.base import RunContext

STUDY = "search"  # the study's name inside its journal
METRIC = "eval_validation_accuracy"  # what the Trainer logs for the validation set each epoch
CSV_STATES = ("COMPLETE", "PRUNED", "FAIL")


class SearchError(Exception):
    """The search cannot give settings (no trial completed, or it cannot run here)."""


class Searches:
    """Runs or resumes each base run's search at most once per invocation; its seeds share the result."""

    def __init__(self, config: PipelineConfig, splits: Splits, force: bool = False, show_progress: bool = True,
                 log=print, before: dict | None = None):
        """`before`: runner.finished_files when the invocation started: with --force, a search another process
        started over since then is not started over again."""
        if splits.test is not None:
            raise ValueError("the search takes the splits without test (test=None): it must not see test labels")
        self.config, self.splits, self.force, self.show_progress, self.log = config, splits, force, show_progress, log
        self.before = before
        self._results: dict[str, dict | Exception] = {}

    def best(self, run: Run) -> Run:
        """`run` with its search's best settings applied (searching first, unless already done)."""
        if run.base_run_id not in self._results:
            try:
                # One process searches a base run at a time (others wait, then find it done): a trial left
                # RUNNING in the study can then only be a killed process's, which _fail_interrupted relies on.
                lock = run_lock(Path(self.config.output_dir), f"search-{run.base_run_id}")
                with lock if distributed.world_size() == 1 else contextlib.nullcontext():
                    result = self._results[run.base_run_id] = self._search(run)
                chosen = " ".join(f"{key}={value}" for key, value in result["params"].items())
                self.log(f"      {run.base_run_id}: chose trial {result['best_trial']} of {result['n_trials']}"
                         f" (validation accuracy {result['validation_accuracy']:.4f}): {chosen}")
            except Exception as error:  # every seed of this base run fails with it
                self._results[run.base_run_id] = error
        result = self._results[run.base_run_id]
        if isinstance(result, Exception):
            raise result
        return applied(run, result)

    def _search(self, run: Run) -> dict:
        config, search = self.config, run.search
        folder = search_folder(config, run)
        identity = _identity(run, config)
        sharded = distributed.world_size() > 1  # torchrun: the ranks may only read a search
        started = read_json(folder / "search.json").get("identity") == identity
        if sharded and not (started and (folder / "study.journal").is_file()):
            raise SearchError(f"search: {run.base_run_id}'s search has not run with these settings; run it in one"
                              f" process first (python main.py --only {run.base_run_id}), then under torchrun")
        if not sharded:
            redone = self.before is not None and \
                file_stamp(folder / "search.json") not in (None, self.before.get(search_folder_name(run)))
            if self.force and not redone or not started:  # a new search: settings, data or space changed, or --force
                shutil.rmtree(folder, ignore_errors=True)  # (unless another process redid it since this one started)
            write_json_atomic(folder / "search.json", {
                "base_run_id": run.base_run_id, "identity": identity, "search": search.model_dump(),
                "seed": config.seed, "settings": base_run(run, config).resolved()})
        dimensions = search_dimensions(search, run.method)[0]
        study = open_study(folder, search, config.seed, dimensions)
        if not sharded:
            _fail_interrupted(study)
            for scratch in folder.glob(".trial-*"):  # a killed trial's scratch folder
                shutil.rmtree(scratch, ignore_errors=True)
        missing = trials_left(study, search, dimensions)
        if missing > 0:
            if sharded:
                raise SearchError(f"search: {run.base_run_id}'s search is unfinished ({missing} of {search.n_trials}"
                                  f" trials missing); finish it in one process first"
                                  f" (python main.py --only {run.base_run_id}), then run under torchrun")
            self.log(f"      {run.base_run_id}: searching {missing} of {search.n_trials} trials on validation"
                     f" ({folder})")
            while len(counted := counted_trials(study, search, dimensions)) < search.n_trials:
                # a grid's trial: its next point not yet tried; TPE's: what the sampler suggests
                point = grid_points(dimensions, config.seed, counted)[0] if search.sampler == "grid" else None
                study.optimize(self._objective(run, folder, point), n_trials=1, catch=(FloatingPointError,),
                               gc_after_trial=True)
                done = search.n_trials - trials_left(study, search, dimensions)
                self.log(_trial_line(run.base_run_id, study.trials[-1], done, search.n_trials))
                write_trials(study, search, dimensions, folder / "search.csv")
        if is_main_process():
            write_trials(study, search, dimensions, folder / "search.csv")
        return _result(run, study, search, dimensions)

    def _objective(self, run: Run, folder: Path, point: dict | None = None):
        """The trial's objective: train with the sampler's values, or a grid's `point` (recorded as the trial's
        user attribute "point": Optuna's parameters cannot change their choices within a study, a grid's can)."""
        import optuna

        from tasks.finetune import fit

        dimensions, _ = search_dimensions(run.search, run.method)
        base, device = base_run(run, self.config), pick_device()

        def objective(trial: "optuna.Trial") -> float:
            if point is None:
                params = {key: _suggest(trial, key, dimension) for key, dimension in dimensions.items()}
            else:
                params = point
                trial.set_user_attr("point", point)
            report = ReportToTrial(trial)
            try:
                with tempfile.TemporaryDirectory(dir=folder, prefix=f".trial-{trial.number}-") as scratch:
                    trial_run = with_settings(base, params)
                    choice = resolve_all(self.config, [trial_run], device)[trial_run.run_id]
                    context = RunContext(self.config, self.splits, Path(scratch), device, self.show_progress, choice)
                    fitted = fit(trial_run, context, Path(scratch) / "checkpoints",
                                 callbacks=[report], save_strategy="no", load_best_model_at_end=False)
                    if not report.values:  # under one epoch: no epoch end was scored
                        fitted.trainer.evaluate()
            except KeyboardInterrupt:  # Optuna records it as FAIL; it does not count, and is redone on resume
                _mark_interrupted(trial.study, [trial.number])
                raise
            if report.pruned:
                raise optuna.TrialPruned(f"validation accuracy {report.values[-1]:.4f} at epoch {len(report.values)}")
            return max(report.values)  # the run keeps its best epoch too

        return objective


class ReportToTrial(TrainerCallback):
    """Reports each epoch's validation accuracy to the trial; when the pruner says so, stops training at
    that epoch's end (the objective then raises TrialPruned). The last epoch is never pruned: it is done."""

    def __init__(self, trial):
        self.trial = trial
        self.values: list[float] = []
        self.pruned = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or METRIC not in metrics:  # eval_on_train's training-set scores
            return
        self.values.append(float(metrics[METRIC]))
        self.trial.report(self.values[-1], step=len(self.values))
        if state.global_step < state.max_steps and self.trial.should_prune():
            self.pruned = True
            control.should_training_stop = True


# ----------------------------------------------------------------------------------------------
# The study and its files



def open_study(folder: Path, search: SearchConfig, seed: int, dimensions: dict[str, dict]):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial is logged by the runner, in one line
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / "study.journal")
    storage = JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    if search.sampler == "grid":  # each trial's point comes from grid_points; nothing is sampled
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        startup = min(10, max(2, search.n_trials // 3))  # random trials before TPE models the space (Optuna: 10)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    try:  # create_study would append a record to the journal even when the study exists
        return optuna.load_study(study_name=STUDY, storage=storage, sampler=sampler, pruner=make_pruner(search))
    except KeyError:
        return optuna.create_study(study_name=STUDY, storage=storage, direction="maximize", sampler=sampler,
                                   pruner=make_pruner(search), load_if_exists=True)


def make_pruner(search: SearchConfig):
    import optuna

    if search.pruner == "none":
        return optuna.pruners.NopPruner()
    startup = min(10, max(2, search.n_trials // 3))  # trials that always finish, to have a median
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)


def finished_trials(study) -> list:
    """The trials that count toward n_trials: complete, pruned or failed, not interrupted."""
    interrupted = set(study.user_attrs.get("interrupted", []))
    return [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.number not in interrupted]


def counted_trials(study, search: SearchConfig, dimensions: dict[str, dict]) -> list:
    """The finished trials this search counts. A grid's: the first finished trial at each point still in the
    grid (trials of a grid's earlier, other choices stay in the journal, uncounted)."""
    trials = finished_trials(study)
    if search.sampler != "grid":
        return trials
    counted: dict[tuple, object] = {}
    for trial in trials:
        point = _point(trial_params(trial), dimensions)
        if point is not None:
            counted.setdefault(point, trial)
    return sorted(counted.values(), key=lambda t: t.number)


def trials_left(study, search: SearchConfig, dimensions: dict[str, dict]) -> int:
    return search.n_trials - len(counted_trials(study, search, dimensions))


def grid_points(dimensions: dict[str, dict], seed: int, tried: list = ()) -> list[dict]:
    """The grid's combinations not among the `tried` trials, in an order drawn with `seed` (the same order
    every time, whatever has been tried)."""
    keys = list(dimensions)
    points = [dict(zip(keys, values)) for values in itertools.product(*(dimensions[k]["choices"] for k in keys))]
    random.Random(seed).shuffle(points)
    done = {_point(trial_params(trial), dimensions) for trial in tried}
    return [point for point in points if _point(point, dimensions) not in done]


def trial_params(trial) -> dict:
    """A trial's values: a grid point's (user attribute "point"), else Optuna's suggested parameters."""
    return trial.user_attrs.get("point") or trial.params


def _point(params: dict, dimensions: dict[str, dict]) -> tuple | None:
    """`params` as a point of the grid, or None when a value is not among its key's choices."""
    if set(params) != set(dimensions):
        return None
    point = tuple(params[key] for key in dimensions)
    return point if all(value in dimensions[key]["choices"] for key, value in zip(dimensions, point)) else None


def _fail_interrupted(study) -> None:
    """Trials left running by a killed process: marked failed and not counted, so they are redone. The
    search's lock (Searches.best) keeps a second process away, so no live process owns them."""
    from optuna.trial import TrialState

    running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for number in running:
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    if running:
        _mark_interrupted(study, running)


def _mark_interrupted(study, numbers: list[int]) -> None:
    study.set_user_attr("interrupted", sorted(set(study.user_attrs.get("interrupted", [])) | set(numbers)))


def trials_frame(study, search: SearchConfig, dimensions: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for trial in counted_trials(study, search, dimensions):
        if trial.state.name == "COMPLETE":
            accuracy = trial.value
        elif trial.intermediate_values:  # pruned (or failed) after some epochs: its last epoch
            accuracy = trial.intermediate_values[max(trial.intermediate_values)]
        else:
            accuracy = None
        rows.append({"trial": trial.number, **{key: trial_params(trial).get(key) for key in search.space},
                     "validation_accuracy": accuracy, "state": trial.state.name})
    return pd.DataFrame(rows, columns=["trial", *search.space, "validation_accuracy", "state"])


def write_trials(study, search: SearchConfig, dimensions: dict[str, dict], path: Path) -> None:
    write_csv_atomic(path, trials_frame(study, search, dimensions))


def copy_trials(config: PipelineConfig, run: Run, run_dir: Path) -> None:
    """results/<RUN_ID>/search.csv: the trials the run's settings came from."""
    source = search_folder(config, run) / "search.csv"
    write_text_atomic(run_dir / "search.csv", source.read_text(encoding="utf-8"))


def _result(run: Run, study, search: SearchConfig, dimensions: dict[str, dict]) -> dict:
    trials = counted_trials(study, search, dimensions)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        counts = {state: sum(t.state.name == state for t in trials) for state in ("PRUNED", "FAIL")}
        raise SearchError(f"search: no trial of {run.base_run_id} completed ({counts['PRUNED']} pruned,"
                          f" {counts['FAIL']} failed); see {search_folder_name(run)}/search.csv, then widen"
                          f" the space or raise n_trials")
    best = max(complete, key=lambda t: (t.value, -t.number))  # the first of equals
    seconds = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                  if t.datetime_complete and t.datetime_start)
    return {"n_trials": search.n_trials, "space": dimensions, "pruner": search.pruner,
            **_sampler(search),
            "trials": {state: sum(t.state.name == state for t in trials) for state in CSV_STATES},
            "best_trial": best.number, "validation_accuracy": best.value,
            "params": {key: trial_params(best)[key] for key in search.space},
            "seconds": round(seconds, 1), "folder": search_folder_name(run)}



# ----------------------------------------------------------------------------------------------
# Settings


def base_run(run: Run, config: PipelineConfig) -> Run:
    """What every trial trains: the base run's settings under the config's seed, whatever seed `run` has."""
    return replace(run, run_id=run.base_run_id, seed=config.seed, search_result=None)


def with_settings(run: Run, params: dict) -> Run:
    """`run` with {"training.learning_rate": 3e-4, "lora.r": 8, ...} set: each key is a dotted path into the
    run's settings blocks (Run.training, Run.lora, ...), each block re-validated by its own schema."""
    blocks: dict[str, dict] = {}
    for key, value in params.items():
        block, _, field = key.partition(".")
        blocks.setdefault(block, {})[field] = value
    updates = {}
    for block, values in blocks.items():
        current = getattr(run, block)
        updates[block] = type(current).model_validate({**current.model_dump(), **values})
    return replace(run, **updates)


def applied(run: Run, result: dict) -> Run:
    return replace(with_settings(run, result["params"]), search_result=result)


def finished(run: Run, config: PipelineConfig) -> Run:
    """For --dry-run: the run with its search's best settings when a matching search has finished; with the
    number of trials it still has to run when a matching search has started (`search_left`); else as is.
    Reads the study, writes nothing."""
    folder = search_folder(config, run)
    if (run.search is None or not (folder / "study.journal").is_file()
            or read_json(folder / "search.json").get("identity") != _identity(run, config)):
        return run
    dimensions = search_dimensions(run.search, run.method)[0]
    study = open_study(folder, run.search, config.seed, dimensions)
    left = trials_left(study, run.search, dimensions)
    if left > 0:
        return replace(run, search_left=left)
    try:
        return applied(run, _result(run, study, run.search, dimensions))
    except SearchError:
        return run


def _identity(run: Run, config: PipelineConfig) -> str:
    """Everything a search's trials depend on except n_trials (raising it continues the same study) and a
    grid's choices (a grid trial trains the same whatever else is in the grid: widening it keeps the study)."""
    space = search_dimensions(run.search, run.method)[0]  # typed: 1e-5 == 1e-05
    if run.search.sampler == "grid":
        space = {key: dimension["kind"] for key, dimension in space.items()}
    identity = {"run": fingerprint(base_run(run, config), config, None), "seed": config.seed,
                "space": space, "pruner": run.search.pruner, **_sampler(run.search)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sampler(search: SearchConfig) -> dict:
    """The sampler, where it is not the default: TPE searches keep the identities they had before grids existed."""
    return {} if search.sampler == "tpe" else {"sampler": search.sampler}


def _suggest(trial, key: str, dimension: dict):
    if dimension["kind"] == "categorical":
        return trial.suggest_categorical(key, dimension["choices"])
    suggest = trial.suggest_int if dimension["kind"] == "int" else trial.suggest_float
    return suggest(key, dimension["low"], dimension["high"], log=dimension["log"])


def _trial_line(base_run_id: str, trial, finished: int, n_trials: int) -> str:
    params = " ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
                      for key, value in trial_params(trial).items())
    if trial.state.name == "COMPLETE":
        outcome = f"validation accuracy {trial.value:.4f}"
    elif trial.state.name == "PRUNED":
        outcome = f"pruned after epoch {len(trial.intermediate_values)}"
    else:
        outcome = "failed: " + (trial.system_attrs.get("fail_reason") or "?").splitlines()[0]
    return f"      {base_run_id} trial {trial.number} ({finished} of {n_trials} finished): {outcome}  {params}"

