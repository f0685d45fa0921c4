"""Bootstrap intervals, McNemar's test, the paired difference, Holm's correction, the seed-paired t interval,
and the summary's comparison columns, on constructed predictions; each expected value is recomputed here
from its definition (or written out by hand), not by calling the code under test."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score

from evaluation.statistics import (EXACT_BELOW, bootstrap_intervals, choose_reference, holm, macro_f1, mcnemar,
                                   paired_bootstrap_difference, t_interval)
from evaluation.summary import rebuild_summaries
from fake_runs import epoch_rows, labels, predictions_with_errors, write_run


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
# Paired bootstrap difference, Holm, Student-t over seeds, choosing the reference


def test_paired_difference_interval_matches_the_normal_approximation_of_the_paired_difference():
    """Two runs that mostly agree: the interval of their difference is that of the per-text difference
    (+1 where only the run is right, -1 where only the reference is), far narrower than two separate
    intervals would suggest."""
    n = 10_000
    rng = np.random.default_rng(4)
    reference = rng.random(n) < 0.9
    right, wrong = np.flatnonzero(reference), np.flatnonzero(~reference)
    run = reference.copy()
    run[wrong[:300]] = True  # only the run is right on 300 texts
    run[right[:200]] = False  # only the reference is right on 200
    difference, low, high = paired_bootstrap_difference(run, reference)
    assert difference == pytest.approx(100 / n)  # (300 - 200) / n
    per_text_variance = 500 / n - (100 / n) ** 2  # E[d^2] - E[d]^2, d in {-1, 0, +1}
    half_width = 1.96 * np.sqrt(per_text_variance / n)  # 0.0044
    assert high - low == pytest.approx(2 * half_width, rel=0.1)
    assert (low + high) / 2 == pytest.approx(difference, abs=0.0006)
    unpaired_half_width = 1.96 * np.sqrt((run.var() + reference.var()) / n)  # resampling the runs separately: 0.0083
    assert high - low < 0.6 * 2 * unpaired_half_width
    assert paired_bootstrap_difference(run, reference) == (difference, low, high)  # seeded
    assert paired_bootstrap_difference(reference, run) == pytest.approx((-difference, -high, -low))


def test_paired_difference_needs_the_same_texts():
    with pytest.raises(ValueError, match="same texts"):
        paired_bootstrap_difference(np.ones(5, bool), np.ones(6, bool))


@pytest.mark.parametrize("p_values, expected", [
    ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06]),  # 3 x 0.01; 2 x 0.03; max(1 x 0.04, 0.06): monotone
    ([0.6, 0.4, 0.01], [0.8, 0.8, 0.03]),  # 3 x 0.01; 2 x 0.4; max(1 x 0.6, 0.8)
    ([0.7, 0.9], [1.0, 1.0]),  # 2 x 0.7 capped at 1; max(0.9, 1)
    ([0.2, 0.5], [0.4, 0.5]),
    ([0.03], [0.03]),  # a family of one: unadjusted
    ([np.nan, 0.02, 0.04], [np.nan, 0.04, 0.04]),  # NaN is no test: a family of two
    ([], []),
])
def test_holm_on_hand_chosen_p_values(p_values, expected):
    np.testing.assert_allclose(holm(p_values), expected, rtol=1e-12)


def test_t_interval_by_hand():
    # mean 0.02, sample sd 0.01, se 0.01 / sqrt(3); t(0.975, 2 df) = 4.302652729911275
    mean, low, high = t_interval([0.01, 0.02, 0.03])
    assert mean == pytest.approx(0.02)
    assert (low, high) == pytest.approx((0.02 - 0.024841377117503, 0.02 + 0.024841377117503))
    mean, low, high = t_interval([0.0123])
    assert mean == pytest.approx(0.0123) and np.isnan(low) and np.isnan(high)  # one seed: no interval
    assert all(np.isnan(t_interval([])))


def test_choose_reference_takes_the_first_highest_and_never_a_run_without_validation():
    assert choose_reference(["A0", "B1_v1", "C1_v1", "D1_v1"], [np.nan, 0.86, 0.9, 0.9]) == "C1_v1"
    assert choose_reference(["A0", "A1"], [np.nan, np.nan]) is None
    assert choose_reference([], []) is None


def test_choosing_on_validation_and_holm_keep_false_differences_at_five_percent():
    """Simulation of the protocol: 5 equally accurate runs (88%) on 7,600 test texts, the reference chosen on an
    independent 500-text validation set, McNemar's test of the 4 others against it, Holm's correction. Every
    "distinguishable" is false; the share of families with any stays at or below 5%. Texts differ in
    difficulty (each text's P(right) is one of 4 levels, the same for every run), so the runs' errors are
    correlated, as real models' are. 4,000 families: Monte Carlo sd 0.3 points around the ~4% this gives
    over other seeds. The old protocol (reference = the most accurate on test, no correction), on the first
    500 families, gives ~26%: the simulation sees the problem it guards against."""
    rng = np.random.default_rng(10)
    levels = np.array([0.995, 0.97, 0.9, 0.655])  # P(right) of a text; mean 0.88
    runs, test_texts, validation_texts, families, old_families = 5, 7600, 500, 4000, 500
    names = list(range(runs))
    false_new = false_old = 0
    for family in range(families):
        correct = rng.random((runs, test_texts)) < levels[rng.integers(0, len(levels), test_texts)]
        validation = (rng.random((runs, validation_texts)) < levels[rng.integers(0, len(levels), validation_texts)])
        reference = choose_reference(names, validation.mean(axis=1))
        p_values = [mcnemar(correct[i], correct[reference]) for i in names if i != reference]
        false_new += bool((holm(p_values) < 0.05).any())
        if family < old_families:
            best_on_test = int(np.argmax(correct.mean(axis=1)))
            p_values = [mcnemar(correct[i], correct[best_on_test]) for i in names if i != best_on_test]
            false_old += bool((np.array(p_values) < 0.05).any())
    assert false_new / families <= 0.05
    assert false_old / old_families > 0.15


# ----------------------------------------------------------------------------------------------
# summary.csv: the reference, the paired difference, McNemar, Holm, distinguishable, intervals


def _study(tmp_path, true):
    """400 texts. C1_v1 and D1_v1 share the highest validation accuracy (C first); A0 is the most accurate
    on test but untrained (no validation accuracy); B1_v1 is more accurate than C on test. E1_v1 failed.

    Against C (wrong on 0-59): A0 is right on 40 texts C gets wrong and never the reverse; B on 6 and never
    the reverse (p = 0.031 < 0.05, but not after Holm); D on 3, and wrong on 4 that C gets right.
    """
    write_run(tmp_path, "A0", true, predictions_with_errors(true, range(40, 60)), method="tfidf_nb")
    write_run(tmp_path, "B1_v1", true, predictions_with_errors(true, range(6, 60)), epochs=epoch_rows([0.8, 0.86]))
    write_run(tmp_path, "C1_v1", true, predictions_with_errors(true, range(0, 60)), method="lora",
              epochs=epoch_rows([0.9, 0.85]))
    write_run(tmp_path, "D1_v1", true, predictions_with_errors(true, [*range(3, 60), *range(100, 104)]), method="lora",
              epochs=epoch_rows([0.9]))
    write_run(tmp_path, "E1_v1", true, true, method="lora", status="failed")


def test_reference_is_chosen_on_validation_even_when_another_run_is_more_accurate_on_test(tmp_path):
    true = labels(400)
    _study(tmp_path, true)
    rebuild_summaries(tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("run_id")  # as written
    accuracy = summary["test_accuracy"]
    assert accuracy["A0"] > accuracy["B1_v1"] > accuracy["C1_v1"]  # the reference is not the most accurate on test
    assert summary.loc[["A0", "B1_v1", "C1_v1", "D1_v1"], "compared_to"].tolist() == ["C1_v1"] * 4
    assert pd.isna(summary.loc["E1_v1", "compared_to"])
    assert summary.loc[["A0", "B1_v1", "D1_v1"], "accuracy_diff"].tolist() == pytest.approx([0.1, 0.015, -0.0025])
    assert summary.loc["C1_v1", ["accuracy_diff", "p_value", "p_holm", "distinguishable"]].isna().all()
    p_a0 = stats.chi2.sf((40 - 1) ** 2 / 40, df=1)  # 40 discordant texts: chi-square, continuity-corrected
    p_b = 2 * 0.5 ** 6  # 6 discordant, all one way: exact binomial, both tails (0.03125)
    p_d = stats.binomtest(3, 7, 0.5).pvalue  # 1.0
    assert summary.loc[["A0", "B1_v1", "D1_v1"], "p_value"].tolist() == pytest.approx([p_a0, p_b, p_d])
    # Holm over the family of 3: p_a0 < p_b < p_d, multiplied by 3, 2, 1
    assert summary.loc[["A0", "B1_v1", "D1_v1"], "p_holm"].tolist() == pytest.approx([3 * p_a0, 2 * p_b, 1.0])
    assert summary.loc[["A0", "B1_v1", "D1_v1"], "distinguishable"].tolist() == [True, False, False]  # B: 0.0625
    for run_id in ("A0", "B1_v1", "D1_v1"):
        row = summary.loc[run_id]
        assert row["accuracy_diff_low"] <= row["accuracy_diff"] <= row["accuracy_diff_high"]
    # A0 - C: d = +1 on 40 of 400 texts; the interval's width is about 2 x 1.96 standard errors of mean(d)
    width = summary.loc["A0", "accuracy_diff_high"] - summary.loc["A0", "accuracy_diff_low"]
    assert width == pytest.approx(2 * 1.96 * np.sqrt((40 / 400 - 0.1 ** 2) / 400), rel=0.15)
    for run_id in ("A0", "B1_v1", "C1_v1", "D1_v1"):  # the per-run intervals are still there
        row = summary.loc[run_id]
        assert row["test_accuracy_low"] <= row["test_accuracy"] <= row["test_accuracy_high"]
        assert row["f1_macro_low"] <= row["f1_macro"] <= row["f1_macro_high"]
    assert not {"tied_with_best", "p_vs_best", "best_run"} & set(summary.columns)


def test_reference_run_overrides_the_choice_on_validation(tmp_path):
    true = labels(400)
    _study(tmp_path, true)
    summary = rebuild_summaries(tmp_path, reference_run="B1_v1").set_index("run_id")
    assert summary.loc[["A0", "B1_v1", "C1_v1", "D1_v1"], "compared_to"].tolist() == ["B1_v1"] * 4
    assert summary.loc[["A0", "C1_v1"], "accuracy_diff"].tolist() == pytest.approx([0.085, -0.015])
    assert pd.isna(summary.loc["B1_v1", "p_value"])
    # against B (wrong on 6-59): A0 right on 34 texts B gets wrong (6-39), never the reverse; C wrong on 6 B gets right
    assert summary.loc["A0", "p_value"] == pytest.approx(stats.chi2.sf((34 - 1) ** 2 / 34, df=1))
    assert summary.loc["C1_v1", "p_value"] == pytest.approx(2 * 0.5 ** 6)


def test_runs_scored_on_other_texts_are_not_compared_nor_counted_in_the_family(tmp_path):
    true = labels(400)
    _study(tmp_path, true)
    before = rebuild_summaries(tmp_path).set_index("run_id")
    write_run(tmp_path, "F1_v1", labels(200), labels(200), method="lora", epochs=epoch_rows([0.5]))  # another test set
    summary = rebuild_summaries(tmp_path).set_index("run_id")
    assert summary.loc["F1_v1", "compared_to"] == "C1_v1"
    assert summary.loc["F1_v1", ["accuracy_diff", "accuracy_diff_low", "p_value", "p_holm",
                                 "distinguishable"]].isna().all()
    assert summary["p_holm"].tolist() == pytest.approx(before["p_holm"].tolist() + [np.nan], nan_ok=True)


def test_no_run_with_a_validation_accuracy_means_no_comparison(tmp_path):
    true = labels(400)
    write_run(tmp_path, "A0", true, predictions_with_errors(true, range(40)), method="tfidf_nb")
    write_run(tmp_path, "A1", true, predictions_with_errors(true, range(300)), method="pretrained")
    summary = rebuild_summaries(tmp_path)
    assert summary[["compared_to", "accuracy_diff", "p_value", "p_holm", "distinguishable"]].isna().all().all()


def test_seeds_are_paired_with_the_reference_s_same_seed_and_failed_seeds_stay_unpaired(tmp_path):
    """B and C ran seeds 1-5; B's seed 5 and C's seed 4 failed, so seeds 1-3 pair. D ran seeds 1 and 2, and
    seed 2 failed. C is the reference: its mean validation accuracy over complete seeds (0.85) beats B's
    (0.8375), although B's seed 1 has the single highest (0.95)."""
    true = labels(400)
    b_validation = {1: 0.95, 2: 0.8, 3: 0.8, 4: 0.8, 5: 0.99}
    for seed in range(1, 6):
        write_run(tmp_path, f"B1_v1_s{seed}", true, predictions_with_errors(true, range(30 + 2 * seed)), seed=seed,
                  base_run_id="B1_v1", epochs=epoch_rows([b_validation[seed]]),
                  status="failed" if seed == 5 else "complete")
        write_run(tmp_path, f"C1_v1_s{seed}", true, predictions_with_errors(true, range(40 + seed)), seed=seed,
                  base_run_id="C1_v1", epochs=epoch_rows([0.85]), status="failed" if seed == 4 else "complete")
    write_run(tmp_path, "D1_v1_s1", true, predictions_with_errors(true, range(40)), seed=1, base_run_id="D1_v1",
              epochs=epoch_rows([0.7]))
    write_run(tmp_path, "D1_v1_s2", true, true, seed=2, base_run_id="D1_v1", status="failed")
    rebuild_summaries(tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("run_id")
    assert summary.loc[["B1_v1_s1", "B1_v1_s2", "B1_v1_s3", "D1_v1_s1"], "compared_to"].tolist() == [
        "C1_v1_s1", "C1_v1_s2", "C1_v1_s3", "C1_v1_s1"]
    assert pd.isna(summary.loc["B1_v1_s4", "compared_to"])  # C1_v1_s4 failed: nothing to compare with
    # B wrong on 30 + 2s texts, C on 40 + s: difference (10 - s) / 400 in seeds 1, 2, 3
    b_rows = summary[summary["base_run"] == "B1_v1"]
    assert (b_rows["seed_diffs"] == "0.0225;0.0200;0.0175").all()
    assert (b_rows["seeds_paired"] == 3).all() and (b_rows["seeds_unpaired"] == 2).all()  # seeds 4 and 5
    # mean 0.02, sample sd 0.0025, se 0.0025 / sqrt(3), t(0.975, 2 df) = 4.302652729911275
    half = 4.302652729911275 * 0.0025 / np.sqrt(3)
    assert b_rows["seed_diff_mean"].tolist() == pytest.approx([0.02] * 5)
    assert b_rows["seed_diff_low"].tolist() == pytest.approx([0.02 - half] * 5)
    assert b_rows["seed_diff_high"].tolist() == pytest.approx([0.02 + half] * 5)
    d_row = summary.loc["D1_v1_s1"]  # one paired seed: a difference, no interval; seeds 2-5 unpaired
    assert d_row["seed_diffs"] == "0.0025" and d_row["seed_diff_mean"] == pytest.approx(0.0025)
    assert pd.isna(d_row["seed_diff_low"]) and pd.isna(d_row["seed_diff_high"])
    assert d_row["seeds_paired"] == 1 and d_row["seeds_unpaired"] == 4
    c_rows = summary[summary["base_run"] == "C1_v1"]
    assert c_rows[["seed_diff_mean", "seed_diffs", "seeds_paired"]].isna().all().all()
    # McNemar per seed: B right on 10 - s texts C gets wrong, never the reverse; D on 1. Holm over all 4.
    p = {"B1_v1_s1": 2 * 0.5 ** 9, "B1_v1_s2": 2 * 0.5 ** 8, "B1_v1_s3": 2 * 0.5 ** 7, "D1_v1_s1": 1.0}
    assert summary.loc[list(p), "p_value"].tolist() == pytest.approx(list(p.values()))
    expected_holm = [4 * p["B1_v1_s1"], 3 * p["B1_v1_s2"], 2 * p["B1_v1_s3"], 1.0]  # 0.0156, 0.0234, 0.0313, 1
    assert summary.loc[list(p), "p_holm"].tolist() == pytest.approx(expected_holm)
    assert summary.loc[list(p), "distinguishable"].tolist() == [True, True, True, False]


# ----------------------------------------------------------------------------------------------
# Edge cases and internals (issue 14: each mutant of statistics.py killed here or listed as equivalent in
# docs/results/mutation-equivalent.json)


def test_percentile_interval_of_0_to_999_is_numpys_linear_interpolation():
    from evaluation.statistics import _percentile_interval
    # linear interpolation: the q-th percentile of 0..999 sits at q / 100 * 999
    assert _percentile_interval(np.arange(1000), 0.95) == pytest.approx((24.975, 974.025), abs=1e-9)
    assert _percentile_interval(np.arange(1000), 0.90) == pytest.approx((49.95, 949.05), abs=1e-9)


@pytest.mark.parametrize("resamples, sizes", [(450, [200, 200, 50]), (200, [200]), (1, [1]), (401, [200, 200, 1])])
def test_resamples_come_in_chunks_of_at_most_200_rows_and_exactly_as_many_as_asked(resamples, sizes):
    from evaluation.statistics import _CHUNK, _resamples
    assert _CHUNK == 200
    chunks = list(_resamples(7, resamples, seed=0))
    assert [chunk.shape for chunk in chunks] == [(size, 7) for size in sizes]
    drawn = np.concatenate(chunks)
    assert drawn.min() >= 0 and drawn.max() <= 6
    if resamples >= 200:  # 1,400 draws or more: each text is drawn (missed with probability (6/7)^1400)
        assert set(np.unique(drawn)) == set(range(7))


def test_resamples_of_two_texts_draw_both_including_the_first():
    from evaluation.statistics import _resamples
    drawn = np.concatenate(list(_resamples(2, 100, seed=0)))
    assert drawn.shape == (100, 2)
    assert set(np.unique(drawn)) == {0, 1}  # 200 fair draws: each index 0 with probability 2^-200


def test_bootstrap_of_no_texts_gives_nan_for_both_metrics():
    intervals = bootstrap_intervals([], [], 4)
    assert set(intervals) == {"accuracy", "f1_macro"}
    assert all(np.isnan(end) for interval in intervals.values() for end in interval)


def test_bootstrap_of_one_text_is_a_point_interval():
    # one text of class 2, right: accuracy 1; F1 1 for class 2 and 0 for the three classes never seen: 1/4
    assert bootstrap_intervals([2], [2], 4, resamples=50) == {"accuracy": (1.0, 1.0), "f1_macro": (0.25, 0.25)}
    assert bootstrap_intervals([2], [1], 4, resamples=50) == {"accuracy": (0.0, 0.0), "f1_macro": (0.0, 0.0)}


def test_bootstrap_works_when_the_last_class_never_occurs():
    # 4 classes, only 0..2 seen and all right: the last confusion cell is never counted. Every resample of
    # 300 texts holds the 3 classes (missing one has probability < 3 (2/3)^300): F1 = (1 + 1 + 1 + 0) / 4
    true = np.repeat([0, 1, 2], 100)
    assert bootstrap_intervals(true, true, 4, resamples=300) == {"accuracy": (1.0, 1.0), "f1_macro": (0.75, 0.75)}


def test_bootstrap_counts_class_indices_given_as_floats():
    true = np.tile([0.0, 1.0, 2.0], 10)  # e.g. a label column read as float
    assert bootstrap_intervals(true, true.copy(), 3, resamples=50) == {"accuracy": (1.0, 1.0),
                                                                       "f1_macro": (1.0, 1.0)}


def test_macro_f1_of_a_stack_of_confusion_matrices_is_each_matrix_s():
    stack = np.array([[[3, 1, 0], [2, 4, 0], [0, 0, 0]],
                      [[0, 0, 0], [5, 5, 0], [0, 0, 0]],
                      [[2, 0, 0], [1, 0, 0], [0, 0, 0]]])
    # F1 = 2 TP / (row sum + column sum) per class, 0 for a class never seen nor predicted:
    # [3,1;2,4]: 6/9 and 8/11 -> (2/3 + 8/11 + 0) / 3; [0,0;5,5]: 0 and 10/15; [2,0;1,0]: 4/5, 0, 0
    expected = [(2 / 3 + 8 / 11) / 3, (2 / 3) / 3, (4 / 5) / 3]
    np.testing.assert_allclose(macro_f1(stack), expected, rtol=1e-12)


def test_macro_f1_of_a_normalised_confusion_matrix_is_unchanged():
    # F1 is a ratio of counts: dividing every cell by the total (all denominators below 1) changes nothing
    confusion = np.array([[3, 1], [2, 4]])
    assert macro_f1(confusion / 10) == pytest.approx((2 / 3 + 8 / 11) / 2, rel=1e-12)


def test_mcnemar_takes_correctness_given_as_0_and_1_floats():
    # right by A only on 3 texts, by B only on none: exact two-sided binomial p = 2 x (1/2)^3
    assert mcnemar([1.0, 1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0]) == pytest.approx(0.25, rel=1e-12)
    assert mcnemar([0.0, 0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0, 1.0]) == pytest.approx(0.25, rel=1e-12)


def test_paired_difference_on_one_text_and_on_none():
    assert paired_bootstrap_difference([True], [False], resamples=50) == (1.0, 1.0, 1.0)
    assert paired_bootstrap_difference([False], [True], resamples=50) == (-1.0, -1.0, -1.0)
    assert all(np.isnan(paired_bootstrap_difference([], [])))


def test_holm_reads_none_as_no_test():
    np.testing.assert_allclose(holm(np.array([None, 0.02, 0.04], dtype=object)), [np.nan, 0.04, 0.04], rtol=1e-12)


def test_t_interval_of_two_values_by_hand():
    # [1, 3]: mean 2, sample sd sqrt(2), se 1; t(0.975, 1 df) is the Cauchy quantile tan(0.475 pi)
    half = math.tan(0.475 * math.pi)  # 12.7062
    assert t_interval([1.0, 3.0]) == pytest.approx((2.0, 2.0 - half, 2.0 + half), rel=1e-12)


def test_t_interval_is_computed_in_double_precision():
    values = np.array([0.1, 0.2, 0.7], dtype=np.float32)
    exact = [float(v) for v in values]
    mean = math.fsum(exact) / 3
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in exact) / 2)
    t = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # t(0.975, 2 df) in closed form: (2p - 1) / sqrt(2 p (1 - p))
    half = t * sd / math.sqrt(3)
    assert t_interval(values) == pytest.approx((mean, mean - half, mean + half), rel=1e-12)


