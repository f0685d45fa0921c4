"""Training hooks for the PEFT methods that need more than a config: one class each, at most 30 lines.

A hook applies to runs whose adapter block it recognises (`applies`), may take keys of its own in that
block besides PEFT's fields (`keys`), and may fill settings from the plan (`prepare`), supply the
optimizer, add a Trainer callback, and act before training and after saving. tasks/finetune.py calls
them; tasks/adapters.py lists their keys as valid. Adding a hook: a subclass of Hook, added to HOOKS.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
from transformers import TrainerCallback
from core.config import optimizer_steps


class Hook:
    peft_types: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # adapter-block keys the hook reads (not PEFT fields)

    def applies(self, adapter: dict) -> bool:
        return adapter.get("peft_type") in self.peft_types

    def prepare(self, settings: dict, total_steps: int | None) -> dict:  # before PEFT's config is built
        return settings

    def optimizer(self, model, adapter: dict, training):  # None: the Trainer's own AdamW
        return None

    def callback(self):
        return None

    def before_training(self, model, run_dir: Path) -> None:
        pass

    def after_save(self, model, model_dir: Path, run_dir: Path) -> None:
        pass


class LoraPlus(Hook):
    """LoRA+: B matrices learn `loraplus_lr_ratio` times faster than A (peft.optimizers)."""
    peft_types, keys = ("LORA",), ("loraplus_lr_ratio",)

    def applies(self, adapter):
        return super().applies(adapter) and adapter.get("loraplus_lr_ratio") is not None

    def prepare(self, settings, total_steps):
        return {key: value for key, value in settings.items() if key != "loraplus_lr_ratio"}

    def optimizer(self, model, adapter, training):
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(model, torch.optim.AdamW, lr=training.learning_rate,
                                         loraplus_lr_ratio=adapter["loraplus_lr_ratio"],
                                         weight_decay=training.weight_decay)


class AdaLora(Hook):
    """AdaLoRA: its rank budget follows the schedule `total_step` long, updated after every optimizer step."""
    peft_types = ("ADALORA",)

    def prepare(self, settings, total_steps):
        return settings if settings.get("total_step") is not None else {**settings, "total_step": total_steps}

    def callback(self):
        return UpdateAndAllocate()


class UpdateAndAllocate(TrainerCallback):
    def on_optimizer_step(self, args, state, control, model=None, **kwargs):  # after step(), before zero_grad()
        model.base_model.update_and_allocate(state.global_step)


class ConvertedInit(Hook):
    """PiSSA / OLoRA change the base weights at init: the adapter is saved converted to a plain LoRA
    adapter over the original weights (PEFT's path_initial_model_for_weight_conversion)."""
    peft_types = ("LORA",)

    def applies(self, adapter):
        return super().applies(adapter) and str(adapter.get("init_lora_weights")).lower().startswith(("pissa", "olora"))

    def before_training(self, model, run_dir):
        config = model.peft_config["default"]
        init, config.init_lora_weights = config.init_lora_weights, True  # as PEFT's docs: reloads as is
        model.save_pretrained(str(run_dir / "initial_adapter"))
        config.init_lora_weights = init

    def after_save(self, model, model_dir, run_dir):
        from safetensors.torch import load_file, save_file

        weights = model_dir / "adapter_model.safetensors"
        trained = load_file(weights)  # as the Trainer saved it: adapter and head
        with warnings.catch_warnings():  # PEFT warns that PiSSA's adapter shares the model: here only for converting
            warnings.simplefilter("ignore", UserWarning)
            model.save_pretrained(str(model_dir), path_initial_model_for_weight_conversion=str(run_dir / "initial_adapter"))
        converted = load_file(weights)  # PEFT 0.21 keeps only the LoRA tensors: the head is put back
        save_file({**{k: v for k, v in trained.items() if "lora_" not in k}, **converted}, weights, {"format": "pt"})
        shutil.rmtree(run_dir / "initial_adapter", ignore_errors=True)


HOOKS = [LoraPlus(), AdaLora(), ConvertedInit()]


def active(adapter: dict | None) -> list[Hook]:
    return [hook for hook in HOOKS if adapter and hook.applies(adapter)]


def keys_for(peft_type: str) -> list[str]:
    return [key for hook in HOOKS if peft_type in hook.peft_types for key in hook.keys]


def prepare(settings: dict, peft_type: str, total_steps: int | None) -> dict:
    for hook in HOOKS:
        if peft_type in hook.peft_types:
            settings = hook.prepare(settings, total_steps)
    return settings


def total_steps(train_rows: int, training) -> int:
    """Optimizer steps of a run, as the Trainer counts them (one device); `max_steps` where the budget sets it."""
    return optimizer_steps(train_rows, training.batch_size, training.gradient_accumulation_steps, training.epochs,
                           training.max_steps)
