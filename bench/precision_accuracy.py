"""Does accuracy hold in bf16? Validation accuracy of the same runs trained in bf16 and in fp32, seed by seed.

    python -m bench.precision_accuracy BF16_DIR FP32_DIR [--runs B1_v1 C1_v1] [--out docs/results/bench/precision-accuracy.json]

BF16_DIR and FP32_DIR are two output folders of the same config run with `training.precision` bf16 (or auto
resolving to bf16) and fp32, with `seeds`. Per base run: each seed's best-epoch validation accuracy on both
sides (from metrics.json), the paired differences bf16 - fp32, and the verdict of issue 13: bf16 holds unless
it loses more than the seed-to-seed spread (the larger standard deviation over seeds of the two sides). The
test split is not read.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from core.record import RunRecord  # noqa: E402


def validation_by_seed(folder: Path, base_run: str) -> dict[int, dict]:
    """{seed: {validation_accuracy, precision, train_seconds}} of the base run's complete seeds in `folder`."""
    found = {}
    for path in sorted(Path(folder).glob(f"{base_run}*/metrics.json")):
        record = RunRecord.read(path)
        if record is None or not record.complete or record.base_run != base_run or record.best_epoch is None:
            continue
        found[record.seed] = {"validation_accuracy": record.best_epoch.validation_accuracy,
                              "precision": record.precision,
                              "train_seconds": record.timing.train_seconds if record.timing else None}
    return found


def compare(bf16_dir: Path, fp32_dir: Path, base_run: str) -> dict:
    bf16, fp32 = validation_by_seed(bf16_dir, base_run), validation_by_seed(fp32_dir, base_run)
    wrong = [f"{side} seed {seed} ran in {row['precision']}" for side, rows, expected in
             (("bf16", bf16, "bf16"), ("fp32", fp32, "fp32")) for seed, row in rows.items()
             if row["precision"] != expected]
    if wrong:
        raise ValueError(f"{base_run}: {'; '.join(wrong)}")
    seeds = sorted(set(bf16) & set(fp32))
    if len(seeds) < 2:
        raise ValueError(f"{base_run}: {len(seeds)} seed(s) complete on both sides; the spread needs two or more")
    accuracy = {side: [rows[s]["validation_accuracy"] for s in seeds] for side, rows in (("bf16", bf16), ("fp32", fp32))}
    diffs = [b - f for b, f in zip(accuracy["bf16"], accuracy["fp32"])]
    spread = max(statistics.stdev(accuracy["bf16"]), statistics.stdev(accuracy["fp32"]))
    loss = statistics.mean(accuracy["fp32"]) - statistics.mean(accuracy["bf16"])
    seconds = {side: [rows[s]["train_seconds"] for s in seeds] for side, rows in (("bf16", bf16), ("fp32", fp32))}
    return {
        "seeds": seeds, "validation_accuracy": accuracy, "paired_diff_bf16_minus_fp32": diffs,
        "mean": {side: statistics.mean(values) for side, values in accuracy.items()},
        "std": {side: statistics.stdev(values) for side, values in accuracy.items()},
        "bf16_loss": loss, "seed_spread": spread, "bf16_holds": loss <= spread,
        "train_seconds": seconds,
        "train_speedup_bf16": statistics.mean(seconds["fp32"]) / statistics.mean(seconds["bf16"])
        if all(v for values in seconds.values() for v in values) else None,
        "unpaired_seeds": {"bf16": sorted(set(bf16) - set(seeds)), "fp32": sorted(set(fp32) - set(seeds))},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.precision_accuracy")
    parser.add_argument("bf16_dir")
    parser.add_argument("fp32_dir")
    parser.add_argument("--runs", nargs="+", default=["B1_v1", "C1_v1"])
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "bench" / "precision-accuracy.json"))
    args = parser.parse_args(argv)
    from core.files import write_json_atomic
    from core.hardware import cpu_model

    result = {"bf16_dir": args.bf16_dir, "fp32_dir": args.fp32_dir, "cpu": cpu_model(),
              "command": "python -m bench.precision_accuracy " + " ".join(argv or sys.argv[1:]), "runs": {}}
    for base_run in args.runs:
        try:
            result["runs"][base_run] = row = compare(Path(args.bf16_dir), Path(args.fp32_dir), base_run)
        except ValueError as error:
            print(f"bench.precision_accuracy: {error}", file=sys.stderr)
            return 2
        print(f"{base_run}: validation bf16 {row['mean']['bf16']:.4f} ± {row['std']['bf16']:.4f}, fp32"
              f" {row['mean']['fp32']:.4f} ± {row['std']['fp32']:.4f} over seeds {row['seeds']}; bf16 loses"
              f" {row['bf16_loss'] * 100:+.2f} points against a spread of {row['seed_spread'] * 100:.2f}:"
              f" {'holds' if row['bf16_holds'] else 'DOES NOT HOLD'}")
    write_json_atomic(Path(args.out), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
