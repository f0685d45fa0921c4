"""Task A: each pretrained encoder with its new, untrained classification head, evaluated as is."""
from __future__ import annotations

from transformers import set_seed

from dataset import tokenize
from evaluation.inference import predict_probabilities
from core.models import count_parameters, load_classifier
from tasks.base import RunContext, TaskResult


def run(run, context: RunContext) -> TaskResult:
    config, splits = context.config, context.splits
    set_seed(run.seed)  # the untrained head's weights: reproducible, and different per seed with `seeds`
    model, tokenizer = load_classifier(run.model, len(splits.class_names), splits.class_names,
                                       config.trust_remote_code)
    bf16 = context.bf16  # resolved by the runner: explicit, or auto by measurement
    test_ids = tokenize(splits.test["text"].tolist(), tokenizer, config.dataset.max_length, config.dataset.cache_dir)
    probabilities, seconds = predict_probabilities(model, test_ids, tokenizer.pad_token_id,
                                                   config.training.eval_batch_size, context.device, bf16)
    _, total = count_parameters(model)
    return TaskResult(probabilities=probabilities, test_seconds=seconds, precision="bf16" if bf16 else "fp32",
                      trainable_parameters=0, total_parameters=total)
