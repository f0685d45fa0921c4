"""Method zero_shot: no labelled text is used. Each class is represented by the embedding of its name, or of its
description from `dataset.class_descriptions`; each text gets the class whose embedding is closest by cosine.

Probabilities: softmax(cosine / TEMPERATURE) over the classes. The temperature changes the probabilities, never
the predicted class. 0.05 (a scale of 20, as in sentence-transformers' MultipleNegativesRankingLoss, where such
encoders are trained) turns the cosine gaps typical of a sentence encoder (0.05-0.2) into clear but not certain
probabilities. The head saved for predict is the unit class embeddings / TEMPERATURE over unit text embeddings."""
from __future__ import annotations

import time

import numpy as np

from tasks import embeddings
from tasks.base import RunContext, TaskResult

TEMPERATURE = 0.05


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def head(class_embeddings: np.ndarray) -> dict:
    """The linear head over unit text embeddings whose softmax is softmax(cosine / TEMPERATURE)."""
    return {"weight": unit(class_embeddings) / TEMPERATURE, "bias": np.zeros(len(class_embeddings))}


def score(class_texts: list[str], texts: list[str], embed) -> tuple[dict, np.ndarray]:
    """(the head, probabilities [texts, classes]). `embed`: texts -> embeddings."""
    fitted = head(embed(class_texts))
    return fitted, embeddings.softmax(unit(embed(texts)) @ fitted["weight"].T + fitted["bias"])


def run(run, context: RunContext) -> TaskResult:
    splits = context.splits
    embedder, tokenizer = embeddings.load_embedder(run.model, context.config.trust_remote_code)
    embedder.normalize = True  # cosine: unit embeddings, whatever the model's own pooling says
    class_texts = context.config.dataset.descriptions(splits.class_names)
    start = time.perf_counter()
    fitted, probabilities = score(class_texts, splits.test["text"].tolist(),
                                  embeddings.embedding_function(embedder, tokenizer, context))
    seconds = time.perf_counter() - start
    embeddings.save(context.run_dir / "model", run.method, run.model, embedder, fitted,
                    {"temperature": TEMPERATURE, "class_texts": class_texts})
    _, total = embeddings.count(embedder, len(splits.class_names))
    return TaskResult(probabilities=probabilities, test_seconds=seconds, precision="bf16" if context.bf16 else "fp32",
                      trainable_parameters=0, total_parameters=total,
                      extra={"zero_shot": {"temperature": TEMPERATURE, "class_texts": class_texts}})
