"""How each training method wraps a model, and every PEFT method through one path.

A method is a config entry: its row in core/config.py's METHODS and, for the methods that wrap the model
themselves, a function in WRAPPERS here (full: everything trains; head: a linear probe; bitfit: biases
and head). Every PEFT type is `method: peft` with an `adapter:` block of PEFT's own config fields plus
`peft_type`; PEFT's own config class builds it (task SEQ_CLS), so a type PEFT supports needs no code
here. `method: lora` with a `lora:` block is the short form of peft + LORA. Module names in the block
may be generic (query, key, value, attention_output, intermediate / feed_forward, output, layer_norm),
mapped per architecture in ARCHITECTURES, or the model's own; the new head is always trained and saved
(modules_to_save). Methods that need a training hook (LoRA+, AdaLoRA, PiSSA/OLoRA) get it from
tasks/hooks.py. Adding an architecture is one entry in ARCHITECTURES (only for the generic names).
"""
from __future__ import annotations

import dataclasses
import re
import typing
import warnings
from dataclasses import dataclass

import torch

from core.config import clip, did_you_mean, shown
from tasks import hooks


class AdapterError(Exception):
    """A method that cannot be applied to this model. The message lists what would work."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key  # the adapter key at fault, if one is

    def where(self, block: str) -> str:
        """`adapter.target_modules: <message>`, for a config block named `block`."""
        return f"{block}{'.' + clip(self.key) if self.key else ''}: {self}"


@dataclass(frozen=True)
class Architecture:
    modules: dict[str, str]  # generic name -> regex matching the end of the module's full name


_BERT = {"query": r"attention\.self\.query", "key": r"attention\.self\.key", "value": r"attention\.self\.value",
         "attention_output": r"attention\.output\.dense", "intermediate": r"intermediate\.dense",
         "feed_forward": r"intermediate\.dense", "output": r"layer\.\d+\.output\.dense",  # not attention's
         "layer_norm": r"LayerNorm"}
ARCHITECTURES = {
    "bert": Architecture(_BERT),
    "roberta": Architecture(_BERT),
    "distilbert": Architecture({"query": "q_lin", "key": "k_lin", "value": "v_lin", "attention_output": "out_lin",
                                "intermediate": r"ffn\.lin1", "feed_forward": r"ffn\.lin1", "output": r"ffn\.lin2",
                                "layer_norm": r"(LayerNorm|sa_layer_norm|output_layer_norm)"}),
}
# Fields of PEFT's config classes that hold module names; the pipeline maps generic names in them.
MODULE_FIELDS = ("target_modules", "feedforward_modules", "modules_to_save", "exclude_modules")
# Fields the pipeline sets itself, or PEFT does.
RESERVED = {"task_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision", "inference_mode"}
# Prompt-learning sizes PEFT reads from config.json under BERT's names (DistilBERT's are dim, n_heads, n_layers).
PROMPT_SIZES = {"token_dim": "hidden_size", "num_attention_heads": "num_attention_heads",
                "num_layers": "num_hidden_layers"}


# ----------------------------------------------------------------------------------------------
# Wrapping a model, by method


def train_all(model):
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def train_head(model):
    """A linear probe: the encoder is frozen; only the new head (pre_classifier + classifier) trains."""
    head = set(head_modules(model))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.split(".")[0] in head)
    return model


def train_biases(model):
    """BitFit: every bias term of the encoder, and the head, train."""
    train_head(model)
    for name, parameter in model.named_parameters():
        if name.endswith("bias"):
            parameter.requires_grad_(True)
    return model


WRAPPERS = {"full": train_all, "head": train_head, "bitfit": train_biases}


def apply_method(model, method: str, settings=None, total_steps: int | None = None):
    """The model ready for training: itself with the right parameters trainable, or a PeftModel.

    settings: the run's LoraConfig (method lora) or adapter dict (method peft); total_steps: the run's
    optimizer steps, for methods whose schedule needs them (AdaLoRA)."""
    if method in WRAPPERS:
        return WRAPPERS[method](model)
    from peft import get_peft_model

    with warnings.catch_warnings():  # peft 0.21 calls a transformers method deprecated in 5.x; harmless
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, peft_config(model, adapter_settings(method, settings), total_steps))


def adapter_settings(method: str, settings) -> dict | None:
    """The adapter block of a PEFT run (`lora` is peft + LORA), None for methods without one."""
    if method == "lora":
        return {"peft_type": "LORA", **settings.model_dump()}
    return dict(settings) if method == "peft" else None


def run_settings(run):
    """What apply_method takes for this run."""
    return run.lora if run.method == "lora" else run.adapter


def head_modules(model) -> list[str]:
    """The classifier's modules: the model's top-level children with weights outside the encoder."""
    return [name for name, child in model.named_children()
            if name != model.base_model_prefix and any(True for _ in child.parameters())]


# ----------------------------------------------------------------------------------------------
# The adapter block: checked against PEFT's config class, then built for a model


def config_classes() -> dict:
    from peft import PEFT_TYPE_TO_CONFIG_MAPPING

    return {str(getattr(kind, "value", kind)): cls for kind, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()}


def adapter_fields(peft_type: str) -> list[str]:
    """The keys an adapter block of this type takes: peft_type, the config class's fields, its hooks' keys."""
    cls = config_classes()[peft_type]
    fields = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in RESERVED | {"peft_type"}]
    return ["peft_type", *fields, *hooks.keys_for(peft_type)]


def check_adapter(adapter: dict) -> dict:
    """The block as PEFT will take it (peft_type upper-case, `5e-5` a number), checked without a model.
    AdapterError names the key: a missing or unknown peft_type, an unknown key, or a value PEFT rejects."""
    classes = config_classes()
    if adapter.get("peft_type") is None:
        raise AdapterError(f"required; one of {', '.join(sorted(classes))}", "peft_type")
    peft_type = str(adapter["peft_type"]).upper()
    if peft_type not in classes:
        raise AdapterError(f"unknown PEFT type {shown(adapter['peft_type'])}{did_you_mean(peft_type, classes)};"
                           f" PEFT's types: {', '.join(sorted(classes))}", "peft_type")
    valid = adapter_fields(peft_type)
    for key in adapter:
        if key in RESERVED:
            raise AdapterError(f"{shown(key)} is set by the pipeline (task_type SEQ_CLS); remove it", key)
        if key not in valid:
            raise AdapterError(f"unknown key {shown(key)} for {peft_type}{did_you_mean(key, valid)}; valid fields of"
                               f" {classes[peft_type].__name__}: {', '.join(valid)}", key)
    settings = {key: _typed(classes[peft_type], key, value) for key, value in adapter.items()}
    settings["peft_type"] = peft_type
    try:
        _build(peft_type, settings, total_steps=10 ** 9)  # targets as written; the model is checked later
    except Exception as error:  # PEFT's own checks (ValueError mostly) on the values as written
        first = (str(error).strip() or type(error).__name__).splitlines()[0]
        raise AdapterError(f"PEFT rejects it: {clip(first, 300)}") from None
    return settings


def _typed(cls, key: str, value):
    """The value as the config class's annotation types it (`5e-5`, which YAML leaves a string, is a float)."""
    from pydantic import TypeAdapter, ValidationError

    hints = typing.get_type_hints(cls)
    if key not in hints:
        return value
    try:
        typed = TypeAdapter(hints[key]).validate_python(value)
        return list(typed) if isinstance(typed, (set, frozenset, tuple)) else typed  # recorded as JSON
    except ValidationError as error:
        if "Literal" in str(hints[key]) and isinstance(value, str):  # e.g. pissa_niter_16: PEFT checks those
            return value
        raise AdapterError(f"{shown(value)} is invalid: {error.errors()[0]['msg']}", key) from None


