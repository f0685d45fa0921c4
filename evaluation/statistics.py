"""How sure the numbers are: bootstrap intervals for one run; for two runs on the same texts, the paired
bootstrap interval of their accuracy difference and McNemar's test; for two base runs with several seeds, one
pooled paired test over texts; Holm's correction over a family of tests; a Student-t interval over per-seed
differences.

The pooled test (`pooled_difference`, on `resampled_means`) compares two base runs once, whatever their seeds:
per test text, each run's correctness averaged over its seeds (0, 1/S, ..., 1), then the mean over texts of the
per-text difference, with a paired bootstrap over texts. Why this and not a stratified McNemar (Cochran-Mantel-
Haenszel with one stratum per seed): the seeds of a base run are scored on the same texts, so a text that is hard
for one seed is hard for the others; CMH counts each (text, seed) as an independent pair and so reads S seeds as S
times the evidence, too small a p whenever seeds agree (a deterministic run repeated S times would count S
times). Resampling texts keeps each text's seeds together, so the test's unit is the text, which is what varies
between test sets; it needs no normal approximation and it gives the interval and the p-value from the same
resamples. The p-value is two-sided: twice the smaller share of resampled differences on either side of 0 (each
share counted as (1 + k) / (B + 1), so never 0), capped at 1; it is below 1 - confidence when (up to
interpolation) the percentile interval leaves out 0. Its floor is 2 / (B + 1) (2e-4 with POOLED_RESAMPLES): Holm
can still flag a family of up to (B + 1) x SIGNIFICANCE / 2 = 250 base runs.

All work on what predictions.csv and metrics.json hold (true label and predicted class per test text,
validation accuracy), so they can be recomputed for any finished run at any time.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

RESAMPLES = 2000  # bootstrap resamples per run; >= 1000 keeps the 2.5% tails stable to about 0.1 point
CONFIDENCE = 0.95  # two-sided interval: the 2.5th and 97.5th percentiles of the resampled metric
BOOTSTRAP_SEED = 0  # one seed for every run: runs over the same test texts get the same resamples
SIGNIFICANCE = 0.05  # family-wise: a Holm-adjusted McNemar p below this makes two runs distinguishable
EXACT_BELOW = 25  # fewer discordant texts than this: exact binomial test; else chi-square, continuity-corrected
POOLED_RESAMPLES = 10_000  # for the pooled test: its smallest p is 2 / (B + 1), so B bounds the Holm family
_CHUNK = 200  # resamples drawn at once (bounded memory: _CHUNK x test rows indices)


def macro_f1(confusion: np.ndarray) -> np.ndarray:
    """Macro-F1 from confusion matrices [..., true, predicted]; a class never seen nor predicted scores 0.

    The same definition as scikit-learn's f1_score(average="macro", labels=all classes, zero_division=0).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diagonal(confusion, axis1=-2, axis2=-1)
    denominator = confusion.sum(axis=-1) + confusion.sum(axis=-2)  # 2 TP + FP + FN
    f1 = np.zeros_like(true_positive)  # stays 0 where nothing was seen nor predicted
    np.divide(2 * true_positive, denominator, out=f1, where=denominator > 0)
    return f1.mean(axis=-1)


