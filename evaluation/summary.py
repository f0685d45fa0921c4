"""Summaries rebuilt from the per-run files (never from memory): results/summary.csv and epochs.csv."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.files import write_csv_atomic

SUMMARY_COLUMNS = ["run_id", "task", "method", "model", "variant", "status", "test_accuracy", "f1_macro",
                   "trainable_percent", "train_seconds", "seconds_per_epoch", "best_epoch", "validation_accuracy",
                   "error"]


def read_records(output_dir: Path) -> list[dict]:
    """Every run folder's metrics.json that parses, in run-id order."""
    records = []
    for path in sorted(Path(output_dir).glob("*/metrics.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("status") in ("complete", "failed"):
            records.append(record)
    return records


def summary_row(record: dict) -> dict:
    metrics = record.get("metrics") or {}
    timing = record.get("timing") or {}
    best = record.get("best_epoch") or {}
    model = record.get("model")
    return {
        "run_id": record["run_id"], "task": record.get("task"), "method": record.get("method"),
        "model": Path(model).name if model else None, "variant": record.get("variant"),
        "status": record["status"],
        "test_accuracy": metrics.get("accuracy"), "f1_macro": metrics.get("f1_macro"),
        "trainable_percent": (record.get("parameters") or {}).get("trainable_percent"),
        "train_seconds": timing.get("train_seconds"), "seconds_per_epoch": timing.get("seconds_per_epoch"),
        "best_epoch": best.get("epoch"), "validation_accuracy": best.get("validation_accuracy"),
        "error": record.get("error"),
    }


def rebuild_summaries(output_dir: Path) -> pd.DataFrame:
    output_dir = Path(output_dir)
    records = read_records(output_dir)
    summary = pd.DataFrame([summary_row(r) for r in records], columns=SUMMARY_COLUMNS)
    write_csv_atomic(output_dir / "summary.csv", summary)
    epochs = []
    for record in records:
        path = output_dir / record["run_id"] / "epochs.csv"
        if record["status"] == "complete" and path.is_file() and path.stat().st_size > 1:
            frame = pd.read_csv(path)
            if not frame.empty:
                frame.insert(0, "run_id", record["run_id"])
                epochs.append(frame)
    all_epochs = pd.concat(epochs, ignore_index=True) if epochs else pd.DataFrame(columns=["run_id"])
    write_csv_atomic(output_dir / "epochs.csv", all_epochs)
    return summary


def format_table(summary: pd.DataFrame) -> str:
    shown = summary.drop(columns=["error"]).copy()
    for column in ("test_accuracy", "f1_macro", "validation_accuracy"):
        shown[column] = shown[column].map(lambda v: f"{v:.4f}" if pd.notna(v) else "-")
    shown["trainable_percent"] = shown["trainable_percent"].map(lambda v: f"{v:.3g}" if pd.notna(v) else "-")
    for column in ("train_seconds", "seconds_per_epoch"):
        shown[column] = shown[column].map(lambda v: f"{v:.1f}" if pd.notna(v) else "-")
    shown = shown.astype(object).fillna("-")
    return shown.to_string(index=False)