def test_choose_reference_with_one_candidate_and_with_missing_values_as_none():
    assert choose_reference(["only"], [0.7]) == "only"
    # validation accuracies from an object column (a run without one holds None)
    assert choose_reference(["A", "B", "C"], np.array([None, 0.8, 0.9], dtype=object)) == "C"
    assert choose_reference(["A"], np.array([None], dtype=object)) is None


# ----------------------------------------------------------------------------------------------
# means.csv: one pooled test per base run (evaluation/means.py)


def test_pooled_difference_interval_and_two_sided_p_by_hand():
    from evaluation.statistics import pooled_difference

    resampled = np.array([-0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09])  # 9 resamples, 1 below 0
    # p = 2 x (1 + min(#<=0, #>=0)) / (B + 1) = 2 x (1 + 1) / 10; the 80% interval: numpy's percentiles 10 and 90
    # of 9 values, positions 0.8 and 7.2: -0.01 + 0.8 x 0.03 = 0.014 and 0.08 + 0.2 x 0.01 = 0.082
    difference, low, high, p = pooled_difference(0.05, resampled, confidence=0.8)
    assert (difference, low, high, p) == pytest.approx((0.05, 0.014, 0.082, 0.4))
    assert pooled_difference(0.0, np.zeros(9))[3] == 1.0  # every resample ties at 0: counts on both sides, capped
    assert pooled_difference(-0.05, -resampled, confidence=0.8)[3] == pytest.approx(0.4)  # two-sided: the mirror
    assert pooled_difference(0.05, resampled + 0.02)[3] == pytest.approx(2 / 10)  # none below: the floor 2/(B+1)
    assert np.isnan(pooled_difference(np.nan, resampled)).all()


