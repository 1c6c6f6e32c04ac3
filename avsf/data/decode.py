"""Decode one clip into what the store keeps: JPEG frames at a fixed rate and 16 kHz mono audio.

Data flow, in one pass over the container's packets::

    packets ─┬─ video ─> frames (presentation order) ─> resample to `fps` by timestamps
             │            ─> rotate as the display matrix says ─> resize to short side ─> JPEG
             └─ audio ─> AudioResampler (mono, `sample_rate`) ─> align to the first video frame
                           ─> pad or cut to exactly the frames' duration

Frame-rate resampling picks, for output frame ``k`` at time ``k / fps``, the source frame
whose timestamp is nearest (the later one on a tie), using the frames' own timestamps, so a
variable-frame-rate source comes out evenly spaced and a 29.97 fps source keeps its frames
in place. A source frame that no output frame uses is never converted or
encoded; one that several use is encoded once.

Audio samples are placed by their timestamps: a gap in the source's audio becomes silence.

Everything the caller should know but that does not stop the clip (padded audio, audio gaps,
undecodable packets, a display rotation, an uneven source rate) lands in
:attr:`DecodedClip.notes`.
Clips that cannot be used raise :class:`avsf.io.media.MediaError` with a ledger reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from avsf.data.jpeg import encode_jpeg
from avsf.data.store import PCM_SCALE
from avsf.io.media import MediaError, decoded_frames, fps_fraction, open_video, quarter_turns

# Part of each decode shard's fingerprint: bump it when the same file and settings would
# decode differently, so stores built by older code are rebuilt, not resumed.
# 2: audio placed by timestamp (gaps become silence).
DECODER_VERSION = 2
DEFAULT_TIME_BASE = Fraction(1, 90000)  # for streams that give frames no time base
AUDIO_GAP_MIN_S = 0.01  # audio timestamp jumps shorter than this are jitter, not gaps
AUDIO_GAP_MAX_S = 60.0  # longer jumps are broken timestamps: not filled with silence


@dataclass(frozen=True)
class DecodeSettings:
    fps: float = 30.0
    short_side: int = 256
    jpeg_quality: int = 90
    sample_rate: int = 16000


@dataclass
class DecodedClip:
    """A clip ready for the store. ``audio`` is int16 PCM, ``round(duration * sample_rate)``
    samples long, or None when the source has no usable audio."""

    frames: list[bytes]  # one JPEG per output frame
    audio: np.ndarray | None
    fps: float
    source_fps: float
    height: int
    width: int
    sample_rate: int
    notes: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Seconds the stored frames span: frame k covers [k / fps, (k + 1) / fps)."""
        return len(self.frames) / self.fps

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    def store_attrs(self) -> dict[str, Any]:
        """The clip group's attributes in the frame store (README, "Store format")."""
        return {
            "fps": self.fps, "duration": self.duration, "has_audio": self.has_audio,
            "source_fps": self.source_fps, "height": self.height, "width": self.width,
            "num_frames": len(self.frames), "sample_rate": self.sample_rate, "notes": self.notes,
        }


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the shorter side is exactly ``short_side``."""
    scale = short_side / min(width, height)
    if width <= height:
        return short_side, max(1, round(height * scale))
    return max(1, round(width * scale)), short_side


def decode_clip(path: str | os.PathLike, settings: DecodeSettings = DecodeSettings()) -> DecodedClip:
    """Decode ``path`` into JPEG frames at ``settings.fps`` and int16 mono audio.

    Raises :class:`MediaError` with reason ``corrupt_container``, ``no_video_stream`` or
    ``no_frames`` (nothing decodable).
    """
    with open_video(path) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        sampler = _FrameSampler(fps_fraction(settings.fps), settings.short_side, settings.jpeg_quality)
        sound = _AudioCollector(settings.sample_rate) if audio is not None else None
        notes: dict[str, float] = {}
        streams = [video] if audio is None else [video, audio]
        for index, frame in decoded_frames(container, streams, notes):
            if index == video.index:
                sampler.add(frame)
            else:
                sound.add(frame)
        if not sampler.seen:
            raise MediaError("no_frames", os.fspath(path))
        frames = sampler.finish()
        notes.update(sampler.notes)
        clip_audio = None
        if sound is not None:
            clip_audio = sound.finish(sampler.start_time, len(frames) / sampler.fps, notes)
        height, width = sampler.size
        return DecodedClip(
            frames=frames,
            audio=clip_audio,
            fps=float(sampler.fps),
            source_fps=sampler.source_fps(video),
            height=height,
            width=width,
            sample_rate=settings.sample_rate,
            notes=notes,
        )


class _FrameSampler:
    """Turns source frames, in presentation order, into evenly spaced JPEG frames.

    Times are kept as integer ticks of the stream's time base (exact, and cheap enough to
    compare once per output frame): output frame k is at k / fps seconds."""

    def __init__(self, fps: Fraction, short_side: int, quality: int):
        self.fps = fps
        self.short_side = short_side
        self.quality = quality
        self.frames: list[bytes] = []
        self.notes: dict[str, float] = {}
        self.seen = 0
        self.start_time: Fraction | None = None  # seconds, of the first frame
        self._tick = DEFAULT_TIME_BASE  # seconds per tick
        self._start = 0  # ticks of the first frame
        self._pending: av.VideoFrame | None = None  # the latest source frame, not yet placed
        self._pending_at = 0  # its ticks after the first frame
        self._intervals: list[int] = []  # ticks between consecutive source frames
        self._rotation = 0  # quarter turns counter-clockwise
        self.size = (0, 0)  # (height, width) of the output frames
        self._reformatter = VideoReformatter()  # one for the clip: it keeps its scaler set up

    def add(self, frame: av.VideoFrame) -> None:
        if self.start_time is None:
            self._tick = Fraction(frame.time_base) if frame.time_base else DEFAULT_TIME_BASE
            self._start = frame.pts if frame.pts is not None else 0
            self.start_time = self._start * self._tick
            self._rotation = self._read_rotation(frame)
            # k / fps < (a + b) / 2 ticks  <=>  k * _k_scale < (a + b) * _tick_scale, in integers.
            self._k_scale = 2 * self.fps.denominator * self._tick.denominator
            self._tick_scale = self.fps.numerator * self._tick.numerator
        if frame.pts is not None:
            at = frame.pts - self._start
        elif self._pending is None:
            at = 0
        else:  # no timestamp: assume it follows the previous frame evenly
            at = self._pending_at + (self._intervals[-1] if self._intervals else self._frame_ticks())
        if self._pending is not None:
            if at <= self._pending_at:  # out of order or repeated timestamp: keep the first
                self.notes["non_monotonic_frames"] = self.notes.get("non_monotonic_frames", 0) + 1
                return
            self._intervals.append(at - self._pending_at)
            # The pending frame is the nearest source frame up to halfway to this one.
            self._place(self._pending, until_twice=self._pending_at + at)
        self._pending, self._pending_at = frame, at
        self.seen += 1

    def finish(self) -> list[bytes]:
        """Place the last frame until the end of the clip and return the output frames."""
        last = self._pending
        shown = last.duration or self._median_interval() or self._frame_ticks()
        count = max(1, round((self._pending_at + shown) * self._tick * self.fps))
        self._place(last, until_twice=None, count=count)
        del self.frames[count:]
        if self._intervals and max(self._intervals) > 1.5 * min(self._intervals):
            self.notes["variable_frame_rate"] = 1
        self._pending = None
        return self.frames

    def source_fps(self, stream) -> float:
        interval = self._median_interval()
        if interval:
            return float(1 / (interval * self._tick))
        rate = stream.average_rate or stream.guessed_rate
        return float(rate) if rate else 0.0

    def _median_interval(self) -> int | None:
        return sorted(self._intervals)[len(self._intervals) // 2] if self._intervals else None

    def _frame_ticks(self) -> int:
        """One output frame's duration in ticks (at least one)."""
        return max(1, round(1 / (self.fps * self._tick)))

    def _place(self, frame: av.VideoFrame, until_twice: int | None, count: int | None = None) -> None:
        """Append ``frame`` for every output time before ``until_twice / 2`` ticks (or up to
        ``count`` frames)."""
        jpeg = None
        while True:
            k = len(self.frames)
            if until_twice is not None and k * self._k_scale >= until_twice * self._tick_scale:
                return
            if count is not None and k >= count:
                return
            if jpeg is None:
                jpeg = encode_jpeg(self._to_rgb(frame), self.quality)
            self.frames.append(jpeg)

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        width, height = frame.width, frame.height
        if self._rotation % 2:  # a quarter turn swaps the displayed width and height
            out_h, out_w = output_size(height, width, self.short_side)
        else:
            out_w, out_h = output_size(width, height, self.short_side)
        rgb = self._reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24").to_ndarray()
        if self._rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, self._rotation))
        self.size = rgb.shape[:2]
        return rgb

    def _read_rotation(self, frame: av.VideoFrame) -> int:
        degrees = frame.rotation or 0
        turns = quarter_turns(degrees)
        if turns is None:
            self.notes["unsupported_rotation"] = float(degrees)
            return 0
        if degrees:
            self.notes["rotation"] = float(degrees)
        return turns


