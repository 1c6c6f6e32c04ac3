"""Stage ``demo@<dataset>``: write a dataset's demo world, a local stand-in for its real source.

    the dataset's flavour (avsf.data.demo.<flavour>, its module: pipeline.datasets.<d>)
        plan (deterministic in datasets.<d>.demo) ──demo.shards jobs──> every video rendered
        ──> data/demo/<d>/videos/ and the annotation files in the dataset's own formats
    reports/<d>/metrics/demo.json: what the world holds

A video already written is kept (a killed run resumes); each is written to a temporary name
and renamed when complete.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from avsf.io.atomic import remove_stale_temporaries, write_json
from pipeline.datasets.base import Flavour
from pipeline.launch import StageFailed, job_progress, run_shards, stage_launch
from pipeline.datasets import stage_dataset
from pipeline.layout import Layout
from pipeline.params import Params

log = logging.getLogger("avsf.demo")

STAGE = "demo"


def render_shard(job: tuple[Flavour, list[Any], str]) -> int:
    """One job: render its share of the videos; complete files are kept (resume). Returns
    how many it wrote."""
    flavour, videos, videos_dir = job
    written = 0
    for video in job_progress(videos, "demo videos", unit="video"):
        if (Path(videos_dir) / flavour.video_name(video)).exists():
            continue
        written += flavour.write_video(video, videos_dir) is not None  # (None: a row without a video)
    return written


def run_demo(params: Params, dataset: str | None = None) -> None:
    """Write a dataset's demo world to data/demo/<dataset>: its videos (rendered in demo.shards
    jobs; a video already written is kept) and its annotation files in the dataset's own
    formats, exactly as a real copy would look to the download stage. Deterministic in the
    dataset section's ``demo`` settings (Kinetics: untrimmed raw videos and Kinetics-format
    manifests; EPIC-Kitchens: long kitchen videos with narrated segments; Charades:
    overlapping actions; AVA: film segments with people labelled at keyframes and a person
    detector's boxes; UCF101 / HMDB51: short clips of their own classes and three splits)."""
    ds = stage_dataset(params, dataset)
    if ds.flavour is None:
        raise StageFailed(f"demo: {ds.name} has no demo world")
    started = time.monotonic()
    try:
        spec = ds.flavour.spec(ds.demo_settings(), f"datasets.{ds.name}.demo")
    except ValueError as exc:  # (checked on load; the last guard)
        raise StageFailed(str(exc)) from None
    plan = ds.flavour.plan(spec)
    layout = Layout.of(params.layout)
    out_dir = layout.demo(ds.name)
    videos_dir = out_dir / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(videos_dir)
    shards = [(ds.flavour, plan[i :: params.demo.shards], str(videos_dir)) for i in range(params.demo.shards)]
    written = sum(run_shards(STAGE, render_shard, [s for s in shards if s[1]], stage_launch(params.launch, ds.name)))
    ds.flavour.write_annotations(out_dir, plan)
    counts = ds.flavour.counts(plan)
    seconds = time.monotonic() - started
    write_json(layout.metrics(ds.name, STAGE), {"planned": len(plan), "written": written, **counts,
                                                 "seconds": round(seconds, 2)})
    log.info("demo@%s: %d planned, %d written now, %s in %.1f s", ds.name, len(plan), written,
             ", ".join(f"{k} {v}" for k, v in counts.items()), seconds)
