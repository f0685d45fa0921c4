"""Summaries rebuilt from the per-run files (never from memory): results/summary.csv and epochs.csv.

summary.csv has one row per run. Beside each run's metrics it holds the statistics of
evaluation/statistics.py, recomputed from predictions.csv: 95% bootstrap intervals; against one reference
run, the paired bootstrap interval of the test-accuracy difference, McNemar's p and its Holm-adjusted p
over every comparison in the summary; and, per base run (the run id without its _s<seed> suffix), the mean
and standard deviation over its seeds and the per-seed differences from the reference, paired by seed.

The reference is the config's `reference_run` when it names one, else the base run with the highest mean
validation accuracy over its complete seeds: chosen on validation, never on test, so that the test set
only measures. Comparisons pair runs with the same seed: B1_v1_s43 is compared with <reference>_s43.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.files import write_csv_atomic
from core.record import Metrics, Parameters, RunRecord, Timing
from evaluation.statistics import (SIGNIFICANCE, bootstrap_intervals, choose_reference, holm, mcnemar,
                                   paired_bootstrap_difference, t_interval)

SUMMARY_COLUMNS = [
    "run_id", "base_run", "seed", "task", "method", "model", "variant", "status",
    "test_accuracy", "test_accuracy_low", "test_accuracy_high", "f1_macro", "f1_macro_low", "f1_macro_high",
    "balanced_accuracy",
    "compared_to", "accuracy_diff", "accuracy_diff_low", "accuracy_diff_high", "p_value", "p_holm", "distinguishable",
    "seeds", "test_accuracy_mean", "test_accuracy_std", "test_accuracy_mean_low", "test_accuracy_mean_high",
    "f1_macro_mean", "f1_macro_std",
    "seed_diff_mean", "seed_diff_low", "seed_diff_high", "seed_diffs", "seeds_paired", "seeds_unpaired",
    "trainable_parameters", "trainable_percent", "optimizer_steps", "samples_seen", "train_flops",
    "train_seconds", "seconds_per_epoch", "precision", "peak_rss_mb",
    "peak_rss_increase_mb", "best_epoch",
    "validation_accuracy", "error",
]
# Per base run: averaged over its complete seeds (std is the sample standard deviation, empty for one seed;
# test_accuracy_mean_low/high: the Student-t interval of the mean over seeds, none from one seed).
SEED_MEAN_COLUMNS = ["test_accuracy", "f1_macro"]
# Per base run with seeds: test-accuracy differences from the reference, paired by seed.
SEED_DIFF_COLUMNS = ["seed_diff_mean", "seed_diff_low", "seed_diff_high", "seed_diffs",
                     "seeds_paired", "seeds_unpaired"]


def read_records(output_dir: Path) -> list[RunRecord]:
    """Every run folder's metrics.json that parses as a record, in run-id order."""
    records = (RunRecord.read(path) for path in sorted(Path(output_dir).glob("*/metrics.json")))
    return [record for record in records if record is not None]


def summary_row(record: RunRecord) -> dict:
    metrics, timing = record.metrics or Metrics(), record.timing or Timing()
    parameters, best = record.parameters or Parameters(), record.best_epoch
    return {
        "run_id": record.run_id, "base_run": record.base_run, "seed": record.seed, "task": record.task,
        "method": record.method, "model": Path(record.model).name if record.model else None,
        "variant": record.variant, "status": record.status.value,
        "test_accuracy": metrics.accuracy, "f1_macro": metrics.f1_macro,
        "balanced_accuracy": metrics.balanced_accuracy,
        "trainable_parameters": parameters.trainable, "trainable_percent": parameters.trainable_percent,
        **{key: getattr(record.budget, key) if record.budget else None
           for key in ("optimizer_steps", "samples_seen", "train_flops")},
        "train_seconds": timing.train_seconds, "seconds_per_epoch": timing.seconds_per_epoch,
        "precision": record.precision,  # bf16 | fp32 as run (fp64: TF-IDF)
        "peak_rss_mb": record.memory.peak_rss_mb,  # the process's peak resident memory during the run
        "peak_rss_increase_mb": record.memory.peak_rss_increase_mb,  # above its resident size at the run's start
        "best_epoch": best.epoch if best else None, "validation_accuracy": best.validation_accuracy if best else None,
        "error": record.error,
    }


