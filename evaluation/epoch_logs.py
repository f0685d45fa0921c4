"""Per-validation (epochs.csv) and per-logging-step (steps.csv) rows parsed from the Trainer's checkpoints (trainer_state.json's log_history)."""
from __future__ import annotations

from pathlib import Path

from core.checkpoints import latest_checkpoint, read_state

EPOCH_COLUMNS = ["epoch", "step", "train_loss", "validation_loss", "validation_accuracy", "validation_f1_macro",
                 "learning_rate", "elapsed_seconds"]


def epoch_rows(checkpoints_dir: Path) -> list[dict]:
    """One row per evaluated epoch, from the newest complete checkpoint."""
    checkpoint = latest_checkpoint(checkpoints_dir)
    if checkpoint is None:
        return []
    return rows_from_log_history(read_state(checkpoint)["log_history"])


STEP_COLUMNS = ["epoch", "step", "train_loss", "learning_rate", "grad_norm"]


def step_rows(checkpoints_dir: Path) -> list[dict]:
    """One row per logged train loss (every `training.logging_steps` steps), for steps.csv."""
    checkpoint = latest_checkpoint(checkpoints_dir)
    if checkpoint is None:
        return []
    return [{"epoch": round(float(entry.get("epoch", 0.0)), 4), "step": entry["step"], "train_loss": entry["loss"],
             "learning_rate": entry.get("learning_rate"), "grad_norm": entry.get("grad_norm")}
            for entry in read_state(checkpoint)["log_history"] if "loss" in entry and "step" in entry]


def rows_from_log_history(log_history: list[dict]) -> list[dict]:
    by_step: dict[int, dict] = {}
    for entry in log_history:
        if "step" not in entry:
            continue
        row = by_step.setdefault(entry["step"], {"step": entry["step"]})
        row["epoch"] = round(float(entry.get("epoch", row.get("epoch", 0.0))), 4)
        for key, value in entry.items():
            if key == "loss":
                row["train_loss"] = value
            elif key == "learning_rate":
                row["learning_rate"] = value
            elif key == "elapsed_seconds":
                row["elapsed_seconds"] = value
            elif key.startswith("eval_") and not key.endswith(("_runtime", "_per_second")) and key != "eval_epoch":
                row[key[len("eval_"):]] = value
    rows = [row for _, row in sorted(by_step.items()) if "validation_accuracy" in row]
    return [{**{column: row.get(column) for column in EPOCH_COLUMNS},
             **{k: v for k, v in row.items() if k not in EPOCH_COLUMNS}} for row in rows]


def best_row(rows: list[dict]) -> dict | None:
    """The first validation with the highest accuracy (the Trainer keeps the first of ties)."""
    return max(rows, key=lambda row: row["validation_accuracy"], default=None)
