"""Stage ``demo``: write the built-in demo world, a local stand-in for a real video source."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

from avsf.data.demo.kinetics import SPLITS, DemoVideo, KineticsWorldSpec, manifest_lines, plan_world, write_raw_video
from avsf.io.atomic import remove_stale_temporaries, write_json, write_text
from pipeline.launch import job_progress, run_shards
from pipeline.params import Params

log = logging.getLogger("avsf.demo")

METRICS_PATH = "reports/metrics/demo.json"


def write_videos_shard(job: tuple[list[DemoVideo], str]) -> int:
    """One job: render the shard's raw videos; files already complete are kept (resume)."""
    videos, videos_dir = job
    written = 0
    for video in job_progress(videos, "demo videos", unit="video"):
        if video.scene is None or (Path(videos_dir) / f"{video.youtube_id}.mp4").exists():
            continue
        write_raw_video(video, videos_dir)
        written += 1
    return written


def run_demo(params: Params) -> None:
    """Write the demo world: raw untrimmed videos and Kinetics-format manifests.

    Output under demo.out_dir: videos/<youtube_id>.mp4 and kinetics_demo_{train,val}.csv,
    exactly as a real source would look to the download stage. Deterministic in params.
    """
    cfg = params.demo
    started = time.monotonic()
    spec = KineticsWorldSpec(**cfg.model_dump(exclude={"out_dir", "shards"}))
    videos = plan_world(spec)
    out_dir = Path(cfg.out_dir)
    videos_dir = out_dir / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(videos_dir)

    shards = [(videos[i :: cfg.shards], str(videos_dir)) for i in range(cfg.shards)]
    written = sum(run_shards("demo", write_videos_shard, [s for s in shards if s[0]], params.launch))
    for split in SPLITS:
        write_text(out_dir / f"kinetics_demo_{split}.csv", "\n".join(manifest_lines(videos, split)) + "\n")

    present = [v for v in videos if v.scene is not None]
    seconds = time.monotonic() - started
    metrics = {
        "rows": len(videos),
        "videos": len(present),
        "written": written,
        "by_split": dict(Counter(v.split for v in videos)),
        "by_class": dict(Counter(v.label for v in videos)),
        "without_audio": sum(v.scene.sample_rate is None for v in present),
        "corrupt": sum(v.corrupt for v in videos),
        "missing_sources": len(videos) - len(present),
        "video_seconds": round(sum(v.scene.duration for v in present), 2),
        "seconds": round(seconds, 2),
    }
    write_json(METRICS_PATH, metrics)
    log.info("demo: %d videos (%d written now, %d without audio, %d corrupt, %d rows missing) "
             "in %.1f s, %.1f videos/s", len(present), written, metrics["without_audio"],
             metrics["corrupt"], metrics["missing_sources"], seconds, written / max(seconds, 1e-9))
