"""core/lock.py: flock-based run, active and summary locks, their lock files and holder lines."""
import errno
import fcntl
import os
import signal
import socket
import threading
import time

import pytest

from core import lock as lock_module
from core.lock import FileLock, LockError, active_lock, others_active, run_lock, summary_lock

HOLDER = f"process {os.getpid()} on {socket.gethostname()}"


def test_a_run_lock_is_held_by_one_holder_at_a_time(tmp_path):
    first, second = run_lock(tmp_path, "B1_v1"), run_lock(tmp_path, "B1_v1")
    assert first.acquire()
    assert not second.acquire()  # flock conflicts between open files, even in one process
    assert second.holder() == f"process {os.getpid()} on {os.uname().nodename}"
    assert run_lock(tmp_path, "C1_v1").acquire()  # other runs are free
    first.release()
    assert second.acquire()
    second.release()


def test_the_last_process_to_finish_is_the_one_that_sees_no_other(tmp_path):
    mine, theirs = active_lock(tmp_path), active_lock(tmp_path)
    assert mine.acquire() and theirs.acquire()  # shared: any number of processes work at once
    mine.release()
    assert others_active(tmp_path)  # the other is still working: it rebuilds the summary, not me
    theirs.release()
    assert not others_active(tmp_path)
    assert FileLock(tmp_path / ".locks" / "active.lock").acquire()  # the probe left nothing held


def _timed_out(signum, frame):
    raise TimeoutError("an acquire blocked")


@pytest.fixture(autouse=True)
def no_hang():
    """Every test here ends within seconds: an acquire that blocks where it should not is interrupted (a
    blocked flock returns on a signal whose handler raises) and fails the test instead of hanging it."""
    previous = signal.signal(signal.SIGALRM, _timed_out)
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_the_lock_files_live_in_the_locks_folder_of_output_dir(tmp_path):
    assert run_lock(str(tmp_path), "B1_v1").path == tmp_path / ".locks" / "B1_v1.lock"
    assert active_lock(str(tmp_path)).path == tmp_path / ".locks" / "active.lock"
    assert summary_lock(str(tmp_path)).path == tmp_path / ".locks" / "summary.lock"
    assert lock_module.LOCKS == ".locks"
    assert not run_lock(tmp_path, "A0").shared and not summary_lock(tmp_path).shared
    assert active_lock(tmp_path).shared
    assert not FileLock(tmp_path / "x.lock").shared  # exclusive unless asked


def test_acquire_creates_missing_folders_and_is_repeatable(tmp_path):
    out = tmp_path / "a" / "b"  # neither exists yet
    first = run_lock(out, "A0")
    assert first.acquire()
    assert (out / ".locks" / "A0.lock").is_file()
    first.release()
    assert first.acquire()  # the folder exists now: no error
    first.release()


def test_an_exclusive_holder_records_itself_over_any_older_line(tmp_path):
    path = tmp_path / ".locks" / "A0.lock"
    path.parent.mkdir()
    path.write_text("process 1 on a-much-longer-hostname-left-by-a-killed-process.example.org\n", encoding="utf-8")
    holder = FileLock(path)
    assert holder.acquire()
    assert path.read_text(encoding="utf-8") == HOLDER + "\n"  # rewritten from the start, old tail truncated
    assert FileLock(path).holder() == HOLDER
    holder.release()


def test_a_shared_holder_writes_nothing_and_the_holder_has_a_default(tmp_path):
    shared = active_lock(tmp_path)
    assert shared.acquire()
    assert shared.path.read_text(encoding="utf-8") == ""
    assert shared.holder() == "another process"  # empty file
    shared.release()
    assert FileLock(tmp_path / "missing" / "x.lock").holder() == "another process"  # no file at all
    (tmp_path / "blank.lock").write_text("  \n", encoding="utf-8")
    assert FileLock(tmp_path / "blank.lock").holder() == "another process"


def test_a_shared_lock_excludes_an_exclusive_one_and_the_reverse(tmp_path):
    shared = active_lock(tmp_path)
    assert shared.acquire()
    exclusive = FileLock(shared.path)
    assert not exclusive.acquire()
    shared.release()
    assert exclusive.acquire()
    assert not active_lock(tmp_path).acquire()
    exclusive.release()


def test_release_is_idempotent_and_frees_the_lock(tmp_path):
    lock = run_lock(tmp_path, "A0")
    lock.release()  # never acquired: nothing to do
    assert lock.acquire()
    lock.release()
    lock.release()  # twice: nothing to do
    other = run_lock(tmp_path, "A0")
    assert other.acquire()
    other.release()


def _release_later(lock: FileLock, released: list) -> threading.Thread:
    def later():
        time.sleep(0.3)
        released.append(True)  # before the release: a blocked acquirer can only wake after this
        lock.release()
    thread = threading.Thread(target=later)
    thread.start()
    return thread


def test_a_blocking_acquire_waits_for_the_holder(tmp_path):
    first, second = run_lock(tmp_path, "A0"), run_lock(tmp_path, "A0")
    assert first.acquire()
    released = []
    thread = _release_later(first, released)
    assert second.acquire(blocking=True)
    assert released == [True]
    thread.join()
    assert not run_lock(tmp_path, "A0").acquire()  # second holds it now
    second.release()


def test_the_context_manager_waits_holds_and_releases(tmp_path):
    first = summary_lock(tmp_path)
    assert first.acquire()
    released = []
    thread = _release_later(first, released)
    lock = summary_lock(tmp_path)
    with lock as held:
        assert held is lock
        assert released == [True]  # it waited for the holder
        assert not summary_lock(tmp_path).acquire()
    thread.join()
    again = summary_lock(tmp_path)
    assert again.acquire()  # released on exit
    again.release()


@pytest.mark.parametrize("code", [errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES])
def test_a_busy_lock_in_any_errno_spelling_is_refused_quietly(tmp_path, monkeypatch, code):
    def busy(handle, flags):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(fcntl, "flock", busy)
    lock = run_lock(tmp_path, "A0")
    assert lock.acquire() is False
    lock.release()  # holds nothing


def test_a_filesystem_without_locks_is_a_one_line_error(tmp_path, monkeypatch):
    def refuse(handle, flags):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", refuse)
    with pytest.raises(LockError) as raised:
        run_lock(tmp_path / "out", "A0").acquire()
    assert str(raised.value) == (f"output_dir: {tmp_path / 'out'} does not support file locks (No locks available);"
                                 f" use a local folder, or mount NFS with locking")
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_acquire_passes_the_right_flock_flags(tmp_path, monkeypatch):
    seen = []
    real = fcntl.flock
    monkeypatch.setattr(fcntl, "flock", lambda handle, flags: (seen.append(flags), real(handle, flags)))
    FileLock(tmp_path / "a.lock").acquire()
    FileLock(tmp_path / "b.lock", shared=True).acquire(blocking=True)
    lock = FileLock(tmp_path / "c.lock")
    lock.acquire(blocking=True)
    lock.release()
    assert seen == [fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_SH, fcntl.LOCK_EX, fcntl.LOCK_UN]
