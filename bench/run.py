"""One benchmark run: for each model, peak matmul rate, evaluation and training, side by side.

The models: `minilm` is the config's first model (the offline default, all-MiniLM-L6-v2, real weights);
`bert_base` is the bert-base-uncased architecture (BertConfig defaults: 12 layers, hidden 768) randomly
initialised, with MiniLM's tokenizer (the same uncased 30,522-token WordPiece vocabulary as bert-base-uncased),
so its token counts are the real ones. Speed does not depend on weights; its accuracy means nothing and is
reported as null.
"""
from __future__ import annotations

import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import measure
from bench.flops import parameter_groups, forward_flops, measure_peak, model_shapes
from bench.grid import STUDY, study_grid
from bench.report import format_accuracy
from dataset import stratified_sample, load_splits, tokenize
from core.config import PipelineConfig
from core.hardware import cpu_flags, cpu_has_amx, describe, threads
from core.models import load_classifier
from core.precision import Shapes, choose
from pipeline.precision import cache_file
from tasks.adapters import apply_method, merged
from tasks.base import RunContext
from tasks.finetune import weights_in_bf16


@dataclass(frozen=True)
class Sizes:
    """How much of each measurement a run does (texts or samples)."""

    test_texts: int | None  # test texts timed by the evaluator (None: all 7,600), stratified; never scored
    per_text_texts: int  # per-text loop, and the evaluator again on the same texts, for the speedup
    train_samples: int  # samples trained, project and reference on the same texts (drawn from 4 x as many)
    accuracy: bool  # score every trained model on the validation split (False for bert_base: random weights)
    peak_seconds: float = 0.6  # timing per matmul shape for the peak
    warmup_samples: int = 0  # untimed training per side (fresh model) and an untimed evaluation pass before timing


# Full-run sizes keep `python -m bench` within ~15 minutes on 2 CPU cores; bert_base costs ~8x MiniLM per token
# (85M vs 10.6M per-token parameters), so it gets smaller counts and no accuracy.
SIZES = {
    "full": {"minilm": Sizes(None, 760, 1120, True), "bert_base": Sizes(760, 190, 256, False)},
    # --quick trains 4-16 steps per side on MiniLM, where a first step's one-time costs would decide the ratio: one
    # untimed batch per side first (full fine-tuning 1.1x without it, 1.7x with it). bert_base's 32 samples are
    # 1-4 steps: a smoke test of the code path, not a figure (a warm-up did not change it, and costs ~30 s).
    "quick": {"minilm": Sizes(760, 64, 128, True, warmup_samples=32), "bert_base": Sizes(64, 16, 32, False)},
    # On a GPU everything is ~100x faster: the whole test split and as many samples as the 4,500 rows allow
    # (pool = 4 x samples), so timings are not start-up.
    # A GPU's first use of each kernel and shape costs far more than its steady state (lazy kernel loading, library
    # heuristics: the first evaluation pass over 7,600 texts took 3-6x as long as later ones on an H100), so the
    # timed passes come after an untimed warm-up of each side. The full CPU run times minutes per side, where the
    # first step's one-time costs vanish: no warm-up.
    "gpu": {"minilm": Sizes(None, 760, 4480, True, warmup_samples=512),
            "bert_base": Sizes(None, 760, 4480, False, warmup_samples=512)},
}
NEAR_TIE = {"fp32": 1e-3, "bf16": 5e-2}  # top-two probability margin below which a disagreement is a near-tie


@dataclass
class BenchContext:
    config: PipelineConfig  # the project's config (config.yaml): tasks B and C give the training settings
    device: torch.device
    precision: str  # auto | bf16 | fp32, as TrainingConfig.precision
    splits: object  # dataset.Splits
    run_dir: Path
    seed: int = 42
    full_task: str = "B"
    lora_task: str = "C"
    log: object = print


