"""Figures rebuilt from the per-run files: learning curves and confusion matrices per run, comparisons across runs.

Every function takes what summary.csv, epochs.csv and metrics.json hold and writes one PNG; nothing is
taken from a training process's memory. Figures are drawn with matplotlib's Agg backend (no display).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from core.record import RunRecord  # noqa: E402
from evaluation.statistics import CONFIDENCE, SIGNIFICANCE  # noqa: E402
from evaluation.means import pairwise_p_values  # noqa: E402
from evaluation.summary import seed_means  # noqa: E402

FOLDER = "plots"  # inside output_dir
DPI = 110
ROW_INCHES = 0.32  # height per run in the comparison charts, so run ids never overlap
FOCUS = 0.15  # accuracy / F1 charts span the runs within this of the highest; runs further below sit at the edge
METHOD_COLOURS = {"tfidf_nb": "#7f7f7f", "pretrained": "#bcbd22", "full": "#1f77b4", "lora": "#ff7f0e",
                  "peft": "#9467bd", "head": "#8c564b", "bitfit": "#e377c2",
                  # method types (evaluation/means.method_type): a PEFT adapter by its peft_type
                  "vera": "#2ca02c", "ia3": "#d62728", "ln_tuning": "#9467bd", "prompt_tuning": "#393b79"}
OTHER_COLOUR = "#17becf"


def draw_all(output_dir: Path, summary: pd.DataFrame, records: list[RunRecord],
             means: pd.DataFrame | None = None) -> dict[str, list[Path]]:
    """Every figure for an output folder, into <output_dir>/plots/ (old PNGs there are removed first); the
    frontier needs `means` (means.csv).

    Returns {"comparison": [...], "<run_id>": [...]} with the paths written.
    """
    folder = Path(output_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    complete = summary[summary["status"] == "complete"]
    written: dict[str, list[Path]] = {"comparison": []}
    for chart in (accuracy_chart, f1_chart, seconds_per_epoch_chart, trainable_parameters_chart):
        path = chart(complete, folder)
        if path is not None:
            written["comparison"].append(path)
    if means is not None and len(means) >= 2:
        path = frontier_chart(means, pairwise_p_values(output_dir, summary, list(means["base_run"])), folder)
        if path is not None:
            written["comparison"].append(path)
    path = rank_sweep_chart(complete, records, folder)
    if path is not None:
        written["comparison"].append(path)
    for record in records:
        if not record.complete:
            continue
        run_id = record.run_id
        paths = [learning_curves(run_id, Path(output_dir) / run_id / "epochs.csv", folder,
                                 Path(output_dir) / run_id / "steps.csv"),
                 confusion_heatmap(record, folder)]
        written[run_id] = [p for p in paths if p is not None]
    return written


# ----------------------------------------------------------------------------------------------
# Per run


def learning_curves(run_id: str, epochs_csv: Path, folder: Path, steps_csv: Path | None = None) -> Path | None:
    """Train and validation loss, and validation accuracy, by epoch (validations may fall within epochs). The
    train loss comes from steps.csv when the run logged it every `logging_steps`. None for runs with no epochs."""
    try:
        epochs = pd.read_csv(epochs_csv)
    except (OSError, ValueError):  # no file, or an empty one (methods that do not train)
        return None
    if epochs.empty or "epoch" not in epochs:
        return None
    try:
        steps = pd.read_csv(steps_csv) if steps_csv is not None else None
    except (OSError, ValueError):
        steps = None
    figure = Figure(figsize=(10, 3.8), dpi=DPI, layout="constrained")
    loss, accuracy = figure.subplots(1, 2)
    if steps is not None and len(steps) > 1 and "train_loss" in steps:
        loss.plot(steps["epoch"], steps["train_loss"], "-", label=f"train loss (every {int(steps['step'].diff().min())} steps)")
        epochs = epochs.drop(columns="train_loss", errors="ignore")
    for column, label, style in (("train_loss", "train loss", "o-"), ("validation_loss", "validation loss", "s--")):
        if column in epochs and epochs[column].notna().any():
            loss.plot(epochs["epoch"], epochs[column], style, label=label)
    loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    loss.legend()
    accuracy.plot(epochs["epoch"], epochs["validation_accuracy"], "o-", color="#2ca02c", label="validation accuracy")
    best = epochs.loc[epochs["validation_accuracy"].idxmax()]
    accuracy.plot([best["epoch"]], [best["validation_accuracy"]], "*", markersize=14, color="#d62728",
                  label=f"best: epoch {best['epoch']:g}, {best['validation_accuracy']:.4f}")
    accuracy.set(title="Validation accuracy", xlabel="epoch", ylabel="accuracy")
    accuracy.legend(loc="lower right")
    for axes in (loss, accuracy):
        axes.grid(alpha=0.3)
        axes.set_xticks(epochs["epoch"])
    figure.suptitle(f"{run_id}: learning curves")
    return _save(figure, folder / f"{run_id}-curves.png")


def confusion_heatmap(record: RunRecord, folder: Path) -> Path | None:
    """Test-set confusion matrix: colour is the share of the true class, the text the count and share."""
    matrix = np.asarray(record.metrics.confusion_matrix if record.metrics else [])
    names = record.data.class_names
    if matrix.size == 0 or matrix.shape != (len(names), len(names)):
        return None
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    side = 1.4 + 1.1 * len(names)
    figure = Figure(figsize=(side + 1.2, side), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        axes.text(j, i, f"{count}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=9,
                  color="white" if share[i, j] > 0.6 else "black")
    axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set(xlabel="predicted class", ylabel="true class")
    accuracy = record.metrics.accuracy if record.metrics else None
    axes.set_title(f"{record.run_id}: test confusion matrix\n(n={int(matrix.sum())}"
                   + (f", accuracy {accuracy:.4f})" if accuracy is not None else ")"))
    figure.colorbar(image, ax=axes, label="share of the true class", shrink=0.8)
    return _save(figure, folder / f"{record.run_id}-confusion.png")


# ----------------------------------------------------------------------------------------------
# Across runs (one horizontal row per run, in summary order, first at the top)


def accuracy_chart(summary: pd.DataFrame, folder: Path) -> Path | None:
    return _interval_chart(summary, "test_accuracy", f"test accuracy ({CONFIDENCE:.0%} bootstrap interval)",
                           folder / "compare-test-accuracy.png")


def f1_chart(summary: pd.DataFrame, folder: Path) -> Path | None:
    return _interval_chart(summary, "f1_macro", f"macro-F1 ({CONFIDENCE:.0%} bootstrap interval)", folder / "compare-f1-macro.png")


def seconds_per_epoch_chart(summary: pd.DataFrame, folder: Path) -> Path | None:
    rows = summary[pd.to_numeric(summary["seconds_per_epoch"]).notna()]
    if rows.empty:
        return None
    values = pd.to_numeric(rows["seconds_per_epoch"]).to_numpy()
    figure, axes = _bar_figure(rows)
    axes.barh(range(len(rows)), values, color=_colours(rows))
    for y, value in enumerate(values):
        axes.text(value, y, f" {value:.1f}", va="center", fontsize=8)
    axes.set_xlim(0, values.max() * 1.15)
    axes.set(xlabel="seconds per training epoch", title="Training time per epoch (runs that train)")
    _method_legend(axes, rows)
    return _save(figure, folder / "compare-seconds-per-epoch.png")


def trainable_parameters_chart(summary: pd.DataFrame, folder: Path) -> Path | None:
    values_all = pd.to_numeric(summary["trainable_parameters"])
    rows = summary[values_all > 0]
    untrained = summary.loc[values_all == 0, "run_id"].tolist()
    if rows.empty:
        return None
    values = pd.to_numeric(rows["trainable_parameters"]).to_numpy(dtype=float)
    figure, axes = _bar_figure(rows)
    axes.barh(range(len(rows)), values, color=_colours(rows))
    axes.set_xscale("log")
    for y, value in enumerate(values):
        axes.text(value, y, f" {_count(value)}", va="center", fontsize=8)
    axes.set_xlim(max(values.min() / 3, 1), values.max() * 8)  # room for the labels on a log axis
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _count(v)))
    axes.set(xlabel="trainable parameters (log scale)", title="Trainable parameters")
    if untrained:
        axes.set_title("Trainable parameters\n(none trained: " + ", ".join(untrained) + ")", fontsize=10)
    _method_legend(axes, rows)
    return _save(figure, folder / "compare-trainable-parameters.png")


def pareto_within_noise(cost, accuracy, p_values) -> np.ndarray:
    """True for each run on the Pareto front beyond noise. Run j dominates run i when either
    - j is distinguishably more accurate (pooled paired test p < SIGNIFICANCE, not adjusted: one pair at a time)
      and costs at most as much, or
    - the two are not distinguishable (p >= SIGNIFICANCE) and j costs strictly less.
    Only runs on the front dominate: runs are taken from the cheapest up (equal costs: the more accurate first),
    and each is on the front unless one already there dominates it. Being within noise does not carry over (A
    within noise of B and B of C, while A is distinguishably better than C), so without this rule a chain of
    within-noise steps would let the cheapest run dominate every run above it. `p_values[i, j]`: the pooled
    test's p between i and j (evaluation/means.pairwise_p_values); a pair with no test (NaN) dominates neither
    way. Two runs within noise at equal cost are both on the front."""
    cost, accuracy = np.asarray(cost, dtype=float), np.asarray(accuracy, dtype=float)
    p_values = np.asarray(p_values, dtype=float)
    front = np.zeros(len(cost), dtype=bool)
    for i in np.lexsort((-accuracy, cost)):  # by cost, then by accuracy, highest first
        on = np.flatnonzero(front)
        p = p_values[on, i]
        beyond = (p < SIGNIFICANCE) & (accuracy[on] > accuracy[i]) & (cost[on] <= cost[i])
        within = (p >= SIGNIFICANCE) & (cost[on] < cost[i])  # NaN compares False both ways: no test
        front[i] = not (beyond | within).any()
    return front


def uncrowded(x: np.ndarray, y: np.ndarray, first: np.ndarray, width: float = 0.1, height: float = 0.045) -> list[int]:
    """The points to label so that no two labels crowd: in order (the `first` points, then by y from the top),
    each point whose label would not start within `width` x `height` of the plot (as fractions of the data's
    span) of a label already placed. The table beside the plot names every point."""
    def span(values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        return (values - values.min()) / (np.ptp(values) or 1.0)

    u, v = span(x), span(y)
    placed: list[int] = []
    for index in sorted(range(len(u)), key=lambda i: (not first[i], -v[i])):
        if all(abs(u[index] - u[j]) >= width or abs(v[index] - v[j]) >= height for j in placed):
            placed.append(index)
    return placed


def frontier_chart(means: pd.DataFrame, p_values: np.ndarray, folder: Path) -> Path | None:
    """Mean test accuracy over seeds (whisker: its t interval over seeds; none from one seed or for a deterministic
    run) against trainable parameters and against training seconds: one point per base run of means.csv with
    that cost (a TF-IDF vocabulary is no trainable parameters: means.csv leaves it empty), coloured by method
    type, named by `label`. The runs Pareto-optimal beyond noise on each axis (pareto_within_noise, with the pooled
    test's pairwise p-values) are outlined, joined and named first; the others where their names do not crowd."""
    accuracy_all = pd.to_numeric(means["test_accuracy_mean"]).to_numpy(dtype=float)
    low = pd.to_numeric(means["test_accuracy_mean_low"]).to_numpy(dtype=float)
    high = pd.to_numeric(means["test_accuracy_mean_high"]).to_numpy(dtype=float)
    whisker = np.nan_to_num(np.vstack([accuracy_all - low, high - accuracy_all]))
    axes_columns = (("trainable_parameters", "trainable parameters (log scale)"),
                    ("train_seconds", "training seconds (log scale)"))
    shown = [np.flatnonzero((pd.to_numeric(means[column]).to_numpy(dtype=float) > 0) & ~np.isnan(accuracy_all))
             for column, _ in axes_columns]
    if all(len(rows) < 2 for rows in shown):
        return None
    figure = Figure(figsize=(13, 6), dpi=DPI, layout="constrained")
    for axes, (column, label), rows in zip(figure.subplots(1, 2, sharey=True), axes_columns, shown):
        axes.set_xlabel(label)
        axes.grid(alpha=0.3)
        if len(rows) < 2:
            axes.text(0.5, 0.5, "fewer than two runs with this cost", transform=axes.transAxes, ha="center")
            continue
        cost = pd.to_numeric(means[column]).to_numpy(dtype=float)[rows]
        accuracy = accuracy_all[rows]
        front = pareto_within_noise(cost, accuracy, p_values[np.ix_(rows, rows)])
        colours = [METHOD_COLOURS.get(m, OTHER_COLOUR) for m in means["method_type"].iloc[rows]]
        axes.errorbar(cost, accuracy, yerr=whisker[:, rows], fmt="none", ecolor="#999999", capsize=2, zorder=1)
        axes.scatter(cost, accuracy, c=colours, s=[70 if f else 30 for f in front], zorder=2,
                     edgecolors=["black" if f else "none" for f in front], linewidths=1.5)
        order = np.argsort(cost[front])
        axes.plot(cost[front][order], accuracy[front][order], color="black", linewidth=0.8, drawstyle="steps-post",
                  zorder=0)
        for index in uncrowded(np.log10(cost), accuracy, first=front):
            axes.annotate(means["label"].iloc[rows[index]], (cost[index], accuracy[index]), xytext=(4, 3),
                          textcoords="offset points", fontsize=7, fontweight="bold" if front[index] else "normal")
        axes.set_xscale("log")
        if column == "trainable_parameters":
            axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _count(v)))
    figure.axes[0].set_ylabel(f"test accuracy (mean over seeds; whisker: {CONFIDENCE:.0%} t interval)")
    figure.suptitle("Accuracy against cost, one point per base run. Outlined and joined: Pareto-optimal beyond noise:"
                    " no run on the front is at most as costly\nand distinguishably more accurate, nor as accurate"
                    f" within noise and cheaper (pooled paired test over texts, p < {SIGNIFICANCE:g} per pair)",
                    fontsize=10)
    _method_legend(figure.axes[0], means.iloc[np.unique(np.concatenate(shown))], column="method_type")
    return _save(figure, folder / "frontier.png")


