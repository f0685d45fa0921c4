"""How each training method wraps a model: full fine-tuning leaves it as is, PEFT methods add adapters.

LoRA targets are written generically (query, key, value) and mapped per architecture here.
Adding an architecture is one entry in ARCHITECTURES; adding a PEFT method is one branch in
`peft_config` plus its settings block in core/config.py.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch


class AdapterError(Exception):
    """A method that cannot be applied to this model. The message lists what would work."""


@dataclass(frozen=True)
class Architecture:
    attention: dict[str, str]  # generic name -> the architecture's Linear module name
    head: tuple[str, ...]  # modules trained and saved alongside an adapter (the new classifier)


ARCHITECTURES = {
    "bert": Architecture({"query": "query", "key": "key", "value": "value"}, ("classifier",)),
    "roberta": Architecture({"query": "query", "key": "key", "value": "value"}, ("classifier",)),
    # DistilBERT's head is two layers: pre_classifier (hidden x hidden) then classifier; both are new.
    "distilbert": Architecture({"query": "q_lin", "key": "k_lin", "value": "v_lin"}, ("pre_classifier", "classifier")),
}


def apply_method(model, method: str, settings=None):
    """The model ready for training: itself for full fine-tuning, a PeftModel otherwise."""
    if method == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model
    from peft import get_peft_model

    with warnings.catch_warnings():  # peft 0.21 calls a transformers method deprecated in 5.x; harmless
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, peft_config(model, method, settings))


def peft_config(model, method: str, settings):
    import peft

    architecture = _architecture(model)
    if method == "lora":
        return peft.LoraConfig(
            task_type=peft.TaskType.SEQ_CLS,
            r=settings.r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=lora_targets(model, settings.target_modules),
            use_rslora=settings.use_rslora,
            use_dora=settings.use_dora,
            modules_to_save=list(architecture.head),
        )
    raise AdapterError(f"method {method!r} has no adapter; known: full, lora")


def lora_targets(model, names: list[str]) -> list[str]:
    """Generic names mapped to this architecture's module names; a model's own Linear names pass through."""
    architecture = _architecture(model)
    linear_names = _linear_leaf_names(model)
    targets, unknown = [], []
    for name in names:
        if name in architecture.attention:
            targets.append(architecture.attention[name])
        elif name in linear_names:
            targets.append(name)
        else:
            unknown.append(name)
    if unknown:
        raise AdapterError(f"LoRA target {', '.join(map(repr, unknown))} is unknown for model type"
                           f" {model.config.model_type!r}; use {', '.join(architecture.attention)}"
                           f" or one of its Linear modules: {', '.join(sorted(linear_names))}")
    return targets


def _architecture(model) -> Architecture:
    model_type = model.config.model_type
    if model_type not in ARCHITECTURES:
        raise AdapterError(f"model type {model_type!r} has no LoRA target mapping; add it to ARCHITECTURES in"
                           f" tasks/adapters.py. Its Linear modules: {', '.join(sorted(_linear_leaf_names(model)))}")
    return ARCHITECTURES[model_type]


def _linear_leaf_names(model) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def check_runs(runs) -> None:
    """Before any run starts: every PEFT run's targets exist in its architecture (no weights loaded)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from core.models import ModelError, hub_options

    checked = set()
    for run in runs:
        if run.lora is None or (run.model, tuple(run.lora.target_modules)) in checked:
            continue
        checked.add((run.model, tuple(run.lora.target_modules)))
        try:
            model_config = AutoConfig.from_pretrained(run.model, num_labels=2, **hub_options(run.model))
        except OSError as error:
            raise ModelError(f"model {run.model}: config cannot be read ({str(error).splitlines()[0]})") from None
        with torch.device("meta"):
            skeleton = AutoModelForSequenceClassification.from_config(model_config)
        try:
            lora_targets(skeleton, run.lora.target_modules)
        except AdapterError as error:
            raise ModelError(f"tasks.{run.task}.lora.target_modules: {error}") from None


def merged(model):
    """LoRA (or any PEFT adapter that can) folded into the base weights: the plain model's speed at inference."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
