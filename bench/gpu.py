"""The GPU bench: chosen settings against the batch-32 baseline and the usual way, with validation accuracy beside
every speed, and the study grid's GPU-hours at the chosen settings.

    python -m bench.gpu OUT_DIR [--quick] [--config PATH] [--device auto|cpu|cuda] [--epochs N]
                        [--common KEY=VALUE ...] [--baseline KEY=VALUE ...] [--chosen KEY=VALUE ...]...
                        [--levers NAME ...] [--budget-seconds S]

`bash bench/gpu.sh` runs it with every setting pinned; bench/NOTES.md ("GPU") explains the method.
Settings: --common applies to every arm (data, model, validation size), --baseline gives the baseline arm
(tasks B and C: full fine-tuning and LoRA), each --chosen one candidate arm on top of the baseline. Parts:

1. accuracy (config's first model, real weights): full fine-tuning (task B) and LoRA (task C), each the usual way
   (run_classification.py: batch 8, padded to 128, fp32), the baseline arm and every chosen arm, all for the same
   epochs over the training split; validation accuracy decides which chosen arm is "chosen" (per method); the test
   split is scored once per arm and never used to choose.
2. speed (bert-base architecture, random weights): samples/s and utilisation of the usual way, the baseline and
   the chosen arm; then each lever switched one at a time at the chosen settings (--levers), within the budget.
3. evaluation speed: the project's evaluator at the baseline's and the chosen eval batch size against
   Trainer.predict the usual way (batch 8, padded to 128, fp32, no_grad) and the per-text loop; tokenisation
   timed on both sides.
4. the study grid (configs/study.yaml, read here) in GPU-hours at the chosen, baseline and usual-way rates.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.grid import study_grid  # noqa: E402

METHODS = (("full", "B"), ("lora", "C"))  # method, the config task that gives its settings
# One lever at a time at the chosen settings: the TrainingConfig field and its two values (off, on).
# training.dataloader_workers is not among them: the bench counts tokens in the collator, which workers would move
# into other processes (the counts would be lost).
LEVERS = {  # in the order run: the cheap ones first, torch.compile (a minute or more of compiling) last
    "non_blocking": ("non_blocking", False, True),
    "bf16_weights": ("bf16_weights", False, True),
    "fused_adamw": ("optim", "adamw_torch", "adamw_torch_fused"),
    "pin_memory": ("pin_memory", False, True),
    "torch_compile": ("torch_compile", False, True),
}
TARGETS = {"grid_hours": 1.0, "accuracy_points": 0.3, "full_utilization": 0.30}  # issue 11


@dataclass(frozen=True)
class GpuSizes:
    speed_model: str  # bert_base (random weights) or minilm (the config's first model)
    epochs: float  # accuracy runs: epochs over the training split, every arm and the usual way alike
    speed_samples: int  # timed samples per project training run in the speed part
    reference_samples: int  # timed samples of the usual way (batch 8: slow)
    warmup_samples: int  # untimed training per side before timing (GPU: first use of kernels and shapes)
    eval_texts: int | None  # test texts for evaluation speed (None: all)
    per_text_texts: int
    peak_seconds: float
    square_peak: bool  # also the 8192^3 bf16 matmul (the card's best case)


SIZES = {"gpu": GpuSizes("bert_base", 3, 4096, 1024, 256, None, 380, 0.5, True),
         "quick": GpuSizes("minilm", 1, 32, 16, 0, 24, 8, 0.02, False)}


@dataclass
class Bench:
    arms: dict  # name -> PipelineConfig (baseline first)
    device: torch.device
    splits: object
    sizes: GpuSizes
    run_dir: Path
    log: object
    started: float
    budget: float

    @property
    def baseline(self):
        return self.arms["baseline"]

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def settings_of(config, task: str, device: torch.device):
    """(training, lora, bf16) of `task`'s v1 variant in this arm, on `device`."""
    training = config.task_training(task, "v1")
    return training, config.task_lora(task, "v1"), precision_choice(config, training, device).bf16