def test_resampled_means_are_the_means_of_the_drawn_texts():
    from evaluation.statistics import _resamples, resampled_means

    columns = np.array([[1.0, 0.5], [0.0, 0.5], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])  # 5 texts, 2 runs
    drawn = np.concatenate(list(_resamples(5, 450, seed=3)))  # the same resamples, gathered text by text
    expected = np.stack([columns[:, 0][drawn].mean(axis=1), columns[:, 1][drawn].mean(axis=1)], axis=1)
    assert np.allclose(resampled_means(columns, resamples=450, seed=3), expected)


def _means_study(tmp_path):
    """40 texts. B (2 seeds, the reference by validation): wrong on 0-3 and on 0-1, 4-5. C (3 seeds): wrong on 0-5,
    0-7, 2-9. D (1 seed): wrong on 0-11. T (TF-IDF, 3 seeds): the same 8 wrong each time. F: every seed failed."""
    true = labels(40)
    for seed, wrong in ((1, [0, 1, 2, 3]), (2, [0, 1, 4, 5])):
        write_run(tmp_path, f"B1_v1_s{seed}", true, predictions_with_errors(true, wrong), seed=seed,
                  base_run_id="B1_v1", epochs=epoch_rows([0.9]))
    for seed, wrong in ((1, range(0, 6)), (2, range(0, 8)), (3, range(2, 10))):
        write_run(tmp_path, f"C1_v1_s{seed}", true, predictions_with_errors(true, wrong), seed=seed,
                  base_run_id="C1_v1", method="lora", epochs=epoch_rows([0.8]))
    write_run(tmp_path, "D1_v1_s1", true, predictions_with_errors(true, range(12)), seed=1, base_run_id="D1_v1",
              method="head", epochs=epoch_rows([0.7]))
    for seed in (1, 2, 3):
        write_run(tmp_path, f"T0_s{seed}", true, predictions_with_errors(true, range(30, 38)), seed=seed,
                  base_run_id="T0", method="tfidf_nb", trainable=9000, total=9000)
        write_run(tmp_path, f"F1_v1_s{seed}", true, true, seed=seed, base_run_id="F1_v1", status="failed")
    from evaluation.report import rebuild_outputs
    rebuild_outputs(tmp_path)
    return pd.read_csv(tmp_path / "means.csv").set_index("base_run")


