"""Where a training step's time goes: the project's full fine-tuning (bench.measure.train_project) under
torch.profiler, after an untimed warm-up, for the bert-base architecture (random weights).

    python -m bench.profile_step [--device cuda] [--samples 320] [KEY=VALUE ...]

Prints wall seconds per step, the device's busy time per step (sum of its kernels), and the operators that
take the most host and device time. On a GPU, busy time far under wall time means the step waits on the host
(Python, kernel launches, data collation), so a bigger batch or fewer launches pays, and faster kernels do not.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--samples", type=int, default=320, help="samples in the profiled run (after a warm-up of as many)")
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from bench import measure
    from bench.run import BenchContext, load_model
    from dataset import load_splits, tokenize
    from core.config import load_config
    from core.hardware import pick_device
    from core.precision import Shapes, choose
    from pipeline.precision import cache_file
    from tasks.base import RunContext

    config = load_config(args.config, args.overrides)
    device = pick_device() if args.device == "auto" else torch.device(args.device)
    splits = load_splits(config.dataset)
    training = config.task_training("B", "v1")
    bench = BenchContext(config, device, "auto", splits, Path("."), seed=config.seed)
    pool = splits.train.iloc[: 4 * args.samples]
    probe_model, tokenizer = load_model("bert_base", bench, splits.class_names)
    bf16 = choose(training.precision, device, Shapes.of(probe_model.config),
                  cache_file(config)).bf16  # as the pipeline decides `auto`: measured at the model's shapes
    del probe_model
    ids = tokenize(pool["text"].tolist(), tokenizer, config.dataset.max_length, config.dataset.cache_dir)
    context = RunContext(config, splits, ROOT, device, show_progress=False)

    def train():
        model, _ = load_model("bert_base", bench, splits.class_names)  # built before the profiler starts
        return lambda: measure.train_project(model, tokenizer, "full", training, ids, pool["label"].tolist(),
                                             args.samples, context, bf16, config.seed)

    train()()  # warm-up: kernels loaded, shapes seen
    profiled = train()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        result = profiled()
    steps = max(1, result["samples"] // training.batch_size)
    events = profiler.key_averages()
    device_ms = sum(e.self_device_time_total for e in events) / 1000 if device.type == "cuda" else 0.0
    print(f"{device}, batch {training.batch_size}, {'bf16' if bf16 else 'fp32'}: {steps} steps,"
          f" {1000 * result['seconds'] / steps:.1f} ms per step (profiled), device busy {device_ms / steps:.1f} ms per step")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=48))
    if device.type == "cuda":
        print(events.table(sort_by="self_device_time_total", row_limit=8, max_name_column_width=48))
    return 0


if __name__ == "__main__":
    sys.exit(main())
