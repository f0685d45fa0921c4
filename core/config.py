"""The typed configuration: read a YAML file once, validate everything, report every problem together.

Every default lives here, in one place. `config.yaml` holds only what a user changes.
Messages speak the user's language: the dotted key path in the YAML file, the bad value,
and the fix ("did you mean ...?").
"""
from __future__ import annotations

import math

import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model, model_validator

AG_NEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]


class ConfigError(Exception):
    """A problem with the config file or the command line. Its message is what the user reads."""


class Strict(BaseModel):
    """Unknown keys are errors; values are converted once ("5e-5" -> 5e-05) and then checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class SplitRoles(Strict):
    """Which of the source's splits plays each role (GLUE: `test: validation`, its test split has no labels)."""

    train: str = "train"
    validation: str | None = None  # None: the source's `validation` split when it has one, else stratified from train
    test: str = "test"


class DatasetConfig(Strict):
    # A local folder (one file per split: train.csv, validation.jsonl, test.parquet, ...) or a single local file
    # (with test_source) is read first and never touches the network; anything else is a Hugging Face Hub id.
    source: str = "fancyzhx/ag_news"
    subset: str | None = None  # the Hub dataset's config name (GLUE: sst2)
    test_source: str | None = None  # the test file, when source is a single file (the training data)
    files: dict[str, str] | None = None  # {train: path, validation: path, test: path}, instead of source
    splits: SplitRoles = Field(default_factory=SplitRoles)
    text_column: str | Annotated[list[str], Field(min_length=1)] | None = None  # a list is joined with a space;
    # default `text`, or title + description in AG News's headerless layout
    label_column: str | None = None  # default `label` (AG News's headerless layout: its first column)
    # Label names in label order: integer labels index them (from 0; AG News's headerless layout from 1), string
    # labels are looked up in them. Default: a Hub ClassLabel's names, else the sorted distinct string labels, else
    # the integer labels as names ("0", "1", ...); AG News's two CSV layouts with labels 0-3 get AG News's names.
    class_names: Annotated[list[str], Field(min_length=2)] | None = None
    # rows, stratified out of train (seed `split_seed`) when there is no validation split. 1,000: the standard error
    # of an accuracy p is sqrt(p (1 - p) / n), about 1.0 point near p = 0.88 (500 rows: 1.5), and verdicts and
    # searches are decided on this split
    validation_size: PositiveInt = 1000
    split_seed: int = 42  # the study's seed for the validation split
    max_train_samples: PositiveInt | None = None  # stratified caps, applied after the split
    max_eval_samples: PositiveInt | None = None  # (validation)
    max_test_samples: PositiveInt | None = None
    max_length: PositiveInt = 128  # tokens; AG News texts average ~53 MiniLM tokens, 99% fit in 123
    cache_dir: str = ".cache/tokenized"  # tokenised data, keyed by tokenizer, length and texts

    @model_validator(mode="after")
    def _check_sources(self) -> "DatasetConfig":
        problems = []
        if self.files is not None and "source" in self.model_fields_set:
            problems.append("dataset.files: give dataset.source or dataset.files, not both; remove one")
        if self.files is not None and self.test_source is not None:
            problems.append("dataset.test_source: dataset.files names the test file already; remove test_source")
        if self.class_names is not None and len(set(self.class_names)) < len(self.class_names):
            repeated = sorted({c for c in self.class_names if self.class_names.count(c) > 1})
            problems.append(f"dataset.class_names: {', '.join(repeated)} occurs twice; list each class once")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class TrainingConfig(Strict):
    epochs: PositiveFloat = 3
    batch_size: PositiveInt = 32  # per device
    eval_batch_size: PositiveInt = 32  # also at test time (the fastest per machine: bench/levers.py, bench/NOTES.md)
    learning_rate: PositiveFloat = 5e-5
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    warmup_ratio: Fraction = 0.1  # share of all steps spent warming the learning rate up
    lr_scheduler: str = "linear"  # any transformers SchedulerType name
    max_grad_norm: PositiveFloat = 1.0
    gradient_accumulation_steps: PositiveInt = 1
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where measured >= 1.2x fp32 (core/precision.py)
    group_by_length: bool = True  # batches of similar length pad less
    pad_to_multiple_of: PositiveInt | None = 8
    save_total_limit: PositiveInt = 2  # checkpoints kept (the best one is always kept too)
    eval_on_train: bool = False  # re-score the whole training set each epoch (slow; the study did)
    # Speed levers for GPUs (bench/gpu.py measures each; bench/NOTES.md "GPU"). The defaults are the Trainer's own.
    optim: Literal["adamw_torch_fused", "adamw_torch"] = "adamw_torch_fused"  # fused: one AdamW kernel per step
    pin_memory: bool = True  # batches in page-locked memory (GPU only)
    non_blocking: bool = False  # copy pinned batches to the GPU without waiting (needs pin_memory)
    dataloader_workers: Annotated[int, Field(ge=0)] = 0  # processes collating batches; 0: the training process
    torch_compile: bool = False  # torch.compile the model (pays only once compile time is amortised)
    bf16_weights: bool = False  # where bf16 is used: weights held in bf16, not cast under autocast each step;
    #                             LoRA adapters stay fp32 (PEFT's default). Only where accuracy holds (bench/NOTES.md)
    # none, auto (inverse class frequency on train: n / (classes x n_class)) or one weight per class, in the loss
    class_weights: Literal["none", "auto"] | Annotated[list[PositiveFloat], Field(min_length=2)] = "none"
    early_stopping_patience: PositiveInt | None = None  # epochs without a better validation accuracy; none: off
    report_to: Literal["none"] | list[Literal["tensorboard", "mlflow"]] = "none"  # files under the run's folder
    logging_steps: PositiveInt | None = None  # train loss every N optimizer steps (steps.csv); none: per validation
    evaluations_per_epoch: PositiveInt = 1  # validations (and checkpoints) per epoch; the best of all is kept
    ddp_timeout: PositiveInt = 1800  # seconds a rank waits for the others under torchrun (not part of a run's identity)


