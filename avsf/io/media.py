"""Writing and probing audiovisual files with PyAV.

One writer serves the demo world, the download stage's trimming and the tests' synthetic
inputs: frames as uint8 RGB arrays, audio as float32 [channels, samples] in [-1, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Sequence

import av
import numpy as np

AUDIO_FRAME_SAMPLES = 1024  # AAC's frame size
VFR_TIME_BASE = Fraction(1, 1000)  # millisecond timestamps for variable-frame-rate writing


def fps_fraction(fps: float | Fraction) -> Fraction:
    """29.97 -> 30000/1001, 30.0 -> 30: the rational rates containers store."""
    return Fraction(fps).limit_denominator(1001)


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float | Fraction,
    audio: np.ndarray | None = None,
    sample_rate: int = 48000,
    crf: int = 18,
    preset: str = "veryfast",
    pix_fmt: str = "yuv420p",
    timestamps: Sequence[float] | None = None,
    rotation: int = 0,
) -> None:
    """Encode H.264 video and, when ``audio`` is given, AAC audio into ``path``.

    ``frames``: uint8 arrays [H, W, 3] (H and W even for yuv420p; ``pix_fmt="yuv444p"`` takes
    any size). ``audio``: float32 [channels, samples] with 1 or 2 channels. ``timestamps``:
    each frame's time in seconds, for variable frame rate (default: evenly at ``fps``).
    ``rotation``: display rotation in degrees counter-clockwise, stored as container
    metadata (the pixels are written as given). The container format follows the extension.
    """
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    with av.open(os.fspath(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps_fraction(fps))
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.options = {"crf": str(crf), "preset": preset}
        if timestamps is not None:
            video.time_base = video.codec_context.time_base = VFR_TIME_BASE
        if rotation:
            video.set_display_rotation(rotation)
        audio_stream = None
        if audio is not None:
            layout = {1: "mono", 2: "stereo"}[audio.shape[0]]
            audio_stream = container.add_stream("aac", rate=sample_rate, layout=layout)
        for i, image in enumerate(_chain(first, frames)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if timestamps is not None:
                frame.pts = round(timestamps[i] / VFR_TIME_BASE)
                frame.time_base = VFR_TIME_BASE
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio_stream is not None:
            _encode_audio(container, audio_stream, audio.astype(np.float32), sample_rate)


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    yield first
    yield from rest


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    layout = stream.layout.name
    for start in range(0, audio.shape[1], AUDIO_FRAME_SAMPLES):
        chunk = np.ascontiguousarray(audio[:, start : start + AUDIO_FRAME_SAMPLES])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def quarter_turns(degrees: float | None) -> int | None:
    """A frame's display rotation (degrees counter-clockwise) as 0..3 quarter turns, or None
    for an angle that is not a multiple of 90 (rare; callers leave such frames as stored)."""
    degrees = round(degrees or 0)
    return degrees // 90 % 4 if degrees % 90 == 0 else None


@dataclass(frozen=True)
class MediaInfo:
    """What a container says about itself, read without decoding everything."""

    duration: float  # seconds, of the video stream
    fps: float
    width: int
    height: int
    frames: int | None  # as the container reports it; None when unknown
    has_audio: bool
    sample_rate: int | None
    channels: int | None


class MediaError(ValueError):
    """A file that cannot serve as a video; ``reason`` is a short ledger code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def open_video(path: str | os.PathLike) -> av.container.InputContainer:
    """Open ``path`` for reading (close it, e.g. in a ``with`` block). Raises :class:`MediaError`
    with reason ``corrupt_container`` (cannot be opened) or ``no_video_stream``."""
    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError("corrupt_container", str(exc)) from None
    if not container.streams.video:
        container.close()
        raise MediaError("no_video_stream", os.fspath(path))
    return container


def probe(path: str | os.PathLike) -> MediaInfo:
    """Open ``path`` and describe its first video stream.

    Raises :class:`MediaError` with reason ``corrupt_container`` (cannot be opened),
    ``no_video_stream`` or ``zero_duration``.
    """
    with open_video(path) as container:
        video = container.streams.video[0]
        duration = _stream_duration(container, video)
        if not duration or duration <= 0:
            raise MediaError("zero_duration", os.fspath(path))
        audio = container.streams.audio[0] if container.streams.audio else None
        rate = video.average_rate or video.guessed_rate or video.base_rate
        return MediaInfo(
            duration=duration,
            fps=float(rate) if rate else 0.0,
            width=video.codec_context.width,
            height=video.codec_context.height,
            frames=video.frames or None,
            has_audio=audio is not None,
            sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            channels=audio.codec_context.channels if audio is not None else None,
        )


def _stream_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None
