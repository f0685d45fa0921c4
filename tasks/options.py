"""Training options beyond the plain Trainer: class weights in the loss, early stopping, the validation
schedule and experiment tracking (TensorBoard, MLflow). `check_runs` refuses bad settings before any run starts."""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from core import distributed
from core.config import ConfigError, steps_per_epoch

TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # report_to name: the package it needs


def class_weights(setting, labels, class_names) -> list[float] | None:
    """None for `none`; `auto`: inverse class frequency on train, n / (classes x n_class); or the list as given."""
    if setting == "none":
        return None
    if setting == "auto":
        counts = np.bincount(np.asarray(labels), minlength=len(class_names))
        if (counts == 0).any():
            missing = class_names[int(np.flatnonzero(counts == 0)[0])]
            raise ConfigError(f"training.class_weights: auto, but class {missing!r} has no training rows; give the"
                              f" weights as a list or add rows of that class")
        return compute_class_weight("balanced", classes=np.arange(len(class_names)), y=np.asarray(labels)).tolist()
    if len(setting) != len(class_names):
        raise ConfigError(f"training.class_weights: {len(setting)} weights for {len(class_names)} classes"
                          f" ({', '.join(class_names)}); give one weight per class, in that order, or auto")
    return [float(w) for w in setting]


def check_runs(runs, splits) -> None:
    """Every training run's class weights fit the data's classes, and its trackers are installed."""
    for run in runs:
        if run.training is None:
            continue
        class_weights(run.training.class_weights, splits.train["label"], splits.class_names)
        for tracker in tracking(run.training):
            if importlib.util.find_spec(TRACKERS[tracker]) is None:
                raise ConfigError(f"training.report_to: {tracker} is not installed; pip install {TRACKERS[tracker]},"
                                  f" or remove it from report_to")


def tracking(training) -> list[str]:
    return [] if training.report_to == "none" else list(training.report_to)


def weighted_loss(weights: list[float]):
    """The Trainer's compute_loss_func: cross-entropy with a weight per class.

    In training the Trainer passes the number of texts in the whole (accumulated) batch and expects the loss
    normalised by it: the weighted sum over that count (auto weights average 1 over the training set). In
    validation it passes none: the weighted mean.
    """
    import torch

    weight = torch.tensor(weights, dtype=torch.float32)

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"].float()
        if num_items_in_batch is None:
            return torch.nn.functional.cross_entropy(logits, labels, weight=weight.to(logits.device))
        total = torch.nn.functional.cross_entropy(logits, labels, weight=weight.to(logits.device), reduction="sum")
        return total / num_items_in_batch

    return loss


def schedule(training, train_rows: int) -> dict:
    """TrainingArguments for when to validate, checkpoint and log the train loss.

    One validation per epoch is the Trainer's `epoch` strategy; k per epoch validates every
    ceil(optimizer steps per epoch / k) steps (and at the last step). The train loss is logged every
    `logging_steps` steps, else at each validation.
    """
    if training.evaluations_per_epoch == 1:
        arguments = dict(eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch")
        every = None
    else:
        per_epoch = steps_per_epoch(train_rows, training.batch_size, training.gradient_accumulation_steps,
                                    distributed.world_size())
        every = max(1, math.ceil(per_epoch / training.evaluations_per_epoch))
        arguments = dict(eval_strategy="steps", eval_steps=every, save_strategy="steps", save_steps=every,
                         logging_strategy="steps", logging_steps=every)
    if training.logging_steps is not None:
        arguments.update(logging_strategy="steps", logging_steps=training.logging_steps)
    return arguments


def callbacks(training, run_dir: Path) -> list:
    """Early stopping (patience in epochs, counted as that many validations per epoch) and TensorBoard
    (event files under <run>/tensorboard/)."""
    from transformers import EarlyStoppingCallback
    from transformers.integrations import TensorBoardCallback

    found = []
    if training.early_stopping_patience is not None:
        found.append(EarlyStoppingCallback(training.early_stopping_patience * training.evaluations_per_epoch))
    if "tensorboard" in tracking(training):
        board = TensorBoardCallback()
        board.logging_dir = str(run_dir / "tensorboard")  # not under checkpoints/, and kept after cleanup
        found.append(board)
    return found


def trainer_report_to(training, output_dir: Path) -> list[str] | str:
    """What TrainingArguments.report_to gets: TensorBoard is added as a callback (its folder is ours); MLflow
    writes to a file store in output_dir/mlruns unless MLFLOW_TRACKING_URI says otherwise."""
    others = [t for t in tracking(training) if t != "tensorboard"]
    if "mlflow" in others:  # a file store needs no server or database; MLflow 3 asks for an explicit opt-in
        os.environ.setdefault("MLFLOW_TRACKING_URI", (Path(output_dir) / "mlruns").resolve().as_uri())
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return others or "none"


def log_test_metrics(trainer, metrics: dict) -> None:
    """The test metrics, logged once training has ended, to the same trackers; TensorBoard's writer closed."""
    from transformers.integrations import MLflowCallback, TensorBoardCallback

    handlers = trainer.callback_handler.callbacks
    board = [c for c in handlers if isinstance(c, TensorBoardCallback)]
    flow = [c for c in handlers if isinstance(c, MLflowCallback)]
    if not board and not flow:
        return
    if flow:  # the callback ended its run at train end: reopen it so the test metrics join the training ones
        import mlflow

        last = mlflow.last_active_run()
        if last is not None:
            mlflow.start_run(run_id=last.info.run_id)
    trainer.log({f"test_{key}": value for key, value in metrics.items()})
    if flow and mlflow.active_run() is not None:
        mlflow.end_run()
    for callback in board:
        if callback.tb_writer is not None:
            callback.tb_writer.close()
            callback.tb_writer = None


def stopped_early(trainer) -> float | None:
    """The epoch at which early stopping ended training, or None when it ran all its steps."""
    state = trainer.state
    return round(float(state.epoch), 4) if state.global_step < state.max_steps else None
