"""The Kinetics flavour of the demo world: untrimmed raw videos and Kinetics-format manifests.

The output looks exactly as a real source would to the ``download`` stage::

    <out_dir>/videos/<youtube_id>.mp4          raw, untrimmed, one actor for the whole video
    <out_dir>/kinetics_demo_train.csv          label,youtube_id,time_start,time_end,split,is_cc
    <out_dir>/kinetics_demo_val.csv

Sources vary as real ones do (frame rates, audio rates and channels, sizes, missing audio),
and a few rows are broken on purpose: a corrupt (truncated) file, and rows whose source
video does not exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from avsf.data.demo.world import CLASSES, Scene, check_light, encode_scene, random_actor
from avsf.io.atomic import atomic_output, write_text

SPLITS = ("train", "val")
YOUTUBE_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MANIFEST_HEADER = ("label", "youtube_id", "time_start", "time_end", "split", "is_cc")
MANIFEST_NAME = "kinetics_demo_{split}.csv"


@dataclass(frozen=True)
class KineticsWorldSpec:
    """How big and how varied the world is (params.yaml's ``datasets.kinetics.demo``)."""

    seed: int = 0
    train_videos_per_class: int = 8
    val_videos_per_class: int = 3
    raw_seconds: tuple[float, float] = (4.0, 6.0)
    clip_seconds: int = 3
    sizes: Sequence[tuple[int, int]] = ((160, 120), (128, 96))
    fps_choices: Sequence[float] = (25.0, 29.97, 30.0)
    audio_rates: Sequence[int] = (44100, 48000)
    no_audio_fraction: float = 0.1
    corrupt_videos: int = 1
    missing_sources: int = 1
    light: float = 0.0  # light from above on the actors (world.Scene.light): 0 flat, as the world was first

    def __post_init__(self) -> None:
        # (messages start with the field: the params error names it)
        if self.train_videos_per_class < 0 or self.val_videos_per_class < 0:
            raise ValueError("train_videos_per_class: the per-class counts must not be negative")
        if not 0 < self.raw_seconds[0] <= self.raw_seconds[1]:
            raise ValueError("raw_seconds: must be [low, high] with 0 < low <= high")
        if not 0 < self.clip_seconds <= self.raw_seconds[0]:
            raise ValueError(f"clip_seconds: must be positive and not exceed the shortest raw video "
                             f"(raw_seconds[0] = {self.raw_seconds[0]})")
        if not self.sizes or any(w < 16 or h < 16 or w % 2 or h % 2 for w, h in self.sizes):
            raise ValueError("sizes: must be even [width, height] pairs of at least 16 (H.264 needs even sizes)")
        if not 0 <= self.no_audio_fraction <= 1 or self.corrupt_videos < 0 or self.missing_sources < 0:
            raise ValueError("no_audio_fraction: must be in [0, 1] (corrupt_videos and missing_sources >= 0)")
        check_light(self.light)


@dataclass(frozen=True)
class DemoVideo:
    """One manifest row, and the raw video behind it (``scene`` None: the source is missing)."""

    youtube_id: str
    label: str
    split: str
    time_start: int
    time_end: int
    scene: Scene | None
    corrupt: bool = False


def plan_world(spec: KineticsWorldSpec) -> list[DemoVideo]:
    """Every row of both manifests, deterministic in ``spec`` (each video has its own RNG)."""
    per_split = {"train": spec.train_videos_per_class, "val": spec.val_videos_per_class}
    ids = youtube_ids(spec.seed, sum(per_split.values()) * len(CLASSES) + spec.missing_sources)
    videos: list[DemoVideo] = []
    for split in SPLITS:
        for cls_index, cls in enumerate(CLASSES):
            for k in range(per_split[split]):
                index = len(videos)
                rng = np.random.default_rng([spec.seed, index])
                videos.append(_plan_video(spec, rng, ids[index], cls_index, split, seed=index))
    # Broken on purpose: the first training videos become corrupt files ...
    for i in range(min(spec.corrupt_videos, len(videos))):
        videos[i] = replace(videos[i], corrupt=True)
    # ... and extra rows point at sources that do not exist, in val first (the evaluation then
    # meets a ground-truth video without a prediction, as on real Kinetics), then train.
    for i in range(spec.missing_sources):
        rng = np.random.default_rng([spec.seed, len(videos)])
        split = SPLITS[(i + 1) % len(SPLITS)]
        ghost = _plan_video(spec, rng, ids[len(videos)], i % len(CLASSES), split, seed=len(videos))
        videos.append(replace(ghost, scene=None))
    return videos


def _plan_video(spec: KineticsWorldSpec, rng: np.random.Generator, youtube_id: str,
                cls_index: int, split: str, seed: int) -> DemoVideo:
    duration = float(rng.uniform(*spec.raw_seconds))
    width, height = spec.sizes[rng.integers(len(spec.sizes))]
    fps = float(spec.fps_choices[rng.integers(len(spec.fps_choices))])
    has_audio = rng.uniform() >= spec.no_audio_fraction
    sample_rate = int(spec.audio_rates[rng.integers(len(spec.audio_rates))]) if has_audio else None
    cls = CLASSES[cls_index]
    scene = Scene(
        width=int(width), height=int(height), fps=fps, duration=duration,
        actors=(random_actor(rng, cls, 0.0, duration),),
        seed=spec.seed * 100_003 + seed,
        tint=tuple(float(v) for v in rng.uniform(0.3, 0.7, size=3)),
        sample_rate=sample_rate,
        channels=int(rng.integers(1, 3)),
        light=spec.light,
    )
    start = int(rng.integers(0, int(duration - spec.clip_seconds) + 1))
    return DemoVideo(youtube_id, cls.name, split, start, start + spec.clip_seconds, scene)


def youtube_ids(seed: int, count: int, salt: int = 0xD0) -> list[str]:
    """Unique 11-character ids from YouTube's alphabet (some start with '-', as real ones do);
    a flavour of its own (AVA's movies) passes a ``salt`` of its own."""
    rng = np.random.default_rng([seed, salt])
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        new = "".join(rng.choice(list(YOUTUBE_ID_ALPHABET), size=11))
        if new not in seen:
            seen.add(new)
            ids.append(new)
    return ids


def write_raw_video(video: DemoVideo, videos_dir: str | os.PathLike) -> Path | None:
    """Render and encode one raw video as ``<youtube_id>.mp4``; None for a missing source.

    A corrupt video is encoded, then cut to 40% of its bytes: the index (moov atom), which
    the mp4 muxer writes last, is lost, so no reader can open it.
    """
    if video.scene is None:
        return None
    path = Path(videos_dir) / f"{video.youtube_id}.mp4"
    with atomic_output(path) as tmp:
        encode_scene(video.scene, tmp)
        if video.corrupt:
            data = tmp.read_bytes()
            tmp.write_bytes(data[: int(len(data) * 0.4)])
    return path


def write_manifests(out_dir: str | os.PathLike, videos: Sequence[DemoVideo]) -> None:
    """kinetics_demo_<split>.csv for each split, in the real files' format."""
    for split in SPLITS:
        write_text(Path(out_dir) / MANIFEST_NAME.format(split=split), "\n".join(manifest_lines(videos, split)) + "\n")


def manifest_lines(videos: Sequence[DemoVideo], split: str) -> list[str]:
    """The split's manifest as the real files have it: labels with spaces are quoted."""
    lines = [",".join(MANIFEST_HEADER)]
    for v in videos:
        if v.split != split:
            continue
        label = f'"{v.label}"' if " " in v.label else v.label
        lines.append(f"{label},{v.youtube_id},{v.time_start},{v.time_end},{v.split},0")
    return lines
