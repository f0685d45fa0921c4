"""Atomic writes: a reader never sees half a file; a killed writer leaves the old file or none."""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

_UMASK = os.umask(0)  # read once: mkstemp creates files 0600, results should get the usual 0666 & ~umask
os.umask(_UMASK)


@contextmanager
def atomic_file(path: Path, mode: str = "w"):
    """A file handle whose content appears at `path` only when the block ends without an error.

    Written to a temporary file beside `path`, flushed to disk, then renamed over it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_UMASK)
        text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(handle, mode, **text) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as file:
        file.write(text)


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=jsonable) + "\n")


def read_json(path: Path) -> dict:
    """A JSON object file's content; {} where it is missing, unreadable, damaged or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(modification time in ns, size) of a file, None where there is none: whether it was rewritten since."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def write_csv_atomic(path: Path, frame: pd.DataFrame) -> None:
    write_text_atomic(path, frame.to_csv(index=False))


def unwritable(path: Path, folder: bool = True) -> str | None:
    """Why `path` (a folder; with `folder=False` a file, written atomically beside itself) cannot be created or
    written, found without writing anything; None when it can."""
    path = Path(path)
    if path.exists() and folder != path.is_dir():
        return f"{path} is {'a file, not a folder' if folder else 'a folder, not a file'}"
    existing = path if folder and path.exists() else path.parent
    while not existing.exists():  # the nearest folder that exists: the rest is made in it
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def jsonable(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # e.g. PEFT's LoraRuntimeConfig
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
