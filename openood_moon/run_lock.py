"""One process per run folder: ``<run_dir>/run.lock``.

The lock is an exclusive ``fcntl.flock`` on ``run.lock``, which also records the holder (``pid host
time``). The kernel drops a flock when its holder dies (``kill -9`` included), so a lock left by a dead
process is simply taken over; a live holder makes the newcomer fail with :class:`ConfigError`
naming its pid and host. The file stays in place (removing a flocked file would let two processes
lock two different files); releasing only unlocks it.

Where the file system has no ``flock`` (some network mounts), the recorded pid decides instead: a
live pid on this host holds the folder, a dead one is taken over.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Optional, Tuple

from .config import ConfigError

LOCK_NAME = "run.lock"


def _holder(text: str) -> Tuple[Optional[int], str]:
    """``(pid, host)`` from a lock file's ``pid host time`` line; ``(None, '?')`` when unreadable."""
    parts = text.split()
    try:
        return int(parts[0]), parts[1]
    except (IndexError, ValueError):
        return None, "?"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # exists, owned by someone else
        return True
    return True


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir`` for this process (``acquire``/``release`` also work)."""

    def __init__(self, run_dir) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            held = err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
            text = os.pread(fd, 200, 0).decode(errors="replace")
            os.close(fd)
            if held:
                self._refuse(text)
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            pid, host = _holder(text)                    # no flock here: trust a live pid on this host
            if pid is not None and pid != os.getpid() and (host != socket.gethostname() or _alive(pid)):
                self._refuse(text)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def _refuse(self, text: str) -> None:
        pid, host = _holder(text)
        who = f"pid {pid} on host {host}" if pid is not None else "another process"
        raise ConfigError(f"run folder {self.path.parent} is in use by another run ({who}, lock file "
                          f"{self.path}); wait for it to finish or stop it, or choose another --output_dir. "
                          "If that process is gone, run again in a few seconds (its data-loader workers "
                          "release the lock when they exit)")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
