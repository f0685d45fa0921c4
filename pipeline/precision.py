"""Each run's precision, resolved before it starts: `auto` by a probe at the run's own shapes (core/precision.py).

The probe's tokens are one batch of the run (its training batch size, or its evaluation batch size for
a run that does not train) at the typical length: the mean tokenised length of up to 256 training
texts, rounded up to `pad_to_multiple_of` (the dry run's estimate uses the same length). The decision
is cached next to the tokenised data (`<dataset.cache_dir>/../precision.json`), so every later
invocation on the machine decides the same way and the run fingerprints stay stable.
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


def resolve_all(config: PipelineConfig, runs: list[Run], device, splits=None,
                measure: Timer | None = None) -> dict[str, Choice | None]:
    """run id -> its precision (None for runs without a model: TF-IDF). Without `splits` (a dry run over a
    Hub dataset) the typical length is taken as `dataset.max_length`."""
    lengths: dict[tuple, int] = {}
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
        multiple = training.pad_to_multiple_of or 1
        if (run.model, multiple) not in lengths:
            lengths[run.model, multiple] = typical_length(run.model, splits, config.dataset.max_length, multiple)
        batch = training.batch_size if METHODS[run.method]["trains"] else training.eval_batch_size
        shapes = Shapes.of(configs[run.model], batch * lengths[run.model, multiple])
        choices[run.run_id] = choose("auto", device, shapes, cache_file(config), measure)
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
