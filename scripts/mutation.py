"""Mutation testing of the core modules with mutmut; writes docs/results/mutation.json.

    python scripts/mutation.py                 # every module below (about 20-40 min on 2 cores)
    python scripts/mutation.py statistics lock # some of them

Each module is mutated alone and tested only by the tests of its own module (a bug must be caught
where it lives, not by an end-to-end test by accident). The run happens in a temporary copy of the
tracked files (.cache/mutation/, git-ignored), so the checkout is never touched; after a run,
`cd .cache/mutation/project && python -m mutmut show NAME` shows a mutant. Each survivor's diff is
kept in the JSON. Survivors judged equivalent (no test can tell them
apart from the original) are listed in docs/results/mutation-equivalent.json with one line each saying
why; the score counts them out: killed / (killed + survived + timeout - equivalent).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "mutation.json"
EQUIVALENT = ROOT / "docs" / "results" / "mutation-equivalent.json"

# module: (the file mutated, the tests of that module)
MODULES = {
    "statistics": ("evaluation/statistics.py", ["tests/test_statistics.py"]),
    "adapters": ("tasks/adapters.py", ["tests/test_adapters.py"]),
    "run_state": ("pipeline/run_state.py", ["tests/test_run_state.py"]),
    "checkpoints": ("core/checkpoints.py", ["tests/test_checkpoints.py"]),
    "dataset": ("dataset.py", ["tests/test_dataset.py", "tests/test_own_data.py"]),
    "config": ("core/config.py", ["tests/test_config.py"]),
    "lock": ("core/lock.py", ["tests/test_lock.py"]),
}
SOURCE_PATHS = ["core", "evaluation", "tasks", "pipeline", "dataset.py"]
STATUS = re.compile(r"^\s*(\S+): (\S.*)$")


def run_module(name: str, workdir: Path) -> dict:
    target, tests = MODULES[name]
    tests = [t for t in tests if (workdir / t).is_file()]
    if not tests:
        return {"error": f"no tests found: {MODULES[name][1]}"}
    shutil.rmtree(workdir / "mutants", ignore_errors=True)
    lines = ["[mutmut]", "source_paths =", *[f"    {p}" for p in SOURCE_PATHS], "only_mutate =", f"    {target}",
             "pytest_add_cli_args_test_selection =", *[f"    {t}" for t in tests],
             "also_copy =", "    main.py", "    configs", "    config.yaml", "    bench", "    pytest.ini"]
    (workdir / "setup.cfg").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run([sys.executable, "-m", "mutmut", "run"], cwd=workdir, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=workdir, env=env,
                             capture_output=True, text=True, check=False).stdout
    statuses = {}
    for line in listing.splitlines():
        match = STATUS.match(line)
        if match and "__mutmut_" in match.group(1):
            statuses[match.group(1)] = match.group(2).strip()
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    survivors = sorted(m for m, s in statuses.items() if s in ("survived", "timeout", "no tests"))
    diffs = {m: _changed_lines(subprocess.run([sys.executable, "-m", "mutmut", "show", m], cwd=workdir, env=env,
                                              capture_output=True, text=True, check=False).stdout)
             for m in survivors}
    return {"file": target, "tests": tests, "counts": counts, "survivors": survivors, "diffs": diffs}


def _changed_lines(diff: str) -> str:
    """The - and + lines of a unified diff, stripped: what the mutant changed."""
    return " | ".join(line.strip() for line in diff.splitlines()
                      if line[:1] in "+-" and not line.startswith(("+++", "---")))


def score(entry: dict, equivalent: dict[str, str]) -> dict:
    if "error" in entry:
        return entry
    counts = entry.get("counts", {})
    killed, survived, timeout = counts.get("killed", 0), counts.get("survived", 0), counts.get("timeout", 0)
    judged = {m: equivalent[m] for m in entry.get("survivors", []) if m in equivalent}
    live = [m for m in entry.get("survivors", []) if m not in judged]
    denominator = killed + survived + timeout - len(judged)
    return {"file": entry.get("file"), "killed": killed, "survived": survived, "timeout": timeout,
            "no_tests": counts.get("no tests", 0), "equivalent": len(judged),
            "score": round(killed / denominator, 4) if denominator else None,
            "equivalent_mutants": judged, "surviving_mutants": {m: entry["diffs"].get(m, "") for m in live}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", choices=list(MODULES), default=list(MODULES))
    args = parser.parse_args()
    equivalent = json.loads(EQUIVALENT.read_text()) if EQUIVALENT.is_file() else {}
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    workdir = ROOT / ".cache" / "mutation" / "project"
    shutil.rmtree(workdir.parent, ignore_errors=True)
    for file in files:
        if (ROOT / file).is_file():
            (workdir / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / file, workdir / file)
    for link in (workdir.parent / "shared", workdir / "shared"):
        link.symlink_to(ROOT.parent / "shared")  # the tests find ../shared beside the (mutants') root
    for name in args.modules:
        print(f"mutating {name} ({MODULES[name][0]}) ...", flush=True)
        results[name] = entry = score(run_module(name, workdir), equivalent)
        if "error" in entry:
            print(f"  {entry['error']}", flush=True)
        else:
            print(f"  killed {entry['killed']}, survived {entry['survived']}, timeout {entry['timeout']},"
                  f" equivalent {entry['equivalent']}: score {entry['score']}", flush=True)
        OUT.parent.mkdir(parents=True, exist_ok=True)  # after each module: a long run keeps what it has
        OUT.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
