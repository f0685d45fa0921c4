"""The Trainer's checkpoint folders: which one is the latest complete one, and removing half-written ones.

A checkpoint is complete when its trainer_state.json parses: the Trainer writes it last.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest checkpoint whose trainer_state.json parses (a half-written one is passed over)."""
    candidates = []
    for folder in Path(checkpoints_dir).glob("checkpoint-*"):
        step = folder.name.removeprefix("checkpoint-")  # the Trainer names them checkpoint-<step>
        if step.isdigit() and read_state(folder) is not None:
            candidates.append((int(step), folder))
    return max(candidates)[1] if candidates else None


def remove_incomplete_checkpoints(checkpoints_dir: Path) -> None:
    """Delete checkpoint folders without a readable trainer_state.json (the Trainer writes it last)."""
    for folder in Path(checkpoints_dir).glob("checkpoint-*"):
        if folder.is_dir() and read_state(folder) is None:
            shutil.rmtree(folder, ignore_errors=True)


def read_state(checkpoint: Path) -> dict | None:
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "log_history" in state else None