def peft_config(model, adapter: dict, total_steps: int | None = None):
    """PEFT's config object for this model: generic module names mapped, the head saved, sizes filled in."""
    peft_type, settings = adapter["peft_type"], dict(adapter)
    fields = {f.name for f in dataclasses.fields(config_classes()[peft_type])}
    for key in MODULE_FIELDS:
        if key in fields and settings.get(key) is not None:
            settings[key] = resolve_modules(model, settings[key], key)
    if settings.get("layers_to_transform") is not None:
        _check_layers(model, settings["layers_to_transform"])
        if isinstance(settings.get("target_modules"), list):  # PEFT applies the layers only to names it matches
            settings["target_modules"] = [name for name in settings["target_modules"]  # by their end, not to the
                                          if _in_layers(name, settings)]  # full names generic ones map to
    if "modules_to_save" in fields:
        settings["modules_to_save"] = list(dict.fromkeys([*(settings.get("modules_to_save") or []),
                                                          *head_modules(model)]))
    for key, attribute in PROMPT_SIZES.items():
        if key in fields and settings.get(key) is None:
            settings[key] = getattr(model.config, attribute)
    return _build(peft_type, settings, total_steps)


def _build(peft_type: str, settings: dict, total_steps: int | None):
    import peft

    settings = hooks.prepare({key: value for key, value in settings.items() if key != "peft_type"},
                             peft_type, total_steps)
    return config_classes()[peft_type](task_type=peft.TaskType.SEQ_CLS, **settings)


