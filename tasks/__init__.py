"""Tasks: what a run does, by method. Each module has `run(run, context) -> TaskResult`.

Every method that trains (full, head, bitfit, lora, peft) shares one module (finetune); they differ
only in how tasks/adapters.py wraps the model and, for a few PEFT methods, a hook in tasks/hooks.py. The
methods for few labels (embed_lr, zero_shot, setfit) share tasks/embeddings.py: pooled embeddings, a linear
head. Modules are named in core.config.METHODS and load lazily, so that `--dry-run` and config errors stay instant.
"""
from __future__ import annotations

import importlib

from core.config import METHODS


def runner_for(method: str):
    return importlib.import_module(METHODS[method]["module"]).run