def read_predictions(output_dir: Path, run_id: str) -> pd.DataFrame | None:
    path = Path(output_dir) / run_id / "predictions.csv"
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    return frame if {"index", "label", "predicted"} <= set(frame.columns) else None


def reference_base_run(summary: pd.DataFrame, reference_run: str | None) -> str | None:
    """The base run every run is compared with: the config's reference_run when given; else the base run
    with the highest validation accuracy (metrics.json's best_epoch.validation_accuracy), averaged over its
    complete seeds. Runs without one (untrained: A0, A1) cannot be chosen; equals go to the first base run
    in run-id order. Test accuracy never enters the choice. None when no run qualifies."""
    if reference_run:
        return reference_run
    complete = summary[summary["status"] == "complete"]
    validation = pd.to_numeric(complete["validation_accuracy"]).groupby(complete["base_run"]).mean()  # sorted ids
    return choose_reference(validation.index, validation.to_numpy())


def add_statistics(summary: pd.DataFrame, output_dir: Path, reference: str | None,
                   num_classes: dict[str, int]) -> pd.DataFrame:
    """Intervals per run; against the reference base run's run of the same seed, the paired difference in
    test accuracy with its bootstrap interval and McNemar's p; Holm's correction over all those p-values."""
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
    for _, group in summary.groupby("seed", dropna=False, sort=False):
        references = [run_id for run_id in group.loc[group["base_run"] == reference, "run_id"] if run_id in predictions]
        if not references:  # the reference has no run of this seed, or it failed: nothing to compare with
            continue
        reference_id = references[0]
        for row in group.index:
            run_id = summary.at[row, "run_id"]
            if run_id not in predictions:
                continue
            summary.at[row, "compared_to"] = reference_id
            if run_id != reference_id:
                comparison = _compare(predictions[run_id], predictions[reference_id])
                for column, value in zip(("accuracy_diff", "accuracy_diff_low", "accuracy_diff_high", "p_value"),
                                         comparison):
                    summary.at[row, column] = value
    summary["p_holm"] = holm(pd.to_numeric(summary["p_value"]))  # the family: every comparison in this summary
    tested = summary["p_holm"].notna()
    summary.loc[tested, "distinguishable"] = (summary.loc[tested, "p_holm"] < SIGNIFICANCE).tolist()
    return summary


