"""The plan: tasks x models x variants expanded into runs with resolved settings and study-style ids."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from core.config import (METHODS, ConfigError, LoraConfig, PipelineConfig, SearchConfig, TrainingConfig, clip,
                         did_you_mean, shown)

SEARCH_FOLDER = "search"  # output_dir/search/<BASE_RUN_ID>/: a base run's search, shared by its seeds


@dataclass(frozen=True)
class Run:
    run_id: str  # A0, A1, B1_v1, C2_v2: task, model number, variant
    task: str
    method: str
    model_number: int | None = None
    model: str | None = None  # resolved local folder or hub id
    variant: str | None = None
    training: TrainingConfig | None = None  # resolved: defaults < variant < task
    lora: LoraConfig | None = None
    seed: int = 42
    base_run_id: str = ""  # the run id without its seed suffix (B1_v1 for B1_v1_s43); the run id when unseeded
    adapter: dict | None = field(default=None, hash=False)  # method peft: peft_type and PEFT's config fields
    search: SearchConfig | None = None  # settings to search on validation first (pipeline/search.py)
    search_result: dict | None = None  # the search's best trial, once its settings are applied
    search_left: int | None = field(default=None, compare=False)  # --dry-run: trials an unfinished study still runs
    label: str | None = field(default=None, compare=False)  # the task's name for its method in reports; not in resolved()

    @property
    def trials_to_search(self) -> int:
        """The trials a pending search still has to run: all n_trials unless a matching study has some."""
        return self.search.n_trials if self.search_left is None else self.search_left

    def __post_init__(self):
        if not self.base_run_id:
            object.__setattr__(self, "base_run_id", self.run_id)

    def resolved(self) -> dict:
        """Everything that determines this run's results, as written into its metrics.json."""
        resolved = {
            "run_id": self.run_id, "base_run_id": self.base_run_id, "task": self.task, "method": self.method,
            "model_number": self.model_number, "model": self.model, "variant": self.variant, "seed": self.seed,
            "training": self.training.model_dump(exclude={"ddp_timeout"}) if self.training else None,
            "lora": self.lora.model_dump() if self.lora else None,
            **({"search": self.search_result} if self.search_result else {}),  # unsearched runs: as before
        }
        if self.adapter is not None:  # only then: runs without one keep their fingerprints
            resolved["adapter"] = dict(self.adapter)
        return resolved

    def describe(self) -> str:
        parts = [f"{self.run_id:<10}", f"method={self.method}"]
        if self.model:
            parts.append(f"model={self.model}")
        if self.training:
            t = self.training
            parts.append(f"epochs={t.epochs:g} lr={t.learning_rate:g} batch={t.batch_size}")
        if self.lora:
            parts.append(f"targets={','.join(self.lora.target_modules)} r={self.lora.r}"
                         + (" rslora" if self.lora.use_rslora else "") + (" dora" if self.lora.use_dora else ""))
        if self.adapter:
            parts.append(" ".join(f"{key}={_short(value)}" for key, value in self.adapter.items()))
        if self.search_result:
            result = self.search_result
            parts.append(f"search=done: best trial {result['best_trial']} of {result['n_trials']}"
                         f" (validation {result['validation_accuracy']:.4f})")
        elif self.search:
            left = "" if self.search_left is None else f"{self.trials_to_search} of "
            parts.append(f"search={left}{self.search.n_trials} trials over {','.join(self.search.space)} first")
        return "  ".join(parts)