def test_means_csv_pools_seeds_per_text_by_hand(tmp_path):
    means = _means_study(tmp_path)
    for column in ("label", "seeds", "test_accuracy_mean", "test_accuracy_mean_low", "test_accuracy_mean_high",
                   "accuracy_diff", "accuracy_diff_low", "accuracy_diff_high", "p_holm", "within_noise_of_best",
                   "trainable_parameters", "optimizer_steps", "train_seconds", "peak_rss_increase_mb"):
        assert column in means.columns
    assert sorted(means.index) == ["B1_v1", "C1_v1", "D1_v1", "T0"]  # F1_v1: no complete seed, no row
    assert (means["compared_to"] == "B1_v1").all()
    # Seed-averaged correctness per text. B: texts 0, 1: 0; 2-5: 1/2; else 1. C: 0, 1: 1/3; 2-5: 0; 6, 7: 1/3;
    # 8, 9: 2/3; else 1. C - B: 2 x 1/3 + 4 x (-1/2) + 2 x (-2/3) + 2 x (-1/3) = -10/3 over 40 texts = -1/12.
    c = means.loc["C1_v1"]
    assert c["accuracy_diff"] == pytest.approx(-1 / 12)
    assert c["accuracy_diff_low"] < -1 / 12 < c["accuracy_diff_high"]
    # C's seeds: 34, 32, 32 of 40 right: mean 0.816667, sd 0.028868, t(0.975, 2 df) x sd / sqrt(3) = 0.071711
    assert (c["test_accuracy_mean"], c["test_accuracy_mean_low"], c["test_accuracy_mean_high"]) == pytest.approx(
        (0.816667, 0.744956, 0.888378), abs=1e-6)
    assert c["seeds"] == "3" and c["label"] == "LoRA"  # a lora record without its settings: the name alone
    # D - B: texts 0, 1: 0 - 0; 2-5: 0 - 1/2; 6-11: 0 - 1: -8/40 = -0.2, every text's difference <= 0, so no
    # resample is above 0 (one of only the 30 zero texts has chance 0.75^40): p is the floor 2 / (10,000 + 1)
    d = means.loc["D1_v1"]
    assert d["accuracy_diff"] == pytest.approx(-0.2)
    assert d["accuracy_diff_low"] < -0.2 < d["accuracy_diff_high"] < 0
    assert d["p_value"] == pytest.approx(2 / 10_001)
    assert d["test_accuracy_mean"] == pytest.approx(0.7) and pd.isna(d["test_accuracy_mean_low"])  # one seed
    assert d["label"] == "linear probe (head only)"
    # The deterministic TF-IDF run: its one value, no interval, and `seeds` says so; T - B = 0.8 - 0.9
    t = means.loc["T0"]
    assert t["seeds"] == "3 (identical predictions)" and bool(t["deterministic"])
    assert t["test_accuracy_mean"] == pytest.approx(0.8)
    assert pd.isna(t["test_accuracy_mean_low"]) and pd.isna(t["test_accuracy_mean_high"])
    assert t["accuracy_diff"] == pytest.approx(-0.1) and t["label"] == "TF-IDF + Naive Bayes"
    assert pd.isna(t["trainable_parameters"])  # a vocabulary is no trainable parameters
    assert not bool(means.loc["C1_v1", "deterministic"])
    b = means.loc["B1_v1"]
    assert pd.isna(b["accuracy_diff"]) and pd.isna(b["p_holm"]) and bool(b["within_noise_of_best"])


def test_holm_in_means_csv_runs_over_every_other_base_run_including_untestable_ones(tmp_path):
    means = _means_study(tmp_path)
    # The family: C, D, T and F (every seed failed: p counts as 1), not the reference B. Holm by hand over 4.
    raw = {base: means.loc[base, "p_value"] for base in ("C1_v1", "D1_v1", "T0")}
    order = sorted(raw, key=raw.get)
    expected, running = {}, 0.0
    for rank, base in enumerate(order):
        running = max(running, (4 - rank) * raw[base])
        expected[base] = min(running, 1.0)
    for base in raw:
        assert means.loc[base, "p_holm"] == pytest.approx(expected[base])
        assert bool(means.loc[base, "within_noise_of_best"]) == (expected[base] >= 0.05)
    assert means.loc["D1_v1", "p_holm"] == pytest.approx(4 * 2 / 10_001)  # the smallest p, times 4
    assert not bool(means.loc["D1_v1", "within_noise_of_best"])
