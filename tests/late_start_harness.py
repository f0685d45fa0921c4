"""Runs main.py in this process with its plan's preparation (data and models loaded) held back, so that two
processes started together reach their runs in a known order:

    python tests/late_start_harness.py first READY main.py-arguments...
        prepares once the late process has written READY (it has started: its snapshot of the runs is taken)
    python tests/late_start_harness.py late READY WATCHED MTIME_NS main.py-arguments...
        writes READY, then prepares once WATCHED (a metrics.json, modified at MTIME_NS before) is rewritten,
        complete, by the first process: a process slower to load than the other
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LIMIT = 600.0  # seconds a held-back process waits before it gives up


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {LIMIT:g} s")
        time.sleep(0.2)


def rewritten(path: Path, before: int) -> bool:
    try:
        return path.stat().st_mtime_ns != before and '"status": "complete"' in path.read_text()
    except OSError:
        return False


def hold_back(role: str, ready: Path, watched: Path | None = None, before: int | None = None) -> None:
    import pipeline.runner

    original = pipeline.runner.prepare

    def prepare(*args, **kwargs):  # run_all has taken its snapshot of the runs when it calls this
        if role == "first":
            wait_for(ready.exists, f"{ready} written")
        else:
            ready.write_text("started")
            wait_for(lambda: rewritten(watched, before), f"{watched} rewritten")
            print(f"prepare: {watched.parent.name} rewritten by the other process", flush=True)
        return original(*args, **kwargs)
    pipeline.runner.prepare = prepare


if __name__ == "__main__":
    role, ready = sys.argv[1], Path(sys.argv[2])
    if role == "first":
        hold_back(role, ready)
        rest = sys.argv[3:]
    else:
        hold_back(role, ready, Path(sys.argv[3]), int(sys.argv[4]))
        rest = sys.argv[5:]
    import main

    sys.exit(main.main(rest))
