"""The measurements: evaluation (project evaluator vs the per-text loop) and training (project vs reference).

Every function takes a model or a model factory and plain token ids, so the tests run them on tiny models.
Timings are wall-clock seconds on the given device, synchronised on CUDA.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import (DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments,
                          default_data_collator)

from bench.flops import parameter_groups, synchronize, training_flops
from evaluation.inference import predict_probabilities
from tasks.base import RunContext
from tasks.finetune import TokenizedTexts, training_arguments

# Hugging Face examples/pytorch/text-classification/run_classification.py, as shipped: DataTrainingArguments
# max_seq_length=128 and pad_to_max_length=True (every text padded to 128, default_data_collator), and
# TrainingArguments' own defaults for everything the script does not set.
REFERENCE = dict(max_length=128, batch_size=8, learning_rate=5e-5)


# ----------------------------------------------------------------------------------------------
# Evaluation


def padded_positions(lengths: list[int], batch_size: int, sort: bool = True, multiple: int | None = None) -> int:
    """Token positions the model computes when texts are batched (longest first) and padded per batch."""
    order = sorted(lengths, reverse=True) if sort else list(lengths)
    total = 0
    for begin in range(0, len(order), batch_size):
        batch = order[begin: begin + batch_size]
        width = max(batch)
        if multiple:
            width = -(-width // multiple) * multiple
        total += width * len(batch)
    return total


def evaluate_project(model, token_ids: list[list[int]], pad_token_id: int, batch_size: int,
                     device: torch.device, bf16: bool) -> dict:
    """The project's evaluator (evaluation.inference.predict_probabilities) on pre-tokenised texts."""
    probabilities, seconds = predict_probabilities(model, token_ids, pad_token_id, batch_size, device, bf16)
    lengths = [len(ids) for ids in token_ids]
    return {"texts": len(token_ids), "seconds": seconds, "texts_per_s": len(token_ids) / seconds,
            "tokens": int(sum(lengths)), "positions": padded_positions(lengths, batch_size),
            "batch_size": batch_size, "precision": "bf16" if bf16 else "fp32",
            "probabilities": probabilities}


def evaluate_per_text(model, tokenizer, texts: list[str], max_length: int, device: torch.device) -> dict:
    """The study's loop: for each text, tokenise it, run the model with autograd on, take the argmax."""
    model.eval()
    model.to(device)
    predictions, tokens = [], 0
    synchronize(device)
    start = time.perf_counter()
    with torch.enable_grad():
        for text in texts:
            encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt").to(device)
            logits = model(**encoded).logits
            predictions.append(int(logits.argmax(dim=-1).item()))
            tokens += encoded["input_ids"].shape[1]
    seconds = time.perf_counter() - start
    return {"texts": len(texts), "seconds": seconds, "texts_per_s": len(texts) / seconds, "tokens": tokens,
            "positions": tokens, "precision": "fp32", "predictions": np.array(predictions)}


def evaluate_trainer_predict(model, tokenizer, texts: list[str], device: torch.device,
                             batch_size: int = REFERENCE["batch_size"]) -> dict:
    """The usual way to score a test set: `Trainer.predict` as run_classification.py sets it up (every text padded
    to 128, batch 8, fp32, the Trainer's no_grad evaluation loop); tokenisation timed separately."""
    length = min(REFERENCE["max_length"], getattr(model.config, "max_position_embeddings", REFERENCE["max_length"]))
    start = time.perf_counter()
    encoded = tokenizer(texts, padding="max_length", max_length=length, truncation=True)
    tokenize_seconds = time.perf_counter() - start
    dataset = [{key: values[i] for key, values in encoded.items()} for i in range(len(texts))]
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        args = TrainingArguments(output_dir=folder, per_device_eval_batch_size=batch_size, report_to="none",
                                 disable_tqdm=True, use_cpu=device.type == "cpu", dataloader_num_workers=0)
        trainer = Trainer(model=model.float(), args=args, data_collator=default_data_collator)
        synchronize(device)
        start = time.perf_counter()
        output = trainer.predict(dataset)
        synchronize(device)
        seconds = time.perf_counter() - start
    tokens = int(sum(sum(mask) for mask in encoded["attention_mask"]))
    return {"texts": len(texts), "seconds": seconds, "texts_per_s": len(texts) / seconds,
            "tokenize_seconds": tokenize_seconds,
            "texts_per_s_with_tokenization": len(texts) / (seconds + tokenize_seconds),
            "tokens": tokens, "positions": len(texts) * length, "batch_size": batch_size, "precision": "fp32",
            "predictions": np.asarray(output.predictions).argmax(axis=-1)}


class DeviceBusy:
    """NVML's GPU utilisation (the share of time a kernel was running), sampled every 20 ms while in the
    `with` block; `mean` is None on a CPU or where NVML cannot be read."""

    def __init__(self, device: torch.device, interval: float = 0.02):
        self.device, self.interval, self.samples, self.mean = device, interval, [], None

    def __enter__(self):
        import threading

        self._stop = threading.Event()
        self._thread = None
        if self.device.type == "cuda":
            try:
                torch.cuda.utilization(self.device)
            except Exception:  # no NVML bindings: the FLOP-based utilisation still stands
                return self
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.samples.append(torch.cuda.utilization(self.device))

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.mean = float(np.mean(self.samples)) / 100 if self.samples else None
        return False