def load_model(name: str, bench: BenchContext, class_names):
    """(model, tokenizer) for `minilm` (config's first model) or `bert_base` (architecture, random weights)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

    torch.manual_seed(bench.seed)  # the new classifier head (and bert_base's weights) are the same every time
    base = bench.config.models[0]
    if name == "minilm":
        return load_classifier(base, len(class_names), class_names, bench.config.trust_remote_code)
    if name == "bert_base":
        tokenizer = AutoTokenizer.from_pretrained(base)
        config = BertConfig(num_labels=len(class_names), vocab_size=tokenizer.vocab_size,
                            pad_token_id=tokenizer.pad_token_id)
        return AutoModelForSequenceClassification.from_config(config), tokenizer
    raise ValueError(f"unknown model {name!r}; expected minilm or bert_base")


def peak_tokens(config: PipelineConfig, task: str = "B") -> int:
    """Rows of the peak matmul: the tokens of one evaluation batch of typical padded length (64)."""
    return config.task_training(task, "v1").eval_batch_size * 64


def bench_precision(config: PipelineConfig, setting: str, device: torch.device, model_config):
    """The bench's precision (a core.precision.Choice): `auto` decided as the pipeline decides it, by the probe
    at the model's shapes (PROBE_TOKENS rows), cached beside the data cache."""
    return choose(setting, device, Shapes.of(model_config), cache_file(config))