def bootstrap_intervals(labels, predicted, num_classes: int, resamples: int = RESAMPLES,
                        confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals {"accuracy": (low, high), "f1_macro": (low, high)}.

    Each resample draws as many test texts as there are, with replacement, and recomputes both metrics.
    """
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    n = len(labels)
    if n == 0:
        return {"accuracy": (np.nan, np.nan), "f1_macro": (np.nan, np.nan)}
    cell = labels * num_classes + predicted  # which confusion-matrix cell each text falls in
    accuracy, f1 = [], []
    for indices in _resamples(n, resamples, seed):
        size = len(indices)
        offsets = np.arange(size)[:, None] * num_classes ** 2
        counts = np.bincount((cell[indices] + offsets).ravel(), minlength=size * num_classes ** 2)
        confusion = counts.reshape(size, num_classes, num_classes)
        accuracy.append(np.trace(confusion, axis1=1, axis2=2) / n)
        f1.append(macro_f1(confusion))
    return {name: _percentile_interval(np.concatenate(values), confidence)
            for name, values in (("accuracy", accuracy), ("f1_macro", f1))}


def paired_bootstrap_difference(correct_run, correct_reference, resamples: int = RESAMPLES,
                                confidence: float = CONFIDENCE,
                                seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """(difference, low, high): accuracy of the run minus accuracy of the reference on the same texts, and
    its percentile bootstrap interval.

    Each resample draws texts with replacement and scores both runs on the same drawn texts, so the
    interval reflects the paired difference: its spread is that of the per-text difference in correctness,
    much narrower than two separate intervals suggest when the runs mostly agree.
    """
    run, reference = _same_texts(correct_run, correct_reference)
    n = len(run)
    if n == 0:
        return np.nan, np.nan, np.nan
    per_text = run.astype(np.int8) - reference.astype(np.int8)  # +1, 0 or -1 per text
    means = np.concatenate([per_text[indices].mean(axis=1) for indices in _resamples(n, resamples, seed)])
    return (float(per_text.mean()), *_percentile_interval(means, confidence))


def resampled_means(columns, resamples: int = POOLED_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """[resamples, k]: the mean of each of the k columns of `columns` ([texts, k], e.g. each base run's
    seed-averaged correctness per text) on the same bootstrap resamples of texts (the rows), those of
    `_resamples(texts, resamples, seed)`. A column's difference from another, resample by resample, is the paired
    bootstrap of their difference."""
    columns = np.asarray(columns, dtype=np.float64)
    n = len(columns)
    if n == 0:
        return np.full((resamples, columns.shape[1] if columns.ndim == 2 else 0), np.nan)
    means = []
    for indices in _resamples(n, resamples, seed):
        size = len(indices)  # times each text was drawn, per resample: the same as gathering the drawn rows
        counts = np.bincount((indices + np.arange(size)[:, None] * n).ravel(), minlength=size * n).reshape(size, n)
        means.append(counts @ columns / n)
    return np.concatenate(means)


def pooled_difference(observed: float, resampled, confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(difference, low, high, p) from the observed mean difference over texts and its paired bootstrap
    (`resampled`: the same difference on each resample, e.g. a column of resampled_means minus another): the
    percentile interval, and the two-sided p of the module docstring; all NaN without a difference."""
    resampled = np.asarray(resampled, dtype=np.float64)
    if np.isnan(observed) or len(resampled) == 0 or np.isnan(resampled).any():
        return np.nan, np.nan, np.nan, np.nan
    below, above = int(np.sum(resampled <= 0)), int(np.sum(resampled >= 0))  # ties at 0 count on both sides
    p = min(1.0, 2 * (1 + min(below, above)) / (len(resampled) + 1))
    return (float(observed), *_percentile_interval(resampled, confidence), p)


def mcnemar(correct_a, correct_b) -> float:
    """Two-sided p-value that two classifiers, scored on the same texts, are equally accurate.

    Only the discordant texts count: b = right by A only, c = right by B only. Under the null hypothesis
    each is B's win with probability 1/2. Below EXACT_BELOW discordant texts the exact binomial test is
    used; above, the chi-square statistic (|b - c| - 1)^2 / (b + c) with one degree of freedom.
    """
    correct_a, correct_b = _same_texts(correct_a, correct_b)
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    if discordant < EXACT_BELOW:
        return float(stats.binomtest(only_a, discordant, 0.5).pvalue)
    statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
    return float(stats.chi2.sf(statistic, df=1))


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in the order given; NaN stays NaN and is not counted.

    With m p-values sorted ascending, the i-th smallest (i = 1..m) is multiplied by m - i + 1; a running
    maximum keeps the adjusted values in the order of the raw ones (monotone), and they are capped at 1.
    Rejecting where the adjusted p is below alpha keeps the family-wise error rate at alpha, whatever the
    dependence between the tests.
    """
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p_values.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p_values))
    order = tested[np.argsort(p_values[tested], kind="stable")]
    factors = len(order) - np.arange(len(order))  # m, m - 1, ..., 1
    adjusted[order] = np.minimum(np.maximum.accumulate(factors * p_values[order]), 1.0)
    return adjusted


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the mean of paired differences and its Student-t interval (n - 1 degrees of
    freedom, sample standard deviation); no interval from fewer than two values, nothing from none."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf(1 - (1 - confidence) / 2, df=len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, float(mean - half), float(mean + half)


def choose_reference(names, validation_accuracies) -> str | None:
    """The name with the highest validation accuracy (the first of equals, in the order given); NaN (no
    validation accuracy, e.g. an untrained run) is never chosen. None when nothing has one.

    Choosing on validation keeps the test set out of the choice: a run picked for its test accuracy is
    favoured by the test set's noise, and every comparison against it is biased towards "different".
    """
    accuracies = np.asarray(validation_accuracies, dtype=np.float64)
    if len(accuracies) == 0 or np.isnan(accuracies).all():
        return None
    return list(names)[int(np.nanargmax(accuracies))]  # nanargmax returns the first maximum


def _same_texts(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError(f"a paired comparison needs the same texts for both runs; got {correct_a.shape} and "
                         f"{correct_b.shape}")
    return correct_a, correct_b


def _resamples(n: int, resamples: int, seed: int):
    """Bootstrap resamples of n texts, _CHUNK at a time: arrays [size, n] of text indices drawn with
    replacement from one generator seeded with `seed` (the same seed gives the same resamples)."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, _CHUNK):
        yield rng.integers(0, n, size=(min(_CHUNK, resamples - start), n))


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