def precision_choice(config, training, device: torch.device):
    """`auto` decided as the pipeline decides it (core/precision.py): the probe at the first model's shapes
    (PROBE_TOKENS rows), cached beside the data cache."""
    from transformers import AutoConfig

    from core.models import hub_options
    from core.precision import Shapes, choose
    from pipeline.precision import cache_file

    name = config.models[0]
    shapes = Shapes.of(AutoConfig.from_pretrained(name, **hub_options(name)))
    return choose(training.precision, device, shapes, cache_file(config))


def fresh_model(name: str, bench: Bench, method: str, training, lora, bf16: bool):
    """A new model for one training run, cast and wrapped as tasks/finetune.py does."""
    from bench.run import BenchContext, load_model
    from tasks.adapters import apply_method
    from tasks.finetune import weights_in_bf16

    context = BenchContext(bench.baseline, bench.device, "auto", bench.splits, bench.run_dir,
                           seed=bench.baseline.seed)
    model, tokenizer = load_model(name, context, bench.splits.class_names)
    return apply_method(weights_in_bf16(model, training, bf16), method, lora if method == "lora" else None), tokenizer


def train_arm(name: str, bench: Bench, config, method: str, task: str, ids, labels, samples: int) -> dict:
    from bench import measure
    from tasks.base import RunContext

    training, lora, bf16 = settings_of(config, task, bench.device)
    model, tokenizer = fresh_model(name, bench, method, training, lora, bf16)
    context = RunContext(config, bench.splits, bench.run_dir, bench.device, show_progress=False)
    run = measure.train_project(model, tokenizer, method, training, ids, labels, samples, context, bf16, config.seed)
    run.pop("seen")
    run.update(bf16_weights=training.bf16_weights, non_blocking=training.non_blocking,
               torch_compile=training.torch_compile, optim=training.optim, workers=training.dataloader_workers,
               pin_memory=training.pin_memory)
    return run


def train_usual(name: str, bench: Bench, method: str, texts, labels, epochs: float = 1) -> dict:
    """run_classification.py's way; LoRA (no default there) at the baseline's LoRA learning rate."""
    from bench import measure

    training, lora, _ = settings_of(bench.baseline, "C", bench.device)
    model, tokenizer = fresh_model(name, bench, method, training, lora, False)
    rate = measure.REFERENCE["learning_rate"] if method == "full" else training.learning_rate
    run = measure.train_reference(model, tokenizer, method, texts, labels, bench.device, bench.baseline.seed,
                                  learning_rate=rate, epochs=epochs)
    run.pop("seen")
    return run


def _tokenizer(bench: Bench):
    from bench.run import BenchContext, load_model

    context = BenchContext(bench.baseline, bench.device, "auto", bench.splits, bench.run_dir)
    return load_model("minilm", context, bench.splits.class_names)[1]


def encode(texts, tokenizer, config, cache_dir=None) -> list[list[int]]:
    from dataset import tokenize

    return tokenize(list(texts), tokenizer, config.dataset.max_length, cache_dir or config.dataset.cache_dir)


def scored(run: dict, bench: Bench, config, task: str, frames: dict, tokenizer) -> dict:
    """Validation and test accuracy of the trained model in `run` (LoRA merged, as tasks/finetune.py does)."""
    from bench import measure
    from tasks.adapters import merged

    training, _, bf16 = settings_of(config, task, bench.device)
    model = merged(run.pop("model"))
    for split, frame in frames.items():
        ids = encode(frame["text"], tokenizer, config)
        probabilities = measure.evaluate_project(model, ids, tokenizer.pad_token_id, training.eval_batch_size,
                                                 bench.device, bf16)["probabilities"]
        correct = probabilities.argmax(axis=1) == frame["label"].to_numpy()
        run[f"{split}_accuracy"] = float(correct.mean())
        run[f"{split}_correct"] = correct
    return model


