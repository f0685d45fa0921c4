"""One writer per output folder. The OS releases the lock when its holder dies, so a lock file left
behind by a killed process is stale by construction and simply taken over."""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path


class LockedError(Exception):
    """Another live process is writing to the same output folder."""


class OutputLock:
    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / ".lock"
        self._file = None

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise LockedError(f"output_dir {self.path.parent} is in use by {holder}; wait for it to finish"
                              f" or choose another output_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
