"""Runs main.py in this process, with the plan's preparation (data and models loaded) held back until another
process has rewritten a run's metrics.json: two processes started together, one of them slower to load.

    python tests/late_start_harness.py WATCHED_METRICS_JSON main.py-arguments...
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def stamp(path: Path):
    try:
        return path.stat().st_mtime_ns, path.stat().st_size, '"status": "complete"' in path.read_text()
    except OSError:
        return None


def hold_back(watched: Path, limit: float = 240.0) -> None:
    import pipeline.runner

    original, first = pipeline.runner.prepare, stamp(watched)

    def prepare(*args, **kwargs):
        deadline = time.monotonic() + limit
        while not ((now := stamp(watched)) is not None and now != first and now[2]):  # rewritten, complete
            if time.monotonic() > deadline:
                raise SystemExit(f"{watched} was not rewritten within {limit:g} s")
            time.sleep(0.2)
        print(f"prepare: {watched.parent.name} rewritten by the other process", flush=True)
        return original(*args, **kwargs)
    pipeline.runner.prepare = prepare


if __name__ == "__main__":
    hold_back(Path(sys.argv[1]))
    import main

    sys.exit(main.main(sys.argv[2:]))