def paired(correct, baseline_correct) -> dict:
    """Difference in accuracy (points) against the baseline on the same rows, with its paired standard error."""
    difference = correct.astype(float) - baseline_correct.astype(float)
    return {"points": 100 * float(difference.mean()),
            "standard_error_points": 100 * float(difference.std(ddof=1) / np.sqrt(len(difference)))}


def choose(runs: dict, candidates: list[str]) -> str:
    """The candidate arm with the best validation accuracy (the first on a tie); the baseline if there is none.
    Test accuracy plays no part."""
    return max(candidates or ["baseline"], key=lambda arm: runs[arm]["validation_accuracy"])


def accuracy_part(bench: Bench) -> tuple[dict, dict, dict]:
    """Every arm and the usual way, same epochs, same training rows; the chosen arm per method by validation.
    Returns (results, chosen arm name per method, the chosen full fine-tuning model for the evaluation part)."""
    splits, sizes, log = bench.splits, bench.sizes, bench.log
    tokenizer = _tokenizer(bench)
    train_ids, train_labels = encode(splits.train["text"], tokenizer, bench.baseline), splits.train["label"].tolist()
    frames = {"validation": splits.validation, "test": splits.test}
    if sizes.warmup_samples:  # the first use of each kernel costs seconds on a GPU
        train_usual("minilm", bench, "full", splits.train["text"].tolist()[:sizes.warmup_samples],
                    train_labels[:sizes.warmup_samples])
        for method, task in METHODS:
            train_arm("minilm", bench, bench.baseline, method, task, train_ids, train_labels, sizes.warmup_samples)
    results, chosen, models = {}, {}, {}
    for method, task in METHODS:
        runs = {"usual_way": train_usual("minilm", bench, method, splits.train["text"].tolist(), train_labels,
                                         epochs=sizes.epochs)}
        usual_config = bench.baseline.model_copy(update={"training": bench.baseline.training.model_copy(
            update={"eval_batch_size": 32, "precision": "fp32"})})  # scored in fp32, as it was trained
        scored(runs["usual_way"], bench, usual_config, task, frames, tokenizer)
        for arm, config in bench.arms.items():
            batch = settings_of(config, task, bench.device)[0].batch_size  # whole epochs: the last batch is short
            runs[arm] = train_arm("minilm", bench, config, method, task, train_ids, train_labels,
                                  int(sizes.epochs * math.ceil(len(train_ids) / batch) * batch))
            model = scored(runs[arm], bench, config, task, frames, tokenizer)
            if method == "full":
                models[arm] = model
            log(f"[accuracy] {method} {arm}: validation {runs[arm]['validation_accuracy']:.4f}"
                f" test {runs[arm]['test_accuracy']:.4f}, {runs[arm]['samples_per_s']:.0f} samples/s"
                f" (batch {runs[arm]['batch_size']}, lr {runs[arm]['learning_rate']:g})")
        log(f"[accuracy] {method} usual way: validation {runs['usual_way']['validation_accuracy']:.4f},"
            f" {runs['usual_way']['samples_per_s']:.0f} samples/s")
        chosen[method] = choose(runs, [arm for arm in bench.arms if arm != "baseline"])
        for arm, run in runs.items():
            for split in frames:
                run[f"{split}_vs_baseline"] = paired(run[f"{split}_correct"], runs["baseline"][f"{split}_correct"])
        for run in runs.values():
            for split in frames:
                run.pop(f"{split}_correct")
        results[method] = {"runs": runs, "chosen": chosen[method], "epochs": sizes.epochs,
                           "train_rows": len(train_ids), "validation_rows": len(splits.validation),
                           "test_rows": len(splits.test)}
    return results, chosen, models.get(chosen["full"])


def _speed_inputs(bench: Bench):
    tokenizer = _tokenizer(bench)
    splits = bench.splits
    return encode(splits.train["text"], tokenizer, bench.baseline), splits.train["label"].tolist()


