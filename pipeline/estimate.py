"""--dry-run: per run its method, model, trainable parameters and an estimated time; nothing is trained.

Trainable parameters: the model is built from its config.json on PyTorch's `meta` device (shapes only:
no weights read, no memory used) and wrapped by the run's method exactly as training does
(tasks/adapters.py), then counted as the runner counts (core/models.py).

Estimated time, when the model's folder (or its Hub cache entry) and a local data folder are there:
a few real training steps are timed on the device and in the precision the run would use (for `auto`,
measured or read from the probe's cache: pipeline/precision.py), with random weights, on one batch of
`batch_size` texts of the typical length (the mean tokenised length of up to 256 training texts,
rounded up to `pad_to_multiple_of`), and one batch of inference is timed likewise:

    batches per epoch x epochs x seconds per training step
    + (validation texts x epochs [+ training texts x epochs with eval_on_train] + test texts)
      / eval_batch_size x seconds per inference batch
    + for a run whose search has not finished: the trials it still has to run (n_trials, or fewer where a
      matching study has some) x (its training + validation scoring), once per base run (its first seed's
      run searches; the other seeds use the result)

embed_lr, zero_shot and setfit count their texts encoded and, for setfit, its pair steps (_embedding_seconds).
Model loading, checkpoint writing and first-run tokenisation are not counted; treat the figure as
within about a factor of 1.5. Runs whose steps cost the same (same model, method, LoRA shape, batch
sizes and precision) share one timing, so a dry run of the default config takes seconds.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from core.config import METHODS, PipelineConfig, shown
from pipeline.plan import Run
from pipeline.precision import resolve_all, typical_length

WARMUP_STEPS = 1  # untimed: the first step allocates
TIMED_STEPS = 3


@dataclass
class Estimate:
    trainable: int | None = None
    total: int | None = None
    seconds: float | None = None
    unknown_because: str | None = None  # why parameters or time are unknown


def print_dry_run(config: PipelineConfig, runs: list[Run], log=print, note=None, force: bool = False,
                  splits=None, reprobe: bool = False) -> list[str]:
    """One line per run on stdout (`log`): its settings, parameters, estimated time, precision (and why) and
    fate ([run], [skip: complete], [resume: step N] or [blocked: settings changed: ...]); the total and how it was
    estimated on stderr (`note`). `splits`: the data as the preflight loaded it (pipeline/runner.preflight), None
    for a Hub dataset (not loaded in a dry run). The precision probe's cache is read (or, with `reprobe`, measured
    afresh) but never written. Returns the lines that stop the real run (pipeline/run_state.blocked_message): one
    per blocked run; none with --force."""
    note = note or (lambda line: print(line, file=sys.stderr))
    with warnings.catch_warnings():  # library deprecation notices would break the one-line-per-run listing
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"peft\.")  # e.g. BOFT's CUDA extension
        return _print_dry_run(config, runs, splits, log, note, force, reprobe)


def _print_dry_run(config: PipelineConfig, runs: list[Run], splits, log, note, force: bool,
                   reprobe: bool) -> list[str]:
    from core.hardware import pick_device
    from pipeline.run_state import blocked_message, fate

    data_problem = None if splits is not None else \
        f"dataset {shown(config.dataset.source)} is a Hub dataset (not loaded in a dry run)"
    device = pick_device()
    available = [run for run in runs if not run.model or not _model_problem(run.model)]
    choices = resolve_all(config, available, device, reprobe=reprobe, store=False)  # a dry run writes nothing
    timings: dict[tuple, tuple[float, float]] = {}
    total, unknown, searched, blocked = 0.0, False, set(), []
    for run in runs:
        choice = choices.get(run.run_id)
        estimate = estimate_run(run, config, splits, data_problem, timings, choice, searched)
        total += estimate.seconds or 0.0  # TF-IDF runs take seconds and are not timed
        unknown |= METHODS[run.method]["uses_models"] and estimate.seconds is None
        precision = f"  precision={choice.describe()}" if choice else ""
        state = fate(run, config, choice, force)
        if state.startswith("blocked"):
            blocked.append(blocked_message(run, config, choice))
        log(f"{run.describe()}  {_parameters(run, estimate)}  {_time(run, estimate)}{precision}  [{state}]")
    note(f"{len(runs)} runs; estimated time {'unknown (see above)' if unknown else clock(total)}."
        " Estimates time a few training steps and one inference batch per distinct setup (pipeline/estimate.py);"
        " expect the real time within about a factor of 1.5.")
    return blocked


def estimate_run(run: Run, config: PipelineConfig, splits, data_problem: str | None,
                 timings: dict[tuple, tuple[float, float]], choice=None, searched: set[str] | None = None) -> Estimate:
    """`choice`: the run's resolved precision (pipeline/precision.py); None: fp32. `searched`: the base runs whose
    pending search an earlier estimate counted (updated here): a search runs once for all seeds."""
    method = METHODS[run.method]
    if not method["uses_models"]:
        return Estimate()  # TF-IDF: the vocabulary, hence the parameter count, is known after fitting
    problem = _model_problem(run.model)
    if problem:
        return Estimate(unknown_because=problem)
    from tasks.hooks import total_steps

    num_labels = _num_labels(config, splits)
    training = run.training or config.training
    steps = total_steps(len(splits.train), training) if splits is not None else None
    try:
        trainable, total = count_on_meta(run, num_labels, config.trust_remote_code, steps)
    except Exception as error:  # a PEFT type the meta device cannot build (BOFT calls .item())
        return Estimate(unknown_because=f"not countable on the meta device: {str(error).splitlines()[0]}")
    if splits is None:
        return Estimate(trainable, total, unknown_because=data_problem)
    if run.method in EMBEDDING_METHODS:
        return Estimate(trainable, total, _embedding_seconds(run, config, splits, training, timings,
                                                             bool(choice and choice.bf16)))
    step, inference = _timing(run, config, splits, training, timings, bool(choice and choice.bf16))
    texts_evaluated = len(splits.test)
    seconds = 0.0
    if method["trains"]:
        per_epoch = math.ceil(len(splits.train) / training.batch_size)
        batches = steps * training.gradient_accumulation_steps  # budget.optimizer_steps included
        epochs = batches / per_epoch  # budget.train_seconds: the schedule's epochs, an upper bound
        texts_evaluated += len(splits.validation) * math.ceil(epochs)
        if training.eval_on_train:
            texts_evaluated += len(splits.train) * math.ceil(epochs)
        seconds += batches * step
        searched = set() if searched is None else searched
        if run.search is not None and run.search_result is None and run.base_run_id not in searched:
            searched.add(run.base_run_id)  # each trial trains and scores validation
            per_trial = batches * step + len(splits.validation) * math.ceil(epochs) / training.eval_batch_size * inference
            seconds += run.trials_to_search * per_trial
    seconds += texts_evaluated / training.eval_batch_size * inference
    return Estimate(trainable, total, seconds)


def count_on_meta(run: Run, num_labels: int, trust_remote_code: bool = False,
                  steps: int | None = None) -> tuple[int, int]:
    """(trainable, total) parameters of the run's model as trained, built on the meta device."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from core.models import count_parameters
    from tasks.adapters import apply_method, run_settings

    model_config = _model_config(run.model, num_labels, trust_remote_code)
    if run.method in EMBEDDING_METHODS:  # the bare encoder and a linear head over its pooled embeddings
        from transformers import AutoModel

        with torch.device("meta"):
            encoder = count_parameters(AutoModel.from_config(model_config, trust_remote_code=trust_remote_code))[1]
        head = num_labels * (model_config.hidden_size + 1)
        return {"embed_lr": head, "zero_shot": 0, "setfit": encoder + head}[run.method], encoder + head
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(model_config, trust_remote_code=trust_remote_code)
        if not METHODS[run.method]["trains"]:
            return 0, count_parameters(model)[1]  # evaluated as is: nothing trains
        model = apply_method(model, run.method, run_settings(run), steps or 10 ** 9)  # steps: AdaLoRA's schedule
    return count_parameters(model)