def bench_model(name: str, sizes: Sizes, bench: BenchContext) -> dict:
    """Peak; then full fine-tuning and LoRA, the project's way and the reference way, on the same texts; the
    evaluation measurements run on the model the project's full fine-tuning produced (its test pass is the
    throughput figure; trained, its predictions mean something to agree on). Every trained model is scored on
    the validation split."""
    log, device, splits, config = bench.log, bench.device, bench.splits, bench.config
    model, tokenizer = load_model(name, bench, splits.class_names)
    counts = parameter_groups(model)
    max_length = config.dataset.max_length
    full_training = config.task_training(bench.full_task, "v1")
    peak_rows = peak_tokens(config, bench.full_task)
    choice = bench_precision(config, bench.precision, device, model.config)
    bf16 = choice.bf16
    precision = choice.precision
    log(f"[{name}] precision {choice.describe()}")
    lora_training = config.task_training(bench.lora_task, "v1")
    lora_settings = config.task_lora(bench.lora_task, "v1")
    result = {"model": config.models[0] if name == "minilm" else "bert-base-uncased architecture, random init",
              "weights": "pretrained" if name == "minilm" else "random (accuracy meaningless: not measured)",
              "parameters": counts.as_dict(), "precision": precision, "precision_choice": choice.as_dict(),
              "attention": getattr(model.config, "_attn_implementation", None), "sizes": sizes.__dict__}
    shapes = model_shapes(model.config)
    del model

    # Peak: the model's Linear shapes, at the tokens of one evaluation batch of typical padded length.
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = measure_peak(shapes, peak_rows, dtype, device, seconds_per_shape=sizes.peak_seconds)
    other = measure_peak(shapes, peak_rows, torch.float32 if bf16 else torch.bfloat16, device,
                         seconds_per_shape=sizes.peak_seconds / 2)
    other_precision = "fp32" if bf16 else "bf16"
    peaks = {precision: peak["gflops"], other_precision: other["gflops"]}
    result["peak_gflops"] = {"value": peak["gflops"], "precision": precision, "by_shape": peak["by_shape"],
                             "rows": peak_rows, "other_precision": {other_precision: other["gflops"],
                                                               "by_shape": other["by_shape"]}}
    log(f"[{name}] peak {precision} matmul {peak['gflops']:.0f} GFLOP/s ({other_precision}: {other['gflops']:.0f})")

    def encode(frame):
        return tokenize(frame["text"].tolist(), tokenizer, max_length, config.dataset.cache_dir)

    test = splits.test if sizes.test_texts is None else stratified_sample(splits.test, sizes.test_texts, bench.seed)
    started = time.perf_counter()
    test_ids = encode(test)
    tokenize_seconds = time.perf_counter() - started  # a cache hit after the first run: the project tokenises once
    # The pool is 4 x the samples, so the project's length grouping forms mega-batches of exactly the samples
    # trained (measure.train_project); the reference then trains on exactly the texts the project's run saw.
    pool = stratified_sample(splits.train, 4 * sizes.train_samples, bench.seed).reset_index(drop=True)
    pool_ids, pool_labels = encode(pool), pool["label"].tolist()
    position = {tuple(ids): i for i, ids in enumerate(pool_ids)}
    context = RunContext(config, splits, bench.run_dir, device, show_progress=False)
    # Accuracy is the validation split's (issue 13: a speedup counts at equal validation accuracy); the test split
    # serves only as texts to time.
    validation = splits.validation
    validation_ids = encode(validation) if sizes.accuracy else None
    result["train"] = {"samples": sizes.train_samples, "pool": len(pool), "accuracy_split": "validation",
                       "accuracy_texts": len(validation) if sizes.accuracy else None}

    for method, training in (("full", full_training), ("lora", lora_training)):
        runs = {}
        for side in ("project", "reference"):
            def train(samples: int) -> dict:
                fresh, _ = load_model(name, bench, splits.class_names)
                fresh = apply_method(weights_in_bf16(fresh, training, bf16 and side == "project"), method,
                                     lora_settings if method == "lora" else None)
                if side == "project":
                    return measure.train_project(fresh, tokenizer, method, training, pool_ids, pool_labels,
                                                 samples, context, bf16, bench.seed)
                # LoRA has no run_classification.py default; it gets the project's LoRA learning rate (task C).
                rate = measure.REFERENCE["learning_rate"] if method == "full" else training.learning_rate
                rows = trained_rows[:samples]  # the texts the project's timed run trained on, in its order
                return measure.train_reference(fresh, tokenizer, method, pool["text"].iloc[rows].tolist(),
                                               [pool_labels[i] for i in rows], device, bench.seed, learning_rate=rate)

            if sizes.warmup_samples:
                train(sizes.warmup_samples)  # untimed, its model dropped: kernels loaded, shapes seen
            run = train(sizes.train_samples)
            seen = run.pop("seen")
            if side == "project":
                trained_rows = [position[ids] for ids in seen]
            trained = merged(run.pop("model"))
            run["utilization"] = run["achieved_gflops"] / peaks[run["precision"]]  # against its own precision
            run["busy_utilization"] = run["busy_gflops"] / peaks[run["precision"]]  # padding counted as work
            run["accuracy"] = None
            if sizes.accuracy:
                scores = measure.evaluate_project(trained, validation_ids, tokenizer.pad_token_id,
                                                  full_training.eval_batch_size, device, bf16)
                run["accuracy"] = measure.accuracy(scores["probabilities"], validation["label"])
            if method == "full" and side == "project":  # the evaluation measurements, on this trained model
                result["eval"] = _evaluation(name, trained, tokenizer, test, test_ids, tokenize_seconds, sizes, counts,
                                             peaks, bench, bf16, precision)
            runs[side] = run
            log(f"[{name}] train {method} {side}: {run['samples_per_s']:.2f} samples/s ({run['seconds']:.1f} s for"
                f" {run['samples']} samples, batch {run['batch_size']}, lr {run['learning_rate']:g},"
                f" padding {run['padding_share']:.0%}), utilization {run['utilization']:.0%},"
                f" validation accuracy {format_accuracy(run['accuracy'])}")
            del trained
        result["train"][method] = {
            "project": runs["project"], "reference": runs["reference"],
            "speedup_vs_reference": runs["project"]["samples_per_s"] / runs["reference"]["samples_per_s"],
            "utilization": runs["project"]["utilization"], "reference_utilization": runs["reference"]["utilization"],
            "accuracy": runs["project"]["accuracy"], "reference_accuracy": runs["reference"]["accuracy"],
            "flop_count": "3 x forward = 6 (P_tok T + P_seq S)" if method == "full" else
                          "2 x forward + 2 (A T + H S): adapter and head weight gradients (bench/flops.py)",
        }
    result["eval"]["accuracy"] = result["train"]["full"]["accuracy"]
    return result