def _timed(bench: Bench, run_one) -> dict:
    """An untimed warm-up run (GPU: kernels loaded, shapes seen; torch.compile compiles), then the timed run."""
    warmup = None
    if bench.sizes.warmup_samples:
        started = time.perf_counter()
        run_one(bench.sizes.warmup_samples)
        warmup = time.perf_counter() - started
    run = run_one(None)
    run["warmup_seconds"] = warmup
    return run


def speed_part(bench: Bench, chosen: dict) -> dict:
    """Samples/s of the usual way, the baseline and the chosen arm on the speed model."""
    splits, sizes, log, name = bench.splits, bench.sizes, bench.log, bench.sizes.speed_model
    ids, labels = _speed_inputs(bench)
    texts = splits.train["text"].tolist()[:sizes.reference_samples]
    timed = lambda run_one: _timed(bench, run_one)  # noqa: E731
    results = {}
    for method, task in METHODS:
        arms = {"usual_way": timed(lambda n: train_usual(name, bench, method, texts[:n] if n else texts,
                                                          labels[:n or len(texts)]))}
        for arm in dict.fromkeys(["baseline", chosen[method]]):
            arms[arm] = timed(lambda n, arm=arm: train_arm(name, bench, bench.arms[arm], method, task, ids, labels,
                                                           n or sizes.speed_samples))
        for arm, run in arms.items():
            run.pop("model")
            log(f"[speed] {name} {method} {arm}: {run['samples_per_s']:.1f} samples/s (batch {run['batch_size']},"
                f" {run['precision']}), device busy {_pct(run['device_busy'])}")
        results[method] = {"runs": arms, "chosen": chosen[method], "levers": {}}
    return results


def lever_part(bench: Bench, chosen: dict, levers: list[str], results: dict, save=lambda: None) -> None:
    """Each lever toggled alone at the chosen settings, full fine-tuning then LoRA, into `results` (speed_part's);
    once the budget is spent the rest are skipped (torch.compile, last, may compile for a minute or more).

    The untoggled arm is timed again right before each toggled run and the gain is taken from that adjacent pair:
    the first GPU run compared every toggle with the arm's rate measured minutes earlier, and every toggle of full
    fine-tuning, whichever lever, came out 1.25-1.4x faster than that earlier figure (an effect of order)."""
    sizes, log, name = bench.sizes, bench.log, bench.sizes.speed_model
    ids, labels = _speed_inputs(bench)
    timed = lambda run_one: _timed(bench, run_one)  # noqa: E731
    for lever in levers:
        field, off, on = LEVERS[lever]
        for method, task in METHODS:
            if lever == "torch_compile" and method != "full":  # its compile time buys one figure, not two
                continue
            base = bench.arms[chosen[method]]
            current = getattr(settings_of(base, task, bench.device)[0], field)
            if bench.elapsed() > bench.budget:
                results[method]["levers"][lever] = {"skipped": f"time budget of {bench.budget:.0f} s spent"}
                continue
            toggled = with_training(base, task, **{field: off if current == on else on})
            try:
                again = timed(lambda n: train_arm(name, bench, base, method, task, ids, labels,
                                                  n or sizes.speed_samples))
                run = timed(lambda n: train_arm(name, bench, toggled, method, task, ids, labels,
                                                n or sizes.speed_samples))
            except Exception as error:  # a lever that fails here (a compiler error, say) is reported, not fatal
                results[method]["levers"][lever] = {"failed": f"{type(error).__name__}: {str(error)[:500]}"}
                log(f"[lever] {method} {lever}: failed: {type(error).__name__}: {str(error)[:200]}")
                continue
            run.pop("model")
            again.pop("model")
            chosen_rate = again["samples_per_s"]  # the untoggled arm, timed just before
            on_rate, off_rate = (chosen_rate, run["samples_per_s"]) if current == on else (run["samples_per_s"],
                                                                                          chosen_rate)
            results[method]["levers"][lever] = {"field": field, "chosen_value": current, "on": on, "off": off,
                                                "on_samples_per_s": on_rate, "off_samples_per_s": off_rate,
                                                "gain": on_rate / off_rate, "toggled_run": run, "untoggled_run": again}
            log(f"[lever] {method} {lever}: on {on_rate:.1f} vs off {off_rate:.1f} samples/s"
                f" ({on_rate / off_rate:.2f}x; warm-up {run['warmup_seconds'] or 0:.1f} s)")
            save()


