"""The JSON every benchmark writes to reports/bench/<name>.json, with the keys all reports share.

Kept free of heavy imports so that any bench (the GPU ones included) can use it.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avsf.io.atomic import write_json  # noqa: E402


def machine() -> str:
    """The CPU this runs on, e.g. 'AMD EPYC (x86_64, 2 cores)'."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.processor() or 'cpu'} ({platform.machine()}, {os.cpu_count()} cores)"


def report(path: Path, metric: str, value: float, unit: str, goal: float, **extra) -> dict:
    """Write the benchmark JSON with the keys every bench report has, and return it.

    ``extra`` adds keys and may override the defaults (``goal_met=None`` for a smoke run,
    ``machine`` for a GPU's name, ``command`` when called other than from the command line).
    """
    data = {
        "metric": metric,
        "value": round(value, 4),
        "unit": unit,
        "goal": goal,
        "goal_met": value >= goal,
        "higher_is_better": True,
        "machine": machine(),
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    write_json(path, data)
    return data
