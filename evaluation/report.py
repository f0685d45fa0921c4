"""<output_dir>/report.md: the study's recommendation, tables, statistics, data and plots, rebuilt from the per-run
files.

`rebuild_outputs` is what every invocation ends with (and all that `python main.py report` does):
summary.csv and epochs.csv, then means.csv, then plots/, then report.md, each from the files the runs wrote.
report.md opens with the recommendation (from means.csv alone), then the base runs' means sorted by test accuracy,
then the per-seed detail. It names every path relative to its own folder (the results folder), never an absolute
one, so it reads the same wherever the folder is copied.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from evaluation import fairness, plots
from evaluation.means import rebuild_means
from evaluation.statistics import CONFIDENCE, EXACT_BELOW, POOLED_RESAMPLES, RESAMPLES, SIGNIFICANCE, choose_reference
from evaluation.summary import read_records, rebuild_summaries, seed_means, with_interval
from core.files import unwritable, write_text_atomic
from core.lock import summary_lock
from core.record import RunRecord


ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/'\"`|]+/)+([^\s/'\"`|]*)")  # /a/b/name -> name


def rebuild_outputs(output_dir: Path, reference_run: str | None = None) -> pd.DataFrame:
    """summary.csv, epochs.csv, means.csv, plots/*.png and report.md for every run folder in output_dir."""
    output_dir = Path(output_dir)
    summary = rebuild_summaries(output_dir, reference_run)
    records = read_records(output_dir)
    means = rebuild_means(output_dir, summary, records, reference_run)
    figures = plots.draw_all(output_dir, summary, records, means)
    write_text_atomic(output_dir / "report.md", render(summary, records, figures, output_dir, reference_run, means))
    return summary


def unwritable_outputs(output_dir: Path) -> str | None:
    """Why rebuild_outputs, under the summary lock, could not write its files in output_dir (checked without
    writing); None when it can."""
    output_dir = Path(output_dir)
    targets = [(output_dir, True), (output_dir / plots.FOLDER, True), (summary_lock(output_dir).path, False)]
    return next(filter(None, (unwritable(path, folder) for path, folder in targets)), None)


def render(summary: pd.DataFrame, records: list[RunRecord], figures: dict[str, list[Path]], output_dir: Path,
           reference_run: str | None, base_means: pd.DataFrame | None = None) -> str:
    lines = ["# Results", "",
             f"Rebuilt from the run folders beside this report ({len(records)} runs:"
             f" {int((summary['status'] == 'complete').sum())} complete,"
             f" {int((summary['status'] == 'failed').sum())} failed).", ""]
    complete = summary[summary["status"] == "complete"]
    if base_means is not None and not base_means.empty:
        lines += recommendation(base_means) + base_means_section(base_means)
    lines += fairness.section(records)
    lines += _data_section(records)
    if complete.empty:
        lines += ["No run has completed yet.", ""]
    else:
        reference = _reference(complete)
        means = seed_means(summary)
        if (means["seeds"] > 1).any():
            lines += _means_section(means, reference)
        lines += _runs_section(complete, reference)
        lines += _statistics_notes(complete, reference, reference_run)
    lines += _failed_section(summary)
    lines += search_section(records, output_dir)
    lines += _plots_section(figures, output_dir)
    return "\n".join(lines).rstrip() + "\n"


def _data_section(records: list[RunRecord]) -> list[str]:
    """Source and split sizes; each distinct combination once, with the runs that used it."""
    seen: dict[tuple, list[str]] = {}
    for record in records:
        data, sizes = record.data, record.data.sizes
        key = (data.source, sizes.get("train"), sizes.get("validation"), sizes.get("test"), ", ".join(data.class_names))
        seen.setdefault(key, []).append(record.run_id)
    lines = ["## Data", "", "| source | train | validation | test | classes | runs |", "|---|---:|---:|---:|---|---|"]
    for (source, train, validation, test, classes), run_ids in seen.items():
        lines.append(f"| `{_source_name(source)}` | {_int(train)} | {_int(validation)} | {_int(test)} | {classes} |"
                     f" {_run_list(run_ids, len(records))} |")
    if len(seen) > 1:
        lines += ["", "**Runs used different data**: compare only runs on the same row above."]
    return lines + [""]


def _source_name(source: str | None) -> str:
    """A local data folder by its name (an absolute path would not hold on another machine); a hub id as it is."""
    return Path(source).name if source and Path(source).is_absolute() else _text(source)


def recommendation(means: pd.DataFrame) -> list[str]:
    """`## Recommendation` from means.csv's columns alone (so a made-up means.csv tests it): the best base run by
    validation; the base runs not distinguishable from the reference on test (pooled over seeds, Holm); among
    those, the cheapest by trainable parameters, by training seconds and by peak memory. One sentence each."""
    validation = pd.to_numeric(means["validation_accuracy_mean"])
    best = choose_reference(means["base_run"], validation.to_numpy())
    references = means.loc[means["base_run"] == means["compared_to"], "base_run"]
    reference = references.iloc[0] if not references.empty else None
    lines = ["## Recommendation", ""]
    if best is None and reference is None:
        return lines + ["No base run has a validation accuracy, so none is recommended (untrained runs have none).", ""]
    rows = means.set_index("base_run", drop=False)
    if best is not None:
        row = rows.loc[best]
        lines.append(f"- **Best by validation**: {_named(row)}, mean validation accuracy"
                     f" {row['validation_accuracy_mean']:.4f} over {_seeds(row)}; its mean test accuracy is"
                     f" {row['test_accuracy_mean']:.4f}{_mean_ci(row)}.")
    if reference is None:
        return lines + ["- No run could be compared with it on test (no predictions.csv on the same texts).", ""]
    if reference != best:
        lines.append(f"- **Reference**: {_named(rows.loc[reference])}, named by the config's `reference_run`; the"
                     " comparisons below are with it.")
    within = means[means["within_noise_of_best"].map(_true) & (means["base_run"] != reference)]
    family = int(pd.to_numeric(means["p_holm"]).notna().sum())
    test = (f"one pooled paired test per base run over the test texts, Holm-adjusted over the other base runs,"
            f" p ≥ {SIGNIFICANCE:g}")
    if within.empty:
        lines.append(f"- **Not distinguishable from it on test**: none; each of the {family} other base runs tested"
                     f" is less or more accurate beyond noise ({test}).")
    else:
        named = "; ".join(f"{_named(row)}, Δ {row['accuracy_diff']:+.4f}, Holm p {_p(row['p_holm'])}"
                          for _, row in within.sort_values("test_accuracy_mean", ascending=False).iterrows())
        lines.append(f"- **Not distinguishable from it on test** ({test}): {named}.")
    candidates = means[means["within_noise_of_best"].map(_true)]
    for column, what, number, unit in (
            ("trainable_parameters", "Fewest trainable parameters", "{:,.0f}", "trainable parameters"),
            ("train_seconds", "Fastest to train", "{:,.1f} s", "of training, mean over seeds"),
            ("peak_rss_increase_mb", "Least memory", "+{:,.0f} MB",
             "of peak resident memory over the process's size at the run's start, highest of its seeds")):
        values = pd.to_numeric(candidates[column])
        if values.notna().any():
            row, own = candidates.loc[values.idxmin()], rows.loc[reference, column]
            versus = "" if row["base_run"] == reference or pd.isna(own) else f" (the reference: {number.format(own)})"
            lines.append(f"- **{what}** among these: {_named(row)}, {number.format(row[column])} {unit}{versus}.")
        else:
            lines.append(f"- **{what}** among these: not recorded.")
    return lines + [""]


def base_means_section(means: pd.DataFrame) -> list[str]:
    """One table of means.csv, sorted by mean test accuracy (highest first)."""
    lines = ["## Base runs, seeds pooled", "",
             f"From `means.csv`, highest mean test accuracy first. Test accuracy: mean over seeds with its"
             f" {CONFIDENCE:.0%} Student-t interval over seeds (none from one seed, nor for a run whose seeds all"
             " predict the same). Δ: minus the reference, per test text averaged over each run's seeds, with a"
             f" {CONFIDENCE:.0%} paired bootstrap interval over texts ({POOLED_RESAMPLES:,} resamples) and its"
             " two-sided p, Holm-adjusted over every other base run. *Within noise*: the reference, and every run"
             f" whose Holm p is at least {SIGNIFICANCE:g}. Per-seed tests: the sections below and `summary.csv`.", "",
             "| label | base run | seeds | val. accuracy | test accuracy [95% t CI] | Δ vs reference [95% CI] | Holm p"
             " | within noise | trainable | optimizer steps | train s | peak RSS +MB |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for _, row in means.sort_values("test_accuracy_mean", ascending=False, kind="stable").iterrows():
        is_reference = row["base_run"] == row["compared_to"]
        difference = "**reference**" if is_reference else "-" if pd.isna(row["accuracy_diff"]) else (
            f"{row['accuracy_diff']:+.4f} [{row['accuracy_diff_low']:+.4f}, {row['accuracy_diff_high']:+.4f}]")
        noise = "-" if pd.isna(row["within_noise_of_best"]) else "yes" if _true(row["within_noise_of_best"]) else "no"
        lines.append(f"| {row['label']} | {row['base_run']} | {row['seeds']}"
                     f" | {_number(row['validation_accuracy_mean'], '{:.4f}')}"
                     f" | {_number(row['test_accuracy_mean'], '{:.4f}')}{_mean_ci(row)} | {difference}"
                     f" | {'-' if is_reference else _p(row['p_holm'])} | {noise}"
                     f" | {_number(row['trainable_parameters'], '{:,.0f}')}"
                     f" | {_number(row['optimizer_steps'], '{:,.0f}')} | {_number(row['train_seconds'], '{:.1f}')}"
                     f" | {_number(row['peak_rss_increase_mb'], '{:,.0f}')} |")
    return lines + [""]


def _named(row) -> str:
    return f"{row['label']} (`{row['base_run']}`)"


def _seeds(row) -> str:
    """`3 seeds`, `1 seed`, `3 seeds (identical predictions)` from means.csv's `seeds`."""
    count, _, rest = str(row["seeds"]).partition(" ")
    return f"{count} seed{'' if count == '1' else 's'}" + (f" {rest}" if rest else "")


def _true(value) -> bool:
    """A means.csv flag: True as written, or as read back from the CSV (True, 'True'); empty is False."""
    return str(value).strip().lower() == "true"


def _reference(complete: pd.DataFrame) -> str | None:
    """The base run the others were compared with (its runs are their own compared_to), or None."""
    rows = complete[complete["run_id"] == complete["compared_to"]]
    return rows["base_run"].iloc[0] if not rows.empty else None


def _runs_section(complete: pd.DataFrame, reference: str | None) -> list[str]:
    seeded = (complete["run_id"] != complete["base_run"]).any()
    versus = f"vs {reference}{' (same seed)' if seeded else ''}" if reference else "vs reference"
    header = ["run", "task", "method", "model", "variant", "precision", "s/epoch", "val. accuracy",
              "test accuracy [95% CI]", "macro-F1 [95% CI]", "balanced accuracy", "trainable %",
              f"Δ test accuracy {versus} [95% CI]", "McNemar p", "Holm p"]
    align = ["---"] * 6 + ["---:"] * 6 + ["---", "---:", "---:"]
    lines = ["## Runs", "", "| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for _, row in complete.iterrows():
        is_reference = row["run_id"] == row["compared_to"]
        cells = [f"**{row['run_id']}**" if is_reference else row["run_id"], row["task"], row["method"],
                 _text(row["model"]), _text(row["variant"]), _text(row.get("precision")),
                 _number(row["seconds_per_epoch"], "{:.1f}"),
                 _number(row["validation_accuracy"], "{:.4f}"), with_interval(row, "test_accuracy"),
                 with_interval(row, "f1_macro"), _number(row.get("balanced_accuracy"), "{:.4f}"),
                 _number(row["trainable_percent"], "{:.3g}"),
                 "**reference**" if is_reference else _difference(row, reference),
                 _p(row["p_value"]), _p(row["p_holm"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines + [""]


def _difference(row, reference: str | None) -> str:
    """`+0.0100 [-0.0075, +0.0275]`, and the verdict when Holm's correction leaves it indistinguishable."""
    if pd.isna(row["compared_to"]):
        return "- (no scored reference run of this seed)" if reference else "-"
    if pd.isna(row["accuracy_diff"]):
        return "- (scored on other test texts)"
    text = f"{row['accuracy_diff']:+.4f} [{row['accuracy_diff_low']:+.4f}, {row['accuracy_diff_high']:+.4f}]"
    if pd.notna(row["p_holm"]) and row["p_holm"] >= SIGNIFICANCE:
        text += f" not distinguishable at {SIGNIFICANCE:g} (Holm)"
    return text


def _means_section(means: pd.DataFrame, reference: str | None) -> list[str]:
    lines = ["## Means over seeds", "",
             (f"Reference: **{reference}**. Δ is each base run's test accuracy minus the reference's, paired by"
              " seed (only seeds complete on both sides; *unpaired* counts the seeds failed or missing on either"
              f" side), with the mean and a {CONFIDENCE:.0%} Student-t interval over the paired seeds (none from"
              " one seed); *distinguishable* counts the seeds in which the run differed from the reference's run"
              " of that seed (McNemar, Holm-adjusted p < " f"{SIGNIFICANCE:g})." if reference else
              "No reference run: runs are not compared."), "",
             "| base run | task | method | model | variant | seeds | s/epoch | val. accuracy"
             " | test accuracy (mean ± std) [95% t CI of the mean] | macro-F1 (mean ± std)"
             " | Δ vs reference, mean [95% t CI] | Δ per seed | unpaired | trainable | trainable % | train s"
             " | peak RSS MB (run's own) | distinguishable (Holm) |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for _, row in means.iterrows():
        if row["is_reference"]:
            difference, per_seed, unpaired, distinguishable = "**reference**", "-", "-", "-"
        else:
            difference = "-" if pd.isna(row["seed_diff_mean"]) else f"{row['seed_diff_mean']:+.4f}"
            if pd.notna(row["seed_diff_low"]):
                difference += f" [{row['seed_diff_low']:+.4f}, {row['seed_diff_high']:+.4f}]"
            per_seed = _text(row["seed_diffs"]).replace(";", ", ") or "-"
            unpaired = "-" if pd.isna(row["seeds_unpaired"]) else int(row["seeds_unpaired"])
            distinguishable = f"{row['distinguishable']}/{row['compared']}"
        lines.append(
            f"| {row['base_run']} | {row['task']} | {row['method']} | {_text(row['model'])} | {_text(row['variant'])}"
            f" | {row['seeds']} | {_number(row['seconds_per_epoch'], '{:.1f}')}"
            f" | {_number(row['validation_accuracy'], '{:.4f}')} | {_mean_std(row, 'test_accuracy')}{_mean_ci(row)}"
            f" | {_mean_std(row, 'f1_macro')} | {difference} | {per_seed} | {unpaired}"
            f" | {_number(row['trainable_parameters'], '{:,.0f}')} | {_number(row['trainable_percent'], '{:.3g}')}"
            f" | {_number(row['train_seconds'], '{:.1f}')} | {_memory(row)}"
            f" | {distinguishable} |")
    return lines + [""]


def _statistics_notes(complete: pd.DataFrame, reference: str | None, reference_run: str | None) -> list[str]:
    comparisons = int(complete["p_value"].notna().sum())
    lines = ["## How to read the statistics", "",
             f"- **Intervals**: {CONFIDENCE:.0%} percentile bootstrap over the test texts ({RESAMPLES} resamples,"
             " fixed seed, the same resamples for every run), from each run's `predictions.csv`."]
    if reference_run is not None and reference is None:
        lines.append(f"- **Reference run**: `{reference_run}` (the config's `reference_run`) has no complete run in"
                     " this folder yet, so no run is compared.")
        return lines + [""]
    if reference is None:
        lines.append("- **Reference run**: none. It is chosen by validation accuracy, and no complete run has one"
                     " (untrained runs have none); set `reference_run` to name one. No run is compared.")
        return lines + [""]
    how = ("named by the config's `reference_run`" if reference_run is not None else
           "the run with the highest validation accuracy (the best epoch's; averaged over complete seeds), chosen"
           " before looking at the test set: test accuracy never enters the choice. Runs without a validation"
           " accuracy (untrained) cannot be chosen; equals go to the first in run-id order")
    lines += [f"- **Reference run**: `{reference}`, {how}. Every other run is compared with it"
              + (" (with seeds, with its run of the same seed)." if (complete["run_id"] != complete["base_run"]).any()
                 else "."),
              f"- **Δ test accuracy**: the run's test accuracy minus the reference's, with a {CONFIDENCE:.0%} paired"
              " bootstrap interval: each resample draws the same test texts for both runs (one seeded generator),"
              " so the interval is that of the difference, not of two separate accuracies.",
              f"- **McNemar p**: McNemar's test on the texts where the two runs disagree in correctness; exact binomial"
              f" test below {EXACT_BELOW} such texts, else chi-square with continuity correction.",
              f"- **Holm p**: McNemar's p adjusted by Holm's step-down method over the whole family of {comparisons}"
              f" comparison{'s' if comparisons != 1 else ''} in this report, which keeps the chance of any false"
              f" difference at {SIGNIFICANCE:g}. A run is *distinguishable* from the reference when its Holm p is"
              f" below {SIGNIFICANCE:g}; otherwise the table says *not distinguishable at {SIGNIFICANCE:g} (Holm)*:"
              " the test set cannot tell the two apart, which is not evidence that they are equal. The"
              " intervals are not adjusted for multiplicity."]
    if (complete["run_id"] != complete["base_run"]).any():
        lines.append(f"- **Seeds**: the Δ over seeds pairs each seed with the reference's same seed; its"
                     f" {CONFIDENCE:.0%} interval is Student-t with (paired seeds - 1) degrees of freedom, and measures"
                     " the spread between seeds, not over test texts.")
    return lines + [""]


def _failed_section(summary: pd.DataFrame) -> list[str]:
    failed = summary[summary["status"] == "failed"]
    if failed.empty:
        return []
    lines = ["## Failed runs", "", "| run | error |", "|---|---|"]
    for _, row in failed.iterrows():
        error = ABSOLUTE_PATH.sub(r"\1", _text(row["error"]))  # a file by its name: no absolute path in the report
        lines.append(f"| {row['run_id']} | {error.replace('|', '/')} |")
    return lines + ["", "Each failed run's folder holds `error.log` with the traceback.", ""]


def search_section(records: list[RunRecord], output_dir: Path) -> list[str]:
    """Per searched base run (once, whatever its seeds): the chosen trial and every trial, from the
    search.csv in its first run's folder (pipeline/search.py)."""
    searched = {}
    for record in records:
        if record.search and (output_dir / record.run_id / "search.csv").is_file():
            searched.setdefault(record.base_run, record)
    if not searched:
        return []
    lines = ["## Searches", "", "Settings chosen on the validation split: each trial trained on train and was scored"
             " on validation, epoch by epoch; nothing in a search reads test labels.", ""]
    for base_run, record in searched.items():
        search = record.search
        trials = pd.read_csv(output_dir / record.run_id / "search.csv")
        names = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}
        counts = ", ".join(f"{n} {names.get(state, state)}" for state, n in search.trials.items())
        chosen = ", ".join(f"{key}={_setting(value)}" for key, value in search.params.items())
        edges = _at_grid_edge(search)
        trials_file = f"{search.folder}/search.csv"  # named relative to this folder, and only where it is
        if not (output_dir / trials_file).is_file():
            trials_file = f"{record.run_id}/search.csv"
        lines += [f"### {base_run}", "",
                  f"Best of {len(trials)} trials ({counts}): trial {search.best_trial}, validation accuracy"
                  f" {search.validation_accuracy:.4f}, with {chosen}. Trials: `{trials_file}`.", "",
                  *([f"**At the edge of its choices**: {', '.join(edges)}. The best may lie beyond; widen the list"
                     " and rerun (a widened grid keeps its finished trials; a changed range starts over).", ""] if edges else []),
                  "| " + " | ".join(trials.columns) + " |", "|" + "---:|" * (len(trials.columns) - 1) + "---|"]
        for _, row in trials.iterrows():
            cells = [_setting(row[column]) for column in trials.columns[:-2]]
            cells += [_number(row["validation_accuracy"], "{:.4f}"), row["state"]]
            if row["trial"] == search.best_trial:
                cells[0] = f"**{cells[0]}**"
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
        lines.append("")
    return lines


def _at_grid_edge(search) -> list[str]:
    """`key=value (the highest of 2e-3, 4e-3, 8e-3)` for each numeric list of three or more choices whose chosen
    value is its lowest or highest."""
    edges = []
    for key, dimension in search.space.items():
        choices = dimension.get("choices")
        value = search.params.get(key)
        if not choices or len(choices) < 3 or isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
            continue
        if value in (min(choices), max(choices)):
            side = "highest" if value == max(choices) else "lowest"
            edges.append(f"{key}={_setting(value)} (the {side} of {', '.join(_setting(c) for c in choices)})")
    return edges


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


def _memory(row) -> str:
    """The process's peak, and the run's own increase over its starting size where recorded."""
    peak = _number(row["peak_rss_mb"], "{:,.0f}")
    return peak if pd.isna(row["peak_rss_increase_mb"]) else f"{peak} (+{row['peak_rss_increase_mb']:,.0f})"


def _mean_ci(row) -> str:
    low, high = row["test_accuracy_mean_low"], row["test_accuracy_mean_high"]
    return f" [{low:.4f}, {high:.4f}]" if pd.notna(low) else ""


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