# ----------------------------------------------------------------------------------------------
# Timing

EMBEDDING_METHODS = ("embed_lr", "zero_shot", "setfit")  # tasks/embeddings.py: pooled embeddings, a linear head


def _embedding_seconds(run: Run, config: PipelineConfig, splits, training, timings: dict, bf16: bool) -> float:
    """Texts encoded at the timed inference speed (embed_lr, setfit: train, validation and test; zero_shot: test
    and one text per class) plus, for setfit, two encoder training steps (one per side) per batch of pairs, each
    timed as full fine-tuning's step at batch_size. Fitting the logistic regression (seconds) is not counted."""
    texts, steps = len(splits.train) + len(splits.validation) + len(splits.test), 0
    if run.method == "zero_shot":
        texts = len(splits.test) + len(splits.class_names)
    if run.method == "setfit":
        from tasks.setfit_method import PAIRS_PER_TEXT

        pairs = 2 * PAIRS_PER_TEXT * len(splits.train)
        steps = 2 * math.ceil(training.epochs * pairs / training.batch_size)
    step, inference = _timing(replace(run, method="full" if run.method == "setfit" else run.method), config, splits,
                              training, timings, bf16)
    return steps * step + texts / training.eval_batch_size * inference


def _timing(run: Run, config: PipelineConfig, splits, training, timings: dict, bf16: bool) -> tuple[float, float]:
    """(seconds per training step, seconds per inference batch), measured once per distinct setup."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from core.hardware import pick_device
    from tasks.adapters import apply_method, run_settings
    from tasks.hooks import total_steps

    device = pick_device()
    lora = run.lora
    key = (run.model, run.method, training.batch_size, training.eval_batch_size, bf16,
           (lora.r, tuple(lora.target_modules), lora.use_dora) if lora else None, repr(run.adapter))
    if key in timings:
        return timings[key]
    length = typical_length(run.model, splits, config.dataset.max_length, training.pad_to_multiple_of or 1)

    num_labels = _num_labels(config, splits)
    model_config = _model_config(run.model, num_labels, config.trust_remote_code)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(model_config, trust_remote_code=config.trust_remote_code)
    if METHODS[run.method]["trains"]:
        model = apply_method(model, run.method, run_settings(run), total_steps(len(splits.train), training))
    model.to(device)
    vocabulary = model_config.vocab_size

    def batch(size):
        return dict(input_ids=torch.randint(0, vocabulary, (size, length), device=device),
                    attention_mask=torch.ones(size, length, dtype=torch.long, device=device))

    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    step = 0.0
    if METHODS[run.method]["trains"]:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        size = min(training.batch_size, len(splits.train))  # a batch holds no more rows than there are
        inputs, labels = batch(size), torch.randint(0, num_labels, (size,), device=device)
        model.train()
        for number in range(WARMUP_STEPS + TIMED_STEPS):
            if number == WARMUP_STEPS:
                start = _now(device)
            with autocast():
                loss = model(**inputs, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        step = (_now(device) - start) / TIMED_STEPS
    model.eval()
    inputs = batch(min(training.eval_batch_size, max(len(splits.validation), len(splits.test))))
    with torch.inference_mode(), autocast():
        model(**inputs)  # warm-up
        start = _now(device)
        model(**inputs)
        inference = _now(device) - start
    timings[key] = (step, inference)
    return timings[key]


def _now(device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


# ----------------------------------------------------------------------------------------------
# What is available without the network


def _model_problem(name: str) -> str | None:
    """Why the model's config cannot be read offline, or None when it can. Local folders were checked by the
    preflight (pipeline/runner.preflight); a Hub model not in the cache is not downloaded in a dry run."""
    from core.models import in_hub_cache

    if Path(name).is_absolute() or in_hub_cache(name):
        return None
    return f"model {shown(name)} is not in the Hugging Face cache (not downloaded in a dry run)"


def _model_config(name: str, num_labels: int, trust_remote_code: bool):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(name, num_labels=num_labels, local_files_only=True,
                                      trust_remote_code=trust_remote_code)


def _num_labels(config: PipelineConfig, splits) -> int:
    """The data's classes; a Hub dataset is not loaded in a dry run: its configured names, else AG News's four."""
    from core.config import AG_NEWS_CLASSES

    return len(splits.class_names if splits is not None else config.dataset.class_names or AG_NEWS_CLASSES)


# ----------------------------------------------------------------------------------------------
# Formatting


def _parameters(run: Run, estimate: Estimate) -> str:
    if not METHODS[run.method]["uses_models"]:
        return "trainable=known after fitting (TF-IDF vocabulary)"
    if estimate.trainable is None:
        return f"trainable=unknown ({estimate.unknown_because})"
    share = 100 * estimate.trainable / estimate.total if estimate.total else 0
    return f"trainable={estimate.trainable:,} of {estimate.total:,} ({share:.3g}%)"


def _time(run: Run, estimate: Estimate) -> str:
    if not METHODS[run.method]["uses_models"]:
        return "time=seconds (TF-IDF, not timed)"
    if estimate.seconds is None:
        return "time=unknown" + (f" ({estimate.unknown_because})" if estimate.trainable is not None else "")
    return f"time≈{clock(estimate.seconds)}"


def clock(seconds: float) -> str:
    """12m05s, or 1h02m05s."""
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