def resolve_modules(model, names, key: str = "target_modules"):
    """Generic names mapped to this architecture's full module names; the model's own names (matched as
    PEFT matches them: the whole name or its end) and PEFT's `all-linear` pass through."""
    if names == "all-linear" or names == ["all-linear"]:
        return "all-linear"
    full_names = [name for name, _ in model.named_modules() if name]
    if isinstance(names, str):  # PEFT reads a string as a regex over full module names
        if not any(re.fullmatch(names, name) for name in full_names):
            raise AdapterError(f"the pattern {shown(names)} matches no module of model type"
                               f" {model.config.model_type!r}", key)
        return names
    generic = ARCHITECTURES.get(model.config.model_type, Architecture({})).modules
    resolved, unknown = [], []
    for name in map(str, names):
        if name in generic:
            pattern = re.compile(rf"(^|.*\.){generic[name]}")
            resolved += [full for full in full_names if pattern.fullmatch(full)]
        elif any(full == name or full.endswith("." + name) for full in full_names):
            resolved.append(name)
        else:
            unknown.append(name)
    if unknown:
        mapped = (f"generic names {', '.join(generic)}, " if generic else
                  f"(no generic names for it: add it to ARCHITECTURES in tasks/adapters.py) ")
        raise AdapterError(f"{', '.join(map(repr, unknown))} is not a module of model type"
                           f" {model.config.model_type!r}; use {mapped}all-linear, or its own modules:"
                           f" {', '.join(sorted(_leaf_names(model)))}", key)
    return list(dict.fromkeys(resolved))


def _check_layers(model, layers) -> None:
    count = model.config.num_hidden_layers
    bad = [layer for layer in (layers if isinstance(layers, list) else [layers]) if not 0 <= int(layer) < count]
    if bad:
        raise AdapterError(f"layer {bad[0]} does not exist; model type {model.config.model_type!r} here has"
                           f" layers 0-{count - 1}", "layers_to_transform")


def _in_layers(name: str, settings: dict) -> bool:
    """Whether PEFT, matching `name` by its end, finds it in the adapter's layers_to_transform."""
    from types import SimpleNamespace

    from peft.tuners.tuners_utils import check_target_module_exists

    probe = SimpleNamespace(target_modules=[name.split(".", 1)[-1]], layers_to_transform=settings["layers_to_transform"],
                            layers_pattern=settings.get("layers_pattern"))
    return bool(check_target_module_exists(probe, name))


def _leaf_names(model) -> set[str]:
    kinds = (torch.nn.Linear, torch.nn.LayerNorm)
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, kinds)}


# ----------------------------------------------------------------------------------------------
# Before any run: every run's method applied to its architecture on the meta device (no weights)


def check_runs(runs, train_rows: int | None = None) -> None:
    """Every PEFT run's block applied to a meta-device skeleton of its model, and one forward pass through
    it: a module the architecture lacks, or anything PEFT refuses, is a ModelError naming the task's key."""
    import json

    from core.models import ModelError, meta_skeleton

    checked = set()
    for run in runs:
        adapter = adapter_settings(run.method, run_settings(run))
        total_steps = hooks.total_steps(train_rows, run.training) if train_rows and run.training else None
        identity = (run.model, json.dumps(adapter, sort_keys=True, default=str), total_steps)
        if adapter is None or identity in checked:
            continue
        checked.add(identity)
        block = "lora" if run.method == "lora" else "adapter"
        with torch.device("meta"):
            skeleton = meta_skeleton(run.model)
            size, model = sum(p.numel() for p in skeleton.parameters()), None
            try:
                model = apply_method(skeleton, run.method, run_settings(run), total_steps)
                model(input_ids=torch.zeros((1, 4), dtype=torch.long), attention_mask=torch.ones((1, 4)))
            except AdapterError as error:
                raise ModelError(f"tasks.{run.task}.{error.where(block)}") from None
            except (TypeError, ValueError) as error:
                raise ModelError(f"tasks.{run.task}.{block}: PEFT cannot apply it to {run.model}"
                                 f" ({clip(str(error).strip().splitlines()[0], 300)})") from None
            except Exception:  # an operation the meta device lacks (e.g. BOFT's .item()): the run will tell
                pass
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if model is not None else 0
        if trainable > size:  # e.g. lora.r in the billions: memory runs out only once the run starts
            raise ModelError(f"tasks.{run.task}.{block}: the adapter trains {trainable:,} parameters, more than the"
                             f" {size:,} of the whole model {run.model}; choose a smaller r (or size)")


# ----------------------------------------------------------------------------------------------
# After training


def can_merge(model) -> bool:
    """Adapters that fold into the base weights: all but prompt learning (prompt, prefix, P-tuning)."""
    from peft import PeftModel

    return isinstance(model, PeftModel) and not model.active_peft_config.is_prompt_learning


def merged(model):
    """Adapters folded into the base weights, the trained head in place: the plain model's speed at inference.
    Prompt-learning adapters cannot fold; they are returned as they are."""
    if not can_merge(model):
        return model
    from peft.utils.other import ModulesToSaveWrapper

    # PEFT 0.21 unloads a non-Linear saved module (RoBERTa's classification head) only for LoRA; put the
    # trained copies in place first, for every type.
    inner = model.base_model.model
    for name, module in list(inner.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent, _, child = name.rpartition(".")
            setattr(inner.get_submodule(parent), child, module.modules_to_save[module.active_adapters[0]])
    return model.merge_and_unload()
