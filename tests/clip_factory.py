"""Tiny synthetic clips for the decode, store and dataset tests, written with PyAV.

Frames carry their own index as a stripe pattern (:func:`frame_image`, read back with
:func:`frame_index`) so a test can tell which source frame ended up where; audio is a quiet
sine with optional loud bursts that coincide with white "flash" frames.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import av
import numpy as np
import pytest

from avsf.data.kinetics import ClipRecord, write_clip_index
from avsf.io.media import write_video
from pipeline.layout import Layout
from pipeline.params import Params, load_params

from conftest import write_params


BITS = 8  # frame index written as 8 vertical stripes (white = 1), most significant first


def frame_image(k: int, width: int, height: int) -> np.ndarray:
    """Source frame k: its index in binary as stripes across the top half, grey below."""
    image = np.full((height, width, 3), 96, np.uint8)
    for bit in range(BITS):
        lo, hi = bit * width // BITS, (bit + 1) * width // BITS
        image[: height // 2, lo:hi] = 235 if (k >> (BITS - 1 - bit)) & 1 else 20
    return image


def frame_index(image: np.ndarray) -> int:
    """Read back the index :func:`frame_image` drew (from a decoded, possibly resized frame)."""
    height, width = image.shape[:2]
    row = image[height // 4, :, :].mean(axis=-1)
    bits = [row[int((bit + 0.5) * width / BITS)] > 128 for bit in range(BITS)]
    return sum(1 << (BITS - 1 - i) for i, b in enumerate(bits) if b)


@dataclass
class ClipSpec:
    """A synthetic clip: ``seconds`` of video at ``fps``, optional audio of ``audio_seconds``."""

    name: str
    seconds: float = 2.0
    fps: float = 30.0
    size: tuple[int, int] = (64, 48)  # width, height
    audio_seconds: float | None = None  # None: as long as the video; 0: no audio stream
    sample_rate: int = 44100
    channels: int = 1
    tone_hz: float = 440.0  # 0: digital silence (an audio stream of zeros, unless noise is set)
    noise: float = 0.0  # std of white noise added (broadband sound, seeded by the name)
    label: str = "a"
    split: str = "train"
    flash_frames: Sequence[int] = ()  # frames drawn white, with a 2 kHz burst in the audio
    timestamps: Sequence[float] | None = None  # variable frame rate
    rotation: int = 0
    pix_fmt: str = "yuv420p"
    extra: dict = field(default_factory=dict)

    @property
    def clip_id(self) -> str:
        return f"{self.name}_000000_{max(1, round(self.seconds)):06d}"


def render_frames(spec: ClipSpec) -> list[np.ndarray]:
    count = len(spec.timestamps) if spec.timestamps is not None else round(spec.seconds * spec.fps)
    width, height = spec.size
    frames = []
    for k in range(count):
        image = frame_image(k, width, height)
        if k in spec.flash_frames:
            image[:] = 255
        frames.append(image)
    return frames


def render_audio(spec: ClipSpec) -> np.ndarray | None:
    seconds = spec.seconds if spec.audio_seconds is None else spec.audio_seconds
    if seconds == 0:
        return None
    rate = spec.sample_rate
    t = np.arange(round(seconds * rate)) / rate
    wave = 0.05 * np.sin(2 * np.pi * spec.tone_hz * t)
    if spec.noise:
        wave += np.random.default_rng(zlib.crc32(spec.name.encode())).normal(0, spec.noise, len(t))
    for k in spec.flash_frames:  # a loud burst exactly while the flash is shown
        start, stop = k / spec.fps, (k + 1) / spec.fps
        inside = (t >= start) & (t < stop)
        wave[inside] += 0.8 * np.sin(2 * np.pi * 2000 * t[inside])
    return np.repeat(wave[None].astype(np.float32), spec.channels, axis=0)


def write_clip(path: Path, spec: ClipSpec) -> Path:
    write_video(path, render_frames(spec), spec.fps, audio=render_audio(spec), sample_rate=spec.sample_rate,
                pix_fmt=spec.pix_fmt, timestamps=spec.timestamps, rotation=spec.rotation)
    return path


def write_garbled(path: Path, template: Path, seed: int = 0) -> Path:
    """``template``'s video packets with their payload replaced by noise: a valid container in
    which no frame decodes."""
    rng = np.random.default_rng(seed)
    with av.open(str(template)) as src, av.open(str(path), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.size == 0:
                continue
            noise = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
            noise.pts, noise.dts, noise.is_keyframe = packet.pts, packet.dts, packet.is_keyframe
            noise.time_base, noise.stream = packet.time_base, out
            dst.mux(noise)
    return path


def write_audio_gap(path: Path, template: Path, at: float, gap: float) -> Path:
    """``template`` remuxed with its audio packets from ``at`` seconds on moved ``gap``
    seconds later: an audio stream whose timestamps jump, as in badly cut uploads."""
    with av.open(str(template)) as src, av.open(str(path), "w") as dst:
        outs = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.size == 0:
                continue
            if packet.stream.type == "audio" and packet.pts * packet.time_base >= at:
                shift = round(gap / packet.time_base)
                packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
            packet.stream = outs[packet.stream.index]
            dst.mux(packet)
    return path


def write_clips_dir(root: Path, specs: Sequence[ClipSpec]) -> list[ClipRecord]:
    """Write the clips and a download-stage ``clips.csv`` where download@kinetics writes them
    under ``root`` (data/kinetics/clips)."""
    clips_dir = root / KINETICS.clips("kinetics")
    clips_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for spec in specs:
        name = f"{spec.clip_id}.mp4"
        write_clip(clips_dir / name, spec)
        records.append(ClipRecord(spec.clip_id, spec.label, spec.name, 0, max(1, round(spec.seconds)),
                                  spec.split, name))
    write_clip_index(clips_dir / "clips.csv", records)
    return records


KINETICS = Layout(Path("data"), Path("reports"))  # where the stages write under a test's root (params' layout)
STORE_OVERRIDES = {
    "launch.cluster": "debug",
    "decode.short_side": 32,
    "decode.clips_per_shard": 2,
}


def store_params(root: Path, overrides: dict | None = None) -> tuple[Path, Params]:
    """A params file under ``root`` for the decode and spectrogram stages on tiny clips."""
    path = write_params(root / "params.yaml", {**STORE_OVERRIDES, **(overrides or {})})
    return path, load_params(path)


def build_store(root: Path, specs: Sequence[ClipSpec], overrides: dict | None = None) -> tuple[Path, Path]:
    """Write ``specs`` as downloaded clips under ``root`` and run decode and spectrogram on
    them in-process; returns the frame and log-mel store directories."""
    write_clips_dir(root, specs)
    _, params = store_params(root, overrides)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        from pipeline.decode import run_decode
        from pipeline.spectrogram import run_spectrogram

        run_decode(params)
        run_spectrogram(params)
    return root / KINETICS.frames("kinetics"), root / KINETICS.logmel("kinetics")