def agreement(probabilities: np.ndarray, other_predictions: np.ndarray, near_tie: float) -> dict:
    """How often two predictors agree; a disagreement is a near-tie when the top two probabilities
    (of the batched evaluator) differ by less than `near_tie`."""
    predictions = probabilities.argmax(axis=1)
    ordered = np.sort(probabilities, axis=1)
    margin = ordered[:, -1] - ordered[:, -2]
    differ = predictions != other_predictions
    near = differ & (margin < near_tie)
    return {"texts": int(len(predictions)), "agree": int((~differ).sum()),
            "agreement": float((~differ).mean()) if len(predictions) else 1.0,
            "disagree_near_ties": int(near.sum()), "disagree_not_near_ties": int((differ & ~near).sum()),
            "near_tie_margin": near_tie}


def accuracy(probabilities: np.ndarray, labels) -> float:
    return float((probabilities.argmax(axis=1) == np.asarray(labels)).mean())


# ----------------------------------------------------------------------------------------------
# Training


class CountingCollator:
    """Wraps a collator and records what each batch fed the model: padded positions, real tokens, which texts.

    The Trainer may collate a batch ahead of the last step; `totals(batches)` counts only the ones trained on.
    """

    def __init__(self, collate):
        self.collate = collate
        self.batches: list[dict] = []

    def __call__(self, features):
        batch = self.collate(features)
        mask = batch.get("attention_mask")
        self.batches.append({
            "positions": int(batch["input_ids"].numel()),
            "tokens": int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()),
            "texts": int(batch["input_ids"].shape[0]),
            "seen": [tuple(f["input_ids"]) for f in features],  # token ids of the texts, in order
        })
        return batch

    def totals(self, batches: int) -> dict:
        used = self.batches[:batches]
        total = {key: sum(b[key] for b in used) for key in ("positions", "tokens", "texts")}
        return {**total, "seen": [ids for b in used for ids in b["seen"]]}


def train_project(model, tokenizer, method: str, training, token_ids, labels, samples: int, context: RunContext,
                  bf16: bool, seed: int) -> dict:
    """The project's training for `samples` samples drawn from the pool `token_ids`: tasks/finetune.py's
    TrainingArguments (its batch size, learning rate and warm-up share, weight decay, bf16 flag and
    length-grouped order) and its dynamic-padding collator; no per-epoch validation or checkpoint writing
    (I/O, not training). `samples` is rounded down to whole batches; `seen` lists the texts trained on.

    The Trainer's length grouping sorts mega-batches of min(pool // (4 x batch), 50) batches; with a pool of
    4 x samples the samples trained on are exactly one mega-batch: a random subset, sorted by length."""
    steps = max(1, samples // training.batch_size)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as folder:
        args = training_arguments(training, Path(folder), bf16, context, seed)
        args = dataclasses.replace(args, max_steps=steps, eval_strategy="no", save_strategy="no",
                                   load_best_model_at_end=False, metric_for_best_model=None)
        collate = CountingCollator(DataCollatorWithPadding(tokenizer, pad_to_multiple_of=training.pad_to_multiple_of))
        return _train(model, method, args, TokenizedTexts(token_ids, labels), collate, context.device, bf16)


def train_reference(model, tokenizer, method: str, texts: list[str], labels, device: torch.device, seed: int,
                    learning_rate: float = REFERENCE["learning_rate"], batch_size: int = REFERENCE["batch_size"],
                    epochs: float = 1) -> dict:
    """run_classification.py's setup: every text padded to 128, fp32, batch 8, random order, TrainingArguments'
    defaults (lr 5e-5, no warm-up, no weight decay, linear decay); `epochs` over exactly these texts
    (the ones the project's run trained on)."""
    # As the script: min(max_seq_length, what the model takes); only the tests' tiny models take fewer than 128.
    length = min(REFERENCE["max_length"], getattr(model.config, "max_position_embeddings", REFERENCE["max_length"]))
    encoded = tokenizer(texts, padding="max_length", max_length=length, truncation=True)
    dataset = [{**{key: values[i] for key, values in encoded.items()}, "labels": label}
               for i, label in enumerate(labels)]  # a list of feature dicts: what default_data_collator stacks
    with tempfile.TemporaryDirectory(prefix="bench-reference-") as folder:
        args = TrainingArguments(output_dir=folder, per_device_train_batch_size=batch_size,
                                 learning_rate=learning_rate, num_train_epochs=epochs, seed=seed,
                                 save_strategy="no", report_to="none", disable_tqdm=True,
                                 use_cpu=device.type == "cpu", dataloader_num_workers=0)
        return _train(model, method, args, dataset, CountingCollator(default_data_collator), device, bf16=False)


def _train(model, method: str, args, dataset, collate: CountingCollator, device: torch.device, bf16: bool) -> dict:
    counts = parameter_groups(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate)
    trainer.remove_callback(PrinterCallback)
    synchronize(device)
    start = time.perf_counter()
    with DeviceBusy(device) as busy:
        output = trainer.train()
        synchronize(device)
    seconds = time.perf_counter() - start
    fed = collate.totals(output.global_step * args.gradient_accumulation_steps)
    flops = training_flops(counts, method, fed["tokens"], fed["texts"])
    busy_flops = training_flops(counts, method, fed["positions"], fed["texts"])  # padding counted as work done
    return {"samples": fed["texts"], "seconds": seconds, "samples_per_s": fed["texts"] / seconds,
            "tokens": fed["tokens"], "positions": fed["positions"],
            "padding_share": 1 - fed["tokens"] / max(fed["positions"], 1),
            "batch_size": args.per_device_train_batch_size, "learning_rate": args.learning_rate,
            "order": getattr(args, "train_sampling_strategy", "random"),
            "precision": "bf16" if bf16 else "fp32", "train_loss": float(output.training_loss),
            "flops": flops, "achieved_gflops": flops / seconds / 1e9, "busy_gflops": busy_flops / seconds / 1e9,
            "device_busy": busy.mean,
            "parameters": counts.as_dict(), "model": trainer.model, "seen": fed["seen"]}