def with_training(config, task: str, **update):
    """`config` with task `task`'s training overrides updated (the rest of the arm unchanged)."""
    tasks = dict(config.tasks)
    tasks[task] = tasks[task].model_copy(update={"training": tasks[task].training.model_copy(update=update)})
    return config.model_copy(update={"tasks": tasks})


def eval_part(bench: Bench, chosen: dict, model_name: str, model=None) -> dict:
    """The project's evaluator at the baseline and chosen eval batch sizes, Trainer.predict the usual way and the
    per-text loop, on the same test texts; tokenisation timed on both sides (the project's from an empty cache)."""
    from bench import measure
    from bench.run import BenchContext, load_model
    from dataset import stratified_sample

    sizes, log = bench.sizes, bench.log
    chosen_config = bench.arms[chosen["full"]]
    _, _, bf16 = settings_of(chosen_config, "B", bench.device)
    test = stratified_sample(bench.splits.test, sizes.eval_texts, bench.baseline.seed).reset_index(drop=True)
    texts = test["text"].tolist()
    context = BenchContext(bench.baseline, bench.device, "auto", bench.splits, bench.run_dir)
    fresh, tokenizer = load_model(model_name, context, bench.splits.class_names)
    model = fresh if model is None else model
    with tempfile.TemporaryDirectory(prefix="bench-tokens-") as cache:
        start = time.perf_counter()
        ids = encode(texts, tokenizer, bench.baseline, cache)
        tokenize_seconds = time.perf_counter() - start
    result = {"texts": len(texts), "project_tokenize_seconds": tokenize_seconds, "project": {}}
    pad = tokenizer.pad_token_id
    for arm in dict.fromkeys(["baseline", chosen["full"]]):
        batch = settings_of(bench.arms[arm], "B", bench.device)[0].eval_batch_size
        if sizes.warmup_samples:
            measure.evaluate_project(model, ids, pad, batch, bench.device, bf16)
        run = measure.evaluate_project(model, ids, pad, batch, bench.device, bf16)
        run["texts_per_s_with_tokenization"] = len(ids) / (run["seconds"] + tokenize_seconds)
        result["project"][arm] = run
    project = result["project"][chosen["full"]]
    loop_rows = stratified_sample(test, sizes.per_text_texts, bench.baseline.seed).index
    again = measure.evaluate_project(model, [ids[i] for i in loop_rows], pad, project["batch_size"], bench.device, bf16)
    per_text = measure.evaluate_per_text(model, tokenizer, [texts[i] for i in loop_rows],
                                         bench.baseline.dataset.max_length, bench.device)
    per_text.pop("predictions"), again.pop("probabilities")
    if sizes.warmup_samples:
        measure.evaluate_trainer_predict(model, tokenizer, texts[:64], bench.device)
    predict = measure.evaluate_trainer_predict(model, tokenizer, texts, bench.device)  # last: casts to fp32
    probabilities = project.pop("probabilities")
    result["project"]["baseline"].pop("probabilities", None)
    result.update({
        "trainer_predict": {k: v for k, v in predict.items() if k != "predictions"},
        "agreement_with_trainer_predict": float((probabilities.argmax(axis=1) == predict["predictions"]).mean()),
        "project_on_per_text_texts": again, "per_text": per_text,
        "speedup_vs_trainer_predict": project["texts_per_s"] / predict["texts_per_s"],
        "speedup_vs_trainer_predict_with_tokenization":
            project["texts_per_s_with_tokenization"] / predict["texts_per_s_with_tokenization"],
        "speedup_vs_per_text": again["texts_per_s"] / per_text["texts_per_s"],
        "chosen_eval_batch_size": project["batch_size"],
    })
    log(f"[eval] {model_name}: project {project['texts_per_s']:.0f} texts/s at batch {project['batch_size']}"
        f" ({result['project']['baseline']['texts_per_s']:.0f} at the baseline's), Trainer.predict"
        f" {predict['texts_per_s']:.0f}: {result['speedup_vs_trainer_predict']:.1f}x"
        f" ({result['speedup_vs_trainer_predict_with_tokenization']:.1f}x with tokenisation);"
        f" per-text loop {per_text['texts_per_s']:.0f}")
    return result


