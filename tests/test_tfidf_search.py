"""TF-IDF + Naive Bayes chooses its n-gram range and smoothing on validation, never on test."""
from __future__ import annotations

import pandas as pd
import torch

from dataset import Splits
from tasks import tfidf_nb
from tasks.base import RunContext

# Word order decides the class: unigram counts are identical across classes, bigrams separate them.
TRAIN = [("good not bad", 0), ("bad not good", 1)] * 10
VALIDATION = [("good not bad", 0), ("bad not good", 1)] * 3


def test_bigrams_win_where_only_word_order_tells_the_classes_apart():
    texts, labels = zip(*TRAIN)
    vtexts, vlabels = zip(*VALIDATION)
    best, scores = tfidf_nb.choose(list(texts), list(labels), list(vtexts), list(vlabels))
    unigram = [s for (n, _), s in zip(tfidf_nb.GRID, scores) if n == (1, 1)]
    bigram = [s for (n, _), s in zip(tfidf_nb.GRID, scores) if n == (1, 2)]
    assert unigram == [0.5] * 4  # identical features: one class for every text, half right
    assert bigram == [1.0] * 4
    assert tfidf_nb.GRID[best] == ((1, 2), 1.0)  # the first of the tied best points


def _splits(test_labels):
    frame = lambda rows: pd.DataFrame({"text": [t for t, _ in rows], "label": [l for _, l in rows],
                                       "row": range(1, len(rows) + 1)})
    test = frame(VALIDATION)
    test["label"] = test_labels
    return Splits(train=frame(TRAIN), validation=frame(VALIDATION), test=test, class_names=("zero", "one"),
                  source="made up")


def test_the_choice_reads_validation_only(tmp_path):
    """Reversed test labels leave the chosen settings, and the validation scores, unchanged."""
    results = []
    for labels in ([0, 1] * 3, [1, 0] * 3):
        context = RunContext(config=None, splits=_splits(labels), run_dir=tmp_path, device=torch.device("cpu"))
        results.append(tfidf_nb.run(None, context).extra["tfidf_search"])
    assert results[0] == results[1]
    assert results[0]["chosen"] == {"ngram_range": [1, 2], "alpha": 1.0}
    assert results[0]["validation_accuracy"] == 1.0
