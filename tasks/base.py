"""What every task receives and returns; the runner turns a TaskResult into the run's files."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dataset import Splits
from core.config import PipelineConfig
from core.precision import Choice


@dataclass
class RunContext:
    config: PipelineConfig
    splits: Splits
    run_dir: Path  # results/<RUN_ID>/, created by the runner
    device: torch.device
    show_progress: bool = True
    precision: Choice | None = None  # the run's resolved precision (pipeline/precision.py); None: fp32

    @property
    def bf16(self) -> bool:
        return self.precision is not None and self.precision.bf16


@dataclass
class TaskResult:
    probabilities: np.ndarray  # [test rows, classes], row i for splits.test row i
    test_seconds: float
    precision: str  # bf16 or fp32, as run
    trainable_parameters: int | None = None
    total_parameters: int | None = None
    train_seconds: float | None = None
    epochs: list[dict] = field(default_factory=list)  # per-validation rows (evaluation/epoch_logs.py)
    steps: list[dict] = field(default_factory=list)  # per logged train loss (evaluation/epoch_logs.py)
    extra: dict = field(default_factory=dict)  # more metrics.json fields (class weights, early stopping)
    # A resumed run: {"checkpoint": name, "step": its global step, "steps_trained": optimizer steps run after it}
    resumed_from: dict | None = None
