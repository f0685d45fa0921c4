"""Processes sharing one machine and one results folder: total wall time with 1, 2 and 4 processes.

    python -m bench.threads [--out docs/results/bench/threads.json] [--processes 1 2 4] [--threads-each N] [--smoke]

Every setting starts that many `python main.py` processes at once on the same config and a fresh output_dir: the
same grid of small runs (MiniLM, full fine-tuning and LoRA over a few seeds; a few seconds each), split between
the processes by the run locks. Each process picks its torch thread count as the pipeline does (the machine's
cores divided among the processes on output_dir: pipeline/runner.py share_cores); `--threads-each N` passes
`--threads N` to every process instead (N = the core count: the behaviour before sharing, every process on all
cores). The tokenised data is cached by an untimed warm-up first, so every setting starts alike.

The figure is the total wall time of each setting, from the first start to the last exit; the goal
is 4 processes at most 1.1x the time of one. Run it on a quiet machine (nothing else running): other
work moves the times. `--smoke`: a two-run grid of tiny sizes and 1 and 2 processes, to check the script works
(the figures then mean nothing). Writes a JSON naming the machine (CPU model, cores, torch).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GOAL = 1.1  # 4 processes' total time over 1 process's, at most
GRIDS = {  # the grid every setting runs: seeds x tasks B (full) and C (LoRA) on MiniLM, 1 epoch
    "full": {"seeds": [1, 2, 3, 4], "train": 256, "validation": 64, "test": 256, "max_length": 64},
    "smoke": {"seeds": [1], "train": 32, "validation": 16, "test": 32, "max_length": 32},
}


def grid_config(grid: dict, output_dir: Path, cache_dir: Path, data: Path, model: Path) -> dict:
    return {
        "output_dir": str(output_dir),
        "seeds": grid["seeds"],
        "dataset": {"source": str(data), "validation_size": grid["validation"], "max_train_samples": grid["train"],
                    "max_test_samples": grid["test"], "max_length": grid["max_length"], "cache_dir": str(cache_dir)},
        "models": [str(model)],
        "training": {"epochs": 1, "batch_size": 16, "eval_batch_size": 64, "learning_rate": 1e-4,
                     "precision": "fp32"},  # pinned: the bench compares thread sharing, not precisions
        "variants": {"v1": {}},
        "lora": {"r": 8, "lora_alpha": 16, "target_modules": ["query", "value"]},
        "tasks": {"B": {"method": "full", "variants": ["v1"]}, "C": {"method": "lora", "variants": ["v1"]}},
    }


def run_setting(processes: int, config: dict, scratch: Path, threads_each: int | None) -> dict:
    """`processes` main.py processes at once on `config` (its output_dir fresh); their total wall time."""
    import yaml

    from core.record import RunRecord

    path = scratch / f"config-{Path(config['output_dir']).name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, str(ROOT / "main.py"), "--config", str(path), "--quiet"]
    if threads_each:
        command += ["--threads", str(threads_each)]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    logs = [open(scratch / f"{Path(config['output_dir']).name}-{i}.log", "w") for i in range(processes)]
    started = time.perf_counter()
    running = [subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
               for log in logs]
    codes = [process.wait() for process in running]
    seconds = time.perf_counter() - started
    for log in logs:
        log.close()
    records = [RunRecord.read(p) for p in sorted(Path(config["output_dir"]).glob("*/metrics.json"))]
    records = [record for record in records if record is not None]
    return {"processes": processes, "seconds": round(seconds, 2), "exit_codes": codes,
            "runs_complete": sum(record.complete for record in records),
            "run_seconds": round(sum(record.total_seconds or 0 for record in records), 2),
            "threads": {record.run_id: record.environment.get("threads") for record in records},
            "threads_chosen_by": sorted({record.environment.get("threads_chosen_by") or "" for record in records})}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "bench" / "threads.json"))
    parser.add_argument("--processes", type=int, nargs="+", default=None, help="settings (default: 1 2 4)")
    parser.add_argument("--threads-each", type=int, default=None,
                        help="pass --threads N to every process instead of letting them share the cores")
    parser.add_argument("--smoke", action="store_true", help="a two-run grid of tiny sizes, 1 and 2 processes")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ag_news"))
    parser.add_argument("--model", default=str(ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"))
    args = parser.parse_args(argv)
    settings = args.processes or ([1, 2] if args.smoke else [1, 2, 4])
    grid = GRIDS["smoke" if args.smoke else "full"]

    import torch

    from core.files import write_json_atomic
    from core.hardware import cores, cpu_model

    runs = 2 * len(grid["seeds"])
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m bench.threads " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": {"cpu_model": cpu_model(), "cores": cores(), "torch": torch.__version__},
              "smoke": args.smoke, "load_average_before": round(os.getloadavg()[0], 2),
              "grid": {**grid, "runs": runs, "tasks": "B (full) and C (LoRA query+value r=8), 1 epoch, fp32",
                       "model": Path(args.model).name}, "threads_each": args.threads_each, "settings": []}
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as folder:
        scratch = Path(folder)
        cache = scratch / "cache" / "tokenized"
        warm = grid_config(grid, scratch / "warm-up", cache, Path(args.data), Path(args.model))
        warm["seeds"] = warm["seeds"][:1]
        warm["tasks"] = {"C": warm["tasks"]["C"]}
        print("warm-up (untimed): tokenised data cached", flush=True)
        run_setting(1, warm, scratch, args.threads_each)
        for processes in settings:
            config = grid_config(grid, scratch / f"results-{processes}", cache, Path(args.data), Path(args.model))
            setting = run_setting(processes, config, scratch, args.threads_each)
            print(f"{processes} process{'es' if processes > 1 else ''}: {setting['seconds']:.1f} s,"
                  f" {setting['runs_complete']}/{runs} runs complete, exit codes {setting['exit_codes']}", flush=True)
            if setting["runs_complete"] != runs or any(setting["exit_codes"]):
                logs = sorted(scratch.glob(f"results-{processes}-*.log"))
                print(logs[0].read_text()[-2000:] if logs else "", file=sys.stderr)
            result["settings"].append(setting)
    times = {setting["processes"]: setting["seconds"] for setting in result["settings"]}
    if 1 in times and 4 in times:
        result["ratio_4_vs_1"] = round(times[4] / times[1], 3)
        result["goal"] = f"4 processes at most {GOAL}x the time of 1"
        result["goal_met"] = result["ratio_4_vs_1"] <= GOAL
    write_json_atomic(Path(args.out), result)
    print(f"wrote {args.out}")
    failed = [s["processes"] for s in result["settings"] if s["runs_complete"] != runs or any(s["exit_codes"])]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
