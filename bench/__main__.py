"""Fast fine-tuning and evaluation, measured against the usual way and against the hardware's limit.

    python -m bench [--quick] [--out PATH] [--models minilm bert_base] [--device auto|cpu|cuda]
                    [--precision auto|bf16|fp32] [--config PATH] [KEY=VALUE ...]

Per model: the peak matmul rate at the model's own shapes; evaluation throughput of the project's evaluator
vs the per-text loop (and their agreement); training throughput and test accuracy of the project's training
vs a run_classification.py-style reference, full fine-tuning and LoRA; utilisation of each. Prints a table
and writes JSON (default docs/results/bench/results.json). KEY=VALUE overrides config.yaml as main.py does
(e.g. tasks.B.training.learning_rate=2e-4). bench/NOTES.md explains the counts and the figures.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts: under 3 minutes on 2 CPU cores")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "bench" / "results.json"), help="the JSON file to write")
    parser.add_argument("--models", nargs="+", default=["minilm", "bert_base"], choices=["minilm", "bert_base"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                        help="auto: bf16 where a probe at the model's shapes measures it >= 1.2x fp32, else fp32"
                             " (core/precision.py)")
    parser.add_argument("--config", default=str(ROOT / "config.yaml"),
                        help="the project config whose tasks B (full) and C (LoRA) give the training settings")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    args = parser.parse_args(argv)

    import torch
    from core.quiet import quiet_libraries

    quiet_libraries()  # no "Loading weights" bars, once per model load
    from bench.report import format_table, jsonable
    from bench.run import run_benchmark
    from core.config import load_config
    from core.files import write_json_atomic
    from core.hardware import pick_device

    device = pick_device() if args.device == "auto" else torch.device(args.device)
    config = load_config(args.config, args.overrides)
    results = run_benchmark(config, args.models, args.quick, device, args.precision,
                            log=lambda line: print(line, flush=True))
    results["command"] = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    table = format_table(results, args.models)
    print()
    print(table)
    results["table"] = table
    write_json_atomic(Path(args.out), jsonable(results))
    print(f"\nwritten: {args.out} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
