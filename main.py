"""Fine-tune and evaluate transformer text classifiers, as planned in config.yaml.

    python main.py [run] [--config PATH] [--only NAME ...] [--dry-run] [--force] [--quiet] [--set KEY=VALUE ...]
                   [KEY=VALUE ...] [--reprobe] [--threads N]
                   [--executor sequential|ray] [--cpus-per-run N] [--gpus-per-run N] [--ray-address ADDRESS]
    python main.py predict RUN_ID [TEXT ...] [--file PATH [--out PATH]] [--config PATH] [--set KEY=VALUE ...]
    python main.py export RUN_ID DIR [--config PATH] [--set KEY=VALUE ...]
    python main.py report [--config PATH] [--set KEY=VALUE ...] [KEY=VALUE ...]
    python main.py --version

Installed (`pip install -e .`), the command `ftcompare` is the same as `python main.py`.
Options may come before or after the positional arguments.

Exit codes: 0 every run complete (or held by another process), 1 a run failed, 2 a config, data or usage error,
or a run whose folder holds complete results of other settings (kept; --force replaces them).
"""
from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenisation is batched already


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{message}; see {self.prog} --help")


def program() -> str:
    """How this was started: the installed command, or the script."""
    return "ftcompare" if Path(sys.argv[0]).stem == "ftcompare" else "python main.py"


def version() -> str:
    """The installed package's version; a checkout that is not installed reads its pyproject.toml."""
    try:
        return metadata.version("ftcompare")
    except metadata.PackageNotFoundError:
        import tomllib

        with open(Path(__file__).with_name("pyproject.toml"), "rb") as file:
            return tomllib.load(file)["project"]["version"]


# ----------------------------------------------------------------------------------------------
# Arguments, one function per command


def run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config.yaml", help="the YAML file to run (default: config.yaml)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these: a task (B: all its runs), a task and model number (B1: B1_v1, B1_v2,"
                             " ...) or a run id (B1_v1; with seeds, every seed of it; B1_v1_s43: one seed)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything the real run checks first (exit 2 on a problem), then print the plan:"
                             " per run its trainable parameters, an estimated time and whether it will run, resume,"
                             " be skipped or be blocked; train nothing, write nothing")
    parser.add_argument("--force", action="store_true",
                        help="rerun complete runs: those of the same settings, and replace those of other settings"
                             " (kept otherwise: they stop the plan)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or training logs (for logs and CI)")
    parser.add_argument("--reprobe", action="store_true",
                        help="precision: auto measures bf16 against fp32 again and replaces the cached decision"
                             " (a dry run measures but caches nothing)")
    parser.add_argument("--threads", metavar="N",
                        help="torch threads per process (config key threads; default: the machine's cores divided"
                             " among its processes working on output_dir)")
    parser.add_argument("--executor", choices=["sequential", "ray"],
                        help="sequential (default): one run after another in this process; ray: each run a Ray task"
                             " (config key executor)")
    parser.add_argument("--cpus-per-run", metavar="N", help="with --executor ray: CPUs per run (ray.cpus_per_run, default 1)")
    parser.add_argument("--gpus-per-run", metavar="N",
                        help="with --executor ray: GPUs per run, fractions share one, e.g. 0.25 (ray.gpus_per_run;"
                             " default 1 where the cluster has GPUs, else 0)")
    parser.add_argument("--ray-address", metavar="ADDRESS",
                        help="with --executor ray: auto joins the cluster `ray start` made (ray.address;"
                             " default: a local Ray instance)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides, e.g. output_dir=/tmp/x dataset.max_train_samples=500")
    set_argument(parser)


def set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set",
                        help="a dotted config override, typed as YAML; repeatable (e.g. --set output_dir=/tmp/x):"
                             " the same overrides as the run, so the command finds the run where it was written")


EXECUTOR_OPTIONS = {"executor": "executor", "cpus_per_run": "ray.cpus_per_run", "gpus_per_run": "ray.gpus_per_run",
                    "ray_address": "ray.address", "threads": "threads"}  # option -> the config key it sets


