"""The typed configuration: read a YAML file once, validate everything, report every problem together.

Every default lives here, in one place. `config.yaml` holds only what a user changes.
Messages speak the user's language: the dotted key path in the YAML file, the bad value,
and the fix ("did you mean ...?").
"""
from __future__ import annotations

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


class DatasetConfig(Strict):
    # A local folder with train.csv and test.csv is read first and never touches the network;
    # anything else is taken as a Hugging Face Hub dataset id.
    source: str = "fancyzhx/ag_news"
    class_names: list[str] = Field(default_factory=lambda: list(AG_NEWS_CLASSES), min_length=2)
    validation_size: PositiveInt = 500  # rows, stratified out of train (seed `split_seed`)
    split_seed: int = 42  # the study's seed for the validation split
    max_train_samples: PositiveInt | None = None  # stratified caps, applied after the split
    max_eval_samples: PositiveInt | None = None  # (validation)
    max_test_samples: PositiveInt | None = None
    max_length: PositiveInt = 128  # tokens; AG News texts average ~53 MiniLM tokens, 99% fit in 123
    cache_dir: str = ".cache/tokenized"  # tokenised data, keyed by tokenizer, length and texts


class TrainingConfig(Strict):
    epochs: PositiveFloat = 3
    batch_size: PositiveInt = 32  # per device
    eval_batch_size: PositiveInt = 32  # also at test time; on 2 CPU cores 32 beat 128 by ~20% (texts/s)
    learning_rate: PositiveFloat = 5e-5
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    warmup_ratio: Fraction = 0.1  # share of all steps spent warming the learning rate up
    lr_scheduler: str = "linear"  # any transformers SchedulerType name
    max_grad_norm: PositiveFloat = 1.0
    gradient_accumulation_steps: PositiveInt = 1
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on GPUs and AMX CPUs, else fp32
    group_by_length: bool = True  # batches of similar length pad less
    pad_to_multiple_of: PositiveInt | None = 8
    save_total_limit: PositiveInt = 2  # checkpoints kept (the best one is always kept too)
    eval_on_train: bool = False  # re-score the whole training set each epoch (slow; the study did)


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


class VariantConfig(TrainingOverrides):  # type: ignore[valid-type,misc]
    """A named hyperparameter set that tasks list: training overrides and, for LoRA tasks, LoRA overrides.
    A sweep is a set of variants: {r4: {lora: {r: 4}}, r16: {lora: {r: 16}}} gives C1_r4 and C1_r16."""

    lora: LoraOverrides | None = None  # type: ignore[valid-type]
    search: SearchConfig | None = None  # a task's own search block replaces it

# What each method needs: does it train, does it load a transformer, which settings block it reads.
# module: the tasks/ module that runs it; settings: the config block it reads (a top-level default
# that a task's own block overrides). A new PEFT method is a row here, a settings block below and a
# branch in tasks/adapters.py.
METHODS = {
    "tfidf_nb": dict(trains=False, uses_models=False, settings=None, module="tasks.tfidf_nb"),
    "pretrained": dict(trains=False, uses_models=True, settings=None, module="tasks.pretrained"),
    "full": dict(trains=True, uses_models=True, settings=None, module="tasks.finetune"),
    "lora": dict(trains=True, uses_models=True, settings="lora", module="tasks.finetune"),
}


class TaskConfig(Strict):
    method: str
    models: list[PositiveInt] | None = None  # model numbers (1-based); default: every model
    variants: list[str] = Field(default_factory=list)  # training variants, for methods that train
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)  # type: ignore[valid-type]
    lora: LoraOverrides | None = None  # type: ignore[valid-type]
    search: SearchConfig | None = None  # search these settings on validation before each of its runs
    enabled: bool = True


class PipelineConfig(Strict):
    output_dir: str = "results"
    seed: int = 42  # model init, dropout and data order
    seeds: list[int] | None = Field(default=None, min_length=1)  # repeat every run per seed (ids get _s<seed>)
    reference_run: str | None = None  # a run id (without _s<seed>) every run is also tested against (McNemar)
    trust_remote_code: bool = False  # never run code shipped with a model unless asked
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    models: list[str] = Field(min_length=1)  # local folders or hub ids; numbered from 1 in run ids
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    variants: dict[str, VariantConfig] = Field(default_factory=lambda: {"v1": VariantConfig()})
    lora: LoraConfig = Field(default_factory=LoraConfig)
    tasks: dict[str, TaskConfig] = Field(min_length=1)

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
                elif self.variants[variant].lora is not None and method["settings"] != "lora":
                    problems.append(f"{where}.variants: variant {variant!r} sets lora, which method {task.method!r}"
                                    f" does not take; give this task variants without lora")
            for number in task.models or []:
                if number > len(self.models):
                    problems.append(f"{where}.models: there is no model {number}; `models` lists {len(self.models)}")
            if task.lora is not None and method["settings"] != "lora":
                problems.append(f"{where}.lora: method {task.method!r} takes no LoRA settings; remove lora")
            problems += self._search_problems(name)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def task_training(self, task: str, variant: str) -> TrainingConfig:
        """Defaults, then the variant, then the task's own overrides."""
        merged = self.training.model_dump()
        merged.update(self.variants[variant].model_dump(exclude_none=True, exclude={"lora", "search"}))
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


# ----------------------------------------------------------------------------------------------
# Search spaces


def searchable_blocks(method: str) -> dict[str, type[BaseModel]]:
    """The settings blocks a run of `method` has, by the name its keys start with: `training`, and the
    block METHODS names for it (`lora`, ...), typed as the top-level block of that name."""
    blocks = {"training": TrainingConfig}
    settings = METHODS[method]["settings"]
    if settings:
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
                choices = [convert(value, f"[{i}]") for i, value in enumerate(spec)]
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
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
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
