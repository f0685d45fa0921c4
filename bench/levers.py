"""One lever at a time, the rest held fixed: what each speed setting gives on this machine.

    python -m bench.levers [eval] [train] [tune] [--out bench/levers.json] [--texts N] [--samples N]

eval   MiniLM inference over a fixed stratified subset of the test split (default 1,520 texts):
       batch size, length sorting, padding to 128, bf16 autocast, bf16 weights, eager vs SDPA attention,
       inference_mode vs autograd on, threads, torch.compile; fp32 vs bf16 matmul at the model's shapes.
train  MiniLM full fine-tuning steps on a fixed subset of training texts (default 256): length grouping,
       pad_to_multiple_of, max_length padding, bf16 autocast, batch size; LoRA's cost relative to full.
tune   batch size and learning rate together: fine-tuning (full or LoRA) of MiniLM for N samples of the 4,500
       training rows, test accuracy on 1,520 test texts, seconds; the basis of the recommended config.yaml values.
Numbers go to stdout and, merged per group, to the JSON file (bench/NOTES.md quotes them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

CPU = torch.device("cpu")


def _setup(config_path: str):
    from dataset import load_splits
    from core.config import load_config

    config = load_config(config_path)
    return config, load_splits(config.dataset)


def _model(config, splits, attention: str | None = None):
    from core.models import load_classifier

    torch.manual_seed(42)
    model, tokenizer = load_classifier(config.models[0], len(splits.class_names), splits.class_names)
    if attention:
        model.set_attn_implementation(attention)
    return model.eval(), tokenizer


def _ids(frame, tokenizer, config):
    from dataset import tokenize

    return tokenize(frame["text"].tolist(), tokenizer, config.dataset.max_length, config.dataset.cache_dir)


def _batched(model, ids, pad_id, batch_size, sort=True, width=None, autocast=False, grad=False, multiple=None):
    """Like evaluation.inference.predict_probabilities, with each lever switchable; returns texts/s."""
    from evaluation.inference import pad_batch

    order = np.argsort([-len(x) for x in ids], kind="stable") if sort else np.arange(len(ids))
    context = torch.enable_grad() if grad else torch.inference_mode()
    start = time.perf_counter()
    with context, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for begin in range(0, len(order), batch_size):
            batch = [ids[i] for i in order[begin: begin + batch_size]]
            w = width or max(len(x) for x in batch)
            w = -(-w // multiple) * multiple if multiple else w
            input_ids, mask = pad_batch(batch, pad_id, w)
            model(input_ids=input_ids, attention_mask=mask).logits.float().argmax(-1)
    return len(ids) / (time.perf_counter() - start)


def eval_levers(config, splits, texts: int, log) -> dict:
    from bench.flops import measure_peak, model_shapes
    from dataset import stratified_sample, tokenize

    frame = stratified_sample(splits.test, texts, 42)
    model, tokenizer = _model(config, splits)
    ids = _ids(frame, tokenizer, config)
    pad = tokenizer.pad_token_id
    out = {"texts": len(ids), "mean_tokens": float(np.mean([len(x) for x in ids]))}

    def record(name, value):
        out[name] = round(value, 2)
        log(f"eval {name}: {value:.1f} texts/s")

    _batched(model, ids[:64], pad, 32)  # warm-up
    for batch in (8, 16, 32, 64, 128):
        record(f"fp32 sorted batch {batch}", _batched(model, ids, pad, batch))
    record("fp32 unsorted batch 32 (pad to batch max)", _batched(model, ids, pad, 32, sort=False))
    record("fp32 batch 32 padded to 128", _batched(model, ids, pad, 32, width=128))
    record("fp32 sorted batch 32, width rounded up to a multiple of 8", _batched(model, ids, pad, 32, multiple=8))
    record("fp32 batch 32 autograd on (no inference_mode)", _batched(model, ids, pad, 32, grad=True))
    record("bf16 autocast batch 32", _batched(model, ids, pad, 32, autocast=True))
    record("bf16 autocast batch 128", _batched(model, ids, pad, 128, autocast=True))
    record("bf16 weights batch 32", _batched(model.to(torch.bfloat16), ids, pad, 32))
    model.to(torch.float32)
    eager, _ = _model(config, splits, "eager")
    record("fp32 batch 32 eager attention", _batched(eager, ids, pad, 32))
    record("fp32 batch 32 sdpa attention", _batched(model, ids, pad, 32))
    torch.set_num_threads(1)
    record("fp32 batch 32, 1 thread", _batched(model, ids, pad, 32))
    torch.set_num_threads(os.cpu_count() or 1)
    record(f"fp32 batch 32, {torch.get_num_threads()} threads", _batched(model, ids, pad, 32))

    started = time.perf_counter()
    tokenizer(frame["text"].tolist(), truncation=True, max_length=config.dataset.max_length)
    out["tokenize seconds (uncached, batched)"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    tokenize(frame["text"].tolist(), tokenizer, config.dataset.max_length, config.dataset.cache_dir)
    out["tokenize seconds (project cache hit)"] = round(time.perf_counter() - started, 3)
    log(f"eval tokenize: {out['tokenize seconds (uncached, batched)']} s uncached,"
        f" {out['tokenize seconds (project cache hit)']} s cached")

    compiled = torch.compile(model, dynamic=True)
    started = time.perf_counter()
    _batched(compiled, ids[:64], pad, 32)
    out["torch.compile first batches seconds (compile)"] = round(time.perf_counter() - started, 1)
    record("fp32 batch 32 torch.compile(dynamic=True)", _batched(compiled, ids, pad, 32))

    rows = 32 * 64
    for dtype in (torch.float32, torch.bfloat16):
        peak = measure_peak(model_shapes(model.config), rows, dtype, CPU)
        out[f"matmul GFLOP/s {peak['dtype']}"] = peak["by_shape"]
        log(f"matmul {peak['dtype']}: {peak['by_shape']}")
    return out


def train_levers(config, splits, samples: int, log) -> dict:
    from bench import measure
    from dataset import stratified_sample
    from tasks.adapters import apply_method
    from tasks.base import RunContext

    frame = stratified_sample(splits.train, 4 * samples, 42).reset_index(drop=True)  # pool: one mega-batch is `samples`
    base = config.task_training("B", "v1")
    out = {"samples": samples, "pool": len(frame)}
    context = RunContext(config, splits, Path("/tmp"), CPU, show_progress=False)

    def one(name, method="full", reference=False, **changes):
        model, tokenizer = _model(config, splits)
        model = apply_method(model, method, config.task_lora("C", "v1") if method == "lora" else None)
        training = base.model_copy(update=changes)
        bf16 = training.precision == "bf16"
        if reference:
            chosen = frame.sample(n=samples, random_state=42)
            run = measure.train_reference(model, tokenizer, method, chosen["text"].tolist(), chosen["label"].tolist(),
                                          CPU, 42, learning_rate=training.learning_rate,
                                          batch_size=changes.get("batch_size", measure.REFERENCE["batch_size"]))
        else:
            ids = _ids(frame, tokenizer, config)
            run = measure.train_project(model, tokenizer, method, training, ids, frame["label"].tolist(), samples,
                                        context, bf16, 42)
        out[name] = {"samples_per_s": round(run["samples_per_s"], 2), "padding_share": round(run["padding_share"], 3),
                     "achieved_gflops": round(run["achieved_gflops"], 1)}
        log(f"train {name}: {run['samples_per_s']:.2f} samples/s, padding {run['padding_share']:.0%},"
            f" {run['achieved_gflops']:.0f} GFLOP/s")

    one("project (batch 32, grouped, pad to 8, fp32)")
    one("random order (dynamic padding)", group_by_length=False)
    one("grouped, no pad_to_multiple_of", pad_to_multiple_of=None)
    one("bf16 autocast", precision="bf16")
    for batch in (8, 16, 64):
        one(f"batch {batch}", batch_size=batch)
    one("reference: max_length 128, batch 8, random", reference=True)
    one("reference padding at batch 32 (max_length 128, random)", reference=True, batch_size=32)
    one("LoRA query r=8 (project settings)", method="lora", learning_rate=2e-3)
    return out


def tune(config, splits, samples: int, log, grid=None, test_texts: int = 1520) -> dict:
    """Fine-tuning of MiniLM for `samples` samples: accuracy on `test_texts` test texts (0: all) per setting."""
    from bench import measure
    from dataset import stratified_sample
    from tasks.adapters import apply_method, merged
    from tasks.base import RunContext

    frame = splits.train  # the pipeline's 4,500 rows; `samples` of them are trained on, as the first part of B1
    test = stratified_sample(splits.test, test_texts, 42) if test_texts else splits.test
    context = RunContext(config, splits, Path("/tmp"), CPU, show_progress=False)
    base = config.task_training("B", "v1")
    out = {"samples": samples, "test_texts": len(test)}
    grid = grid or [("full", 32, 1e-4), ("full", 16, 1e-4), ("full", 16, 2e-4), ("full", 8, 1e-4)]
    for method, batch, rate in grid:
        model, tokenizer = _model(config, splits)
        model = apply_method(model, method, config.task_lora("C", "v1") if method == "lora" else None)
        training = base.model_copy(update={"batch_size": batch, "learning_rate": rate})
        run = measure.train_project(model, tokenizer, method, training, _ids(frame, tokenizer, config),
                                    frame["label"].tolist(), samples, context, False, 42)
        scores = measure.evaluate_project(merged(run["model"]), _ids(test, tokenizer, config),
                                          tokenizer.pad_token_id, 32, CPU, False)
        accuracy = measure.accuracy(scores["probabilities"], test["label"])
        out[f"{method} batch {batch} lr {rate:g}"] = {"accuracy": round(accuracy, 4), "seconds": round(run["seconds"], 1),
                                                      "samples_per_s": round(run["samples_per_s"], 2)}
        log(f"tune {method} batch {batch} lr {rate:g}: accuracy {accuracy:.4f} in {run['seconds']:.1f} s"
            f" ({run['samples_per_s']:.1f} samples/s)")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.levers")
    parser.add_argument("groups", nargs="*", default=["eval", "train"], choices=["eval", "train", "tune"])
    parser.add_argument("--out", default=str(ROOT / "bench" / "levers.json"))
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--texts", type=int, default=1520)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--tune-samples", type=int, default=1120)
    parser.add_argument("--test-texts", type=int, default=1520, help="test texts scored by tune (0: all 7,600)")
    parser.add_argument("--grid", nargs="*", default=None, help="METHOD:BATCH:LR for tune, e.g. full:16:2e-4 lora:8:2e-3")
    args = parser.parse_args(argv)
    log = lambda line: print(line, flush=True)
    from core.quiet import quiet_libraries

    quiet_libraries()
    config, splits = _setup(args.config)
    path = Path(args.out)
    stored = json.loads(path.read_text()) if path.is_file() else {}
    for group in args.groups:
        if group == "eval":
            stored["eval"] = eval_levers(config, splits, args.texts, log)
        elif group == "train":
            stored["train"] = train_levers(config, splits, args.samples, log)
        else:
            grid = [(m, int(b), float(r)) for m, b, r in (item.split(":") for item in args.grid)] if args.grid else None
            stored.setdefault("tune", {}).setdefault(f"{args.tune_samples} samples, {args.test_texts or 7600} test texts",
                                                     {}).update(tune(config, splits, args.tune_samples, log, grid,
                                                                     args.test_texts))
        stored["machine"] = {"threads": torch.get_num_threads(), "torch": torch.__version__,
                             "command": "python -m bench.levers " + " ".join(argv or sys.argv[1:])}
        path.write_text(json.dumps(stored, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
