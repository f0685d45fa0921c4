"""Whether the compared runs had equal budgets and equal tuning: the report's "Budget and tuning" section.

A verdict between two methods means something only if each got the same training and the same tuning effort.
From the run records alone (never from the config, which may have changed since):

* **budget**: per training base run, the optimizer steps, samples seen and estimated FLOPs it consumed (means
  over its seeds). Runs whose optimizer steps or samples seen differ from the median of all training base runs by
  more than BUDGET_TOLERANCE are flagged: their differences are confounded with their budgets.
* **tuning**: per searched base run, the number of finished trials and the searched settings. Compared runs that
  searched different numbers of trials or different settings are flagged, and so are runs that searched nothing
  beside runs that did.
"""
from __future__ import annotations

import statistics
from collections import defaultdict

from core.config import METHODS
from core.record import RunRecord

BUDGET_TOLERANCE = 0.05  # relative difference from the median beyond which budgets count as unequal


def budgets(records: list[RunRecord]) -> dict[str, dict[str, float]]:
    """base run -> mean optimizer_steps, samples_seen, train_flops over its complete seeds that trained."""
    found: dict[str, list] = defaultdict(list)
    for record in records:
        if record.complete and record.budget is not None and record.budget.optimizer_steps is not None:
            found[record.base_run].append(record.budget)
    return {base: {key: statistics.fmean(getattr(b, key) for b in spent)
                   for key in ("optimizer_steps", "samples_seen", "train_flops")
                   if all(getattr(b, key) is not None for b in spent)}
            for base, spent in sorted(found.items())}


def unequal_budgets(spent: dict[str, dict[str, float]], tolerance: float = BUDGET_TOLERANCE) -> list[str]:
    """The base runs whose steps or samples differ from the median by more than `tolerance` (relative)."""
    flagged = []
    for key in ("optimizer_steps", "samples_seen"):
        values = {base: row[key] for base, row in spent.items() if key in row}
        if len(values) < 2:
            continue
        median = statistics.median(values.values())
        flagged += [base for base, value in values.items() if abs(value - median) > tolerance * median]
    return sorted(set(flagged))


def tuning(records: list[RunRecord]) -> dict[str, dict]:
    """base run -> {"trials": finished trials, "space": sorted searched settings}; {} for a run not searched."""
    found: dict[str, dict] = {}
    for record in records:
        if not record.complete or not METHODS.get(record.method or "", {}).get("trains"):  # fitted, not tuned
            continue
        search = record.search
        found.setdefault(record.base_run, {} if search is None else
                         {"trials": sum(search.trials.values()) if search.trials else None,
                          "space": sorted(search.space or search.params)})
    return dict(sorted(found.items()))


def unequal_tuning(tuned: dict[str, dict]) -> list[str]:
    """Base runs whose trial count or searched settings differ from the most common ones among searched runs,
    and, where any run was searched, those that were not."""
    searched = {base: t for base, t in tuned.items() if t}
    if not searched:
        return []
    shapes = [(t["trials"], tuple(t["space"])) for t in searched.values()]
    usual = max(set(shapes), key=shapes.count)
    return sorted(base for base, t in tuned.items() if not t or (t["trials"], tuple(t["space"])) != usual)


def section(records: list[RunRecord]) -> list[str]:
    """Markdown lines for the report: the budget every run had, and which compared runs were not on equal terms."""
    lines = ["## Budget and tuning", ""]
    spent = budgets(records)
    if not spent:
        lines.append("No run records its training budget (runs made before budgets were recorded, or none trained).")
    else:
        lines += ["| base run | optimizer steps | samples seen | train FLOPs (est.) |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {base} | {row['optimizer_steps']:,.0f} | {row.get('samples_seen', float('nan')):,.0f} |"
                  f" {row.get('train_flops', float('nan')):.3g} |" for base, row in spent.items()]
        lines.append("")
        flagged = unequal_budgets(spent)
        lines.append(f"**Unequal budgets:** {', '.join(flagged)} trained more than {BUDGET_TOLERANCE:.0%} more or fewer"
                     " optimizer steps or samples than the median run; differences involving them are confounded"
                     " with their budgets (set `budget:` to give every method the same)." if flagged else
                     f"Every training run had the same budget (within {BUDGET_TOLERANCE:.0%}).")
    tuned = tuning(records)
    uneven = unequal_tuning(tuned)
    if any(tuned.values()):
        lines += ["", "| base run | trials | searched settings |", "| --- | ---: | --- |"]
        lines += [f"| {base} | {t.get('trials', '-') if t else '-'} | {', '.join(t['space']) if t else 'not searched'} |"
                  for base, t in tuned.items()]
        lines.append("")
        lines.append(f"**Unequal tuning:** {', '.join(uneven)} searched a different number of trials or different"
                     " settings than the other runs (or none): their differences include tuning effort." if uneven
                     else "Every training run was tuned alike (same trials over the same settings).")
    lines.append("")
    return lines
