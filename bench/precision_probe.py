"""What `precision: auto` measures on this machine: the probe (core/precision.py) once per model of the
config's runs, measured afresh (the project's cache is neither read nor written), written to a JSON.

    python -m bench.precision_probe [--config config.yaml] [--out docs/results/bench/precision-probe.json] [--note TEXT]

Seconds on a CPU (about 1-2 s per model); the machine should be quiet for the rates to mean much.
"""
from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lscpu_model() -> str | None:
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return next((line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith("Model name")), None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.precision_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "bench" / "precision-probe.json"))
    parser.add_argument("--note", default="", help="how the machine was when measured (e.g. under load)")
    args = parser.parse_args(argv)

    import torch

    from core.config import load_config
    from core.files import write_json_atomic
    from core.hardware import cpu_flags, cpu_has_amx, device_model, pick_device, threads
    from pipeline.plan import build_plan
    from pipeline.precision import resolve_all

    with tempfile.TemporaryDirectory() as scratch:  # a fresh cache: always measured
        config = load_config(args.config, [f"dataset.cache_dir={scratch}/tokenized"])
        runs = build_plan(config)
        device = pick_device()
        choices = resolve_all(config, runs, device)
    probes = {}
    for run in runs:
        choice = choices[run.run_id]
        if choice is None or choice.source == "explicit":
            continue
        key = f"{run.model} | {choice.shapes['tokens']} tokens"  # one probe per model: PROBE_TOKENS rows
        probes.setdefault(key, {"runs": [], **{k: v for k, v in choice.as_dict().items()
                                              if k not in ("setting", "source")}})["runs"].append(run.run_id)
        print(f"{run.run_id}: {choice.describe()}")
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m bench.precision_probe " + " ".join(argv if argv is not None else sys.argv[1:]),
              "note": args.note, "cpu_model_lscpu": lscpu_model(), "device": device_model(device),
              "amx": cpu_has_amx(), "avx512_bf16": "avx512_bf16" in cpu_flags(), "torch": torch.__version__,
              **threads(), "probes": probes}
    write_json_atomic(Path(args.out), result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
