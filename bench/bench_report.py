"""The JSON every benchmark writes to reports/bench/<name>.json, with the keys all reports share.

Kept free of heavy imports so that any bench (the GPU ones included) can use it. Three
variables of the environment, set by scripts/gpu-check.sh:

    AVSF_BENCH_DIR      where bench_path() puts reports (default reports/bench)
    AVSF_BENCH_COPY_TO  a folder every report is also copied to as soon as it is written
                        (the device's $OUT: a run cut short still returns what finished)
    AVSF_BENCH_RUN      the run's id, written into every report, so that a bench comparing
                        with another's figure (same_run_report) takes it only from this run
"""

from __future__ import annotations

import datetime as dt
import os
import json
import shlex
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avsf.io.atomic import write_json  # noqa: E402
from avsf.io.machine import cpu_description as machine  # noqa: E402,F401 (the CPU every report names)


def bench_path(name: str) -> Path:
    """reports/bench/<name>.json, or under $AVSF_BENCH_DIR."""
    return Path(os.environ.get("AVSF_BENCH_DIR") or REPO / "reports" / "bench") / f"{name}.json"


def same_run_report(name: str) -> dict | None:
    """The report ``name`` when it was written by this run ($AVSF_BENCH_RUN), else None."""
    run, path = os.environ.get("AVSF_BENCH_RUN"), bench_path(name)
    if not run or not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if data.get("run") == run else None


def report(path: Path, metric: str, value: float | None, unit: str, goal: float | None,
           higher_is_better: bool = True, **extra) -> dict:
    """Write the benchmark JSON with the keys every bench report has, and return it.

    ``value`` None: not measured in this run; ``goal`` None: a figure without a goal (a
    peer's); ``goal_met`` is None in both cases. ``extra`` adds keys and may
    override the defaults (``goal_met=None`` for a smoke run, ``machine`` for a GPU's name,
    ``command`` when called other than from the command line).
    """
    met = None if value is None or goal is None else value >= goal if higher_is_better else value <= goal
    data = {
        "metric": metric,
        "value": None if value is None else round(value, 4),
        "unit": unit,
        "goal": goal,
        "goal_met": met,
        "higher_is_better": higher_is_better,
        "machine": machine(),
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run": os.environ.get("AVSF_BENCH_RUN"),
        "commit": git_commit(REPO),
        **extra,
    }
    write_json(path, data)
    copy_to = os.environ.get("AVSF_BENCH_COPY_TO")
    if copy_to:
        shutil.copyfile(path, Path(copy_to) / Path(path).name)
    return data


def git_commit(path: str | os.PathLike) -> str | None:
    """The checkout's HEAD, with ``+dirty`` where its tracked files differ from it; None outside git."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "diff", "--quiet", "HEAD"]).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def bench_device(name: str):
    """The torch device ``--device`` names, or None (after saying so) where it is CUDA and
    none is available: the GPU benches then exit with code 2."""
    import torch

    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: CUDA is not available; use --device cpu --tiny for a smoke test", file=sys.stderr)
        return None
    return device