def _all_optional(model: type[Strict], name: str) -> type[Strict]:
    """The same fields as `model`, every one optional: a set of overrides."""
    def optional(info):  # the field's constraints (gt=0, ...) are kept
        kind = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        return kind | None

    fields = {key: (optional(info), None) for key, info in model.model_fields.items()}
    return create_model(name, __base__=Strict, **fields)


TrainingOverrides = _all_optional(TrainingConfig, "TrainingOverrides")


class LoraConfig(Strict):
    """Passed to peft.LoraConfig under PEFT's own names."""

    r: PositiveInt = 8  # rank of the update B @ A
    lora_alpha: PositiveFloat = 32  # scale = alpha / r; rsLoRA uses alpha / sqrt(r)
    lora_dropout: Fraction = 0.01
    target_modules: list[str] = Field(default_factory=lambda: ["query"], min_length=1)  # query, key, value
    use_rslora: bool = False
    use_dora: bool = False


LoraOverrides = _all_optional(LoraConfig, "LoraOverrides")


class SearchConfig(Strict):
    """A hyperparameter search on the validation split (pipeline/search.py): Optuna's TPE sampler, seeded
    with `seed`, and per-epoch pruning. `space` maps a dotted setting of the run (training.learning_rate,
    lora.r, ...) to a range {low, high, log} or a list of choices; `search_dimensions` checks it."""

    n_trials: PositiveInt  # trials that finish (complete, pruned or failed); an interrupted one is redone
    space: dict[str, Any] = Field(min_length=1)
    pruner: Literal["median", "none"] = "median"  # median: stop a trial whose epoch is below the median
    # tpe: Optuna's TPE (ranges and lists); grid: every combination of the listed choices once, in a seeded random
    # order (lists only; n_trials at most the number of combinations): a small grid scored on validation
    sampler: Literal["tpe", "grid"] = "tpe"