def add_seed_differences(summary: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """Per base run with seeds (run ids ending in _s<seed>), its test accuracy minus the reference's, seed by
    seed: only seeds complete on both sides are paired; a seed failed (or missing) on either side counts as
    unpaired. The mean of the paired differences and its Student-t interval (none from one seed)."""
    summary = summary.copy()
    if reference is None:
        return summary

    def accuracies(base: str) -> tuple[dict, set]:
        rows = summary[summary["base_run"] == base]
        done = rows[(rows["status"] == "complete") & pd.to_numeric(rows["test_accuracy"]).notna()]
        return dict(zip(done["seed"], done["test_accuracy"].astype(float))), set(rows["seed"])

    reference_accuracy, reference_seeds = accuracies(reference)
    seeded = summary.loc[summary["run_id"] != summary["base_run"], "base_run"]
    for base in dict.fromkeys(seeded):
        if base == reference:
            continue
        accuracy, seeds = accuracies(base)
        paired = sorted(set(accuracy) & set(reference_accuracy))
        differences = [accuracy[seed] - reference_accuracy[seed] for seed in paired]
        rows = summary.index[summary["base_run"] == base]
        for column, value in zip(("seed_diff_mean", "seed_diff_low", "seed_diff_high"), t_interval(differences)):
            summary.loc[rows, column] = value
        summary.loc[rows, "seed_diffs"] = ";".join(f"{d:.4f}" for d in differences)
        summary.loc[rows, "seeds_paired"] = len(paired)
        summary.loc[rows, "seeds_unpaired"] = len(seeds | reference_seeds) - len(paired)
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
        _, low, high = t_interval(group["test_accuracy"].astype(float))
        summary.loc[rows, ["test_accuracy_mean_low", "test_accuracy_mean_high"]] = low, high
    return summary


def seed_means(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per base run with complete seeds: its means, its differences from the reference paired by
    seed, and in how many seeds it was distinguishable from the reference (Holm)."""
    complete = summary[summary["status"] == "complete"]
    rows = []
    for base, group in complete.groupby("base_run", sort=False):
        first = group.iloc[0]
        distinguishable = group["distinguishable"].dropna()
        rows.append({
            "base_run": base, "task": first["task"], "method": first["method"], "model": first["model"],
            "variant": first["variant"], "seeds": len(group),
            **{f"{m}_{s}": first[f"{m}_{s}"] for m in SEED_MEAN_COLUMNS for s in ("mean", "std")},
            "test_accuracy_mean_low": first["test_accuracy_mean_low"],
            "test_accuracy_mean_high": first["test_accuracy_mean_high"],
            "seconds_per_epoch": pd.to_numeric(group["seconds_per_epoch"]).mean(),
            "train_seconds": pd.to_numeric(group["train_seconds"]).mean(),
            "peak_rss_mb": pd.to_numeric(group["peak_rss_mb"]).max(),
            "peak_rss_increase_mb": pd.to_numeric(group["peak_rss_increase_mb"]).max(),
            "trainable_parameters": first["trainable_parameters"],
            "validation_accuracy": pd.to_numeric(group["validation_accuracy"]).mean(),
            "trainable_percent": first["trainable_percent"],
            **{column: first[column] for column in SEED_DIFF_COLUMNS},
            "is_reference": bool((group["run_id"] == group["compared_to"]).any()),
            "distinguishable": int(distinguishable.astype(bool).sum()), "compared": len(distinguishable),
        })
    return pd.DataFrame(rows)


def rebuild_summaries(output_dir: Path, reference_run: str | None = None) -> pd.DataFrame:
    output_dir = Path(output_dir)
    records = read_records(output_dir)
    summary = pd.DataFrame([summary_row(r) for r in records], columns=SUMMARY_COLUMNS)
    summary = summary.astype({c: object for c in ("compared_to", "distinguishable", "seed_diffs")})
    num_classes = {r.run_id: len(r.data.class_names) for r in records}
    reference = reference_base_run(summary, reference_run)
    summary = add_statistics(summary, output_dir, reference, num_classes)
    summary = add_seed_differences(add_seed_means(summary), reference)
    summary = summary.astype({column: "Int64" for column in
                              ("seed", "seeds", "seeds_paired", "seeds_unpaired", "trainable_parameters")})
    write_csv_atomic(output_dir / "summary.csv", summary)
    epochs = []
    for record in records:
        path = output_dir / record.run_id / "epochs.csv"
        if record.complete and path.is_file() and path.stat().st_size > 1:
            frame = pd.read_csv(path)
            if not frame.empty:
                frame.insert(0, "run_id", record.run_id)
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
    shown["distinguishable (Holm)"] = [
        "reference" if row["run_id"] == row["compared_to"] else
        "-" if pd.isna(row["distinguishable"]) else ("yes" if row["distinguishable"] else "no")
        for _, row in summary.iterrows()]
    shown["trainable_%"] = summary["trainable_percent"].map(lambda v: f"{v:.3g}" if pd.notna(v) else "-")
    shown["s/epoch"] = summary["seconds_per_epoch"].map(lambda v: f"{v:.1f}" if pd.notna(v) else "-")
    return shown.fillna("-").to_string(index=False)


def with_interval(row, column: str) -> str:
    """`0.8978 [0.8909, 0.9046]`; the value alone without an interval; `-` without a value."""
    value, low, high = row[column], row[f"{column}_low"], row[f"{column}_high"]
    if pd.isna(value):
        return "-"
    return f"{value:.4f}" + (f" [{low:.4f}, {high:.4f}]" if pd.notna(low) else "")


def _compare(run: pd.DataFrame, reference: pd.DataFrame) -> tuple[float, float, float, float]:
    """(accuracy difference, its paired bootstrap interval, McNemar's p) of a run against its reference;
    all NaN when the two were not scored on the same test texts."""
    same_texts = len(run) == len(reference) and np.array_equal(run["index"], reference["index"]) \
        and np.array_equal(run["label"], reference["label"])
    if not same_texts:
        return np.nan, np.nan, np.nan, np.nan
    correct_run, correct_reference = run["predicted"] == run["label"], reference["predicted"] == reference["label"]
    return (*paired_bootstrap_difference(correct_run, correct_reference), mcnemar(correct_run, correct_reference))