def _evaluation(name: str, model, tokenizer, test, test_ids, tokenize_seconds, sizes: Sizes, counts, peaks: dict,
                bench: BenchContext, bf16: bool, precision: str):
    """The project's evaluator over the test texts, then the per-text loop and the evaluator again on a
    stratified subset of them (same model, same texts) for the speedup and the agreement."""
    device, log, config = bench.device, bench.log, bench.config
    batch_size = config.task_training(bench.full_task, "v1").eval_batch_size
    cold_seconds = None
    if sizes.warmup_samples:  # untimed for the rate; its time is kept as the cold first pass
        cold_seconds = measure.evaluate_project(model, test_ids, tokenizer.pad_token_id, batch_size, device,
                                                bf16)["seconds"]
    project = measure.evaluate_project(model, test_ids, tokenizer.pad_token_id, batch_size, device, bf16)
    project.pop("probabilities")
    flops = forward_flops(counts, project["tokens"], project["texts"])
    loop_rows = stratified_sample(test.reset_index(drop=True), sizes.per_text_texts, bench.seed).index  # positions in test
    loop_ids = [test_ids[i] for i in loop_rows]
    loop_texts = test["text"].iloc[loop_rows].tolist()
    again = measure.evaluate_project(model, loop_ids, tokenizer.pad_token_id, batch_size, device, bf16)
    loop = measure.evaluate_per_text(model, tokenizer, loop_texts, config.dataset.max_length, device)
    again_probabilities = again.pop("probabilities")
    agree = measure.agreement(again_probabilities, loop.pop("predictions"), NEAR_TIE[precision])
    # The second reference (issue 10): Trainer.predict the usual way (padded to 128, batch 8, fp32, no_grad) on
    # the same texts; tokenisation timed on both sides, the project's from an empty cache. Last: it casts the
    # model to fp32.
    with tempfile.TemporaryDirectory(prefix="bench-tokens-") as cache:
        started = time.perf_counter()
        tokenize(loop_texts, tokenizer, config.dataset.max_length, cache)
        again["tokenize_seconds"] = time.perf_counter() - started
    again["texts_per_s_with_tokenization"] = again["texts"] / (again["seconds"] + again["tokenize_seconds"])
    predict = measure.evaluate_trainer_predict(model, tokenizer, loop_texts, device)
    predict_agreement = float((again_probabilities.argmax(axis=1) == predict.pop("predictions")).mean())
    for part in (again, loop, predict):  # FLOP/s of real tokens, and of every position computed (padding included)
        part["achieved_gflops"] = forward_flops(counts, part["tokens"], part["texts"]) / part["seconds"] / 1e9
        part["busy_gflops"] = forward_flops(counts, part["positions"], part["texts"]) / part["seconds"] / 1e9
        part["utilization"] = part["achieved_gflops"] / peaks[part["precision"]]
    evaluation = {
        "project": {**project, "tokenize_seconds": tokenize_seconds, "achieved_gflops": flops / project["seconds"] / 1e9,
                    "flops": flops, "cold_first_pass_seconds": cold_seconds},
        "project_on_per_text_texts": again, "per_text": loop,
        "speedup_vs_per_text": again["texts_per_s"] / loop["texts_per_s"],
        "speedup_full_set_vs_per_text": project["texts_per_s"] / loop["texts_per_s"],
        "trainer_predict": predict,
        "speedup_vs_trainer_predict": again["texts_per_s"] / predict["texts_per_s"],
        "speedup_vs_trainer_predict_with_tokenization":
            again["texts_per_s_with_tokenization"] / predict["texts_per_s_with_tokenization"],
        "agreement_with_trainer_predict": predict_agreement,
        "utilization": flops / project["seconds"] / 1e9 / peaks[precision],
        "agreement": agree,
        "model": "after the project's full fine-tuning (train.full.project)",
    }
    log(f"[{name}] eval: project {project['texts_per_s']:.1f} texts/s over {project['texts']} texts;"
        f" on {loop['texts']} of them {again['texts_per_s']:.1f} vs per-text loop {loop['texts_per_s']:.1f}:"
        f" {evaluation['speedup_vs_per_text']:.1f}x; agreement {agree['agreement']:.4f}; Trainer.predict"
        f" {predict['texts_per_s']:.1f}: {evaluation['speedup_vs_trainer_predict']:.1f}x"
        f" ({evaluation['speedup_vs_trainer_predict_with_tokenization']:.1f}x with tokenisation);"
        f" utilization {evaluation['utilization']:.0%}")
    return evaluation