class VariantConfig(TrainingOverrides):  # type: ignore[valid-type,misc]
    """A named hyperparameter set that tasks list: training overrides and, for LoRA tasks, LoRA overrides.
    A sweep is a set of variants: {r4: {lora: {r: 4}}, r16: {lora: {r: 16}}} gives C1_r4 and C1_r16."""

    lora: LoraOverrides | None = None  # type: ignore[valid-type]
    adapter: dict[str, Any] | None = None  # overrides of a `peft` task's adapter block (e.g. {r: 16})
    search: SearchConfig | None = None  # a task's own search block replaces it

# What each method needs: does it train, does it load a transformer, which settings block it reads.
# module: the tasks/ module that runs it; settings: the config block it reads (`lora`: the top-level
# block, then the variant's, then the task's; `adapter`: the variant's, then the task's).
# How each training method wraps the model is tasks/adapters.py's WRAPPERS. A PEFT type needs no row:
# it is `method: peft` with an `adapter:` block of PEFT's own fields (validated against PEFT's config
# class in tasks/adapters.py); a method that needs a training hook adds one class to tasks/hooks.py.
METHODS = {
    "tfidf_nb": dict(trains=False, uses_models=False, settings=None, module="tasks.tfidf_nb"),
    "pretrained": dict(trains=False, uses_models=True, settings=None, module="tasks.pretrained"),
    "full": dict(trains=True, uses_models=True, settings=None, module="tasks.finetune"),
    "head": dict(trains=True, uses_models=True, settings=None, module="tasks.finetune"),  # linear probe
    "bitfit": dict(trains=True, uses_models=True, settings=None, module="tasks.finetune"),  # biases + head
    "lora": dict(trains=True, uses_models=True, settings="lora", module="tasks.finetune"),  # short for peft + LORA
    "peft": dict(trains=True, uses_models=True, settings="adapter", module="tasks.finetune"),
}


class TaskConfig(Strict):
    method: str
    models: list[PositiveInt] | None = None  # model numbers (1-based); default: every model
    variants: list[str] = Field(default_factory=list)  # training variants, for methods that train
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)  # type: ignore[valid-type]
    lora: LoraOverrides | None = None  # type: ignore[valid-type]
    adapter: dict[str, Any] | None = None  # method peft: peft_type and PEFT's own config fields
    search: SearchConfig | None = None  # search these settings on validation before each of its runs
    enabled: bool = True


class RayConfig(Strict):
    """`executor: ray`: each run is a Ray task with these resources."""

    address: str | None = None  # none: a local Ray instance on this machine; `auto`: the cluster `ray start` joined
    cpus_per_run: PositiveFloat = 1
    gpus_per_run: Annotated[float, Field(ge=0)] | None = None  # none: 1 where the cluster has GPUs, else 0


