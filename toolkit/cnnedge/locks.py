"""One command at a time writes a folder: exclusive, non-blocking ``flock`` locks.

    with folder_lock(run_dir, "cnnedge export"):   # a second command gets a CnnedgeError:
        ...                                        # "runs/x is in use by `cnnedge export` (pid
                                                   # 1234, since 12:00:01); wait for it or stop it"

The lock file (``<folder>/.lock``) holds the holder's pid, command and start time so that the
refusal can name it; the lock itself is the kernel's ``flock``, which goes with the process, so
a killed command never leaves a folder locked. The file is removed on release (after the lock is
taken, the file is checked to be the one at the path: a release racing an open is retried).
Locks are re-entrant within a process (``export`` runs ``verify``; ``train`` runs the QAT phase).
:func:`hold` / :func:`held` lock a folder itself (export's staging folders), without a file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
from pathlib import Path

from cnnedge.errors import CnnedgeError

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None

LOCK_FILE = ".lock"
_HELD: dict[str, int] = {}  # folder (real path) -> depth held by this process
_GUARD = threading.Lock()


@contextlib.contextmanager
def folder_lock(folder, command: str, name: str = LOCK_FILE):
    """Hold ``folder``'s lock for the block, or raise a CnnedgeError naming its holder. A folder
    that does not exist or cannot be written is not locked (the command fails on its own)."""
    folder = Path(folder)
    key = os.path.realpath(folder)
    with _GUARD:
        if key in _HELD:
            _HELD[key] += 1
            fd = path = None
        else:
            path = folder / name
            fd = _acquire(path, folder, command) if fcntl and folder.is_dir() else None
            if fd is not None:
                _HELD[key] = 1
    try:
        yield
    finally:
        with _GUARD:
            if key in _HELD and path is None:
                _HELD[key] -= 1
            elif fd is not None:
                del _HELD[key]
                with contextlib.suppress(OSError):  # the folder itself may be gone (discarded)
                    os.unlink(path)
                os.close(fd)


def _acquire(path: Path, folder: Path, command: str) -> int | None:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return None  # a read-only folder: nothing can write it, nothing to guard
            raise CnnedgeError(f"cannot lock {folder}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CnnedgeError(f"cannot lock {folder}: {e.strerror or e}") from e
            raise CnnedgeError(f"{folder} is in use by {holder}; wait for it or stop it") from None
        try:
            mine, there = os.fstat(fd), os.stat(path)
            if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file as this process opened it: take the new one
    info = {"pid": os.getpid(), "command": command, "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    return fd


def _read(fd: int) -> str:
    """ "`cnnedge export` (pid 1234, since 12:00:01)" from a lock file's contents."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        since = float(info["since"])
        day = time.strftime("%Y-%m-%d", time.localtime(since))
        fmt = "%H:%M:%S" if day == time.strftime("%Y-%m-%d") else "%Y-%m-%d %H:%M:%S"
        return (
            f"`{info['command']}` (pid {int(info['pid'])}, since {time.strftime(fmt, time.localtime(since))})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "another cnnedge command"  # it is still writing its name


def hold(folder) -> int | None:
    """Lock ``folder`` itself (exclusive) until the returned descriptor is closed."""
    if fcntl is None:
        return None
    fd = os.open(folder, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def held(folder) -> bool:
    """Whether a live process holds ``folder`` with :func:`hold`."""
    if fcntl is None:
        return False
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
