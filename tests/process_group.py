"""SIGKILL a stage's whole process group at a chosen moment, without racing it.

A test that polls the files a stage writes and then kills it can land after the moment it
saw: a temporary renamed, a link made, one more shard finished. ``kill_group_when`` stops
the group first (SIGSTOP, then waits until no thread of it runs), looks again at the frozen
state, and kills only when the moment still holds; otherwise the group goes on. Processes
the stage started in another session (a SLURM job) are not in its group: neither stopped
nor killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")
STOPPED = "TtZX"  # stopped, traced, zombie, dead


def _stat(path: Path) -> list[str] | None:
    """The fields of a /proc stat file after the command's name (state first), or None when
    the process or thread is gone."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_ended(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (ended, not yet reaped by its parent)."""
    fields = _stat(Path(f"/proc/{pid}/stat"))
    return fields is None or fields[0] in "ZX"


def group_members(pgid: int) -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and (fields := _stat(entry / "stat")) and int(fields[2]) == pgid]


def _group_runs(pgid: int) -> bool:
    """Whether any thread of any process of the group still runs (a thread can finish a
    system call, e.g. a rename, after its process's main thread has stopped)."""
    for pid in group_members(pgid):
        for thread in Path(f"/proc/{pid}/task").glob("*/stat"):
            fields = _stat(thread)
            if fields is not None and fields[0] not in STOPPED:
                return True
    return False


def freeze_group(pgid: int, timeout: float = 10) -> bool:
    """SIGSTOP every process of the group; True once none of their threads runs any more.
    False (and the group let go on) when that takes over ``timeout`` seconds: a parent waits
    uninterruptibly for a child stopped between fork and exec."""
    os.killpg(pgid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while _group_runs(pgid):
        if time.monotonic() > deadline:
            os.killpg(pgid, signal.SIGCONT)
            return False
        time.sleep(0.001)
    return True


def kill_group_when(proc: subprocess.Popen, moment: Callable[[], T], timeout: float = 120,
                    poll_s: float = 0.001) -> T:
    """SIGKILL ``proc``'s process group (started with ``start_new_session``) at the first
    ``moment()`` that is true while the group is stopped, and return that value: the state
    the kill left. Fails when ``proc`` ends first or ``timeout`` passes; the group is killed
    then too, so that no stopped process outlives the test."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert proc.poll() is None, "the stage ended before the moment to kill it"
            assert time.monotonic() < deadline, "timed out waiting for the moment to kill the stage"
            if moment() and freeze_group(proc.pid):
                seen = moment()
                if seen:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=60)
                    return seen
                os.killpg(proc.pid, signal.SIGCONT)
            time.sleep(poll_s)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
        raise