class PipelineConfig(Strict):
    output_dir: str = "results"
    seed: int = 42  # model init, dropout and data order
    seeds: list[int] | None = Field(default=None, min_length=1)  # repeat every run per seed (ids get _s<seed>)
    reference_run: str | None = None  # run id (without _s<seed>) all runs are compared with; default: best on validation
    trust_remote_code: bool = False  # never run code shipped with a model unless asked
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    models: list[str] = Field(min_length=1)  # local folders or hub ids; numbered from 1 in run ids
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    variants: dict[str, VariantConfig] = Field(default_factory=lambda: {"v1": VariantConfig()})
    lora: LoraConfig = Field(default_factory=LoraConfig)
    tasks: dict[str, TaskConfig] = Field(min_length=1)
    executor: Literal["sequential", "ray"] = "sequential"  # sequential: one run after another, in this process
    ray: RayConfig = Field(default_factory=RayConfig)
    threads: PositiveInt | None = None  # torch threads per run; none: a share of the cores (pipeline/runner.py)

    @model_validator(mode="after")
    def _cross_check(self) -> "PipelineConfig":
        problems = []
        if self.seeds is not None:
            repeated = sorted({seed for seed in self.seeds if self.seeds.count(seed) > 1})
            if repeated:
                problems.append(f"seeds: {', '.join(map(str, repeated))} occurs twice; list each seed once")
            if "seed" in self.model_fields_set and self.seed not in self.seeds:
                problems.append(f"seed: {self.seed} is not in seeds {self.seeds}; `seeds` replaces `seed`,"
                                f" so remove seed or add it to seeds")
        for name, task in self.tasks.items():
            where = f"tasks.{name}"
            if not name.isalnum():
                problems.append(f"{where}: task names are letters and digits (they start run ids), got {name!r}")
            if task.method not in METHODS:
                problems.append(f"{where}.method: unknown method {task.method!r}{did_you_mean(task.method, METHODS)};"
                                f" choose one of {', '.join(METHODS)}")
                continue
            method = METHODS[task.method]
            if method["trains"] and not task.variants:
                problems.append(f"{where}.variants: method {task.method!r} trains, so list at least one variant"
                                f" (defined: {', '.join(self.variants) or 'none'})")
            if not method["trains"]:
                if task.variants:
                    problems.append(f"{where}.variants: method {task.method!r} does not train; remove variants")
                if task.training.model_dump(exclude_none=True):
                    problems.append(f"{where}.training: method {task.method!r} does not train; remove training")
            if not method["uses_models"] and task.models is not None:
                problems.append(f"{where}.models: method {task.method!r} uses no transformer model; remove models")
            for variant in task.variants:
                if variant not in self.variants:
                    problems.append(f"{where}.variants: unknown variant {variant!r}{did_you_mean(variant, self.variants)};"
                                    f" defined: {', '.join(self.variants) or 'none'}")
                else:
                    for block in ("lora", "adapter"):
                        if getattr(self.variants[variant], block) is not None and method["settings"] != block:
                            problems.append(f"{where}.variants: variant {variant!r} sets {block}, which method"
                                            f" {task.method!r} does not take; give this task variants without {block}")
            for number in task.models or []:
                if number > len(self.models):
                    problems.append(f"{where}.models: there is no model {number}; `models` lists {len(self.models)}")
            if task.lora is not None and method["settings"] != "lora":
                problems.append(f"{where}.lora: method {task.method!r} takes no LoRA settings; remove lora")
            if task.adapter is not None and method["settings"] != "adapter":
                problems.append(f"{where}.adapter: method {task.method!r} takes no adapter block; use method peft")
            if method["settings"] == "adapter" and task.adapter is None and not any(
                    self.variants[v].adapter for v in task.variants if v in self.variants):
                problems.append(f"{where}.adapter: method 'peft' needs an adapter block with a peft_type,"
                                f" e.g. adapter: {{peft_type: IA3, target_modules: [key, value]}}")
            problems += self._search_problems(name)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def task_training(self, task: str, variant: str) -> TrainingConfig:
        """Defaults, then the variant, then the task's own overrides."""
        merged = self.training.model_dump()
        merged.update(self.variants[variant].model_dump(exclude_none=True, exclude={"lora", "adapter", "search"}))
        merged.update(self.tasks[task].training.model_dump(exclude_none=True))
        return TrainingConfig(**merged)

    def task_search(self, task: str, variant: str) -> SearchConfig | None:
        """The task's search block, else its variant's."""
        return self.tasks[task].search or self.variants[variant].search

    def _search_problems(self, name: str) -> list[str]:
        task = self.tasks[name]
        method = METHODS[task.method]
        if not method["trains"]:
            return [f"tasks.{name}.search: method {task.method!r} does not train; remove search"] \
                if task.search is not None else []
        problems = []
        for variant in task.variants:
            if variant in self.variants and self.task_search(name, variant) is not None:
                where = f"tasks.{name}.search" if task.search is not None else f"variants.{variant}.search"
                problems += search_dimensions(self.task_search(name, variant), task.method, where)[1]
        return list(dict.fromkeys(problems))

    def task_lora(self, task: str, variant: str) -> LoraConfig:
        """Defaults, then the variant's lora block, then the task's own."""
        merged = self.lora.model_dump()
        for block in (self.variants[variant].lora, self.tasks[task].lora):
            if block is not None:
                merged.update(block.model_dump(exclude_none=True))
        return LoraConfig(**merged)

    def task_adapter(self, task: str, variant: str) -> dict:
        """The variant's adapter block, then the task's own (checked against PEFT in tasks/adapters.py)."""
        merged: dict = {}
        for block in (self.variants[variant].adapter, self.tasks[task].adapter):
            merged.update({str(key): value for key, value in (block or {}).items()})
        return merged


