"""Trimming speed with x264's assembly pinned to SSE2 (avsf.io.media.X264_ASM), as a ratio to
x264's own choice for this CPU (AVX2 or AVX-512 on current machines).

    python bench/trim.py [--repeats 5]

Times download's trim_clip of [1, 9] s of the store benchmarks' clip (10 s, 340x256, 30 fps,
AAC audio copied) on one pinned core, with both settings in turn, and writes
reports/bench/trim.json: clips per second pinned / clips per second with x264's own choice
(goal >= 0.85: the pin makes clips the same bytes on every x86-64 machine, it must not cost
much of download's time). Runs alternate and each one's fastest counts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_report import REPO, report
from store_common import bench_clip, pin_to_one_core

import avsf.io.media as media
from avsf.data.download import trim_clip

GOAL_RATIO = 0.85


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "reports/bench/trim.json")
    args = ap.parse_args(argv)
    cores = pin_to_one_core()
    pinned_asm = media.X264_ASM
    choices = {"pinned": pinned_asm, "x264_own": None}
    with tempfile.TemporaryDirectory() as tmp:
        clip = bench_clip(Path(tmp) / "bench.mp4")
        times: dict[str, list[float]] = {name: [] for name in choices}
        for run in range(args.repeats + 1):  # the first round warms up
            for name, asm in choices.items():
                media.X264_ASM = asm
                started = time.perf_counter()
                trim_clip(clip, Path(tmp) / f"{name}.mp4", 1, 9)
                if run:
                    times[name].append(time.perf_counter() - started)
        media.X264_ASM = pinned_asm
    best = {name: min(ts) for name, ts in times.items()}
    data = report(
        args.out, "trim_speed_pinned_asm_ratio_to_x264_choice", best["x264_own"] / best["pinned"], "ratio",
        GOAL_RATIO, pinned_asm=pinned_asm, clip="[1, 9] s of 10 s, 340x256, 30 fps, AAC (bench/store_common.py)",
        seconds_per_clip={name: [round(t, 4) for t in ts] for name, ts in times.items()}, cores=cores,
        repeats=args.repeats,
    )
    print(f"trim {best['pinned']:.3f} s pinned ({pinned_asm}), {best['x264_own']:.3f} s with x264's choice: "
          f"ratio {data['value']:.2f} (goal >= {GOAL_RATIO}); {args.out}")


if __name__ == "__main__":
    main()
