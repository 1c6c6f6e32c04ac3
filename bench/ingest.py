"""Ingestion speed: source-video seconds the decode stage processes per second on one core.

    python bench/ingest.py [--repeats 9]

On the issue's clip (10 s, 340x256, 30 fps, AAC audio) it times, on one pinned core:

    reference   PyAV's bare decode of every video frame to RGB (frame.to_ndarray("rgb24"))
    ingest      what a decode job does per clip: decode_clip (frames resampled to 30 fps,
                resized to short side 256, JPEG-encoded; audio to 16 kHz mono) and writing
                the clip's group into an HDF5 shard. As in a job, one shard takes several
                clips (--clips-per-shard), so opening and renaming the shard is shared.

and writes reports/bench/ingest.json: the ratio ingest / reference (goal >= 0.5), with both
rates in source seconds per second. Each timed run handles --clips-per-shard clips; the two
alternate, and each one's fastest run counts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av

from bench_report import REPO, report
from store_common import bench_clip, pin_to_one_core

from avsf.data.decode import DecodeSettings, decode_clip
from avsf.data.store import open_shard

GOAL_RATIO = 0.5


def bare_decode(path: Path, clips: int) -> None:
    for _ in range(clips):
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                frame.to_ndarray(format="rgb24")


def ingest(path: Path, shard: Path, settings: DecodeSettings, clips: int) -> None:
    """A decode job's work on ``clips`` clips (all the same file here) and their shard."""
    shard.unlink(missing_ok=True)  # a job writes a new shard; replacing an old one costs more
    with open_shard(shard) as writer:
        for index in range(clips):
            clip = decode_clip(path, settings)
            writer.add_clip(f"clip{index}", clip.store_attrs(), frames=clip.frames, audio=clip.audio)


def rates(fns: dict, seconds_of_video: float, repeats: int) -> tuple[dict, dict]:
    """Source seconds per wall second of each function (``seconds_of_video`` per call): runs
    alternate (so both see the same machine load) after one warm-up each, and the fastest run
    counts (the least disturbed)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: seconds_of_video / min(ts) for name, ts in times.items()}, times


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--jpeg-quality", type=int, default=90)
    ap.add_argument("--clips-per-shard", type=int, default=8)
    ap.add_argument("--out", type=Path, default=REPO / "reports/bench/ingest.json")
    args = ap.parse_args(argv)
    pinned = pin_to_one_core()
    settings = DecodeSettings(fps=30.0, short_side=args.short_side, jpeg_quality=args.jpeg_quality, sample_rate=16000)
    with tempfile.TemporaryDirectory() as tmp:
        clip = bench_clip(Path(tmp) / "bench.mp4")
        n = args.clips_per_shard
        seconds = decode_clip(clip, settings).duration * n
        shard = Path(tmp) / "shard.h5"
        rate, times = rates({"reference": lambda: bare_decode(clip, n),
                             "ingest": lambda: ingest(clip, shard, settings, n)}, seconds, args.repeats)
        reference, ours = rate["reference"], rate["ingest"]
        stored = shard.stat().st_size // n
    data = report(
        args.out, "ingest_ratio_to_pyav_rgb_decode", ours / reference, "ratio", GOAL_RATIO,
        ingest_source_seconds_per_s_per_core=round(ours, 2),
        reference_source_seconds_per_s_per_core=round(reference, 2),
        clip="10 s, 340x256, 30 fps, AAC stereo 44.1 kHz (bench/store_common.py)",
        settings={"fps": settings.fps, "short_side": settings.short_side, "jpeg_quality": settings.jpeg_quality,
                  "sample_rate": settings.sample_rate},
        store_bytes_per_clip=stored, cores=pinned, repeats=args.repeats, clips_per_run=n,
        seconds_per_clip={name: [round(t / n, 4) for t in ts] for name, ts in times.items()},
    )
    print(f"ingest {ours:.1f} source-s/s, PyAV RGB decode {reference:.1f} source-s/s per core: "
          f"ratio {data['value']:.2f} (goal >= {GOAL_RATIO}); {args.out}")


if __name__ == "__main__":
    main()