# ----------------------------------------------------------------------------------------------
# Search spaces


def searchable_blocks(method: str) -> dict[str, type[BaseModel]]:
    """The settings blocks a run of `method` has, by the name its keys start with: `training`, and the
    block METHODS names for it (`lora`, ...), typed as the top-level block of that name."""
    blocks = {"training": TrainingConfig}
    settings = METHODS[method]["settings"]
    if settings in PipelineConfig.model_fields:  # `adapter` (peft) is PEFT's own untyped block: not searchable
        blocks[settings] = _unwrap(PipelineConfig.model_fields[settings].annotation)
    return blocks


def search_dimensions(search: SearchConfig, method: str, where: str = "search") -> tuple[dict[str, dict], list[str]]:
    """({dotted key: {"kind": float|int|categorical, "low", "high", "log" | "choices"}}, problems).

    Each key must be a setting of the run (a dotted path into its settings blocks); range ends and
    choices are converted and checked as that setting is (so 1e-5 is a float, 0 is no batch size)."""
    blocks = searchable_blocks(method)
    valid = [f"{block}.{field}" for block, model in blocks.items() for field in model.model_fields]
    dimensions, problems = {}, []
    for key, spec in search.space.items():
        at = f"{where}.space.{key}"
        block, _, field = str(key).partition(".")
        if block not in blocks or field not in blocks[block].model_fields:
            problems.append(f"{at}: not a setting of a {method!r} run{did_you_mean(key, valid)};"
                            f" searchable: {', '.join(f'{b}.*' for b in blocks)}")
            continue
        info = blocks[block].model_fields[field]
        kind = _unwrap(info.annotation)
        check = TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation)

        def convert(value, what):
            try:
                return check.validate_python(value)
            except ValidationError as error:
                problems.append(f"{at}{what}: {value!r} is invalid for {key}: {error.errors()[0]['msg']}")

        if isinstance(spec, list):
            if kind not in (bool, int, float, str):
                problems.append(f"{at}: {key} is not a number, true/false or text, so it cannot be searched")
            elif not spec:
                problems.append(f"{at}: [] lists no choice; list one or more values")
            else:
                found = len(problems)
                choices = [convert(value, f"[{i}]") for i, value in enumerate(spec)]
                if len(problems) > found:  # each bad choice is reported; two of them are no repeated choice
                    continue
                if len(set(map(repr, choices))) < len(choices):
                    problems.append(f"{at}: {spec!r} lists a choice twice; list each once")
                dimensions[key] = {"kind": "categorical", "choices": choices}
        elif isinstance(spec, dict):
            unknown = [k for k in spec if k not in ("low", "high", "log")]
            if unknown or not {"low", "high"} <= set(spec):
                problems.append(f"{at}: a range is {{low, high, log}}, got {spec!r}"
                                + (did_you_mean(unknown[0], ["low", "high", "log"]) if unknown else ""))
            elif kind not in (int, float):
                problems.append(f"{at}: {key} is not numeric, so it takes a list of choices, not a range")
            elif not isinstance(spec.get("log", False), bool):
                problems.append(f"{at}.log: {spec['log']!r} is invalid; use true or false")
            else:
                found = len(problems)
                low, high, log = convert(spec["low"], ".low"), convert(spec["high"], ".high"), spec.get("log", False)
                if len(problems) > found:
                    continue
                if low is None or high is None:
                    problems.append(f"{at}: a range needs numbers for low and high, got {spec!r}")
                elif low >= high:
                    problems.append(f"{at}: low {low!r} must be below high {high!r}")
                elif log and low <= 0:
                    problems.append(f"{at}: a log range needs low > 0, got {low!r}")
                else:
                    dimensions[key] = {"kind": kind.__name__, "low": low, "high": high, "log": log}
        else:
            problems.append(f"{at}: {spec!r} is neither a range {{low, high, log}} nor a list of choices")
    if search.sampler == "grid" and not problems:
        ranges = [key for key, dimension in dimensions.items() if dimension["kind"] != "categorical"]
        combinations = math.prod(len(d.get("choices", ())) for d in dimensions.values())
        if ranges:
            problems.append(f"{where}.space.{ranges[0]}: sampler grid takes lists of choices only; list the values to"
                            f" try, or use sampler: tpe")
        elif search.n_trials > combinations:
            problems.append(f"{where}.n_trials: {search.n_trials} is more than the grid's {combinations} combinations;"
                            f" set n_trials: {combinations}")
    return dimensions, problems