class _AudioCollector:
    """Resamples decoded audio to mono ``sample_rate`` and lines it up with the video."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        # One numpy conversion at the end: per-frame ones cost about half the resampling.
        self.fifo = av.AudioFifo()
        self.start_time: Fraction | None = None
        self._origin: int | None = None  # timestamp of the fifo's first sample, in samples
        self.gap_samples = 0  # silence put in for timestamp gaps
        self.jumps = 0  # timestamp jumps too long to fill

    def add(self, frame: av.AudioFrame) -> None:
        if self.start_time is None:
            self.start_time = _frame_time(frame) or Fraction(0)
        for out in self.resampler.resample(frame):
            self._keep(out)

    def _keep(self, resampled: av.AudioFrame) -> None:
        """Queue ``resampled`` at its timestamp: a gap in the source's audio becomes silence, so
        the sound after it stays in sync with the video."""
        if resampled.pts is not None and resampled.time_base is not None:
            base = resampled.time_base  # integer rounding: Fractions cost more per frame
            at = (2 * resampled.pts * base.numerator * self.sample_rate + base.denominator) // (2 * base.denominator)
            if self._origin is None:
                self._origin = at - self.fifo.samples
            gap = at - self._origin - self.fifo.samples
            if gap > AUDIO_GAP_MAX_S * self.sample_rate:
                self.jumps += 1
                self._origin += gap  # carry on from the new timestamps
            elif gap > AUDIO_GAP_MIN_S * self.sample_rate:
                silence = av.AudioFrame.from_ndarray(np.zeros((1, gap), np.float32), format="flt", layout="mono")
                silence.sample_rate = self.sample_rate
                self.fifo.write(silence)
                self.gap_samples += gap
        resampled.pts = None  # placed above; the fifo would refuse the jump
        self.fifo.write(resampled)

    def finish(self, video_start: Fraction | None, duration: float, notes: dict[str, float]) -> np.ndarray | None:
        """int16 samples for [video start, video start + duration), or None without audio."""
        for out in self.resampler.resample(None):
            self._keep(out)
        resampled = self.fifo.read()
        samples = resampled.to_ndarray().reshape(-1) if resampled is not None else np.zeros(0, np.float32)
        if self.gap_samples:
            notes["audio_gap_s"] = self.gap_samples / self.sample_rate
        if self.jumps:
            notes["audio_timestamp_jumps"] = self.jumps
        if samples.size == 0:
            notes["audio_undecodable"] = 1
            return None
        want = round(duration * self.sample_rate)
        # Audio that starts after the first video frame is preceded by silence; audio that
        # starts before it is cut, so sample 0 is heard when frame 0 is shown.
        offset = round(float((self.start_time or 0) - (video_start or 0)) * self.sample_rate)
        if offset > 0:
            samples = np.concatenate([np.zeros(offset, np.float32), samples])
            notes["audio_late_s"] = offset / self.sample_rate
        elif offset < 0:
            samples = samples[-offset:]
        if samples.size < want:
            notes["audio_padded_s"] = (want - samples.size) / self.sample_rate
            samples = np.concatenate([samples, np.zeros(want - samples.size, np.float32)])
        pcm = np.clip(np.rint(samples[:want] * PCM_SCALE), -PCM_SCALE, PCM_SCALE)
        return pcm.astype(np.int16)


def _frame_time(frame) -> Fraction | None:
    if frame.pts is None or frame.time_base is None:
        return None
    return frame.pts * Fraction(frame.time_base)
