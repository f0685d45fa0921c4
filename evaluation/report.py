"""<output_dir>/report.md: the study's table, statistics, data and plots, rebuilt from the per-run files.

`rebuild_outputs` is what every invocation ends with (and all that `python main.py report` does):
summary.csv and epochs.csv, then plots/, then report.md, each from the files the runs wrote.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from evaluation import plots
from evaluation.statistics import CONFIDENCE, EXACT_BELOW, RESAMPLES, SIGNIFICANCE
from evaluation.summary import read_records, rebuild_summaries, seed_means, with_interval
from core.files import write_text_atomic


def rebuild_outputs(output_dir: Path, reference_run: str | None = None) -> pd.DataFrame:
    """summary.csv, epochs.csv, plots/*.png and report.md for every run folder in output_dir."""
    output_dir = Path(output_dir)
    summary = rebuild_summaries(output_dir, reference_run)
    records = read_records(output_dir)
    figures = plots.draw_all(output_dir, summary, records)
    write_text_atomic(output_dir / "report.md", render(summary, records, figures, output_dir, reference_run))
    return summary


def render(summary: pd.DataFrame, records: list[dict], figures: dict[str, list[Path]], output_dir: Path,
           reference_run: str | None) -> str:
    lines = ["# Results", "",
             f"Rebuilt from the run folders in `{output_dir}` ({len(records)} runs:"
             f" {int((summary['status'] == 'complete').sum())} complete,"
             f" {int((summary['status'] == 'failed').sum())} failed).", ""]
    lines += _data_section(records)
    complete = summary[summary["status"] == "complete"]
    if complete.empty:
        lines += ["No run has completed yet.", ""]
    else:
        means = seed_means(summary)
        if (means["seeds"] > 1).any():
            lines += _means_section(means)
        lines += _runs_section(complete, reference_run)
        lines += _statistics_notes(complete, reference_run)
    lines += _failed_section(summary)
    lines += search_section(records, output_dir)
    lines += _plots_section(figures, output_dir)
    return "\n".join(lines).rstrip() + "\n"


def _data_section(records: list[dict]) -> list[str]:
    """Source and split sizes; each distinct combination once, with the runs that used it."""
    seen: dict[tuple, list[str]] = {}
    for record in records:
        data = record.get("data") or {}
        sizes = data.get("sizes") or {}
        key = (data.get("source"), sizes.get("train"), sizes.get("validation"), sizes.get("test"),
               ", ".join(data.get("class_names") or []))
        seen.setdefault(key, []).append(record["run_id"])
    lines = ["## Data", "", "| source | train | validation | test | classes | runs |", "|---|---:|---:|---:|---|---|"]
    for (source, train, validation, test, classes), run_ids in seen.items():
        lines.append(f"| `{source}` | {_int(train)} | {_int(validation)} | {_int(test)} | {classes} |"
                     f" {_run_list(run_ids, len(records))} |")
    if len(seen) > 1:
        lines += ["", "**Runs used different data**: compare only runs on the same row above."]
    return lines + [""]


def _runs_section(complete: pd.DataFrame, reference_run: str | None) -> list[str]:
    with_reference = reference_run is not None and complete["p_vs_reference"].notna().any()
    header = ["run", "task", "method", "model", "variant", "s/epoch", "val. accuracy", "test accuracy [95% CI]",
              "macro-F1 [95% CI]", "trainable %", "tied with best (p)"] + (["p vs reference"] if with_reference else [])
    align = ["---"] * 5 + ["---:"] * 6 + (["---:"] if with_reference else [])
    lines = ["## Runs", "", "| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for _, row in complete.iterrows():
        is_best = row["run_id"] == row["best_run"]
        tied = "-" if pd.isna(row["tied_with_best"]) else (
            "**best**" if is_best else f"{'yes' if row['tied_with_best'] else 'no'} ({_p(row['p_vs_best'])})")
        cells = [f"**{row['run_id']}**" if is_best else row["run_id"], row["task"], row["method"],
                 _text(row["model"]), _text(row["variant"]), _number(row["seconds_per_epoch"], "{:.1f}"),
                 _number(row["validation_accuracy"], "{:.4f}"), with_interval(row, "test_accuracy"),
                 with_interval(row, "f1_macro"), _number(row["trainable_percent"], "{:.3g}"), tied]
        if with_reference:
            cells.append("reference" if row["run_id"] == row["reference_run"] else _p(row["p_vs_reference"]))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines + [""]


def _means_section(means: pd.DataFrame) -> list[str]:
    means = means.sort_values("test_accuracy_mean", ascending=False, kind="stable")
    best = means.iloc[0]
    lines = ["## Means over seeds", "",
             f"Best by mean test accuracy: **{best['base_run']}** ({best['test_accuracy_mean']:.4f})."
             " Δ is the difference of each mean from that best mean; *tied* counts the seeds in which the run was"
             " not significantly different from that seed's best run.", "",
             "| base run | task | method | model | variant | seeds | s/epoch | val. accuracy"
             " | test accuracy (mean ± std) | Δ vs best | macro-F1 (mean ± std) | trainable % | tied with best |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for _, row in means.iterrows():
        lines.append(
            f"| {row['base_run']} | {row['task']} | {row['method']} | {_text(row['model'])} | {_text(row['variant'])}"
            f" | {row['seeds']} | {_number(row['seconds_per_epoch'], '{:.1f}')}"
            f" | {_number(row['validation_accuracy'], '{:.4f}')} | {_mean_std(row, 'test_accuracy')}"
            f" | {row['test_accuracy_mean'] - best['test_accuracy_mean']:+.4f} | {_mean_std(row, 'f1_macro')}"
            f" | {_number(row['trainable_percent'], '{:.3g}')} | {row['tied_with_best']}/{row['compared']} |")
    return lines + [""]


def _statistics_notes(complete: pd.DataFrame, reference_run: str | None) -> list[str]:
    bests = ", ".join(dict.fromkeys(complete["best_run"].dropna()))
    lines = ["## How to read the statistics", "",
             f"- **Intervals**: {CONFIDENCE:.0%} percentile bootstrap over the test texts ({RESAMPLES} resamples,"
             " fixed seed, the same resamples for every run), from each run's `predictions.csv`.",
             f"- **Best run**: the most accurate run on the test set ({bests or '-'}); with several seeds, the most"
             " accurate run of each seed.",
             f"- **Tied with best**: McNemar's test on the texts where the two runs disagree in correctness is not"
             f" significant (p ≥ {SIGNIFICANCE}); exact binomial test below {EXACT_BELOW} such texts, else"
             " chi-square with continuity correction. No correction for multiple comparisons is applied."]
    if reference_run is not None:
        lines.append(f"- **Reference run**: `{reference_run}` (per seed); the last column is McNemar's p against it."
                     if complete["p_vs_reference"].notna().any() else
                     f"- **Reference run**: `{reference_run}` has no complete run in this folder yet.")
    return lines + [""]


def _failed_section(summary: pd.DataFrame) -> list[str]:
    failed = summary[summary["status"] == "failed"]
    if failed.empty:
        return []
    lines = ["## Failed runs", "", "| run | error |", "|---|---|"]
    for _, row in failed.iterrows():
        lines.append(f"| {row['run_id']} | {_text(row['error']).replace('|', '/')} |")
    return lines + ["", "Each failed run's folder holds `error.log` with the traceback.", ""]


def search_section(records: list[dict], output_dir: Path) -> list[str]:
    """Per searched base run (once, whatever its seeds): the chosen trial and every trial, from the
    search.csv in its first run's folder (pipeline/search.py)."""
    searched = {}
    for record in records:
        if record.get("search") and (output_dir / record["run_id"] / "search.csv").is_file():
            searched.setdefault(record.get("base_run_id") or record["run_id"], record)
    if not searched:
        return []
    lines = ["## Searches", "", "Settings chosen on the validation split: each trial trained on train and was scored"
             " on validation, epoch by epoch; nothing in a search reads test labels.", ""]
    for base_run, record in searched.items():
        search = record["search"]
        trials = pd.read_csv(output_dir / record["run_id"] / "search.csv")
        names = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}
        counts = ", ".join(f"{n} {names.get(state, state)}" for state, n in (search.get("trials") or {}).items())
        chosen = ", ".join(f"{key}={_setting(value)}" for key, value in search["params"].items())
        lines += [f"### {base_run}", "",
                  f"Best of {len(trials)} trials ({counts}): trial {search['best_trial']}, validation accuracy"
                  f" {search['validation_accuracy']:.4f}, with {chosen}. Trials: `{search['folder']}/search.csv`.", "",
                  "| " + " | ".join(trials.columns) + " |", "|" + "---:|" * (len(trials.columns) - 1) + "---|"]
        for _, row in trials.iterrows():
            cells = [_setting(row[column]) for column in trials.columns[:-2]]
            cells += [_number(row["validation_accuracy"], "{:.4f}"), row["state"]]
            if row["trial"] == search["best_trial"]:
                cells[0] = f"**{cells[0]}**"
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
        lines.append("")
    return lines


def _setting(value) -> str:
    if isinstance(value, float) and not pd.isna(value) and not value.is_integer():
        return f"{value:.3g}"
    return _text(value.item() if hasattr(value, "item") else value)


def _plots_section(figures: dict[str, list[Path]], output_dir: Path) -> list[str]:
    lines = []
    if figures.get("comparison"):
        lines += ["## Comparison", ""]
        lines += [f"![{path.stem}]({path.relative_to(output_dir).as_posix()})" for path in figures["comparison"]]
        lines.append("")
    per_run = {run_id: paths for run_id, paths in figures.items() if run_id != "comparison" and paths}
    if per_run:
        lines += ["## Per run", ""]
        for run_id, paths in per_run.items():
            lines += [f"### {run_id}", ""]
            lines += [f"![{path.stem}]({path.relative_to(output_dir).as_posix()})" for path in paths]
            lines.append("")
    return lines



def _mean_std(row, metric: str) -> str:
    std = row[f"{metric}_std"]
    return f"{row[f'{metric}_mean']:.4f}" + (f" ± {std:.4f}" if pd.notna(std) else "")


def _p(value) -> str:
    if pd.isna(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _number(value, pattern: str) -> str:
    return "-" if pd.isna(value) else pattern.format(float(value))


def _int(value) -> str:
    return "-" if value is None else f"{int(value):,}"


def _text(value) -> str:
    return "-" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _run_list(run_ids: list[str], total: int) -> str:
    return "all" if len(run_ids) == total else ", ".join(run_ids)
