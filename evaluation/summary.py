"""Summaries rebuilt from the per-run files (never from memory): results/summary.csv and epochs.csv.

summary.csv has one row per run. Beside each run's metrics it holds the statistics of
evaluation/statistics.py, recomputed from predictions.csv: 95% bootstrap intervals, McNemar's test
against the best run (and the reference run, when the config names one) and, per base run (the run id
without its _s<seed> suffix), the mean and standard deviation over its seeds.

Comparisons pair runs with the same seed: the best run is the most accurate run of that seed, and the
reference run of B1_v1_s43 is <reference_run>_s43. Without `seeds` every run has the same seed, so the
best run is simply the most accurate one.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.statistics import SIGNIFICANCE, bootstrap_intervals, mcnemar
from core.files import write_csv_atomic

SUMMARY_COLUMNS = [
    "run_id", "base_run", "seed", "task", "method", "model", "variant", "status",
    "test_accuracy", "test_accuracy_low", "test_accuracy_high", "f1_macro", "f1_macro_low", "f1_macro_high",
    "balanced_accuracy",
    "best_run", "p_vs_best", "tied_with_best", "reference_run", "p_vs_reference",
    "seeds", "test_accuracy_mean", "test_accuracy_std", "f1_macro_mean", "f1_macro_std",
    "trainable_parameters", "trainable_percent", "train_seconds", "seconds_per_epoch", "best_epoch",
    "validation_accuracy", "error",
]
# Per base run: averaged over its complete seeds (std is the sample standard deviation, empty for one seed).
SEED_MEAN_COLUMNS = ["test_accuracy", "f1_macro"]


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
    parameters = record.get("parameters") or {}
    return {
        "run_id": record["run_id"], "base_run": record.get("base_run_id") or record["run_id"],
        "seed": (record.get("config") or {}).get("seed"), "task": record.get("task"),
        "method": record.get("method"), "model": Path(model).name if model else None,
        "variant": record.get("variant"), "status": record["status"],
        "test_accuracy": metrics.get("accuracy"), "f1_macro": metrics.get("f1_macro"),
        "balanced_accuracy": metrics.get("balanced_accuracy"),
        "trainable_parameters": parameters.get("trainable"),
        "trainable_percent": parameters.get("trainable_percent"),
        "train_seconds": timing.get("train_seconds"), "seconds_per_epoch": timing.get("seconds_per_epoch"),
        "best_epoch": best.get("epoch"), "validation_accuracy": best.get("validation_accuracy"),
        "error": record.get("error"),
    }


def read_predictions(output_dir: Path, run_id: str) -> pd.DataFrame | None:
    path = Path(output_dir) / run_id / "predictions.csv"
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    return frame if {"index", "label", "predicted"} <= set(frame.columns) else None


def add_statistics(summary: pd.DataFrame, output_dir: Path, reference_run: str | None,
                   num_classes: dict[str, int]) -> pd.DataFrame:
    """Intervals per run; McNemar against the best run and the reference run of the same seed."""
    summary = summary.copy()
    complete = summary[summary["status"] == "complete"]
    predictions = {run_id: read_predictions(output_dir, run_id) for run_id in complete["run_id"]}
    predictions = {run_id: frame for run_id, frame in predictions.items() if frame is not None}
    for row in summary.index:
        run_id = summary.at[row, "run_id"]
        if run_id not in predictions:
            continue
        frame = predictions[run_id]
        classes = num_classes.get(run_id) or int(max(frame["label"].max(), frame["predicted"].max())) + 1
        intervals = bootstrap_intervals(frame["label"], frame["predicted"], classes)
        for metric, (low, high) in intervals.items():
            column = "test_accuracy" if metric == "accuracy" else metric
            summary.at[row, f"{column}_low"], summary.at[row, f"{column}_high"] = low, high
    scored = summary[summary["run_id"].isin(list(predictions))]
    for _, group in scored.groupby("seed", dropna=False, sort=False):
        best = group.loc[pd.to_numeric(group["test_accuracy"]).idxmax(), "run_id"]  # the first of equals
        reference = group.loc[group["base_run"] == reference_run, "run_id"].tolist() if reference_run else []
        for row in group.index:
            run = predictions[summary.at[row, "run_id"]]
            summary.at[row, "best_run"] = best
            summary.at[row, "p_vs_best"] = _paired_p_value(run, predictions[best])
            if not np.isnan(summary.at[row, "p_vs_best"]):
                summary.at[row, "tied_with_best"] = bool(summary.at[row, "p_vs_best"] >= SIGNIFICANCE)
            if reference:
                summary.at[row, "reference_run"] = reference[0]
                summary.at[row, "p_vs_reference"] = _paired_p_value(run, predictions[reference[0]])
    return summary


def add_seed_means(summary: pd.DataFrame) -> pd.DataFrame:
    """Per base run: how many seeds completed, and the mean and sample std of each metric over them."""
    summary = summary.copy()
    complete = summary[summary["status"] == "complete"]
    for base, group in complete.groupby("base_run", sort=False):
        rows = summary.index[summary["base_run"] == base]
        summary.loc[rows, "seeds"] = len(group)
        for metric in SEED_MEAN_COLUMNS:
            values = group[metric].astype(float)
            summary.loc[rows, f"{metric}_mean"] = values.mean()
            summary.loc[rows, f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
    return summary


def seed_means(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per base run with complete seeds: its means, and in how many seeds it tied with the best."""
    complete = summary[summary["status"] == "complete"]
    rows = []
    for base, group in complete.groupby("base_run", sort=False):
        first = group.iloc[0]
        tied = group["tied_with_best"].dropna()
        rows.append({
            "base_run": base, "task": first["task"], "method": first["method"], "model": first["model"],
            "variant": first["variant"], "seeds": len(group),
            **{f"{m}_{s}": first[f"{m}_{s}"] for m in SEED_MEAN_COLUMNS for s in ("mean", "std")},
            "seconds_per_epoch": pd.to_numeric(group["seconds_per_epoch"]).mean(),
            "validation_accuracy": pd.to_numeric(group["validation_accuracy"]).mean(),
            "trainable_percent": first["trainable_percent"],
            "tied_with_best": int(tied.astype(bool).sum()), "compared": len(tied),
        })
    return pd.DataFrame(rows)


