"""File locks that let any number of processes, on one machine or on several sharing a filesystem, work
through one plan on one output folder.

- `run_lock(output_dir, run_id)`: whoever holds it runs that run; the others skip it.
- `active_lock(output_dir)`: shared, held by every process for as long as it works through a plan.
- `summary_lock(output_dir)`: exclusive, held while summary.csv, plots/ and report.md are rebuilt.
- `worker_lock(output_dir)`: one per process working through a plan, so that `local_workers` can count the
  processes on this machine that share output_dir (and its cores). It lives in this machine's temporary folder,
  not in output_dir: it is taken before anything is checked or written there, so that processes started
  together count each other from their first run, and processes on other machines are not counted.

They are OS file locks (flock): the OS releases them when their holder dies, so a lock file left behind by a
killed process is stale by construction and simply taken over. Over NFS, Linux carries flock to the server as a
POSIX lock; that needs the server's lock manager (NFSv4, or lockd for v3) and no `nolock`/`local_lock` mount
option, or processes on different machines would not see each other's locks.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
import tempfile
from pathlib import Path

LOCKS = ".locks"  # the lock files' folder inside output_dir
WORKERS = "pipeline-workers"  # worker_lock's folder in the temporary folder: one subfolder per output_dir


class LockError(Exception):
    """The filesystem refuses file locks."""


class FileLock:
    """An exclusive (or shared) flock on one file, which records its exclusive holder for messages."""

    def __init__(self, path: Path, shared: bool = False):
        self.path = Path(path)
        self.shared = shared
        self._file = None

    def acquire(self, blocking: bool = False) -> bool:
        """True when taken; False when another process holds it (only without `blocking`)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        flags = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(handle, flags)
        except OSError as error:
            handle.close()
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise LockError(f"output_dir: {self.path.parent.parent} does not support file locks"
                            f" ({error.strerror}); use a local folder, or mount NFS with locking") from None
        if not self.shared:
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
        self._file = handle
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8").strip() or "another process"
        except OSError:
            return "another process"

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> "FileLock":
        self.acquire(blocking=True)
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def run_lock(output_dir: Path, run_id: str) -> FileLock:
    # Beside the run folders, not inside: starting a run over clears its folder while the lock is held.
    return FileLock(Path(output_dir) / LOCKS / f"{run_id}.lock")


def active_lock(output_dir: Path) -> FileLock:
    return FileLock(Path(output_dir) / LOCKS / "active.lock", shared=True)


def summary_lock(output_dir: Path) -> FileLock:
    return FileLock(Path(output_dir) / LOCKS / "summary.lock")


def worker_lock(output_dir: Path) -> FileLock:
    return FileLock(_workers(output_dir) / f"{os.getpid()}.lock")


def local_workers(output_dir: Path) -> int:
    """How many processes on this machine hold their `worker_lock` for output_dir (the caller's own included).
    A file whose process is gone is removed."""
    count = 0
    try:
        paths = list(_workers(output_dir).iterdir())
    except OSError:  # no folder yet
        return 0
    for path in paths:
        probe = FileLock(path)
        if probe.acquire():  # nobody holds it: a dead process's
            path.unlink(missing_ok=True)
            probe.release()
        else:
            count += 1
    return count


def _workers(output_dir: Path) -> Path:
    """This machine's folder of worker locks for output_dir (named by a hash of its absolute path)."""
    key = hashlib.sha256(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / WORKERS / key


def others_active(output_dir: Path) -> bool:
    """Whether another process is working through a plan on output_dir. Call it without holding
    `active_lock`; a process that starts meanwhile waits a moment for its shared lock, it is not refused."""
    probe = FileLock(Path(output_dir) / LOCKS / "active.lock")
    if not probe.acquire():
        return True
    probe.release()
    return False
