"""Bootstrap intervals, McNemar's test, and the summary's tied / reference columns on constructed predictions."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score

from evaluation.statistics import EXACT_BELOW, bootstrap_intervals, macro_f1, mcnemar
from evaluation.summary import rebuild_summaries
from fake_runs import labels, predictions_with_errors, write_run


# ----------------------------------------------------------------------------------------------
# Bootstrap


Z_95, Z_93 = 1.959964, 1.811911  # standard normal quantiles at 0.975 and 0.965


def _predictions(n: int, accuracy: float, seed: int = 1):
    true = labels(n)
    wrong = np.random.default_rng(seed).choice(n, round((1 - accuracy) * n), replace=False)
    return true, predictions_with_errors(true, wrong)


def test_intervals_contain_the_estimate():
    true, predicted = _predictions(2000, 0.85)
    intervals = bootstrap_intervals(true, predicted, 4)
    f1 = f1_score(true, predicted, average="macro")
    assert intervals["accuracy"][0] < 0.85 < intervals["accuracy"][1]
    assert intervals["f1_macro"][0] < f1 < intervals["f1_macro"][1]


def test_accuracy_interval_is_the_95_percent_normal_interval_on_many_texts():
    """On 4,000 texts the bootstrap distribution of accuracy is normal: the default interval must be
    p +/- 1.96 sqrt(p (1 - p) / n) with each end within 4% of the half-width (a 93% interval is 7.5% narrower,
    a 90% one 16%). 10,000 resamples keep the percentile noise near 1.5% of the half-width."""
    n, p = 4000, 0.85
    true, predicted = _predictions(n, p)
    low, high = bootstrap_intervals(true, predicted, 4, resamples=10_000)["accuracy"]
    half = Z_95 * np.sqrt(p * (1 - p) / n)  # 0.01107
    assert low == pytest.approx(p - half, abs=0.04 * half)
    assert high == pytest.approx(p + half, abs=0.04 * half)
    assert high - low == pytest.approx(2 * half, rel=0.03)


def test_a_93_percent_interval_is_narrower_by_the_ratio_of_normal_quantiles():
    true, predicted = _predictions(4000, 0.85)
    width = {confidence: np.subtract(*bootstrap_intervals(true, predicted, 4, resamples=10_000,
                                                          confidence=confidence)["accuracy"][::-1])
             for confidence in (0.93, 0.95)}
    assert width[0.93] < width[0.95]
    assert width[0.93] / width[0.95] == pytest.approx(Z_93 / Z_95, abs=0.01)  # 0.9245


def test_intervals_are_seeded_and_narrow_with_more_texts():
    rng = np.random.default_rng(2)
    small, large = labels(200), labels(5000)
    small_predicted = predictions_with_errors(small, rng.choice(200, 40, replace=False))
    large_predicted = predictions_with_errors(large, rng.choice(5000, 1000, replace=False))
    assert bootstrap_intervals(small, small_predicted, 4) == bootstrap_intervals(small, small_predicted, 4)
    assert bootstrap_intervals(small, small_predicted, 4, seed=1) != bootstrap_intervals(small, small_predicted, 4)
    width = lambda interval: interval[1] - interval[0]  # noqa: E731
    assert width(bootstrap_intervals(large, large_predicted, 4)["accuracy"]) < \
        width(bootstrap_intervals(small, small_predicted, 4)["accuracy"]) / 3


def test_perfect_predictions_give_a_point_interval():
    true = labels(40)
    assert bootstrap_intervals(true, true, 4) == {"accuracy": (1.0, 1.0), "f1_macro": (1.0, 1.0)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60))
def test_macro_f1_from_counts_is_scikit_learns(pairs):
    true, predicted = np.array(pairs).T
    expected = f1_score(true, predicted, labels=[0, 1, 2, 3], average="macro", zero_division=0)
    assert macro_f1(confusion_matrix(true, predicted, labels=[0, 1, 2, 3])) == pytest.approx(expected)


# ----------------------------------------------------------------------------------------------
# McNemar


def test_mcnemar_of_a_run_with_itself_is_one():
    correct = np.random.default_rng(3).random(500) < 0.8
    assert mcnemar(correct, correct) == 1.0


def _correctness(only_a: int, only_b: int, both: int = 50, neither: int = 10):
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return np.array(a), np.array(b)


def test_mcnemar_exact_binomial_for_few_discordant_texts():
    a, b = _correctness(10, 0)
    assert mcnemar(a, b) == pytest.approx(2 * 0.5 ** 10)  # both tails of Binomial(10, 1/2)
    a, b = _correctness(7, 5)
    assert mcnemar(a, b) == pytest.approx(stats.binomtest(7, 12, 0.5).pvalue)
    assert mcnemar(a, b) == mcnemar(b, a)


def test_mcnemar_chi_square_with_continuity_correction_for_many():
    a, b = _correctness(40, 10)
    assert 40 + 10 >= EXACT_BELOW
    assert mcnemar(a, b) == pytest.approx(stats.chi2.sf((30 - 1) ** 2 / 50, df=1))
    assert mcnemar(a, b) < 0.001


def _exact_p(b: int, c: int) -> float:
    """Two-sided exact binomial p for b against c discordant texts under Binomial(b + c, 1/2), by hand."""
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n)


def _chi_square_p(b: int, c: int) -> float:
    """McNemar's chi-square with continuity correction, 1 degree of freedom, by hand."""
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return math.erfc(math.sqrt(statistic / 2))


