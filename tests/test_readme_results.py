"""The results tables of docs/results.md quote their committed files: every row's test accuracy (mean, std, t interval),
trainable parameters and train seconds are recomputed from the run records under docs/results/, not from
summary.csv alone, so a table left behind by a rerun, or a summary that misstates its runs, fails here."""
from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats

from conftest import ROOT
from core.record import RunRecord

RESULTS = ROOT / "docs" / "results.md"
TABLES = {  # docs/results.md section heading -> committed results folder
    "## Results of the default run": ROOT / "docs" / "results" / "default",
    "## Methods compared": ROOT / "docs" / "results" / "methods",
}
ACCURACY = "test accuracy, mean ± std [95% t CI]"


def _table(heading: str) -> list[dict[str, str]]:
    """The first markdown table after `heading`, as one dict per row keyed by the header's cells."""
    text = RESULTS.read_text(encoding="utf-8")
    assert heading in text, f"docs/results.md has no section {heading!r}"
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, body = rows[0], rows[2:]
    return [dict(zip(header, row)) for row in body]


def _records(folder, base_run: str) -> list[RunRecord]:
    records = [RunRecord.read(path) for path in sorted(folder.glob(f"{base_run}_s*/metrics.json"))]
    return [r for r in records if r is not None and r.base_run == base_run and r.complete]


def _numbers(cell: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"[-+]?\d[\d,]*\.?\d*(?:e[-+]?\d+)?", cell)]


@pytest.mark.parametrize("heading", TABLES)
def test_each_readme_row_is_recomputed_from_the_committed_run_records(heading):
    folder = TABLES[heading]
    rows = _table(heading)
    assert len(rows) >= 5
    for row in rows:
        base_run = row["base run"].strip("*")
        records = _records(folder, base_run)
        assert len(records) == 3, f"{base_run}: {len(records)} complete seeds in {folder}"
        accuracy = np.array([r.metrics.accuracy for r in records])
        mean, std = accuracy.mean(), accuracy.std(ddof=1)
        half = stats.t.ppf(0.975, len(accuracy) - 1) * std / np.sqrt(len(accuracy))
        quoted = _numbers(row[ACCURACY].replace("*", ""))
        expected = [mean, std, mean - half, mean + half]
        assert quoted == pytest.approx(expected, abs=6e-5), f"{base_run}: {row[ACCURACY]} vs {expected}"
        trainable = row["trainable"].replace(",", "")
        if trainable.isdigit():
            assert int(trainable) == records[0].parameters.trainable, base_run
        if row.get("train s", "-") != "-":
            seconds = np.mean([r.timing.train_seconds for r in records])
            assert float(row["train s"]) == pytest.approx(seconds, abs=0.051), base_run
