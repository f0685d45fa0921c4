"""Fine-tune and evaluate transformer text classifiers, as planned in config.yaml.

    python main.py [--config PATH] [--only RUN_ID ...] [--dry-run] [--force] [--quiet] [KEY=VALUE ...]

Exit codes: 0 every run complete, 1 a run failed, 2 a config, data or usage error.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenisation is batched already


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{message}; see python main.py --help")


def parse_args(argv):
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="config.yaml", help="the YAML file to run (default: config.yaml)")
    parser.add_argument("--only", nargs="+", metavar="RUN_ID", help="run only these run ids (e.g. A0 B1_v1)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, one run per line; load no model")
    parser.add_argument("--force", action="store_true", help="rerun runs that are complete with the same settings")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (for logs and CI)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides, e.g. output_dir=/tmp/x dataset.max_train_samples=500")
    args = parser.parse_args(argv)
    if args.only:  # `--only B1_v1 key=value` : the greedy list stops being run ids at the first KEY=VALUE
        args.overrides = [x for x in args.only if "=" in x] + args.overrides
        args.only = [x for x in args.only if "=" not in x]
    return args


def main(argv=None) -> int:
    from pipeline.config import ConfigError, load_config
    from pipeline.plan import build_plan

    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        config = load_config(args.config, args.overrides)
        runs = build_plan(config, args.only)
    except (UsageError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        from pipeline.run_state import decide

        for run in runs:
            print(f"{run.describe()}  [{decide(run, config, args.force)}]")
        return 0

    from pipeline.runner import PlanError, run_all

    try:
        outcomes = run_all(config, runs, force=args.force, show_progress=not args.quiet)
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if any(o.status != "complete" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