def run_benchmark(config: PipelineConfig, models: list[str], quick: bool, device: torch.device, precision: str,
                  log=print, run_dir=None, sizes: dict[str, Sizes] | None = None) -> dict:
    splits = load_splits(config.dataset)
    bench = BenchContext(config, device, precision, splits, Path(run_dir or tempfile.gettempdir()),
                         seed=config.seed, log=log)
    mode = "quick" if quick else ("gpu" if device.type == "cuda" else "full")
    started = time.perf_counter()
    results = {"mode": mode, "machine": machine(device), "settings": settings(config, bench)}
    for name in models:
        results[name] = bench_model(name, (sizes or SIZES[mode])[name], bench)
        results[name]["study_grid_estimate"] = grid_estimate(results[name])
    results["seconds"] = time.perf_counter() - started
    return results


def grid_estimate(result: dict, study: Path = STUDY) -> dict:
    """Hours for the study's grid (configs/study.yaml, bench/grid.py) at this model's measured rates: the project's
    way and the usual way. Meaningful for bert_base, whose cost stands for the study's models."""
    train, evaluation = result["train"], result["eval"]
    return study_grid(study, {
        "project": {"full": train["full"]["project"]["samples_per_s"], "lora": train["lora"]["project"]["samples_per_s"],
                    "eval": evaluation["project"]["texts_per_s"]},
        "usual_way": {"full": train["full"]["reference"]["samples_per_s"],
                      "lora": train["lora"]["reference"]["samples_per_s"], "eval": evaluation["per_text"]["texts_per_s"]}})


def machine(device: torch.device) -> dict:
    import psutil

    info = {"device": str(device), "name": describe(device), "torch": torch.__version__,
            **threads(), "cpu_count": psutil.cpu_count(logical=True),
            "python": platform.python_version()}
    if device.type == "cpu":
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["avx512_bf16"] = "avx512_bf16" in cpu_flags()
        info["amx"] = cpu_has_amx()  # information: `auto` decides by measurement (precision_choice)
    return info


def settings(config: PipelineConfig, bench: BenchContext) -> dict:
    full = config.task_training(bench.full_task, "v1")
    lora = config.task_training(bench.lora_task, "v1")
    return {
        "project_full": {k: getattr(full, k) for k in ("batch_size", "eval_batch_size", "learning_rate", "warmup_ratio",
                                                       "weight_decay", "group_by_length", "pad_to_multiple_of",
                                                       "precision")},
        "project_lora": {"learning_rate": lora.learning_rate, "batch_size": lora.batch_size,
                         **config.task_lora(bench.lora_task, "v1").model_dump()},
        "reference": {**measure.REFERENCE, "padding": "max_length", "precision": "fp32", "order": "random",
                      "warmup": 0, "weight_decay": 0.0, "lora_learning_rate": lora.learning_rate,
                      "source": "transformers examples/pytorch/text-classification/run_classification.py"
                                " (max_seq_length=128, pad_to_max_length=True) + TrainingArguments defaults"},
        "max_length": config.dataset.max_length,
    }
