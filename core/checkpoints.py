"""The Trainer's checkpoint folders: which one is the latest complete one, removing half-written ones, and which
one a run can resume from.

A checkpoint is complete when its trainer_state.json parses: the Trainer writes it last. It is resumable when,
besides, every file the Trainer reads back on resume is there and whole: the weights (safetensors, their size
checked against their header), optimizer.pt, scheduler.pt and the RNG state (complete torch zip archives), and
the weights of the best checkpoint its state names (load_best_model_at_end reads them at the end). A checkpoint
missing its optimizer, scheduler or RNG state would resume without an error, but not to the result of an
uninterrupted run.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

WEIGHTS = ("model.safetensors", "adapter_model.safetensors")  # full model, or a PEFT adapter with its head
SHARDED_WEIGHTS = "model.safetensors.index.json"
TRAINING_STATE = ("optimizer.pt", "scheduler.pt")
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on a header


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


def resumable_checkpoint(checkpoints_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint whose files are all there and whole, and the newer complete ones passed
    over, each with why (newest first). Reads only file headers; changes nothing."""
    steps = sorted((int(folder.name.removeprefix("checkpoint-")), folder)
                   for folder in Path(checkpoints_dir).glob("checkpoint-*")
                   if folder.name.removeprefix("checkpoint-").isdigit())
    passed_over = []
    for _, folder in reversed(steps):
        state = read_state(folder)
        if state is None:
            continue  # half-written: remove_incomplete_checkpoints' business
        problem = damage(folder) or _best_damage(folder, state)
        if problem is None:
            return folder, passed_over
        passed_over.append((folder, problem))
    return None, passed_over


def prepare_resume(checkpoints_dir: Path, note=print) -> Path | None:
    """The checkpoint to resume from, or None to start over. Half-written checkpoints are removed silently (a
    kill leaves them); complete but damaged ones, and those that rely on one, are removed with one line each."""
    remove_incomplete_checkpoints(checkpoints_dir)
    resume, passed_over = resumable_checkpoint(checkpoints_dir)
    then = f"resuming from {resume.name}" if resume else "starting over"
    for folder, problem in passed_over:
        note(f"      {folder.parent.parent.name}: passing over {folder.name} ({problem}) and removing it; {then}")
        shutil.rmtree(folder, ignore_errors=True)
    return resume


def damage(checkpoint: Path) -> str | None:
    """What is missing or cut short among the files the Trainer reads back on resume; None when all are whole."""
    from core.distributed import world_size  # torch, only when a checkpoint is checked

    problem = weights_damage(checkpoint)
    if problem:
        return problem
    ranks = world_size()
    rng = ["rng_state.pth"] if ranks == 1 else [f"rng_state_{rank}.pth" for rank in range(ranks)]
    for name in [*TRAINING_STATE, *rng]:
        problem = _torch_file_damage(checkpoint / name)
        if problem:
            return problem
    return None


def weights_damage(checkpoint: Path) -> str | None:
    index = checkpoint / SHARDED_WEIGHTS
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return f"{SHARDED_WEIGHTS} is not readable"
        return next(filter(None, (_safetensors_damage(checkpoint / str(shard)) for shard in shards)), None)
    present = [checkpoint / name for name in WEIGHTS if (checkpoint / name).exists()]
    if not present:
        return f"no model weights ({' or '.join(WEIGHTS)})"
    return _safetensors_damage(present[0])


def _best_damage(checkpoint: Path, state: dict) -> str | None:
    """The best checkpoint this one's state names, whose weights the run loads at its end."""
    best = state.get("best_model_checkpoint")
    if not isinstance(best, str) or Path(best).name == checkpoint.name:
        return None
    name = Path(best).name
    if read_state(checkpoint.parent / name) is None:
        return f"its best checkpoint, {name[:60]}, is missing"
    problem = weights_damage(checkpoint.parent / name)
    return f"its best checkpoint, {name[:60]}, is damaged: {problem}" if problem else None


def _safetensors_damage(path: Path) -> str | None:
    """A safetensors file is whole when its size is 8 bytes + its JSON header + the end of its last tensor."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            length = int.from_bytes(file.read(8), "little")
            if size < 8 or length > min(size - 8, MAX_HEADER_BYTES):
                return f"{path.name} is truncated ({size:,} bytes)"
            header = json.loads(file.read(length))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return f"{path.name} is not a readable safetensors file"
    expected = 8 + length + end
    return None if size == expected else f"{path.name} is truncated ({size:,} of {expected:,} bytes)"


def _torch_file_damage(path: Path) -> str | None:
    """torch.save writes a zip archive whose directory comes last: a cut-off file has none."""
    if not path.is_file():
        return f"{path.name} is missing"
    try:
        with zipfile.ZipFile(path) as archive:
            size = path.stat().st_size
            if any(info.header_offset + info.compress_size > size for info in archive.infolist()):
                return f"{path.name} is truncated"
    except (OSError, zipfile.BadZipFile, ValueError):
        return f"{path.name} is truncated or not a torch file"
    return None
