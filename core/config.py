"""The typed configuration: read a YAML file once, validate everything, report every problem together.

Every default lives here, in one place. `config.yaml` holds only what a user changes.
Messages speak the user's language: the dotted key path in the YAML file, the bad value,
and the fix ("did you mean ...?").
"""
from __future__ import annotations

import math

import difflib
import itertools
import reprlib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model,
                      model_validator)
from pydantic_core import PydanticCustomError

AG_NEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
DATA_FORMATS = (".csv", ".tsv", ".json", ".jsonl", ".parquet")  # the data files dataset.py reads, by extension


class ConfigError(Exception):
    """A problem with the config file or the command line. Its message is what the user reads."""


class Strict(BaseModel):
    """Unknown keys are errors; values are converted once ("5e-5" -> 5e-05) and then checked; .inf and .nan are
    no number of any setting."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


MAX_INT = 2**31 - 1  # every count fits a C int (torch, tokenizers and numpy take them as one)
PositiveInt = Annotated[int, Field(gt=0, le=MAX_INT)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's seed range (np.random.seed, sklearn's random_state)

# A config is read with aliases expanded: `&a [*b, *b]` nested 9 deep is under 1 KB of YAML but 10^9 values.
# Past these bounds (a real config has a few hundred values and a few KB of text) loading stops with one line.
MAX_CONFIG_VALUES = 10_000  # mappings, lists and scalars, counted after alias expansion
MAX_CONFIG_CHARS = 1_000_000  # characters of all scalars together, counted after alias expansion


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
    # method zero_shot: the text each class is matched against, a list in class order or {class name: text};
    # default: the class names themselves
    class_descriptions: list[str] | dict[str, str] | None = None
    # rows, stratified out of train (seed `split_seed`) when there is no validation split. 1,000: the standard error
    # of an accuracy p is sqrt(p (1 - p) / n), about 1.0 point near p = 0.88 (500 rows: 1.5), and verdicts and
    # searches are decided on this split
    validation_size: PositiveInt = 1000
    split_seed: Seed = 42  # the study's seed for the validation split
    max_train_samples: PositiveInt | None = None  # stratified caps, applied after the split
    max_eval_samples: PositiveInt | None = None  # (validation)
    max_test_samples: PositiveInt | None = None
    max_length: PositiveInt = 128  # tokens; AG News texts average ~53 MiniLM tokens, 99% fit in 123
    cache_dir: str = ".cache/tokenized"  # tokenised data, keyed by tokenizer, length and texts
    # Bounds that stop data which would exhaust memory before any work (neither changes a run's results):
    # classes: the head, per-class metrics and the confusion matrix (classes^2 cells) grow with them; 10,000
    # classes drove memory past 6 GB. AG News has 4, GoEmotions 28.
    max_classes: PositiveInt = 1000
    # characters in one text: every text is tokenised whole before truncation to max_length tokens, so a 50 MB
    # text drove memory past 6 GB. AG News's longest is 892 characters; 100,000 is ~25,000 tokens.
    max_text_chars: PositiveInt = 100_000

    @model_validator(mode="after")
    def _check_sources(self) -> "DatasetConfig":
        problems = []
        if self.files is not None and "source" in self.model_fields_set:
            problems.append("dataset.files: give dataset.source or dataset.files, not both; remove one")
        if self.files is not None and self.test_source is not None:
            problems.append("dataset.test_source: dataset.files names the test file already; remove test_source")
        if self.class_names is not None and len(set(self.class_names)) < len(self.class_names):
            repeated = sorted({c for c in self.class_names if self.class_names.count(c) > 1})
            problems.append(f"dataset.class_names: {clip(', '.join(repeated))} occurs twice; list each class once")
        if self.class_names is not None and len(self.class_names) > self.max_classes:
            problems.append(f"dataset.class_names: {len(self.class_names):,} classes, more than dataset.max_classes"
                            f" ({self.max_classes:,}); raise dataset.max_classes if they are meant")
        if self.class_names is not None and self.class_descriptions is not None:
            try:
                self.descriptions(self.class_names)
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def descriptions(self, class_names) -> list[str]:
        """The text per class that zero_shot matches, in class order. ValueError: class_descriptions does not fit."""
        given, names = self.class_descriptions, list(class_names)
        if given is None:
            return names
        if isinstance(given, list):
            if len(given) != len(names):
                raise ValueError(f"dataset.class_descriptions: {len(given)} descriptions for {len(names)} classes"
                                 f" ({', '.join(names)}); give one per class, in that order")
            return list(given)
        unknown = [key for key in given if key not in names]
        if unknown:
            raise ValueError(f"dataset.class_descriptions: {shown(unknown[0])} is not a class"
                             f"{did_you_mean(unknown[0], names)}; the classes are {', '.join(names)}")
        missing = [name for name in names if name not in given]
        if missing:
            raise ValueError(f"dataset.class_descriptions: no description for class {shown(missing[0])};"
                             f" give one per class ({', '.join(names)})")
        return [given[name] for name in names]


# transformers' schedulers that need no lr_scheduler_kwargs (the others stop the Trainer once training starts)
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")


def _scheduler(name: str) -> str:
    if name not in SCHEDULERS:
        raise PydanticCustomError("scheduler", "not a scheduler; use one of {names}", {"names": ", ".join(SCHEDULERS)})
    return name


class TrainingConfig(Strict):
    epochs: PositiveFloat = 3
    batch_size: PositiveInt = 32  # per device
    eval_batch_size: PositiveInt = 32  # also at test time (the fastest per machine: bench/levers.py, bench/NOTES.md)
    learning_rate: PositiveFloat = 5e-5
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    warmup_ratio: Fraction = 0.1  # share of all steps spent warming the learning rate up
    lr_scheduler: Annotated[str, AfterValidator(_scheduler)] = "linear"  # one of SCHEDULERS (transformers' names)
    max_grad_norm: PositiveFloat = 1.0
    gradient_accumulation_steps: PositiveInt = 1
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where measured >= 1.2x fp32 (core/precision.py)
    group_by_length: bool = True  # batches of similar length pad less
    pad_to_multiple_of: Annotated[int, Field(gt=0, le=1024)] | None = 8  # tokens; more only pads (GPUs like 8, 64)
    save_total_limit: PositiveInt = 2  # checkpoints kept (the best one is always kept too)
    eval_on_train: bool = False  # re-score the whole training set each epoch (slow; the study did)
    # Speed levers for GPUs (bench/gpu.py measures each; bench/NOTES.md "GPU"). The defaults are the Trainer's own.
    optim: Literal["adamw_torch_fused", "adamw_torch"] = "adamw_torch_fused"  # fused: one AdamW kernel per step
    pin_memory: bool = True  # batches in page-locked memory (GPU only)
    non_blocking: bool = False  # copy pinned batches to the GPU without waiting (needs pin_memory)
    # processes collating batches; 0: the training process. At most 256: past the cores they only contend
    dataloader_workers: Annotated[int, Field(ge=0, le=256)] = 0
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
    max_steps: PositiveInt | None = None  # optimizer steps (TrainingArguments' name); overrides epochs. Set by budget
    max_train_seconds: PositiveFloat | None = None  # stop training after this many seconds; the learning-rate
    #                                                 schedule still spans `epochs`. Set by budget.train_seconds


def optimizer_steps(train_rows: int, batch_size: int, accumulation: int = 1, epochs: float = 1.0,
                    max_steps: int | None = None, world_size: int = 1) -> int:
    """A run's optimizer steps as the Hugging Face Trainer counts them: `max_steps` where set, else
    ceil(epochs x steps per epoch), steps per epoch = ceil(ceil(rows / (batch x world size)) / accumulation)."""
    if max_steps is not None:
        return max_steps
    return math.ceil(epochs * steps_per_epoch(train_rows, batch_size, accumulation, world_size))


def steps_per_epoch(train_rows: int, batch_size: int, accumulation: int = 1, world_size: int = 1) -> int:
    return max(1, math.ceil(math.ceil(train_rows / (batch_size * world_size)) / accumulation))


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

    n_trials: PositiveInt | None = None  # trials that finish (complete, pruned or failed); an interrupted one is
    #                                      redone. Required, except in a block that adds to the top-level search
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
    "embed_lr": dict(trains=False, uses_models=True, settings=None, module="tasks.embed_lr", saves_model=True),  # frozen encoder + LR
    "zero_shot": dict(trains=False, uses_models=True, settings=None, module="tasks.zero_shot", saves_model=True),  # no labels used
    "setfit": dict(trains=True, uses_models=True, settings=None, module="tasks.setfit_method", search=False),
}


DEFAULT_VARIANT = "v1"  # what a task of a method that trains runs when it lists no variants


class TaskConfig(Strict):
    method: str
    label: str | None = None  # the method's name in reports, e.g. "LoRA q+v r 8" (not part of a run's identity)
    models: Annotated[list[PositiveInt], Field(min_length=1)] | None = None  # model numbers (from 1); default: all
    variants: list[str] = Field(default_factory=list)  # training variants; default [v1] for methods that train
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)  # type: ignore[valid-type]
    lora: LoraOverrides | None = None  # type: ignore[valid-type]
    adapter: dict[str, Any] | None = None  # method peft: peft_type and PEFT's own config fields
    search: SearchConfig | None = None  # search these settings on validation before each of its runs
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _default_variants(cls, data: Any) -> Any:
        """A task of a method that trains and names no variants runs variant v1."""
        if isinstance(data, dict) and data.get("variants") is None and isinstance(data.get("method"), str) \
                and METHODS.get(data["method"], {}).get("trains"):
            return {**data, "variants": [DEFAULT_VARIANT]}
        return data


class BudgetConfig(Strict):
    """What every training run of a comparison gets, the same for every method, so that verdicts compare methods
    and not budgets: exactly one of optimizer_steps, epochs and train_seconds, and one batch size."""

    optimizer_steps: PositiveInt | None = None  # optimizer updates per run: at one batch size, equal samples seen
    epochs: PositiveFloat | None = None  # passes over the training set: grows with the data (train-size curves)
    train_seconds: PositiveFloat | None = None  # seconds of training per run: depends on the machine and its load
    batch_size: PositiveInt | None = None  # per device, for every method; leave it out only when every training
    #                                        task searches training.batch_size

    @model_validator(mode="after")
    def _one_unit(self) -> "BudgetConfig":
        given = [key for key in BUDGET_UNITS if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError("budget: give exactly one of optimizer_steps, epochs and train_seconds"
                             + (f" (got {' and '.join(given)})" if given else ""))
        return self

    def training_overrides(self) -> dict:
        """The TrainingConfig fields the budget fixes, with their values."""
        return {field: getattr(self, key) for key, field in BUDGET_FIELDS.items() if getattr(self, key) is not None}


BUDGET_FIELDS = {"optimizer_steps": "max_steps", "epochs": "epochs", "train_seconds": "max_train_seconds",
                 "batch_size": "batch_size"}  # budget key -> the training setting it fixes
BUDGET_UNITS = ("optimizer_steps", "epochs", "train_seconds")


class RayConfig(Strict):
    """`executor: ray`: each run is a Ray task with these resources."""

    address: str | None = None  # none: a local Ray instance on this machine; `auto`: the cluster `ray start` joined
    cpus_per_run: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1
    gpus_per_run: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None  # none: 1 where it has GPUs, else 0


class PipelineConfig(Strict):
    output_dir: str = "results"
    seed: Seed = 42  # model init, dropout and data order
    seeds: list[Seed] | None = Field(default=None, min_length=1)  # repeat every run per seed (ids get _s<seed>)
    reference_run: str | None = None  # run id (without _s<seed>) all runs are compared with; default: best on validation
    trust_remote_code: bool = False  # never run code shipped with a model unless asked
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    models: list[str] = Field(min_length=1)  # local folders or hub ids; numbered from 1 in run ids
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    variants: dict[str, VariantConfig] = Field(default_factory=lambda: {DEFAULT_VARIANT: VariantConfig()})
    lora: LoraConfig = Field(default_factory=LoraConfig)
    tasks: dict[str, TaskConfig] = Field(min_length=1)
    executor: Literal["sequential", "ray"] = "sequential"  # sequential: one run after another, in this process
    ray: RayConfig = Field(default_factory=RayConfig)
    budget: BudgetConfig | None = None  # one training budget for every method (optimizer_steps | epochs | train_seconds)
    # One search for every training task: the same trials over the same space (equal tuning effort). A task's or
    # variant's own search block then only adds settings to its space (e.g. lora.r); without it, they stand alone
    search: SearchConfig | None = None
    threads: PositiveInt | None = None  # torch threads per run; none: a share of the cores (pipeline/runner.py)

    @model_validator(mode="after")
    def _cross_check(self) -> "PipelineConfig":
        problems = []
        if self.seeds is not None:
            repeated = sorted({seed for seed in self.seeds if self.seeds.count(seed) > 1})
            if repeated:
                problems.append(f"seeds: {clip(', '.join(map(str, repeated)))} occurs twice; list each seed once")
            if "seed" in self.model_fields_set and self.seed not in self.seeds:
                problems.append(f"seed: {self.seed} is not in seeds {shown(self.seeds)}; `seeds` replaces `seed`,"
                                f" so remove seed or add it to seeds")
        for name, task in self.tasks.items():
            where = f"tasks.{clip(name)}"
            if not name.isalnum():
                problems.append(f"{where}: task names are letters and digits (they start run ids), got {shown(name)}")
            if task.method not in METHODS:
                problems.append(f"{where}.method: unknown method {shown(task.method)}"
                                f"{did_you_mean(task.method, METHODS)};"
                                f" choose one of {', '.join(METHODS)}")
                continue
            method = METHODS[task.method]
            if method["trains"] and not task.variants:
                problems.append(f"{where}.variants: method {shown(task.method)} trains, so list at least one variant"
                                f" (defined: {clip(', '.join(self.variants)) or 'none'})")
            if not method["trains"]:
                if task.variants:
                    problems.append(f"{where}.variants: method {shown(task.method)} does not train; remove variants")
                if task.training.model_dump(exclude_none=True):
                    problems.append(f"{where}.training: method {shown(task.method)} does not train; remove training")
            if not method["uses_models"] and task.models is not None:
                problems.append(f"{where}.models: method {shown(task.method)} uses no transformer model; remove models")
            for variant in task.variants:
                if variant not in self.variants:
                    default = " (the default when a task lists none)" if task.variants == [DEFAULT_VARIANT] else ""
                    problems.append(f"{where}.variants: unknown variant {shown(variant)}{default}"
                                    f"{did_you_mean(variant, self.variants)};"
                                    f" defined: {clip(', '.join(self.variants)) or 'none'}")
                else:
                    for block in ("lora", "adapter"):
                        if getattr(self.variants[variant], block) is not None and method["settings"] != block:
                            problems.append(f"{where}.variants: variant {shown(variant)} sets {block}, which method"
                                            f" {shown(task.method)} does not take; give this task variants"
                                            f" without {block}")
            for number in task.models or []:
                if number > len(self.models):
                    problems.append(f"{where}.models: there is no model {number}; `models` lists {len(self.models)}")
            if task.lora is not None and method["settings"] != "lora":
                problems.append(f"{where}.lora: method {shown(task.method)} takes no LoRA settings; remove lora")
            if task.adapter is not None and method["settings"] != "adapter":
                problems.append(f"{where}.adapter: method {shown(task.method)} takes no adapter block; use method peft")
            if method["settings"] == "adapter" and task.adapter is None and not any(
                    self.variants[v].adapter for v in task.variants if v in self.variants):
                problems.append(f"{where}.adapter: method 'peft' needs an adapter block with a peft_type,"
                                f" e.g. adapter: {{peft_type: IA3, target_modules: [key, value]}}")
            problems += self._search_problems(name)
        if self.search is not None and self.search.n_trials is None:
            problems.append("search.n_trials: missing; say how many trials every training task runs")
        problems += self._budget_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def task_training(self, task: str, variant: str) -> TrainingConfig:
        """Defaults, then the variant, then the task's own overrides."""
        merged = self.training.model_dump()
        merged.update(self.variants[variant].model_dump(exclude_none=True, exclude={"lora", "adapter", "search"}))
        merged.update(self.tasks[task].training.model_dump(exclude_none=True))
        if self.budget is not None:  # the same for every method; _budget_problems refuses overrides of it
            merged.update(self.budget.training_overrides())
            if self.budget.optimizer_steps is not None:
                merged["max_train_seconds"] = None
            elif self.budget.epochs is not None:
                merged["max_steps"] = merged["max_train_seconds"] = None
            else:
                merged["max_steps"] = None
        return TrainingConfig(**merged)

    def _budget_problems(self) -> list[str]:
        """Under `budget`, no task or variant may set what it fixes, nor stop runs early; without
        budget.batch_size, every training task must search training.batch_size."""
        if self.budget is None:
            return []
        fixed = {field: f"budget.{key}" for key, field in BUDGET_FIELDS.items() if getattr(self.budget, key) is not None}
        if set(fixed) & {"max_steps", "epochs", "max_train_seconds"}:  # any unit: the others are fixed too
            unit = next(f"budget.{key}" for key in BUDGET_UNITS if getattr(self.budget, key) is not None)
            fixed.update({field: unit for field in ("max_steps", "epochs", "max_train_seconds")})
        fixed["early_stopping_patience"] = "budget"
        problems, unsearched = [], []
        for name, task in self.tasks.items():
            if task.method not in METHODS or not METHODS[task.method]["trains"]:
                continue
            blocks = [(f"tasks.{name}.training", task.training)] + \
                     [(f"variants.{v}", self.variants[v]) for v in task.variants if v in self.variants]
            for where, block in blocks:
                for field, owner in fixed.items():
                    if getattr(block, field, None) is not None:
                        why = ("stops runs before the budget is spent" if field == "early_stopping_patience"
                               else f"{owner} sets it for every method")
                        problems.append(f"{where}.{field}: {why}; remove it here, or remove {owner}")
            for variant in task.variants:
                search = self.task_search(name, variant) if variant in self.variants else None
                keys = set(search.space) if search is not None else set()
                for field, owner in fixed.items():
                    if f"training.{field}" in keys:
                        problems.append(f"tasks.{name}.search.space.training.{field}: {owner} fixes it for every"
                                        f" method; remove it from the search, or remove {owner}")
                if self.budget.batch_size is None and "training.batch_size" not in keys:
                    unsearched.append(name)
        if unsearched:
            problems.append(f"budget.batch_size: give one batch size for every method, or search training.batch_size"
                            f" in every training task ({', '.join(dict.fromkeys(unsearched))}"
                            f" {'does' if len(set(unsearched)) == 1 else 'do'} not)")
        return list(dict.fromkeys(problems))

    def task_search(self, task: str, variant: str) -> SearchConfig | None:
        """The task's search block, else its variant's; with a top-level search, that one with the task's (or
        variant's) settings added to its space."""
        own = self.tasks[task].search or self.variants[variant].search
        if self.search is None or not METHODS.get(self.tasks[task].method, {}).get("trains"):
            return own
        if own is None:
            return self.search
        return self.search.model_copy(update={"space": {**self.search.space, **own.space}})

    def _search_problems(self, name: str) -> list[str]:
        task = self.tasks[name]
        method = METHODS[task.method]
        if not method["trains"] or not method.get("search", True):  # setfit: trained outside the Trainer's search
            why = "does not train" if not method["trains"] else "trains outside the Trainer, which search drives"
            searched = task.search is not None or any(self.variants[v].search for v in task.variants if v in self.variants)
            return [f"tasks.{clip(name)}.search: method {shown(task.method)} {why}; remove search"] if searched else []
        problems = []
        for variant in task.variants:
            own = task.search or (self.variants[variant].search if variant in self.variants else None)
            where = f"tasks.{clip(name)}.search" if task.search is not None else f"variants.{clip(variant)}.search"
            if own is not None and self.search is not None:
                given = own.model_dump(exclude_unset=True, exclude={"space"})
                problems += [f"{where}.{key}: the top-level search sets it for every method ({shown(getattr(self.search, key))});"
                             f" remove it here (a task's search block only adds settings to the space)"
                             for key, value in given.items() if value != getattr(self.search, key)]
                clash = sorted(set(own.space) & set(self.search.space))
                if clash:
                    problems.append(f"{where}.space.{clash[0]}: the top-level search already searches it for every"
                                    f" method; remove it here")
            elif own is not None and own.n_trials is None:
                problems.append(f"{where}.n_trials: missing; say how many trials to run (or give a top-level"
                                f" search: block that this one adds to)")
                continue
            if variant in self.variants and self.task_search(name, variant) is not None:
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
        at = f"{where}.space.{clip(key)}"
        block, _, field = str(key).partition(".")
        if block not in blocks or field not in blocks[block].model_fields:
            problems.append(f"{at}: not a setting of a {shown(method)} run{did_you_mean(key, valid)};"
                            f" searchable: {', '.join(f'{b}.*' for b in blocks)}")
            continue
        info = blocks[block].model_fields[field]
        kind = _unwrap(info.annotation)
        check = TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation,
                            config=ConfigDict(allow_inf_nan=False))  # as the config's own fields

        def convert(value, what):
            try:
                return check.validate_python(value)
            except ValidationError as error:
                problems.append(f"{at}{what}: {shown(value)} is invalid for {key}: {error.errors()[0]['msg']}")

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
                    problems.append(f"{at}: {shown(spec)} lists a choice twice; list each once")
                dimensions[key] = {"kind": "categorical", "choices": choices}
        elif isinstance(spec, dict):
            unknown = [k for k in spec if k not in ("low", "high", "log")]
            if unknown or not {"low", "high"} <= set(spec):
                problems.append(f"{at}: a range is {{low, high, log}}, got {shown(spec)}"
                                + (did_you_mean(unknown[0], ["low", "high", "log"]) if unknown else ""))
            elif kind not in (int, float):
                problems.append(f"{at}: {key} is not numeric, so it takes a list of choices, not a range")
            elif not isinstance(spec.get("log", False), bool):
                problems.append(f"{at}.log: {shown(spec['log'])} is invalid; use true or false")
            else:
                found = len(problems)
                low, high, log = convert(spec["low"], ".low"), convert(spec["high"], ".high"), spec.get("log", False)
                if len(problems) > found:
                    continue
                if low is None or high is None:
                    problems.append(f"{at}: a range needs numbers for low and high, got {shown(spec)}")
                elif low >= high:
                    problems.append(f"{at}: low {shown(low)} must be below high {shown(high)}")
                elif log and low <= 0:
                    problems.append(f"{at}: a log range needs low > 0, got {shown(low)}")
                else:
                    dimensions[key] = {"kind": kind.__name__, "low": low, "high": high, "log": log}
        else:
            problems.append(f"{at}: {shown(spec)} is neither a range {{low, high, log}} nor a list of choices")
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
        raw = read_yaml(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{path}: config file cannot be read ({error.strerror}); pass --config PATH") from None
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
        apply_override(raw, override, base_dir=Path.cwd())  # a path typed in the shell means what the shell means
    return validate(raw, source=str(path), base_dir=path.resolve().parent)


def read_yaml(text: str, source: str) -> Any:
    """yaml.safe_load (the same types: `5e-5` stays text until the schema converts it), but a key given twice in
    one mapping is refused, and so is a document past MAX_CONFIG_VALUES or MAX_CONFIG_CHARS once its aliases are
    expanded: measured on the parsed nodes, where an alias is one shared node, before anything is built."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, source, "", {}, set())
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(f"{source}: values nested too deeply to read; a config nests a few levels") from None
    finally:
        loader.dispose()


def _measure(node: yaml.Node, source: str, path: str, done: dict, active: set) -> tuple[int, int]:
    """(values, characters) of `node` at key `path` with aliases expanded; a shared node is measured once."""
    if id(node) in done:
        return done[id(node)]
    line = node.start_mark.line + 1
    if id(node) in active:
        raise ConfigError(f"{source}: line {line}: an alias (*name) refers to a value that contains it;"
                          f" a config value cannot contain itself")
    active.add(id(node))
    children = []  # (node, its key path)
    if isinstance(node, yaml.SequenceNode):
        children = [(child, f"{path}[{i}]") for i, child in enumerate(node.value)]
    elif isinstance(node, yaml.MappingNode):
        seen: dict = {}  # (tag, text) -> the key node that gave it first
        for key, value in node.value:
            name = clip(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            at = f"{path}.{name}" if path else name
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                first = seen.setdefault((key.tag, key.value), key)
                if first is not key:
                    raise ConfigError(f"{source}: {at} is given twice (lines {first.start_mark.line + 1} and"
                                      f" {key.start_mark.line + 1}); the second would replace the first, so merge"
                                      f" them or remove one")
            children += [(key, at), (value, at)]
    values, chars = 1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0
    for child, at in children:
        size = _measure(child, source, at, done, active)
        values, chars = values + size[0], chars + size[1]
    active.discard(id(node))
    if values > MAX_CONFIG_VALUES or chars > MAX_CONFIG_CHARS:
        what = f"{path} (line {line})" if path else f"the document (line {line})"
        bound = (f"{MAX_CONFIG_VALUES:,} values (MAX_CONFIG_VALUES" if values > MAX_CONFIG_VALUES else
                 f"{MAX_CONFIG_CHARS:,} characters (MAX_CONFIG_CHARS")
        raise ConfigError(f"{source}: {what} holds more than {bound} in core/config.py) once its aliases (*name)"
                          f" are expanded; write the value out, smaller")
    done[id(node)] = values, chars
    return values, chars


def validate(raw: dict, source: str = "config", base_dir: Path = Path(".")) -> PipelineConfig:
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError("\n".join(f"{source}: {line}" for line in _explain(error))) from None
    return _resolve_paths(config, base_dir)


def apply_override(raw: dict, override: str, base_dir: Path | None = None) -> None:
    """`dataset.max_train_samples=500` sets raw['dataset']['max_train_samples'] = 500 (YAML-typed). With
    `base_dir` (the current directory, for the command line), the paths the value sets are made absolute
    against it; the config file's own paths resolve against the file's folder later."""
    key, sep, value = override.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {shown(override)}: expected KEY=VALUE with a dotted key,"
                          f" e.g. dataset.max_train_samples=500")
    try:
        parsed = read_yaml(value, f"override {shown(override)}") if value else ""
    except yaml.YAMLError:
        raise ConfigError(f"override {shown(override)}: the value is not valid YAML") from None
    node = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {shown(override)}: {clip('.'.join(parts[:depth + 1]))} is not a mapping")
        node = child
    if base_dir is not None:
        fragment = parsed
        for part in reversed(parts):  # the override as a raw config of its own
            fragment = {part: fragment}
        _resolve_raw(fragment, base_dir)
        for part in parts:
            fragment = fragment[part]
        parsed = fragment
    node[parts[-1]] = parsed


def is_local_path(name: str, base_dir: Path) -> bool:
    """A model or dataset is local when it is written as a path or exists as one; else it is a hub id. Written as a
    path: starting with `.`, `/` or `~`, a data file's extension (.csv, ...), a backslash, or more slashes than a Hub
    id has (`name` or `owner/name`). A local path is never tried on the Hub: a missing one is reported as missing."""
    return (name.startswith((".", "/", "~")) or Path(name).suffix.lower() in DATA_FORMATS or "\\" in name
            or name.count("/") > 1 or name.endswith("/") or (base_dir / name).exists())


def _resolve(name: str, base_dir: Path) -> str:
    return str((base_dir / Path(name).expanduser()).resolve())


def _resolve_paths(config: PipelineConfig, base_dir: Path) -> PipelineConfig:
    paths = {"output_dir": config.output_dir, "models": list(config.models),
             "dataset": config.dataset.model_dump(include={"source", "test_source", "cache_dir", "files"})}
    _resolve_raw(paths, base_dir)
    return config.model_copy(update={"output_dir": paths["output_dir"], "models": paths["models"],
                                     "dataset": config.dataset.model_copy(update=paths["dataset"])})


def _resolve_raw(raw: dict, base_dir: Path) -> None:
    """The paths in a raw config (or a part of one) made absolute against base_dir, in place: output_dir, the
    dataset's files and cache_dir, and the models and dataset.source that are local (is_local_path), not Hub ids.
    Values of other types are left for validation to report."""
    def resolved(value, hub_id_possible: bool = False):
        if not isinstance(value, str) or (hub_id_possible and not is_local_path(value, base_dir)):
            return value
        return _resolve(value, base_dir)

    if "output_dir" in raw:
        raw["output_dir"] = resolved(raw["output_dir"])
    if isinstance(raw.get("models"), list):
        raw["models"] = [resolved(model, hub_id_possible=True) for model in raw["models"]]
    dataset = raw.get("dataset")
    if isinstance(dataset, dict):
        for key in ("source", "test_source", "cache_dir"):
            if key in dataset:
                dataset[key] = resolved(dataset[key], hub_id_possible=key == "source")
        if isinstance(dataset.get("files"), dict):
            dataset["files"] = {name: resolved(path) for name, path in dataset["files"].items()}


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(clip(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {shown(close[0])}?)" if close else ""


class _Shown(reprlib.Repr):
    """A message shows at most a few items, levels and characters of any value; a mapping in its own order."""

    def repr_dict(self, x, level):
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
                 for k, v in itertools.islice(x.items(), self.maxdict)]
        return "{" + ", ".join(items) + (", ..." if len(x) > self.maxdict else "") + "}"


_SHOWN = _Shown()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 3, 60, 60, 40
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 6


def shown(value: Any) -> str:
    """repr(value) for a message, bounded: never the whole of a value a user (or an alias bomb) made large."""
    text = _SHOWN.repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def clip(text: Any, limit: int = 100) -> str:
    """str(text) for a message (a key, a name, another library's error), bounded like `shown`."""
    text = str(text) if isinstance(text, (str, int, float)) else shown(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _explain(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        loc = [clip(part) for part in item["loc"]]
        key = ".".join(loc) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            valid = _fields_at(PipelineConfig, item["loc"][:-1])
            lines.append(f"unknown key {shown(key)}{did_you_mean(loc[-1], valid)}; valid keys here: {', '.join(valid)}")
        elif kind == "missing":
            lines.append(f"{key}: required key is missing")
        elif kind == "value_error":
            lines.extend(str(item["ctx"]["error"]).splitlines())
        else:
            lines.append(f"{key}: {shown(item['input'])} is invalid: {item['msg']}")
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
