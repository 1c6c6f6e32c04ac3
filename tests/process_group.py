"""SIGKILL a stage's whole process group at a chosen moment, without racing it.

A test that polls the files a stage writes and then kills it can land after the moment it
saw: a temporary renamed, a link made, one more shard finished. ``kill_group_when`` stops
the group first (SIGSTOP, then waits until every member is stopped), looks again at the
frozen state, and kills only when the moment still holds; otherwise the group goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # (gone meanwhile)
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def freeze_group(pgid: int, timeout: float = 30) -> None:
    """SIGSTOP every process of the group and return once none of them runs any more."""
    os.killpg(pgid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while any(_state(pid) not in "TtZX" for pid in group_members(pgid)):
        assert time.monotonic() < deadline, f"process group {pgid} did not stop"
        time.sleep(0.001)


def kill_group_when(proc: subprocess.Popen, moment: Callable[[], T], timeout: float = 120,
                    poll_s: float = 0.001) -> T:
    """SIGKILL ``proc``'s process group (started with ``start_new_session``) at the first
    ``moment()`` that is true while the group is stopped, and return that value: the state
    the kill left. Fails when the group ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, "the stage ended before the moment to kill it"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill the stage"
        if moment():
            freeze_group(proc.pid)
            seen = moment()
            if seen:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
                return seen
            os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(poll_s)
