"""One process per run folder (openood_moon/run_lock.py): a live holder is refused with its pid and
host, a lock left by a killed process is taken over, and releasing lets the next run in."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from openood_moon.config import ConfigError
from openood_moon.run_lock import LOCK_NAME, RunLock

HOLD = """
import sys, time
from openood_moon.run_lock import RunLock
RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def hold_in_child(folder):
    """A second process that takes the lock and keeps it until killed."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_live_holder_is_refused_with_its_pid_and_host_and_a_killed_one_is_taken_over(tmp_path):
    child = hold_in_child(tmp_path)
    try:
        with pytest.raises(ConfigError) as refused:
            RunLock(tmp_path).acquire()
        assert f"pid {child.pid} on host {socket.gethostname()}" in str(refused.value)
        assert "in use by another run" in str(refused.value)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(child.pid)   # stale: the dead holder's pid
    with RunLock(tmp_path):                                                  # taken over
        assert (tmp_path / LOCK_NAME).read_text().split()[:2] == [str(os.getpid()), socket.gethostname()]


def test_release_lets_the_next_run_in(tmp_path):
    lock = RunLock(tmp_path).acquire()
    with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path).acquire()                    # a second holder, even in the same process
    lock.release()
    with RunLock(tmp_path):
        pass
    with RunLock(tmp_path):
        pass


def test_without_flock_a_dead_pid_is_taken_over_and_a_live_one_refused(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "no locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"{dead.pid} {socket.gethostname()} 2000-01-01T00:00:00\n")
    with RunLock(tmp_path):
        pass
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f"{alive.pid} {socket.gethostname()} {time.time()}\n")
        with pytest.raises(ConfigError, match=f"pid {alive.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        alive.kill()
        alive.wait()