def utilization(results: dict, peaks: dict, counts: dict) -> None:
    """Model FLOP/s over the matmul peak of each run's own precision, written into each run."""
    from bench.flops import forward_flops

    for method in results["speed"]:
        for run in [*results["speed"][method]["runs"].values(),
                    *(lever["toggled_run"] for lever in results["speed"][method]["levers"].values()
                      if "toggled_run" in lever)]:
            run["utilization"] = run["achieved_gflops"] / peaks[run["precision"]]
    for name, evaluation in results["eval"].items():
        for run in [*evaluation["project"].values(), evaluation["trainer_predict"]]:
            flops = forward_flops(counts[name], run["tokens"], run["texts"])
            run["utilization"] = flops / run["seconds"] / 1e9 / peaks[run["precision"]]


def run_gpu_bench(config_path: Path, common: list[str], baseline: list[str], chosen: list[list[str]],
                  levers: list[str], quick: bool, device: torch.device, log=print, epochs: float | None = None,
                  budget: float = 400.0, study_path: Path = ROOT / "configs" / "study.yaml", save=None) -> dict:
    """Every part in turn; `save(results)`, if given, after each part (a run cut off keeps what it measured)."""
    from bench.flops import parameter_groups, measure_peak, model_shapes
    from bench.run import BenchContext, load_model, machine
    from core.config import load_config
    from dataset import load_splits

    sizes = SIZES["quick" if quick else "gpu"]
    if epochs is not None:
        sizes = GpuSizes(**{**sizes.__dict__, "epochs": epochs})
    arms = {"baseline": load_config(config_path, [*common, *baseline])}
    for number, overrides in enumerate(chosen, 1):
        arms[f"chosen{number}"] = load_config(config_path, [*common, *baseline, *overrides])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as folder:
        bench = Bench(arms, device, load_splits(arms["baseline"].dataset), sizes, Path(folder), log, started, budget)
        results = {"mode": "quick" if quick else "gpu", "machine": machine(device), "sizes": sizes.__dict__,
                   "command_settings": {"config": str(config_path), "common": common, "baseline": baseline,
                                        "chosen": chosen, "levers": levers, "budget_seconds": budget},
                   "arms": {name: {method: {**settings_of(config, task, device)[0].model_dump(),
                                            **({"lora": settings_of(config, task, device)[1].model_dump()}
                                               if method == "lora" else {})}
                                   for method, task in METHODS} for name, config in arms.items()}}
        import peft
        import transformers

        results["machine"].update(transformers=transformers.__version__, peft=peft.__version__)
        save = save or (lambda partial: None)
        results["accuracy"], picked, trained_full = accuracy_part(bench)
        results["chosen"] = picked
        save(results)
        results["speed"] = speed_part(bench, picked)
        save(results)
        context = BenchContext(arms["baseline"], device, "auto", bench.splits, bench.run_dir)
        speed_model = load_model(sizes.speed_model, context, bench.splits.class_names)[0]
        counts = {sizes.speed_model: parameter_groups(speed_model)}
        results["eval"] = {sizes.speed_model: eval_part(bench, picked, sizes.speed_model)}
        if sizes.speed_model != "minilm":
            counts["minilm"] = parameter_groups(trained_full)
            results["eval"]["minilm"] = eval_part(bench, picked, "minilm", trained_full)
        rows = settings_of(arms[picked["full"]], "B", device)[0].eval_batch_size * 64
        peaks = {"bf16": measure_peak(model_shapes(speed_model.config), rows, torch.bfloat16, device,
                                      sizes.peak_seconds)["gflops"],
                 "fp32": measure_peak(model_shapes(speed_model.config), rows, torch.float32, device,
                                      sizes.peak_seconds)["gflops"]}
        results["peak_gflops"] = {**peaks, "rows": rows, "model_shapes_of": sizes.speed_model}
        if sizes.square_peak and device.type == "cuda":
            results["peak_gflops"]["bf16_8192_cubed"] = measure_peak([(8192, 8192)], 8192, torch.bfloat16, device,
                                                                     2.0)["gflops"]
        utilization(results, peaks, counts)
        grid_and_targets(results, study_path)
        save(results)  # everything but the levers: a call cut off in them keeps it
        lever_part(bench, picked, levers, results["speed"], lambda: save(results))  # last: the budget cuts it
        utilization(results, peaks, counts)  # the levers' runs too
    results["seconds"] = time.perf_counter() - started
    return results


