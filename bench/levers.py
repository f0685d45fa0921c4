"""One lever at a time, the rest held fixed: what each speed setting gives on this machine.

    python -m bench.levers [eval] [train] [--out docs/results/bench/levers.json] [--texts N] [--samples N]

Both groups run in the precision `precision: auto` picks here (core/precision.py's probe; the JSON says which)
and measure the other precision beside it.
eval   MiniLM inference over a fixed stratified subset of the test split (default 1,520 texts; speed only, no
       labels read): batch size in both precisions, length sorting, padding to 128, bf16 weights, eager vs SDPA
       attention, inference_mode vs autograd on, threads, torch.compile; fp32 vs bf16 matmul at the model's shapes.
train  MiniLM full fine-tuning steps on a fixed subset of training texts (default 256) at task B's settings:
       precision, length grouping, pad_to_multiple_of, batch size, fused vs unfused AdamW, bf16 weights,
       torch.compile, threads; the usual way's padding; LoRA at task C's settings.
Batch sizes and learning rates are not chosen here: that is the search's job, on the validation split
(configs/search.yaml). Numbers go to stdout and, merged per group, to the JSON file (bench/NOTES.md quotes them).
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


def _precision(config):
    """What `precision: auto` picks on this machine for the config's model (cached probe), as a Choice."""
    from transformers import AutoConfig

    from bench.run import bench_precision

    return bench_precision(config, config.training.precision, CPU, AutoConfig.from_pretrained(config.models[0]))


