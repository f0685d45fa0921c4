"""bench/precision_accuracy.py: bf16 against fp32 validation accuracy, paired by seed (issue 13's rule)."""
from __future__ import annotations

import json

import pytest

from bench.precision_accuracy import compare, main


def _write(folder, base_run, seed, accuracy, precision, seconds=10.0, status="complete"):
    run_dir = folder / f"{base_run}_s{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({
        "run_id": run_dir.name, "base_run_id": base_run, "status": status, "config": {"seed": seed},
        "precision": precision, "best_epoch": {"epoch": 1.0, "validation_accuracy": accuracy},
        "timing": {"train_seconds": seconds}}))


def test_bf16_holds_within_the_seed_spread_and_fails_beyond_it(tmp_path):
    for seed, b, f in ((1, 0.80, 0.81), (2, 0.82, 0.83), (3, 0.84, 0.85)):  # loses 1 point, spread 2 points
        _write(tmp_path / "bf16", "B1_v1", seed, b, "bf16", seconds=5.0)
        _write(tmp_path / "fp32", "B1_v1", seed, f, "fp32", seconds=15.0)
    for seed, b, f in ((1, 0.80, 0.83), (2, 0.81, 0.84), (3, 0.82, 0.85)):  # loses 3 points, spread 1 point
        _write(tmp_path / "bf16", "C1_v1", seed, b, "bf16")
        _write(tmp_path / "fp32", "C1_v1", seed, f, "fp32")
    _write(tmp_path / "bf16", "C1_v1", 4, 0.10, "bf16")  # no fp32 twin: left out, named
    _write(tmp_path / "fp32", "C1_v1", 5, 0.99, "fp32", status="failed")  # failed: not a seed

    holds = compare(tmp_path / "bf16", tmp_path / "fp32", "B1_v1")
    assert holds["seeds"] == [1, 2, 3] and holds["bf16_holds"]
    assert holds["bf16_loss"] == pytest.approx(0.01) and holds["seed_spread"] == pytest.approx(0.02)
    assert holds["paired_diff_bf16_minus_fp32"] == pytest.approx([-0.01] * 3)
    assert holds["train_speedup_bf16"] == pytest.approx(3.0)
    fails = compare(tmp_path / "bf16", tmp_path / "fp32", "C1_v1")
    assert not fails["bf16_holds"] and fails["bf16_loss"] == pytest.approx(0.03)
    assert fails["seed_spread"] == pytest.approx(0.01) and fails["unpaired_seeds"] == {"bf16": [4], "fp32": []}

    out = tmp_path / "result.json"
    assert main([str(tmp_path / "bf16"), str(tmp_path / "fp32"), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["runs"]["B1_v1"]["bf16_holds"] and not written["runs"]["C1_v1"]["bf16_holds"]


def test_a_side_in_the_wrong_precision_or_one_seed_is_refused(tmp_path, capsys):
    _write(tmp_path / "bf16", "B1_v1", 1, 0.8, "fp32")  # auto resolved to fp32: not a bf16 run
    _write(tmp_path / "fp32", "B1_v1", 1, 0.8, "fp32")
    with pytest.raises(ValueError, match="bf16 seed 1 ran in fp32"):
        compare(tmp_path / "bf16", tmp_path / "fp32", "B1_v1")
    _write(tmp_path / "bf16", "C1_v1", 1, 0.8, "bf16")
    _write(tmp_path / "fp32", "C1_v1", 1, 0.8, "fp32")
    assert main([str(tmp_path / "bf16"), str(tmp_path / "fp32"), "--runs", "C1_v1",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "1 seed(s) complete on both sides" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