def rank_sweep_chart(summary: pd.DataFrame, records: list[RunRecord], folder: Path) -> Path | None:
    """LoRA against rsLoRA: test accuracy (mean over seeds, whisker: std) against the rank r, one line per family
    of LoRA runs that differ only in r (and their learning rate), where a family has two ranks or more."""
    means = seed_means(summary)
    if means.empty:
        return None
    families: dict[str, dict[int, tuple[float, float]]] = {}
    for base_run, row in means.set_index("base_run").iterrows():
        record = next((r for r in records if r.base_run == base_run and r.complete), None)
        settings = _lora_settings(record)
        if settings is None:
            continue
        rank = settings.pop("r")
        name = "rsLoRA" if settings.get("use_rslora") else "LoRA"
        details = ", ".join(f"{key} {_setting_text(value)}" for key, value in sorted(settings.items())
                            if key not in ("use_rslora", "peft_type") and value not in (None, False, [], {}))
        std = row["test_accuracy_std"]
        families.setdefault(f"{name} ({details})", {})[rank] = (row["test_accuracy_mean"], 0.0 if pd.isna(std) else std)
    families = {name: ranks for name, ranks in families.items() if len(ranks) >= 2}
    if not families:
        return None
    figure = Figure(figsize=(9, 5), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    for name, ranks in sorted(families.items()):
        r = sorted(ranks)
        axes.errorbar(r, [ranks[k][0] for k in r], yerr=[ranks[k][1] for k in r], marker="o", capsize=3,
                      linestyle="--" if name.startswith("rs") else "-", label=name)
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted({k for ranks in families.values() for k in ranks}))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes.grid(alpha=0.3)
    axes.set(xlabel="rank r", ylabel="test accuracy (mean over seeds; whisker: std)",
             title="Rank sweep: LoRA (scale alpha / r) against rsLoRA (alpha / sqrt r)")
    axes.legend(fontsize=7, loc="best")
    return _save(figure, folder / "rank-sweep.png")


