"""`dvc exp run -S` on a data param at Kinetics' shape: what it rebuilds, and what DVC costs.

    python bench/scale_exp.py [--clips 32000] [--set decode.jpeg_quality=80] [--work DIR] [--keep]

A Kinetics-400-shaped project of N clips (bench/scale.py's make_project: the real stages,
local jobs, the workload of bench/kinetics_workload.py), then

    dvc repro download@kinetics decode@kinetics spectrogram@kinetics    the baseline, committed
    dvc exp run -S <param>=<value> <the same three stages>             the change
    dvc exp run -S <param>=<value> <the same three stages>             again: nothing to do
    dvc status, dvc repro                                               no-ops, timed

For each run: the stages DVC ran and skipped, each stage's wall time and the shards it
built and kept (its metrics), and DVC's own time (the run's wall less its stages'). With
a decode param that leaves the audio as it is (jpeg_quality, short_side) the change must
run decode on every shard and nothing else: download skipped, spectrogram run but keeping
every log-mel shard (they are fingerprinted by their audio, not by the frame shard).

Writes reports/bench/<name>.json: the shards and clips made beyond what the change needs
(goal 0, with every frame shard rebuilt), every figure beside it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import REPO, TARGETS, dvc, load, make_project, run_watched, sh, timed  # noqa: E402


def watched_run(project: Path, cmd: list[str], log_name: str) -> dict[str, Any]:
    """Run ``cmd`` (a dvc repro or exp run) in ``project``: which stages ran and were
    skipped, each one's wall and metrics, DVC's own time."""
    wall, out, sampler = run_watched(cmd, project)
    (project / log_name).write_text(out)
    ran = re.findall(r"Running stage '(\w+)@kinetics'", out)
    skipped = re.findall(r"Stage '(\w+)@kinetics' didn't change, skipping", out)
    stages = {}
    for s in ran:
        g = sampler.groups.get(f"stage:{s}")
        metrics = json.loads((project / "reports/kinetics/metrics" / f"{s}.json").read_text())
        stages[s] = {"wall_s": round(g["last"] - g["first"], 2) if g else 0.0,
                     "cpu_s": round(sampler.cpu_seconds(f"stage:{s}", f"job:{s}"), 2),
                     **{k: metrics[k] for k in ("shards", "shards_reused", "downloaded", "skipped_existing", "clips")
                        if k in metrics}}
    stage_wall = sum(st["wall_s"] for st in stages.values())
    return {"wall_s": round(wall, 2), "ran": ran, "skipped": skipped, "stages": stages,
            "dvc_s": round(wall - stage_wall, 2), "load_after": load()}


def beyond_need(change: dict[str, Any]) -> dict[str, int]:
    """What a frames-only decode change made that it did not need: clips downloaded again,
    log-mel shards built again, and any stage other than decode and spectrogram run."""
    stages = change["stages"]
    spectrogram = stages.get("spectrogram", {})
    return {"clips_downloaded": stages.get("download", {}).get("downloaded", 0),
            "logmel_shards_built": spectrogram.get("shards", 0) - spectrogram.get("shards_reused", 0),
            "other_stages_run": len(set(change["ran"]) - {"decode", "spectrogram"})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=32000)
    parser.add_argument("--set", default="decode.jpeg_quality=80", help="the data param to change (KEY=VALUE); "
                        "one that changes the frames and not the audio")
    parser.add_argument("--work", type=Path, default=Path("/tmp/avsf-scale-exp"))
    parser.add_argument("--short-side", type=int, default=32)
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose code and params are copied")
    parser.add_argument("--name", default="scale_exp", help="the report's name: reports/bench/<name>.json")
    parser.add_argument("--keep", action="store_true", help="keep the project under --work")
    args = parser.parse_args()

    project = args.work / f"p{args.clips}"
    t0 = time.monotonic()
    workload = make_project(project, args.clips, args.code.resolve(), args.short_side)
    print(f"[{args.clips}] project in {time.monotonic() - t0:.1f} s; load {load()}", flush=True)
    figures: dict[str, Any] = {"clips": args.clips, "set": args.set, "load_before": load(),
                               "workload": {k: v for k, v in workload.items() if not isinstance(v, (dict, list))}}
    figures["baseline"] = watched_run(project, dvc("repro", *TARGETS), "repro.log")
    print(f"[baseline] {figures['baseline']['wall_s']} s; load {load()}", flush=True)
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "baseline", cwd=project)
    figures["change"] = watched_run(project, dvc("exp", "run", "-S", args.set, *TARGETS), "exp-run.log")
    print(f"[change] {json.dumps(figures['change'])}", flush=True)
    figures["again"] = watched_run(project, dvc("exp", "run", "-S", args.set, *TARGETS), "exp-run-again.log")
    figures["status_s"], status = timed(dvc("status", *TARGETS), project)
    figures["status_clean"] = "up to date" in status or not status.strip()
    figures["noop_repro_s"], noop = timed(dvc("repro", *TARGETS), project)
    figures["noop_repro_ran"] = re.findall(r"Running stage '([^']+)'", noop)
    figures["beyond_need"] = beyond_need(figures["change"])
    decode = figures["change"]["stages"].get("decode", {})
    figures["decode_rebuilt_all"] = decode.get("shards_reused") == 0 and decode.get("shards", 0) > 0
    figures["change_dvc_fraction_of_stages"] = round(
        figures["change"]["dvc_s"] / max(sum(st["wall_s"] for st in figures["change"]["stages"].values()), 1e-9), 4)
    print(f"[again] ran {figures['again']['ran']} in {figures['again']['wall_s']} s; status {figures['status_s']:.1f} s, "
          f"no-op repro {figures['noop_repro_s']:.1f} s; beyond need {figures['beyond_need']}", flush=True)

    from bench_report import bench_path, git_commit, report

    report(bench_path(args.name), "made_beyond_need", sum(figures["beyond_need"].values()), "clips, shards and stages",
           0, higher_is_better=False,
           goal_met=sum(figures["beyond_need"].values()) == 0 and figures["decode_rebuilt_all"],
           code_commit=git_commit(args.code), code=str(args.code), short_side=args.short_side, **figures,
           note="a data param that changes the frames only: download must be skipped, decode must rebuild "
                "every shard, spectrogram must keep every shard")
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