@pytest.mark.parametrize("only_a, only_b, test", [
    (18, 6, "exact"),  # 24 discordant texts: still exact (p 0.0227; chi-square would say 0.0247)
    (6, 18, "exact"),
    (19, 6, "chi-square"),  # 25: chi-square from here on (p 0.0164; exact would say 0.0146)
    (6, 19, "chi-square"),
])
def test_mcnemar_switches_from_exact_to_chi_square_at_25_discordant_texts(only_a, only_b, test):
    exact, chi_square = _exact_p(only_a, only_b), _chi_square_p(only_a, only_b)
    assert abs(exact - chi_square) > 0.05 * exact  # the two tests disagree here, so the check can tell them apart
    a, b = _correctness(only_a, only_b)
    assert mcnemar(a, b) == pytest.approx(exact if test == "exact" else chi_square, rel=1e-9)


def test_mcnemar_refuses_different_texts():
    with pytest.raises(ValueError, match="same texts"):
        mcnemar(np.ones(5, bool), np.ones(6, bool))


# ----------------------------------------------------------------------------------------------
# summary.csv: tied with best, reference run, intervals


def _study(tmp_path, true):
    """best: 90% right; close: 89% right, 10 discordant texts; far: 70% right; a failed run."""
    wrong_best = list(range(0, 40))  # 400 texts: 40 wrong
    wrong_close = list(range(4, 40)) + list(range(100, 108))  # 44 wrong; disagrees with best on 4 + 8 texts
    wrong_far = list(range(0, 120))
    write_run(tmp_path, "B1_v1", true, predictions_with_errors(true, wrong_best))
    write_run(tmp_path, "C1_v1", true, predictions_with_errors(true, wrong_close), method="lora")
    write_run(tmp_path, "D1_v1", true, predictions_with_errors(true, wrong_far), method="lora")
    write_run(tmp_path, "E1_v1", true, true, method="lora", status="failed")


def test_summary_marks_runs_tied_with_the_best(tmp_path):
    true = labels(400)
    _study(tmp_path, true)
    summary = rebuild_summaries(tmp_path).set_index("run_id")
    assert (summary.loc[["B1_v1", "C1_v1", "D1_v1"], "best_run"] == "B1_v1").all()
    assert summary.loc["B1_v1", "p_vs_best"] == 1.0 and summary.loc["B1_v1", "tied_with_best"] is True
    assert summary.loc["C1_v1", "p_vs_best"] == pytest.approx(stats.binomtest(4, 12, 0.5).pvalue)
    assert summary.loc["C1_v1", "tied_with_best"] is True  # p = 0.39
    assert summary.loc["D1_v1", "p_vs_best"] < 1e-10 and summary.loc["D1_v1", "tied_with_best"] is False
    assert pd.isna(summary.loc["E1_v1", "p_vs_best"]) and pd.isna(summary.loc["E1_v1", "tied_with_best"])
    on_disk = pd.read_csv(tmp_path / "summary.csv").set_index("run_id")
    assert on_disk.loc[["B1_v1", "C1_v1", "D1_v1"], "tied_with_best"].tolist() == [True, True, False]
    for run_id in ("B1_v1", "C1_v1", "D1_v1"):
        row = on_disk.loc[run_id]
        assert row["test_accuracy_low"] <= row["test_accuracy"] <= row["test_accuracy_high"]
        assert row["f1_macro_low"] <= row["f1_macro"] <= row["f1_macro_high"]


def test_summary_tests_every_run_against_the_reference_run(tmp_path):
    true = labels(400)
    _study(tmp_path, true)
    summary = rebuild_summaries(tmp_path, reference_run="D1_v1").set_index("run_id")
    assert summary.loc["D1_v1", "p_vs_reference"] == 1.0
    assert (summary.loc[["B1_v1", "C1_v1", "D1_v1"], "reference_run"] == "D1_v1").all()
    assert summary.loc["B1_v1", "p_vs_reference"] == pytest.approx(stats.chi2.sf((80 - 1) ** 2 / 80, df=1))
    assert pd.isna(rebuild_summaries(tmp_path).set_index("run_id").loc["B1_v1", "p_vs_reference"])


def test_runs_scored_on_other_texts_are_not_compared(tmp_path):
    true = labels(400)
    _study(tmp_path, true)
    write_run(tmp_path, "F1_v1", labels(200), labels(200), method="lora")  # 100% right, on another test set
    summary = rebuild_summaries(tmp_path).set_index("run_id")
    assert summary.loc["B1_v1", "best_run"] == "F1_v1"
    assert pd.isna(summary.loc["B1_v1", "p_vs_best"]) and pd.isna(summary.loc["B1_v1", "tied_with_best"])