def build_plan(config: PipelineConfig, only: list[str] | None = None) -> list[Run]:
    """Every run of the config, in task order; with `seeds`, the whole study once per seed (seed-major).

    `only` selects runs by task (B), task and model number (B1: B1_v1, B1_v2, ...), base run id (B1_v1: that
    run under every seed) or run id (B1_v1_s43).
    """
    runs = _base_runs(config)
    bases = [r.run_id for r in runs]
    if config.reference_run is not None and config.reference_run not in bases:
        raise ConfigError(f"reference_run: {shown(config.reference_run)} is not a run of this config"
                          f"{did_you_mean(config.reference_run, bases)}; name one of {', '.join(bases)}"
                          " (without the _s<seed> suffix)")
    if config.seeds is not None:
        runs = [replace(r, run_id=f"{r.run_id}_s{seed}", seed=seed, base_run_id=r.run_id)
                for seed in config.seeds for r in runs]
    ids = [r.run_id for r in runs]
    if SEARCH_FOLDER in ids:
        raise ConfigError(f"tasks.{SEARCH_FOLDER}: output_dir/{SEARCH_FOLDER}/ holds the searches; rename the task")
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"tasks: run ids {', '.join(duplicates)} occur twice; rename a task")
    if only:
        _check_only(only, runs)
        runs = [r for r in runs if any(name in _selectors(r) for name in only)]
    return runs


def _selectors(run: Run) -> set[str]:
    """The --only names that select `run`: its task (B), task and model number (B1), base run id (B1_v1), run id."""
    names = {run.task, run.base_run_id, run.run_id}
    if run.model_number is not None:
        names.add(f"{run.task}{run.model_number}")
    return names


def _check_only(only: list[str], runs: list[Run]) -> None:
    """Every --only name selects runs, and none means two things (task B1, and model 1 of task B)."""
    for name in only:
        chosen = [r for r in runs if name in _selectors(r)]
        tasks = sorted({r.task for r in chosen})
        if not chosen:
            known = dict.fromkeys(s for r in runs for s in sorted(_selectors(r), key=len))
            model = next((f", a task and model number ({r.task}{r.model_number})" for r in runs if r.model_number), "")
            raise ConfigError(f"--only: {clip(name, 40)} is not a run of this config{did_you_mean(name, known)};"
                              f" name a task ({', '.join(dict.fromkeys(r.task for r in runs))}){model}"
                              f" or a run ({', '.join(dict.fromkeys(r.base_run_id for r in runs))})")
        if len(tasks) > 1:
            raise ConfigError(f"--only: {name} names runs of tasks {' and '.join(tasks)}; name a run instead:"
                              f" {', '.join(dict.fromkeys(r.base_run_id for r in chosen))}")


def _base_runs(config: PipelineConfig) -> list[Run]:
    """tasks x models x variants, with the config's `seed`."""
    runs = []
    for task_name, task in config.tasks.items():
        if not task.enabled:
            continue
        method = METHODS[task.method]
        if not method["uses_models"]:
            runs.append(Run(task_name, task_name, task.method, seed=config.seed, label=task.label))
            continue
        for number in task.models or range(1, len(config.models) + 1):
            model = config.models[number - 1]
            if not method["trains"]:
                runs.append(Run(f"{task_name}{number}", task_name, task.method, number, model, seed=config.seed,
                                label=task.label))
                continue
            for variant in task.variants:
                lora = config.task_lora(task_name, variant) if method["settings"] == "lora" else None
                adapter = _adapter(config, task_name, variant) if method["settings"] == "adapter" else None
                runs.append(Run(f"{task_name}{number}_{variant}", task_name, task.method, number, model, variant,
                                config.task_training(task_name, variant), lora, config.seed, adapter=adapter,
                                search=config.task_search(task_name, variant), label=task.label))
    return runs


def _adapter(config: PipelineConfig, task: str, variant: str) -> dict:
    """The task's adapter block, checked against PEFT's config class (no model needed)."""
    from tasks.adapters import AdapterError, check_adapter  # imports peft only for configs that use it

    adapter = config.task_adapter(task, variant)
    try:
        return check_adapter(adapter)
    except AdapterError as error:
        raise ConfigError(f"tasks.{task}.{error.where('adapter')}") from None


def _short(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def search_folder(config: PipelineConfig, run: Run) -> Path:
    """output_dir/search/<BASE_RUN_ID>/: where a base run's search lives."""
    return Path(config.output_dir) / SEARCH_FOLDER / run.base_run_id


def search_folder_name(run: Run) -> str:
    return f"{SEARCH_FOLDER}/{run.base_run_id}"