def grid_and_targets(results: dict, study_path: Path) -> None:
    """The study grid's hours at the chosen, baseline and usual-way rates, and issue 11's targets, into `results`."""
    picked, speed = results["chosen"], results["speed"]
    evaluation = results["eval"][results["sizes"]["speed_model"]]
    rate = lambda method, arm: speed[method]["runs"][arm]["samples_per_s"]  # noqa: E731
    results["study_grid"] = study_grid(study_path, {
        "chosen": {"full": rate("full", picked["full"]), "lora": rate("lora", picked["lora"]),
                   "eval": evaluation["project"][picked["full"]]["texts_per_s"]},
        "baseline": {"full": rate("full", "baseline"), "lora": rate("lora", "baseline"),
                     "eval": evaluation["project"]["baseline"]["texts_per_s"]},
        "usual_way": {"full": rate("full", "usual_way"), "lora": rate("lora", "usual_way"),
                      "eval": evaluation["trainer_predict"]["texts_per_s"]}})
    results["targets"] = targets(results)


def targets(results: dict) -> dict:
    """Issue 11's targets, each from the measurements above."""
    accuracy, picked = results["accuracy"], results["chosen"]
    out = {"grid_hours": results["study_grid"]["chosen"]["total_hours"]}
    out["grid_hours_met"] = out["grid_hours"] <= TARGETS["grid_hours"]
    for method in ("full", "lora"):
        difference = accuracy[method]["runs"][picked[method]]["validation_vs_baseline"]["points"]
        out[f"{method}_validation_points_vs_baseline"] = difference
        out[f"{method}_accuracy_met"] = difference >= -TARGETS["accuracy_points"]
    full = results["speed"]["full"]["runs"][picked["full"]]
    out["full_utilization"] = full["utilization"]
    out["full_utilization_met"] = full["utilization"] >= TARGETS["full_utilization"]
    out["full_device_busy"] = full["device_busy"]
    out["thresholds"] = TARGETS
    return out


