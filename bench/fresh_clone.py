"""The README's two commands from a fresh clone, timed: `make demo` (the whole demo pipeline)
or `bash .ci/run` (CI: local SLURM, Chromium, `make test`), on this machine.

    python bench/fresh_clone.py demo|test [--clone-to DIR] [--keep]

Clones the repository's committed HEAD into a new folder (no data, no DVC cache, no
reports of a run), runs the command there with nothing of this checkout on its path and in
a virtual environment of the clone's (``.venv``, seeing this interpreter's packages: the
command's ``pip install -e .`` stays there), and
writes reports/bench/make_demo.json or make_test.json: the wall seconds against issue 26's
goals (25 minutes for the demo, 10 for the tests), the machine, the commit, and for the
demo each stage's seconds from the clone's DVC log lines. Run it on an otherwise idle
machine: the figure is meant to be what a new user waits. ``test`` runs CI's script, which
starts a local SLURM and installs Chromium where it can (as root), as CI does.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_report import REPO, bench_path, report

TARGETS = {  # name -> (command, report, goal in seconds); make's python3 is the clone's venv's
    "demo": (["make", "demo"], "make_demo", 25 * 60),
    "test": (["bash", ".ci/run"], "make_test", 10 * 60),
}
STAGE_LINE = re.compile(r"^Running stage '([^']+)'")


def stage_seconds(log: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Each DVC stage's seconds: from its "Running stage" line to the next one (the last: to
    ``end``), so DVC's hashing and lock update after a stage count as the stage's."""
    starts = [(t, m.group(1)) for t, line in log if (m := STAGE_LINE.match(line))]
    return {name: round(((starts[i + 1][0] if i + 1 < len(starts) else end) - t), 1)
            for i, (t, name) in enumerate(starts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--clone-to", type=Path, help="where to clone (an empty or new folder; kept afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the default temporary clone afterwards")
    args = parser.parse_args()
    command, name, goal = TARGETS[args.target]
    where = args.clone_to or Path(tempfile.mkdtemp(prefix=f"avsf-fresh-{args.target}-"))
    if where.exists() and any(where.iterdir()):
        sys.exit(f"fresh_clone: {where} is not empty")
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(where)], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, check=True, text=True,
                            capture_output=True).stdout.strip()
    # The commands install avsf (pip install -e .) into the Python they run: a virtual environment
    # in the clone, seeing this interpreter's packages, keeps that install out of the shared one.
    venv = where / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=str(where))  # the clone's code, whatever else is installed
    log: list[tuple[float, str]] = []
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with subprocess.Popen(command, cwd=where, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        for line in proc.stdout:
            log.append((time.monotonic() - started, line.rstrip("\n")))
            print(line, end="", flush=True)
    seconds = time.monotonic() - started
    (where / "logs").mkdir(exist_ok=True)
    (where / "logs" / f"fresh_clone_{args.target}.log").write_text(
        "".join(f"{t:9.1f} {line}\n" for t, line in log))
    summary = [line for _, line in log if re.search(r"\d+ (passed|failed)", line)]
    extra = {"commit": commit, "returncode": proc.returncode, "minutes": round(seconds / 60, 2),
             # other work on the machine inflates the figure: the 1-minute load average around the run
             "load_average": {"before": load_before, "after": os.getloadavg()[0]}}
    if args.target == "demo":
        extra["stage_seconds"] = stage_seconds(log, seconds)
    else:
        extra["pytest"] = summary[-1] if summary else None
    out = report(bench_path(name), f"{name}_wall_seconds", seconds, "s", goal, higher_is_better=False,
                 goal_met=None if proc.returncode else seconds <= goal, **extra)
    print(f"{args.target}: {seconds / 60:.1f} min (goal {goal / 60:.0f}), exit {proc.returncode} -> {out and bench_path(name)}")
    if not args.keep and args.clone_to is None:
        shutil.rmtree(where, ignore_errors=True)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
