"""What the store benchmarks share: the benchmark clip and a store built from it.

The clip is the issue's: 10 s, 340x256, 30 fps, with AAC audio; its picture is smooth
gradients with moving shapes and a little noise, so JPEG sizes are those of real footage
rather than of flat colour or pure noise.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

import bench_report  # noqa: F401  (puts the repository on sys.path for the avsf imports below)

from avsf.data.decode import DecodeSettings, decode_clip  # noqa: E402
from avsf.data.logmel import LogMelSettings, log_mel  # noqa: E402
from avsf.data.store import (  # noqa: E402
    CLASSES_NAME,
    INDEX_NAME,
    PCM_SCALE,
    STATS_NAME,
    StoreEntry,
    open_shard,
    shard_name,
    write_index,
)
from avsf.io.atomic import write_json  # noqa: E402
from avsf.io.media import write_video  # noqa: E402

CLIP_SECONDS, CLIP_FPS, CLIP_SIZE = 10.0, 30, (340, 256)  # width, height


def bench_clip(path: Path, seconds: float = CLIP_SECONDS, size: tuple[int, int] = CLIP_SIZE) -> Path:
    """Write the benchmark clip to ``path`` unless it is there."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    count = round(seconds * CLIP_FPS)

    def frames():
        for k in range(count):
            image = np.empty((height, width, 3), np.float32)
            image[..., 0] = 128 + 100 * np.sin(xx / 40 + k / 15)
            image[..., 1] = 128 + 90 * np.cos(yy / 30 - k / 20)
            image[..., 2] = 100 + 0.3 * (xx + yy)
            for i in range(4):  # moving discs
                cx, cy = (37 * i + 3 * k) % width, (53 * i + 2 * k) % height
                disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (12 + 4 * i) ** 2
                image[disc] = (60 * i, 255 - 50 * i, 40 + 60 * i)
            image += rng.normal(0, 4, image.shape)
            yield np.clip(image, 0, 255).astype(np.uint8)

    t = np.arange(round(seconds * 44100)) / 44100
    audio = (0.2 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) +
             0.02 * rng.normal(size=t.size)).astype(np.float32)
    write_video(path, frames(), CLIP_FPS, audio=np.stack([audio, audio]), sample_rate=44100, crf=20)
    return path


def build_store(clip: Path, root: Path, settings: DecodeSettings, copies: int = 1) -> tuple[Path, Path]:
    """A frame store and a log-mel store holding ``copies`` of ``clip`` (split train)."""
    frames_dir, logmel_dir = root / "frames", root / "logmel"
    frames_dir.mkdir(parents=True, exist_ok=True)
    logmel_dir.mkdir(parents=True, exist_ok=True)
    decoded = decode_clip(clip, settings)
    mel_settings = LogMelSettings(sample_rate=settings.sample_rate)
    import torch

    mel = log_mel(torch.from_numpy(decoded.audio.astype(np.float32) / PCM_SCALE), mel_settings).numpy().astype(np.float16)
    ids = [f"bench{i:04d}_000000_000010" for i in range(copies)]
    attrs = decoded.store_attrs()
    mel_attrs = {**mel_settings.store_attrs(), "has_audio": True}
    with open_shard(frames_dir / shard_name(0)) as frames_shard, open_shard(logmel_dir / shard_name(0)) as mel_shard:
        for clip_id in ids:
            frames_shard.add_clip(clip_id, attrs, frames=decoded.frames, audio=decoded.audio)
            mel_shard.add_clip(clip_id, mel_attrs, logmel=mel)
    write_index(frames_dir / INDEX_NAME, [
        StoreEntry(c, "bench", "train", c.split("_")[0], shard_name(0), len(decoded.frames), decoded.fps,
                   decoded.duration, True) for c in ids])
    write_json(frames_dir / CLASSES_NAME, ["bench"])
    values = mel.astype(np.float64)
    write_json(logmel_dir / STATS_NAME, {"mean": float(values.mean()), "std": float(values.std()), "clips": 1,
                                         "values": int(values.size), "split": "train",
                                         "log_offset": mel_settings.log_offset})
    return frames_dir, logmel_dir


def pin_to_one_core() -> str:
    """Run this process (and the threads it starts) on one CPU, so rates are per core."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    return "not pinned (no sched_setaffinity)"


def clips_per_s(make_one, count: int, warmup: int = 5, clock=time.perf_counter) -> float:
    """Items per second of ``make_one()`` over ``count`` calls, after ``warmup`` untimed ones.
    ``clock``: wall time, or ``time.process_time`` (this process's CPU seconds: on a machine
    shared with other jobs, the rate per core that their load does not lower)."""
    for _ in range(warmup):
        make_one()
    started = clock()
    for _ in range(count):
        make_one()
    return count / (clock() - started)