def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID", help="a complete run that trained (e.g. B1_v1)")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify; printed with class probabilities")
    parser.add_argument("--file", metavar="PATH",
                        help="a data file (.csv, .tsv, .json, .jsonl, .parquet) whose texts are in the config's"
                             " dataset.text_column (default `text`), or any other file: plain text, one text a line")
    parser.add_argument("--out", metavar="PATH",
                        help="where --file's predictions go (default: beside it, <name>.<RUN_ID>.predictions.csv)")
    parser.add_argument("--config", default="config.yaml", help="the config whose output_dir holds the run")
    set_argument(parser)


def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID", help="a complete run that trained (e.g. C1_v1)")
    parser.add_argument("dir", metavar="DIR", help="a new folder for the standalone Hugging Face model")
    parser.add_argument("--config", default="config.yaml", help="the config whose output_dir holds the run")
    set_argument(parser)


def report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config.yaml", help="the config whose output_dir to report on")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides, e.g. output_dir=/tmp/x")
    set_argument(parser)


# ----------------------------------------------------------------------------------------------
# Commands: each returns the exit code; config and usage errors propagate to main()


def run(args) -> int:
    from core.config import load_config
    from pipeline.plan import build_plan

    options = [f"{key}={getattr(args, option)}" for option, key in EXECUTOR_OPTIONS.items()
               if getattr(args, option) is not None]
    config = load_config(args.config, args.overrides + options)
    ray_only = [option for option in EXECUTOR_OPTIONS if option not in ("executor", "threads")
                and getattr(args, option) is not None]
    if ray_only and config.executor != "ray":
        flag = "--" + ray_only[0].replace("_", "-")
        raise UsageError(f"{flag} applies to --executor ray only, and the executor is {config.executor};"
                         f" add --executor ray, or leave {flag} out")
    runs = build_plan(config, args.only)
    if args.dry_run:
        from pipeline.estimate import print_dry_run
        from pipeline.runner import preflight
        from pipeline.search import finished

        splits = preflight(config, runs, dry_run=True)  # the real run's checks (a PlanError: exit 2); writes nothing
        runs = [finished(run, config) for run in runs]  # a finished search's settings; nothing is written
        blocked = print_dry_run(config, runs, force=args.force, splits=splits, reprobe=args.reprobe)
        for line in blocked:  # the real run would stop on these
            print(f"error: {line}", file=sys.stderr)
        return 2 if blocked else 0

    from pipeline.runner import PlanError, run_all

    try:
        outcomes = run_all(config, runs, force=args.force, show_progress=not args.quiet, reprobe=args.reprobe)
    except PlanError as error:
        for line in str(error).splitlines():  # one per problem (runs blocked by complete results)
            print(f"error: {line}", file=sys.stderr)
        return 2
    # runs held by another process are its to finish; "blocked": another process made results of other settings
    return 1 if any(o.status in ("failed", "blocked") for o in outcomes) else 0


def predict(args) -> int:
    from core.config import load_config
    from pipeline.trained import predict_command

    _check_texts(args.texts)
    return predict_command(load_config(args.config, args.set), args.run_id, args.texts, args.file, args.out)


def export(args) -> int:
    from core.config import load_config
    from pipeline.trained import export_command

    return export_command(load_config(args.config, args.set), args.run_id, args.dir)


def _check_texts(texts: list[str]) -> None:
    """`predict B1_v1 output_dir=/tmp/x "text"`: a text that is a config override was meant as one."""
    from core.config import PipelineConfig

    for number, text in enumerate(texts, start=1):
        if not text.strip():
            raise UsageError(f"predict: TEXT {number} is empty; give texts to classify, each in quotes")
        key, sep, value = text.partition("=")
        if sep and value and key.split(".")[0] in PipelineConfig.model_fields and " " not in key:
            raise UsageError(f"{text!r} looks like a config override, not a text to classify;"
                             f" write --set {text}")