# ----------------------------------------------------------------------------------------------
# Loading, overrides, paths and messages


def load_config(path: str | Path, overrides: list[str] = ()) -> PipelineConfig:
    """Read, override, validate and resolve paths. Raises ConfigError with every problem found."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass --config PATH")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}:{where} malformed YAML: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    return validate(raw, source=str(path), base_dir=path.resolve().parent)


def validate(raw: dict, source: str = "config", base_dir: Path = Path(".")) -> PipelineConfig:
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError("\n".join(f"{source}: {line}" for line in _explain(error))) from None
    return _resolve_paths(config, base_dir)


def apply_override(raw: dict, override: str) -> None:
    """`dataset.max_train_samples=500` sets raw['dataset']['max_train_samples'] = 500 (YAML-typed)."""
    key, sep, value = override.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {override!r}: expected KEY=VALUE with a dotted key, e.g. dataset.max_train_samples=500")
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        raise ConfigError(f"override {override!r}: the value is not valid YAML") from None
    node = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {'.'.join(parts[:depth + 1])} is not a mapping")
        node = child
    node[parts[-1]] = parsed


def is_local_path(name: str, base_dir: Path) -> bool:
    """A model or dataset is local when it is written as a path or exists as one; else it is a hub id."""
    return name.startswith((".", "/", "~")) or (base_dir / name).exists()


def _resolve(name: str, base_dir: Path) -> str:
    return str((base_dir / Path(name).expanduser()).resolve())


def _resolve_paths(config: PipelineConfig, base_dir: Path) -> PipelineConfig:
    dataset = config.dataset
    if is_local_path(dataset.source, base_dir):
        dataset = dataset.model_copy(update={"source": _resolve(dataset.source, base_dir)})
    dataset = dataset.model_copy(update={"cache_dir": _resolve(dataset.cache_dir, base_dir)})
    if dataset.test_source is not None:
        dataset = dataset.model_copy(update={"test_source": _resolve(dataset.test_source, base_dir)})
    if dataset.files is not None:
        dataset = dataset.model_copy(update={"files": {k: _resolve(v, base_dir) for k, v in dataset.files.items()}})
    models = [_resolve(m, base_dir) if is_local_path(m, base_dir) else m for m in config.models]
    return config.model_copy(update={
        "output_dir": _resolve(config.output_dir, base_dir), "dataset": dataset, "models": models})


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _explain(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        key = ".".join(loc) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            valid = _fields_at(PipelineConfig, item["loc"][:-1])
            lines.append(f"unknown key {key!r}{did_you_mean(loc[-1], valid)}; valid keys here: {', '.join(valid)}")
        elif kind == "missing":
            lines.append(f"{key}: required key is missing")
        elif kind == "value_error":
            lines.extend(str(item["ctx"]["error"]).splitlines())
        else:
            lines.append(f"{key}: {item['input']!r} is invalid: {item['msg']}")
    return lines


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """The valid keys of the mapping found at `loc` in the schema (for 'did you mean')."""
    node = model
    for part in loc:
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            node = node.model_fields[part].annotation
        elif typing.get_origin(node) in (dict, list):
            node = typing.get_args(node)[-1]
    node = _unwrap(node)
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X, Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation
