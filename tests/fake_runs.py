"""Run folders written directly (metrics.json, predictions.csv, epochs.csv), in the runner's layout, with
predictions constructed to a known accuracy: statistics, summaries, plots and the report are tested on
them without training anything."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.metrics import classification_metrics

CLASSES = ["World", "Sports", "Business", "Sci/Tech"]


def labels(count: int) -> np.ndarray:
    return np.arange(count) % len(CLASSES)


def predictions_with_errors(true: np.ndarray, wrong: list[int] | np.ndarray) -> np.ndarray:
    """The true labels, except at the `wrong` positions (shifted to the next class)."""
    predicted = true.copy()
    predicted[list(wrong)] = (predicted[list(wrong)] + 1) % len(CLASSES)
    return predicted


def write_run(output_dir: Path, run_id: str, true: np.ndarray, predicted: np.ndarray, *, method: str = "full",
              seed: int = 42, base_run_id: str | None = None, epochs: list[dict] | None = None,
              trainable: int | None = 1000, total: int | None = 10_000, seconds_per_epoch: float | None = 2.0,
              status: str = "complete", precision: str | None = "fp32") -> Path:
    folder = Path(output_dir) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "run_id": run_id, "base_run_id": base_run_id or run_id, "task": run_id[0], "method": method,
        "model": "/models/tiny-bert" if method != "tfidf_nb" else None, "variant": "v1", "status": status,
        "error": None if status == "complete" else "RuntimeError: boom",
        "config": {"run_id": run_id, "seed": seed},
        "data": {"source": "/data/ag_news", "sizes": {"train": 100, "validation": 20, "test": len(true)},
                 "class_names": CLASSES, "max_length": 48},
    }
    if status == "complete":
        record.update({
            "metrics": classification_metrics(true, predicted, CLASSES),
            "timing": {"seconds_per_epoch": seconds_per_epoch},
            "parameters": {"trainable": trainable, "total": total,
                           "trainable_percent": 100 * trainable / total if trainable is not None else None},
            "best_epoch": max(epochs, key=lambda r: r["validation_accuracy"]) if epochs else None,
            "precision": precision,
        })
        probabilities = np.full((len(true), len(CLASSES)), 0.1 / (len(CLASSES) - 1))
        probabilities[np.arange(len(true)), predicted] = 0.9
        frame = pd.DataFrame({"index": np.arange(len(true)), "text": [f"text {i}" for i in range(len(true))],
                              "label": true, "predicted": predicted})
        for i, name in enumerate(CLASSES):
            frame[f"prob_{name}"] = probabilities[:, i]
        frame.to_csv(folder / "predictions.csv", index=False)
        pd.DataFrame(epochs or [], columns=["epoch", "step", "train_loss", "validation_loss", "validation_accuracy",
                                            "validation_f1_macro", "learning_rate", "elapsed_seconds"]
                     ).to_csv(folder / "epochs.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps(record, indent=2))
    return folder


def epoch_rows(accuracies: list[float]) -> list[dict]:
    """epochs.csv rows ending at the given validation accuracies, with falling losses."""
    return [{"epoch": float(i + 1), "step": 10 * (i + 1), "train_loss": 1.2 / (i + 1),
             "validation_loss": 1.0 / (i + 1.2), "validation_accuracy": a, "validation_f1_macro": a - 0.01,
             "learning_rate": 1e-4, "elapsed_seconds": 2.0 * (i + 1)}
            for i, a in enumerate(accuracies)]
