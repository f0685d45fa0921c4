"""`executor: ray` (`--executor ray`): every run is a Ray task with `ray.cpus_per_run` CPUs and
`ray.gpus_per_run` GPUs (fractions let small runs share a GPU), on a local Ray instance or on the cluster at
`ray.address` (`auto`: the one `ray start` joined on this machine).

A task runs the `run_one` it is handed (`runner.run_one`, exactly what the sequential executor runs), so the
run lock, resuming and the files written are the same; the driver gathers the outcomes. Tasks are not retried:
a worker that dies leaves its run as a killed process would, and the next invocation resumes it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from core import distributed
from core.config import PipelineConfig
from core.hardware import pick_device, set_threads
from dataset import Splits
from pipeline.estimate import clock
from pipeline.plan import Run
from pipeline.precision import resolve_all
from pipeline.outcome import Outcome, PlanError
from pipeline.run_state import RESUME, check_blocked, finished_files
from core.quiet import quiet_libraries

ROOT = Path(__file__).resolve().parents[1]
PASSED_ON = ("HF_HUB_OFFLINE", "HF_HOME", "HF_ENDPOINT", "TRANSFORMERS_OFFLINE")  # from the driver to its tasks


def connect(config: PipelineConfig) -> None:
    """Join (or start) Ray. PlanError, before anything is written, when that cannot be done."""
    if distributed.world_size() > 1:
        raise PlanError("executor: ray runs each run as a Ray task and cannot run under torchrun;"
                        " use executor: sequential there")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # each task's "RUN_ID  running" line, not "[repeated 2x]"
    if config.ray.address not in (None, "auto") and (Path.home() / ".ray" / "auth_token").is_file():
        # Ray 2.60 sends the token `ray start` made only for local or `auto` addresses; a HOST:PORT driver is refused
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise PlanError("executor: ray needs the ray package; pip install -r requirements-ray.txt,"
                        " or use executor: sequential") from None
    if ray.is_initialized():
        return
    try:
        # Unset: a new local instance (or RAY_ADDRESS's), not whatever `ray start` last left on this machine.
        address = config.ray.address or os.environ.get("RAY_ADDRESS") or "local"
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PlanError(f"ray.address: {config.ray.address!r}: Ray cannot be reached ({first}); start a cluster"
                        f" with `ray start --head`, or leave ray.address unset for a local instance") from None


def run_with_ray(config: PipelineConfig, runs: list[Run], splits: Splits, run_one, force: bool = False,
                 show_progress: bool = True, log=print, reprobe: bool = False) -> list[Outcome]:
    """Each run a Ray task calling `run_one` (the runner's: the sequential executor's own), outcomes in plan order."""
    import ray

    from pipeline.search import finished

    runs = [finished(run, config) for run in runs]  # a finished search's settings
    unsearched = sorted({run.base_run_id for run in runs if run.search is not None and run.search_result is None})
    if unsearched:
        raise PlanError(f"search: {', '.join(unsearched)} has a search that has not finished; run it first with the"
                        f" sequential executor (python main.py --only {' '.join(unsearched)}), then with --executor ray")
    resources = ray.cluster_resources()
    gpus = config.ray.gpus_per_run
    if gpus is None:  # a task without GPUs sees none (Ray hides them), so use them where there are some
        gpus = 1 if resources.get("GPU", 0) else 0
    environment = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    environment["TOKENIZERS_PARALLELISM"] = "false"
    task = ray.remote(num_cpus=config.ray.cpus_per_run, num_gpus=gpus, max_retries=0,
                      runtime_env={"env_vars": environment})(in_worker)
    choices = resolve_all(config, runs, pick_device(), reprobe=reprobe)
    check_blocked(config, runs, choices, force)  # before any run starts
    before = finished_files(config, runs)
    shared_config, shared_splits = ray.put(config), ray.put(splits)
    pending = {task.remote(run_one, run, shared_config, shared_splits, force, before, show_progress): run for run in runs}
    log(f"ray: {len(runs)} runs as tasks of {config.ray.cpus_per_run:g} CPU and {gpus:g} GPU each, on"
        f" {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs")
    started = time.perf_counter()
    outcomes: dict[str, Outcome] = {}
    while pending:
        [done], _ = ray.wait(list(pending), num_returns=1)
        run = pending.pop(done)
        try:
            outcome = ray.get(done)
        except ray.exceptions.RayError as error:  # the worker died (killed, out of memory) or could not start
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            outcome = Outcome(run.run_id, "failed", 0.0,
                              f"{type(error).__name__}: {first} (the next invocation resumes it)")
        outcomes[run.run_id] = outcome
        prefix = f"[{len(outcomes)}/{len(runs)}] {run.run_id}"
        if outcome.skipped:
            log(f"{prefix}  skipped: {outcome.note}")
        else:
            log(f"{prefix}  {outcome.status} in {clock(outcome.seconds)}  elapsed {clock(time.perf_counter() - started)}"
                + (f": {outcome.error}" if outcome.error else ""))
    return [outcomes[run.run_id] for run in runs]


def in_worker(run_one, run: Run, config: PipelineConfig, splits: Splits, force: bool, before: dict,
              show_progress: bool) -> Outcome:
    """The Ray task: one run, as the sequential executor runs it, on `threads` or its `ray.cpus_per_run` threads."""
    if config.threads:
        set_threads(config.threads, "threads (--threads)")
    else:
        set_threads(max(1, int(config.ray.cpus_per_run)), "ray.cpus_per_run (--cpus-per-run)")
    if not show_progress:
        quiet_libraries()

    def announce(action):
        print(f"{run.run_id}  {'resuming' if action == RESUME else 'running'}", flush=True)

    return run_one(run, config, splits, pick_device(), force, before, show_progress, announce)
