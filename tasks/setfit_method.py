"""Method setfit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts"): the encoder is fine-tuned
contrastively on sentence pairs, then a logistic-regression head is fitted on its tuned embeddings.

Pairs: for each training text, PAIRS_PER_TEXT times, one partner of its class (label 1) and one of another class
(label 0), drawn by a sampler seeded with the run's seed, then shuffled; as SetFit's `num_iterations` = 20.
Loss: sentence-transformers' CosineSimilarityLoss, the paper's: the mean squared error between the cosine of the
two texts' pooled embeddings and the pair's label. Pooling as tasks/embeddings.py (the model's own, else mean).
The head: as embed_lr's (scikit-learn's logistic regression, C chosen on validation), on the tuned embeddings.

Settings, from the run's `training` block: `epochs` passes over the pairs (a fraction trains on part of them),
`batch_size` pairs per step, `learning_rate`, `weight_decay`, `warmup_ratio`, `lr_scheduler` and `max_grad_norm`
for AdamW over the encoder; `precision` as every run. The Trainer's own options (checkpoints, early stopping,
class weights, trackers, evaluations per epoch) do not apply, and `search:` is refused (core/config.py).

Why our own loop of a few dozen lines: the `setfit` library (1.2.0) installs alongside the project's pins, but
its pair sampler (setfit/sampler.py) builds all n(n+1)/2 pairs of the training texts as dicts (8 million at
4,000 texts) and shuffles them with a fixed seed 42, so the run's seeds would share one set of pairs;
sentence-transformers (6.3) fits the pins too, but would be a dependency for a one-line loss. Checkpoints are not
written: a run takes minutes at the sizes SetFit is meant for, and an interrupted one is rerun.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from core import distributed
from core.hardware import is_main_process
from core.quiet import quiet_transformers
from dataset import tokenize
from evaluation.inference import pad_batch
from tasks import embeddings
from tasks.base import RunContext, TaskResult

PAIRS_PER_TEXT = 20  # positive and negative partners per training text (SetFit's num_iterations default)


def sample_pairs(labels: np.ndarray, seed: int, per_text: int = PAIRS_PER_TEXT) -> np.ndarray:
    """[pairs, 3]: (first text, second text, 1 same class / 0 different), in a seeded random order. A class with
    one text pairs it with itself; with one class only there are no negative pairs."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    members = {label: np.flatnonzero(labels == label) for label in np.unique(labels)}
    others = {label: np.flatnonzero(labels != label) for label in members}
    pairs = []
    for _ in range(per_text):
        for index, label in enumerate(labels):
            same = members[label][members[label] != index]
            pairs.append((index, rng.choice(same) if len(same) else index, 1))
            if len(others[label]):
                pairs.append((index, rng.choice(others[label]), 0))
    pairs = np.asarray(pairs, dtype=np.int64)
    return pairs[rng.permutation(len(pairs))]


def cosine_similarity_loss(first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' CosineSimilarityLoss: MSE(cos(u, v), label)."""
    return torch.nn.functional.mse_loss(torch.cosine_similarity(first, second), labels)


def tune(embedder: embeddings.Embedder, ids: list[list[int]], labels: np.ndarray, pad_token_id: int, training,
         seed: int, device: torch.device, bf16: bool) -> tuple[list[dict], int]:
    """Contrastive fine-tuning of embedder's encoder in place. Returns (steps.csv's rows, the number of pairs)."""
    from transformers import get_scheduler, set_seed

    set_seed(seed)  # dropout
    pairs = sample_pairs(labels, seed)
    steps = max(1, math.ceil(training.epochs * len(pairs) / training.batch_size))
    order = np.concatenate([pairs] * math.ceil(steps * training.batch_size / len(pairs)))
    embedder.to(device).train()
    optimizer = torch.optim.AdamW(embedder.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)
    scheduler = get_scheduler(training.lr_scheduler, optimizer, num_warmup_steps=math.ceil(training.warmup_ratio * steps),
                              num_training_steps=steps)

    def embed(indices):
        batch = [ids[i] for i in indices]
        input_ids, mask = pad_batch(batch, pad_token_id, width=max(map(len, batch)))
        return embedder(input_ids.to(device), mask.to(device))

    rows = []
    for step in range(steps):
        batch = order[step * training.batch_size: (step + 1) * training.batch_size]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = cosine_similarity_loss(embed(batch[:, 0]), embed(batch[:, 1]),
                                          torch.as_tensor(batch[:, 2], dtype=torch.float32, device=device))
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(embedder.parameters(), training.max_grad_norm)
        rows.append({"epoch": round((step + 1) * training.batch_size / len(pairs), 4), "step": step + 1,
                     "train_loss": float(loss.detach()), "learning_rate": scheduler.get_last_lr()[0],
                     "grad_norm": float(grad_norm)})
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    embedder.eval()
    return rows, len(pairs)


def run(run, context: RunContext) -> TaskResult:
    config, splits, training = context.config, context.splits, run.training
    if distributed.active():
        raise RuntimeError("method setfit trains in one process (its loop does not average gradients across"
                           " processes); run it without torchrun")
    embedder, tokenizer = embeddings.load_embedder(run.model, config.trust_remote_code)
    start = time.perf_counter()
    ids = tokenize(splits.train["text"].tolist(), tokenizer, config.dataset.max_length, config.dataset.cache_dir)
    steps, pairs = tune(embedder, ids, splits.train["label"].to_numpy(), tokenizer.pad_token_id, training, run.seed,
                 context.device, context.bf16)
    tune_seconds = time.perf_counter() - start
    head, fields = embeddings.fit_and_score(context, embeddings.embedding_function(embedder, tokenizer, context))
    model_dir = context.run_dir / "model"
    if is_main_process():
        with quiet_transformers():  # no shard-writing bar
            embedder.encoder.save_pretrained(str(model_dir))  # safetensors
        tokenizer.save_pretrained(str(model_dir))
    embeddings.save(model_dir, run.method, ".", embedder, head,
                    {"logistic_regression": fields["extra"]["logistic_regression"]})
    _, total = embeddings.count(embedder, len(splits.class_names))
    fields["train_seconds"] += tune_seconds
    fields["extra"]["setfit"] = {"pairs": pairs, "pairs_per_text": PAIRS_PER_TEXT, "steps": len(steps)}
    return TaskResult(precision="bf16" if context.bf16 else "fp32", trainable_parameters=total,
                      total_parameters=total, steps=steps, **fields)
