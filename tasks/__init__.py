"""Tasks: what a run does, by method. Each module has `run(run, context) -> TaskResult`.

Full fine-tuning and every PEFT method share one module (finetune); they differ only in
tasks/adapters.py. Modules are named in core.config.METHODS and load lazily, so that
`--dry-run` and config errors stay instant.
"""
from __future__ import annotations

import importlib

from core.config import METHODS


def runner_for(method: str):
    return importlib.import_module(METHODS[method]["module"]).run
