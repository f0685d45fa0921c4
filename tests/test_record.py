"""metrics.json as a typed record (core/record.py): what the summary, resume and predict read."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core.record import RunRecord, RunStatus
from evaluation.summary import read_records, rebuild_summaries
from fake_runs import labels, predictions_with_errors, write_run


def test_summary_reads_only_records_and_keeps_old_ones(tmp_path):
    true = labels(40)
    write_run(tmp_path, "B1_v1", true, predictions_with_errors(true, [0, 1]))
    old = write_run(tmp_path, "C1_v1", true, predictions_with_errors(true, [0, 1, 2, 3]))
    record = json.loads((old / "metrics.json").read_text())
    del record["metrics"]["balanced_accuracy"], record["data"]["max_length"]  # written before these existed
    (old / "metrics.json").write_text(json.dumps(record))
    for name, text in {"D1_v1": '{"run_id": "D1_v1", "status": "running"}',  # not a finished run
                       "E1_v1": '{"status": "complete"}',  # no run id: not a record
                       "F1_v1": "[1, 2]", "G1_v1": "{half"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(text)

    assert [r.run_id for r in read_records(tmp_path)] == ["B1_v1", "C1_v1"]
    summary = rebuild_summaries(tmp_path).set_index("run_id")
    assert list(summary.index) == ["B1_v1", "C1_v1"]
    assert summary.loc["C1_v1", "test_accuracy"] == 36 / 40 and pd.isna(summary.loc["C1_v1", "balanced_accuracy"])
    assert summary.loc["B1_v1", "balanced_accuracy"] == 38 / 40


def test_a_record_round_trips_with_the_fields_a_task_adds(tmp_path):
    true = labels(8)
    folder = write_run(tmp_path, "B1_v1", true, true)
    raw = json.loads((folder / "metrics.json").read_text())
    raw["early_stopping"] = {"stopped_at_epoch": 2}  # a task's own section (TaskResult.extra)
    record = RunRecord.model_validate(raw)
    assert record.status is RunStatus.COMPLETE and record.complete and record.seed == 42
    dumped = record.dump()
    assert {key: dumped[key] for key in raw} == raw  # every field comes back as written, the task's own included
    failed = RunRecord.model_validate({"run_id": "X", "status": "failed", "error": "RuntimeError: boom"})
    assert not failed.complete and failed.base_run == "X" and failed.metrics is None
    assert RunRecord.read(tmp_path / "missing.json") is None
    np.testing.assert_array_equal(np.asarray(record.metrics.confusion_matrix).diagonal(), [2, 2, 2, 2])