def report(args) -> int:
    from core.config import ConfigError, load_config
    from pipeline.plan import build_plan

    config = load_config(args.config, args.overrides)
    build_plan(config)  # checks reference_run
    if not Path(config.output_dir).is_dir():
        raise ConfigError(f"output_dir: {config.output_dir} does not exist; nothing to report on")
    from core.lock import summary_lock
    from evaluation.report import rebuild_outputs, unwritable_outputs
    from evaluation.summary import read_records

    if not read_records(Path(config.output_dir)):
        raise ConfigError(f"output_dir: {config.output_dir} holds no runs (no <RUN_ID>/metrics.json); run"
                          f" python main.py first, or name the folder that holds them with --set output_dir=DIR")
    problem = unwritable_outputs(Path(config.output_dir))
    if problem:
        raise ConfigError(f"output_dir: {config.output_dir} cannot be rewritten ({problem}); report writes"
                          f" summary.csv, plots/ and report.md there: fix that, or pass output_dir=DIR")

    with summary_lock(Path(config.output_dir)):  # never two rebuilds at once, nor one beside a finishing plan's
        rebuild_outputs(Path(config.output_dir), config.reference_run)
    print(f"rebuilt summary.csv, epochs.csv, means.csv, plots/ and report.md in {config.output_dir}")
    return 0


COMMANDS = {  # name: (help, arguments, command); `run` is also what a command line without a name does
    "run": ("train and evaluate the planned runs (the default)", run_arguments, run),
    "predict": ("classify texts with a run's saved model", predict_arguments, predict),
    "export": ("write a run's model as a standalone Hugging Face folder", export_arguments, export),
    "report": ("rebuild summary.csv, means.csv, plots/ and report.md from the run folders", report_arguments, report),
}


USAGE = {  # each command's line in the usage; `NAME --help` gives its options
    "run": "[run] [--config PATH] [--only NAME ...] [--dry-run] [--force] [--quiet] [options] [KEY=VALUE ...]",
    "predict": "predict RUN_ID [TEXT ...] [--file PATH [--out PATH]] [--config PATH] [--set KEY=VALUE]",
    "export": "export RUN_ID DIR [--config PATH] [--set KEY=VALUE]",
    "report": "report [--config PATH] [KEY=VALUE ...]",
}


def parse_args(argv: list[str]) -> tuple[str, argparse.Namespace]:
    name = argv[0] if argv and argv[0] in COMMANDS else "run"
    rest = argv[1:] if argv and argv[0] == name else argv
    description, add_arguments, _ = COMMANDS[name]
    epilog = "Options may come before or after the positional arguments."
    if name == "run":
        epilog += " Other commands: " + ", ".join(f"{n} ({h})" for n, (h, _, _) in COMMANDS.items() if n != "run")
        usage = "\n       ".join(f"{program()} {USAGE[n]}" for n in COMMANDS) + f"\n       {program()} --version"
        parser = Parser(prog=program(), usage=usage, description=description, epilog=epilog)
        parser.add_argument("--version", action="version", version=f"ftcompare {version()}")
    else:
        parser = Parser(prog=f"{program()} {name}", description=description, epilog=epilog)
    add_arguments(parser)
    args = parser.parse_intermixed_args(rest)  # options before or after the texts
    if name == "run":
        _check_command(args.overrides)
    if hasattr(args, "overrides"):
        args.overrides = args.set + args.overrides
    if getattr(args, "only", None):  # `--only B1_v1 key=value`: the greedy list stops being run ids at KEY=VALUE
        args.overrides = [x for x in args.only if "=" in x] + args.overrides
        args.only = [x for x in args.only if "=" not in x]
    return name, args


def _check_command(words: list[str]) -> None:
    """`main.py train`: a word that is neither a command nor KEY=VALUE (nor a dotted key missing its value) was
    meant as a command."""
    from core.config import clip, did_you_mean

    for word in words:
        if "=" not in word and "." not in word:
            raise UsageError(f"unknown command {clip(word, 40)!r}{did_you_mean(word, COMMANDS)};"
                             f" commands: {', '.join(COMMANDS)} (a config override is KEY=VALUE)")


def main(argv=None) -> int:
    from core.config import ConfigError

    try:
        name, args = parse_args(list(sys.argv[1:] if argv is None else argv))
        return COMMANDS[name][2](args)
    except (UsageError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