def eval_levers(config, splits, texts: int, log) -> dict:
    from bench.flops import measure_peak, model_shapes
    from dataset import stratified_sample, tokenize

    choice = _precision(config)
    bf16 = choice.bf16
    name = choice.precision
    frame = stratified_sample(splits.test, texts, 42)
    model, tokenizer = _model(config, splits)
    ids = _ids(frame, tokenizer, config)
    pad = tokenizer.pad_token_id
    out = {"texts": len(ids), "mean_tokens": float(np.mean([len(x) for x in ids])), "precision": choice.as_dict()}

    def record(label, value):
        out[label] = round(value, 2)
        log(f"eval {label}: {value:.1f} texts/s")

    _batched(model, ids[:64], pad, 32, autocast=bf16)  # warm-up
    for autocast in (bf16, not bf16):
        for batch in (8, 16, 32, 64, 128):
            record(f"{'bf16 autocast' if autocast else 'fp32'} sorted batch {batch}",
                   _batched(model, ids, pad, batch, autocast=autocast))
    record(f"{name} unsorted batch 32 (pad to batch max)", _batched(model, ids, pad, 32, sort=False, autocast=bf16))
    record(f"{name} batch 32 padded to 128", _batched(model, ids, pad, 32, width=128, autocast=bf16))
    record(f"{name} sorted batch 32, width rounded up to a multiple of 8",
           _batched(model, ids, pad, 32, multiple=8, autocast=bf16))
    record(f"{name} batch 32 autograd on (no inference_mode)", _batched(model, ids, pad, 32, grad=True, autocast=bf16))
    record("bf16 weights batch 32", _batched(model.to(torch.bfloat16), ids, pad, 32))
    model.to(torch.float32)
    eager, _ = _model(config, splits, "eager")
    record(f"{name} batch 32 eager attention", _batched(eager, ids, pad, 32, autocast=bf16))
    record(f"{name} batch 32 sdpa attention", _batched(model, ids, pad, 32, autocast=bf16))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    record(f"{name} batch 32, 1 thread", _batched(model, ids, pad, 32, autocast=bf16))
    torch.set_num_threads(threads)
    record(f"{name} batch 32, {threads} threads", _batched(model, ids, pad, 32, autocast=bf16))

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
    _batched(compiled, ids[:64], pad, 32, autocast=bf16)
    out["torch.compile first batches seconds (compile)"] = round(time.perf_counter() - started, 1)
    record(f"{name} batch 32 torch.compile(dynamic=True)", _batched(compiled, ids, pad, 32, autocast=bf16))

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
    from tasks.finetune import weights_in_bf16

    choice = _precision(config)
    frame = stratified_sample(splits.train, 4 * samples, 42).reset_index(drop=True)  # pool: one mega-batch is `samples`
    base = config.task_training("B", "v1")
    out = {"samples": samples, "pool": len(frame), "precision": choice.as_dict(),
           "settings": {"batch_size": base.batch_size, "learning_rate": base.learning_rate, "optim": base.optim}}
    context = RunContext(config, splits, Path("/tmp"), CPU, show_progress=False)

    def one(label, method="full", reference=False, threads=None, bf16=choice.bf16, **changes):
        model, tokenizer = _model(config, splits)
        task = "C" if method == "lora" else "B"
        training = config.task_training(task, "v1").model_copy(update=changes)
        model = apply_method(weights_in_bf16(model, training, bf16), method,
                             config.task_lora("C", "v1") if method == "lora" else None)
        saved = torch.get_num_threads()
        torch.set_num_threads(threads or saved)
        try:
            if reference:
                chosen = frame.sample(n=samples, random_state=42)
                run = measure.train_reference(model, tokenizer, method, chosen["text"].tolist(),
                                              chosen["label"].tolist(), CPU, 42, learning_rate=training.learning_rate,
                                              batch_size=changes.get("batch_size", measure.REFERENCE["batch_size"]))
            else:
                ids = _ids(frame, tokenizer, config)
                run = measure.train_project(model, tokenizer, method, training, ids, frame["label"].tolist(), samples,
                                            context, bf16, 42)
        finally:
            torch.set_num_threads(saved)
        out[label] = {"samples_per_s": round(run["samples_per_s"], 2), "padding_share": round(run["padding_share"], 3),
                      "achieved_gflops": round(run["achieved_gflops"], 1), "precision": run["precision"],
                      "batch_size": run["batch_size"]}
        log(f"train {label}: {run['samples_per_s']:.2f} samples/s, padding {run['padding_share']:.0%},"
            f" {run['achieved_gflops']:.0f} GFLOP/s")

    name = choice.precision
    one(f"project: task B (batch {base.batch_size}, grouped, pad to 8, fused AdamW, {name})")
    one("fp32" if choice.bf16 else "bf16 autocast", bf16=not choice.bf16)
    one("random order (dynamic padding)", group_by_length=False)
    one("grouped, no pad_to_multiple_of", pad_to_multiple_of=None)
    for batch in sorted({8, 16, 32, 64} - {base.batch_size}):
        one(f"batch {batch}", batch_size=batch)
    one("unfused AdamW (optim adamw_torch)", optim="adamw_torch")
    if choice.bf16:
        one("bf16 weights (training.bf16_weights)", bf16_weights=True)
    one("1 thread", threads=1)
    one("torch.compile (training.torch_compile; compile time included)", torch_compile=True)
    one("reference: max_length 128, batch 8, random, fp32", reference=True, bf16=False)
    one(f"LoRA: task C's settings ({name})", method="lora")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.levers")
    parser.add_argument("groups", nargs="*", default=["eval", "train"], choices=["eval", "train"])
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "bench" / "levers.json"))
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--texts", type=int, default=1520)
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args(argv)
    log = lambda line: print(line, flush=True)
    from core.quiet import quiet_libraries

    quiet_libraries()
    config, splits = _setup(args.config)
    path = Path(args.out)
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored.pop("tune", None)  # batch size and learning rate scored on test: withdrawn (issue 10)
    for group in args.groups:
        if group == "eval":
            stored["eval"] = eval_levers(config, splits, args.texts, log)
        else:
            stored["train"] = train_levers(config, splits, args.samples, log)
        from core.hardware import cpu_flags, cpu_has_amx, cpu_model

        stored["machine"] = {"cpu": cpu_model(), "amx": cpu_has_amx(), "avx512_bf16": "avx512_bf16" in cpu_flags(),
                             "threads": torch.get_num_threads(), "torch": torch.__version__,
                             "command": "python -m bench.levers " + " ".join(argv or sys.argv[1:])}
        path.write_text(json.dumps(stored, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