def _lora_settings(record: RunRecord | None) -> dict | None:
    """The LoRA settings a run trained with (method lora, or peft with peft_type LORA), or None."""
    if record is None:
        return None
    if record.method == "lora" and isinstance(record.config.get("lora"), dict):
        settings = dict(record.config["lora"])
    elif record.method == "peft" and (record.config.get("adapter") or {}).get("peft_type") == "LORA":
        settings = dict(record.config["adapter"])
    else:
        return None
    return settings if isinstance(settings.get("r"), int) else None


def _setting_text(value) -> str:
    return "+".join(map(str, value)) if isinstance(value, (list, tuple)) else f"{value:g}" if isinstance(
        value, float) else str(value)


def _interval_chart(summary: pd.DataFrame, column: str, label: str, path: Path) -> Path | None:
    """One point and whisker per run. The axis spans the runs within FOCUS of the highest value, so that
    close intervals stay distinguishable; a run below it is a marker at the left edge. Values are
    written in a column right of the axes."""
    rows = summary[pd.to_numeric(summary[column]).notna()]
    if rows.empty:
        return None
    values = pd.to_numeric(rows[column]).to_numpy(dtype=float)
    low = np.fmin(pd.to_numeric(rows[f"{column}_low"]).to_numpy(dtype=float), values)  # NaN -> the value
    high = np.fmax(pd.to_numeric(rows[f"{column}_high"]).to_numpy(dtype=float), values)
    shown = values >= values.max() - FOCUS
    span_low, span_high = low[shown].min(), high[shown].max()
    pad = max(span_high - span_low, 0.05) * 0.15
    lower = max(span_low - pad, 0.0)
    upper = span_high + pad if span_high + pad <= 1 else 1 + 0.03 * (1 - lower)  # never far past 1.0
    figure, axes = _bar_figure(rows)
    y = np.arange(len(rows))
    for index, colour in enumerate(_colours(rows)):
        if shown[index]:
            axes.errorbar(values[index], y[index], xerr=[[values[index] - low[index]], [high[index] - values[index]]],
                          fmt="o", color=colour, capsize=4, markersize=6)
        else:
            axes.plot(lower, y[index], "<", color=colour, markersize=9, clip_on=False)
    axes.set_xlim(lower, upper)
    for index in range(len(rows)):  # the values, as a column to the right of the axes
        is_reference = rows["run_id"].iloc[index] == rows["compared_to"].iloc[index]
        note = ""
        if column == "test_accuracy":
            distinguishable = rows["distinguishable"].iloc[index]
            if is_reference:
                note = "  reference"
            elif pd.notna(distinguishable) and distinguishable:
                note = "  ≠ ref"
        axes.annotate(f"{values[index]:.4f}{note}", xy=(1, y[index]), xycoords=axes.get_yaxis_transform(),
                      xytext=(6, 0), textcoords="offset points", va="center", fontsize=8,
                      fontweight="bold" if is_reference and note else "normal")
    notes = []
    if column == "test_accuracy" and rows["compared_to"].notna().any():
        notes.append(f"≠ ref = distinguishable from the reference run (McNemar, Holm-adjusted p < {SIGNIFICANCE:g})")
    if not shown.all():
        notes.append(f"◄ = more than {FOCUS:.2f} below the highest, off the axis (value on the right)")
    axes.set_xlabel(label)
    axes.set_title(label[0].upper() + label[1:] + "".join(f"\n{n}" for n in notes), fontsize=10 if notes else None)
    _method_legend(axes, rows)
    return _save(figure, path)


def _bar_figure(rows: pd.DataFrame):
    figure = Figure(figsize=(9, 1.6 + ROW_INCHES * len(rows)), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    axes.set_yticks(range(len(rows)), rows["run_id"])
    axes.set_ylim(len(rows) - 0.4, -0.6)  # the first run at the top, as in the tables; half a row of margin
    axes.grid(axis="x", alpha=0.3)
    return figure, axes


def _colours(rows: pd.DataFrame) -> list[str]:
    return [METHOD_COLOURS.get(m, OTHER_COLOUR) for m in rows["method"]]


def _method_legend(axes, rows: pd.DataFrame, column: str = "method") -> None:
    """Colour = method (or method type), in one row under the chart (never over the data)."""
    from matplotlib.patches import Patch

    methods = list(dict.fromkeys(rows[column]))
    axes.figure.legend(handles=[Patch(color=METHOD_COLOURS.get(m, OTHER_COLOUR), label=m) for m in methods],
                       loc="outside lower center", ncols=len(methods), fontsize=8, title=column.replace("_", " "),
                       title_fontsize=8, frameon=False)


def _count(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.0f}"


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path)
    return path