def summary(results: dict) -> str:
    picked, lines = results["chosen"], []
    lines.append(f"device: {results['machine']['name']}; chosen arms: full {picked['full']}, LoRA {picked['lora']}")
    for method in ("full", "lora"):
        a = results["accuracy"][method]
        lines.append(f"accuracy, {method} ({a['epochs']:g} epochs over {a['train_rows']} rows; validation"
                     f" {a['validation_rows']}, test {a['test_rows']}):")
        for arm, run in a["runs"].items():
            d = run["validation_vs_baseline"]
            lines.append(f"  {arm:<10} batch {run['batch_size']:>4} lr {run['learning_rate']:<8g}"
                         f" validation {run['validation_accuracy']:.4f} ({d['points']:+.2f} ± {d['standard_error_points']:.2f}"
                         f" points vs baseline) test {run['test_accuracy']:.4f}  {run['samples_per_s']:.0f} samples/s")
    for method in ("full", "lora"):
        s = results["speed"][method]
        lines.append(f"speed, {method} ({results['sizes']['speed_model']}):")
        for arm, run in s["runs"].items():
            lines.append(f"  {arm:<10} {run['samples_per_s']:9.1f} samples/s  utilization {_pct(run['utilization'])}"
                         f"  device busy {_pct(run['device_busy'])}")
        for lever, value in s["levers"].items():
            lines.append(f"  lever {lever:<14} " + (value.get("skipped") or value.get("failed") if
                                                                  "on_samples_per_s" not in value else
                         f"on {value['on_samples_per_s']:.1f} / off {value['off_samples_per_s']:.1f}: {value['gain']:.2f}x"))
    for name, e in results["eval"].items():
        p = e["project"][picked["full"]]
        lines.append(f"eval, {name} ({e['texts']} texts): project {p['texts_per_s']:.0f} texts/s at batch"
                     f" {p['batch_size']}, Trainer.predict {e['trainer_predict']['texts_per_s']:.0f}"
                     f" ({e['speedup_vs_trainer_predict']:.1f}x; {e['speedup_vs_trainer_predict_with_tokenization']:.1f}x"
                     f" with tokenisation), per-text {e['per_text']['texts_per_s']:.0f}"
                     f" ({e['speedup_vs_per_text']:.1f}x), utilization {_pct(p['utilization'])}")
    g = results["study_grid"]
    lines.append(f"study grid ({g['config']}: {g['runs']} runs, {(g['full_samples'] + g['lora_samples']) / 1e6:.0f}M"
                 f" samples, {g['eval_texts'] / 1e6:.1f}M evaluated texts), GPU-hours:")
    for way in ("chosen", "baseline", "usual_way"):
        h = g[way]
        lines.append(f"  {way:<10} {h['train_hours']:.2f} training + {h['eval_hours']:.2f} evaluation"
                     f" = {h['total_hours']:.2f}")
    t = results["targets"]
    lines.append(f"targets: grid {t['grid_hours']:.2f} h <= 1: {t['grid_hours_met']}; validation vs baseline full"
                 f" {t['full_validation_points_vs_baseline']:+.2f} / LoRA {t['lora_validation_points_vs_baseline']:+.2f}"
                 f" points (>= -0.3): {t['full_accuracy_met']} / {t['lora_accuracy_met']}; full utilization"
                 f" {_pct(t['full_utilization'])} >= 30%: {t['full_utilization_met']}")
    return "\n".join(lines)


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder for results-gpu.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the tests' dry run on a CPU")
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--study", default=str(ROOT / "configs" / "study.yaml"))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--epochs", type=float, default=None, help="accuracy runs: epochs over the training split")
    parser.add_argument("--budget-seconds", type=float, default=360.0, help="levers after this are skipped")
    parser.add_argument("--common", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--baseline", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--chosen", nargs="+", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--levers", nargs="*", default=list(LEVERS), choices=list(LEVERS))
    args = parser.parse_args(argv)

    from bench.report import jsonable
    from core.files import write_json_atomic
    from core.hardware import pick_device
    from core.quiet import quiet_libraries

    quiet_libraries()
    device = pick_device() if args.device == "auto" else torch.device(args.device)
    if device.type != "cuda" and not args.quick:
        sys.exit("bench/gpu.py: no CUDA device visible to torch; --quick runs the dry mode on a CPU")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m bench.gpu", *(argv if argv is not None else sys.argv[1:])])

    def save(partial: dict) -> None:  # what is measured so far, in case the call is cut off
        write_json_atomic(out / "results-gpu.partial.json", jsonable({**partial, "command": command}))

    results = run_gpu_bench(Path(args.config), args.common, args.baseline, args.chosen, args.levers, args.quick,
                            device, log=lambda line: print(line, flush=True), epochs=args.epochs,
                            budget=args.budget_seconds, study_path=Path(args.study).resolve(), save=save)
    results["command"] = command
    text = summary(results)
    results["summary"] = text
    write_json_atomic(out / "results-gpu.json", jsonable(results))
    (out / "results-gpu.partial.json").unlink(missing_ok=True)
    print("\n" + text + f"\n\nwritten: {out / 'results-gpu.json'} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
