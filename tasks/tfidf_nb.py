"""Task A0: TF-IDF features and multinomial Naive Bayes, the study's non-neural baseline."""
from __future__ import annotations

import time

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline

from tasks.base import RunContext, TaskResult


def run(run, context: RunContext) -> TaskResult:
    splits = context.splits
    classifier = make_pipeline(TfidfVectorizer(), MultinomialNB())
    start = time.perf_counter()
    classifier.fit(splits.train["text"].tolist(), splits.train["label"].to_numpy())
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    probabilities = classifier.predict_proba(splits.test["text"].tolist())
    test_seconds = time.perf_counter() - start
    nb = classifier[-1]
    parameters = int(nb.feature_log_prob_.size + nb.class_log_prior_.size)
    return TaskResult(probabilities=probabilities, test_seconds=test_seconds, precision="fp64",
                      trainable_parameters=parameters, total_parameters=parameters, train_seconds=train_seconds)
