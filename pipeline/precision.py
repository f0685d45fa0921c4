"""Each run's precision, resolved before it starts: `auto` by one probe per model and device (core/precision.py).

Every run of a model on one device gets the same decision, whatever its method or batch size: the probe
runs at the model's Linear shapes for `PROBE_TOKENS` rows (16 texts of 64 tokens), so the batch size is
not part of the decision nor of its cache key. The decision is cached next to the tokenised data
(`<dataset.cache_dir>/../precision.json`) per device, thread count and torch version, so every later
invocation on the machine decides the same way and the run fingerprints stay stable. The dry run never
writes that cache (`store=False`); `--reprobe` measures again and replaces the cached entry.

`typical_length` (the mean tokenised length of the training texts) is the dry run's estimate's.
"""
from __future__ import annotations

import math
from pathlib import Path

from core.config import METHODS, PipelineConfig
from core.precision import Choice, Shapes, Timer, choose
from pipeline.plan import Run

LENGTH_SAMPLE = 256  # training texts tokenised to find the typical length


def cache_file(config: PipelineConfig) -> Path:
    return Path(config.dataset.cache_dir).parent / "precision.json"


def resolve_all(config: PipelineConfig, runs: list[Run], device, measure: Timer | None = None,
                reprobe: bool = False, store: bool = True) -> dict[str, Choice | None]:
    """run id -> its precision (None for runs without a model: TF-IDF): one decision per model for all of them.
    `reprobe`: measure again rather than read the cache; `store`: cache what was measured (not in a dry run)."""
    configs: dict[str, object] = {}
    choices: dict[str, Choice | None] = {}
    for run in runs:
        if not METHODS[run.method]["uses_models"]:
            choices[run.run_id] = None
            continue
        training = run.training or config.training
        if training.precision != "auto":
            choices[run.run_id] = choose(training.precision, device, None, None)
            continue
        if run.model not in configs:
            configs[run.model] = _model_config(run.model, config.trust_remote_code)
        choices[run.run_id] = choose("auto", device, Shapes.of(configs[run.model]), cache_file(config), measure,
                                     reprobe=reprobe, store=store)
    return choices


def typical_length(model: str, splits, max_length: int, multiple: int = 1) -> int:
    """The mean tokenised length of up to LENGTH_SAMPLE training texts (a seeded sample), rounded up to
    `multiple`; `max_length` (rounded likewise) when no data is loaded."""
    if splits is None or len(splits.train) == 0:
        mean = max_length
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
        sample = splits.train["text"].sample(min(LENGTH_SAMPLE, len(splits.train)), random_state=0).tolist()
        encoded = tokenizer(sample, truncation=True, max_length=max_length)["input_ids"]
        mean = sum(len(ids) for ids in encoded) / len(encoded)
    return max(1, math.ceil(mean / multiple) * multiple)


def _model_config(name: str, trust_remote_code: bool):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(name, local_files_only=True, trust_remote_code=trust_remote_code)
