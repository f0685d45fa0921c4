"""Task A0: TF-IDF features and multinomial Naive Bayes, the study's non-neural baseline.

Its two settings that matter, the n-gram range and Naive Bayes' additive smoothing, are chosen on the
validation split like every other method's: each point of GRID is fitted on train and scored on validation,
the best validation accuracy wins (ties: the first in grid order, the simpler features and the default
smoothing first), and the chosen pipeline is scored on test once. Deterministic: every seed gives the same
run. The grid, each point's validation accuracy and the choice are in metrics.json (`tfidf_search`).
"""
from __future__ import annotations

import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline

from tasks.base import RunContext, TaskResult

# (n-gram range, alpha): unigrams, then uni+bigrams; alpha from sklearn's default 1.0 down by ~3x steps
GRID = [((1, n), alpha) for n in (1, 2) for alpha in (1.0, 0.3, 0.1, 0.03)]


def pipeline(ngram_range: tuple[int, int], alpha: float):
    return make_pipeline(TfidfVectorizer(ngram_range=ngram_range), MultinomialNB(alpha=alpha))


def choose(train_texts, train_labels, validation_texts, validation_labels, grid=GRID) -> tuple[int, list[float]]:
    """(index of the chosen grid point, validation accuracy of each point)."""
    scores = []
    for ngram_range, alpha in grid:
        fitted = pipeline(ngram_range, alpha).fit(train_texts, train_labels)
        scores.append(float(np.mean(fitted.predict(validation_texts) == np.asarray(validation_labels))))
    return int(np.argmax(scores)), scores  # argmax keeps the first of ties


def run(run, context: RunContext) -> TaskResult:
    splits = context.splits
    train_texts, train_labels = splits.train["text"].tolist(), splits.train["label"].to_numpy()
    start = time.perf_counter()
    best, scores = choose(train_texts, train_labels, splits.validation["text"].tolist(),
                          splits.validation["label"].to_numpy())
    ngram_range, alpha = GRID[best]
    classifier = pipeline(ngram_range, alpha).fit(train_texts, train_labels)
    train_seconds = time.perf_counter() - start  # the search's fits included: what the choice cost
    start = time.perf_counter()
    probabilities = classifier.predict_proba(splits.test["text"].tolist())
    test_seconds = time.perf_counter() - start
    nb = classifier[-1]
    parameters = int(nb.feature_log_prob_.size + nb.class_log_prior_.size)
    search = {"grid": [{"ngram_range": list(n), "alpha": a, "validation_accuracy": s}
                       for (n, a), s in zip(GRID, scores)],
              "chosen": {"ngram_range": list(ngram_range), "alpha": alpha}, "validation_accuracy": scores[best]}
    return TaskResult(probabilities=probabilities, test_seconds=test_seconds, precision="fp64",
                      trainable_parameters=parameters, total_parameters=parameters, train_seconds=train_seconds,
                      epochs=[{"epoch": 1.0, "step": 0, "validation_accuracy": scores[best]}],
                      extra={"tfidf_search": search, "deterministic": True})