def rebuild_summaries(output_dir: Path, reference_run: str | None = None) -> pd.DataFrame:
    output_dir = Path(output_dir)
    records = read_records(output_dir)
    summary = pd.DataFrame([summary_row(r) for r in records], columns=SUMMARY_COLUMNS)
    summary = summary.astype({c: object for c in ("best_run", "tied_with_best", "reference_run")})
    num_classes = {r["run_id"]: len((r.get("data") or {}).get("class_names") or []) for r in records}
    summary = add_seed_means(add_statistics(summary, output_dir, reference_run, num_classes))
    summary = summary.astype({"seed": "Int64", "seeds": "Int64", "trainable_parameters": "Int64"})
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
    """The console view of summary.csv: one line per run, the columns a reader compares first."""
    shown = pd.DataFrame({"run_id": summary["run_id"], "method": summary["method"], "model": summary["model"],
                          "status": summary["status"]})
    shown["test_accuracy [95%]"] = [with_interval(row, "test_accuracy") for _, row in summary.iterrows()]
    shown["f1_macro [95%]"] = [with_interval(row, "f1_macro") for _, row in summary.iterrows()]
    shown["tied_with_best"] = summary["tied_with_best"].map(lambda v: "-" if pd.isna(v) else ("yes" if v else "no"))
    shown["trainable_%"] = summary["trainable_percent"].map(lambda v: f"{v:.3g}" if pd.notna(v) else "-")
    shown["s/epoch"] = summary["seconds_per_epoch"].map(lambda v: f"{v:.1f}" if pd.notna(v) else "-")
    return shown.fillna("-").to_string(index=False)


def with_interval(row, column: str) -> str:
    """`0.8978 [0.8909, 0.9046]`; the value alone without an interval; `-` without a value."""
    value, low, high = row[column], row[f"{column}_low"], row[f"{column}_high"]
    if pd.isna(value):
        return "-"
    return f"{value:.4f}" + (f" [{low:.4f}, {high:.4f}]" if pd.notna(low) else "")


def _paired_p_value(run: pd.DataFrame, other: pd.DataFrame) -> float:
    """McNemar's p for two runs' predictions, or NaN when they were not scored on the same test texts."""
    same_texts = len(run) == len(other) and np.array_equal(run["index"], other["index"]) \
        and np.array_equal(run["label"], other["label"])
    if not same_texts:
        return np.nan
    return mcnemar(run["predicted"] == run["label"], other["predicted"] == other["label"])
