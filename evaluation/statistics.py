"""How sure the numbers are: bootstrap intervals for one run, McNemar's test for two runs on the same texts.

Both work on what predictions.csv holds (true label and predicted class per test text), so they can be
recomputed for any finished run at any time.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

RESAMPLES = 2000  # bootstrap resamples per run; >= 1000 keeps the 2.5% tails stable to about 0.1 point
CONFIDENCE = 0.95  # two-sided interval: the 2.5th and 97.5th percentiles of the resampled metric
BOOTSTRAP_SEED = 0  # one seed for every run: runs over the same test texts get the same resamples
SIGNIFICANCE = 0.05  # McNemar p at or above this: the difference is not significant, the runs are tied
EXACT_BELOW = 25  # fewer discordant texts than this: exact binomial test; else chi-square, continuity-corrected
_CHUNK = 200  # resamples drawn at once (bounded memory: _CHUNK x test rows indices)


def macro_f1(confusion: np.ndarray) -> np.ndarray:
    """Macro-F1 from confusion matrices [..., true, predicted]; a class never seen nor predicted scores 0.

    The same definition as scikit-learn's f1_score(average="macro", labels=all classes, zero_division=0).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diagonal(confusion, axis1=-2, axis2=-1)
    denominator = confusion.sum(axis=-1) + confusion.sum(axis=-2)  # 2 TP + FP + FN
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
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
    rng = np.random.default_rng(seed)
    accuracy, f1 = [], []
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        drawn = cell[rng.integers(0, n, size=(size, n))]
        offsets = np.arange(size)[:, None] * num_classes ** 2
        counts = np.bincount((drawn + offsets).ravel(), minlength=size * num_classes ** 2)
        confusion = counts.reshape(size, num_classes, num_classes)
        accuracy.append(np.trace(confusion, axis1=1, axis2=2) / n)
        f1.append(macro_f1(confusion))
    tail = (1 - confidence) / 2 * 100
    return {name: tuple(float(x) for x in np.percentile(np.concatenate(values), [tail, 100 - tail]))
            for name, values in (("accuracy", accuracy), ("f1_macro", f1))}


def mcnemar(correct_a, correct_b) -> float:
    """Two-sided p-value that two classifiers, scored on the same texts, are equally accurate.

    Only the discordant texts count: b = right by A only, c = right by B only. Under the null hypothesis
    each is B's win with probability 1/2. Below EXACT_BELOW discordant texts the exact binomial test is
    used; above, the chi-square statistic (|b - c| - 1)^2 / (b + c) with one degree of freedom.
    """
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError(f"McNemar needs the same texts for both runs; got {correct_a.shape} and {correct_b.shape}")
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    if discordant < EXACT_BELOW:
        return float(stats.binomtest(only_a, discordant, 0.5).pvalue)
    statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
    return float(stats.chi2.sf(statistic, df=1))
