"""Writing, probing and robustly decoding audiovisual files with PyAV.

One writer serves the demo world, the download stage's trimming and the tests' synthetic
inputs: frames as uint8 RGB arrays, audio as float32 [channels, samples] in [-1, 1], or an
audio stream's packets copied as they are (:class:`ClipWriter`).
"""

from __future__ import annotations

import io
import os
import platform
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator, Sequence

import av
import numpy as np

AUDIO_FRAME_SAMPLES = 1024  # AAC's frame size
VFR_TIME_BASE = Fraction(1, 1000)  # millisecond timestamps for variable-frame-rate writing
# x264 chooses its thread count, and so its slices and its output bytes, from the cores the
# process may use: a fixed count makes the same frames the same bytes on every machine.
X264_THREADS = 4
# x264 also picks its assembly from the CPU, and its bytes depend on the pick: its SSSE3-and-up
# code rounds differently from its C and SSE2 code, and its AVX-512 code (x264 core 165, in
# PyAV's wheels) reads memory it never wrote, so the same frames became other bytes whenever
# the heap happened to hold other garbage (encodes beside decodes in worker threads; seen with
# glibc's MALLOC_PERTURB_=1). SSE2, which every x86-64 CPU has, gives the same code and bytes
# on every x86-64 machine, those of x264's C code; a trim takes about 1.09 times as long
# (bench/trim.py).
# Other CPUs keep x264's own choice. Cache64 only picks loads that avoid cacheline splits.
X264_ASM = "SSE2,Cache64" if platform.machine().lower() in ("x86_64", "amd64") else None
# The video codecs ClipWriter encodes with: H.264 (libx264) by default; MPEG-4 Part 2 (mpeg4,
# what UCF101's and HMDB51's AVI files hold, as Xvid writes it) for AVI, which stores no
# presentation times: frames are read back in stored order, which mpeg4 (no B-frames) keeps,
# where H.264's come back a frame or two late (the decoder's guessed reorder delay), so the
# sound no longer starts with the first frame.
VIDEO_CODECS = ("libx264", "mpeg4")
# mpeg4 encodes at this fixed quantiser (ffmpeg's -q:v; 2 best ... 31): crf and preset are
# x264's. Its C transforms (the SIMD ones round differently) and one thread (slices follow the
# thread count) make the same frames the same bytes on every machine, as X264_ASM does for x264.
MPEG4_QUANTISER = 3
MPEG4_OPTIONS = {"dct": "int", "idct": "simple"}
# Matroska's muxer writes a random segment UID and random track UIDs into every file (the
# same frames made other bytes, sometimes another size, on every run); bitexact writes none.
BITEXACT_FORMATS = (".mkv", ".mka", ".webm")


def fps_fraction(fps: float | Fraction) -> Fraction:
    """29.97 -> 30000/1001, 30.0 -> 30: the rational rates containers store."""
    return Fraction(fps).limit_denominator(1001)


@dataclass(frozen=True)
class AacAudio:
    """Audio that :class:`ClipWriter` encodes to AAC: 1 or 2 channels; ``bitrate`` in bit/s
    (None: the encoder's default)."""

    sample_rate: int
    channels: int
    bitrate: int | None = None


@dataclass(frozen=True)
class PcmAudio:
    """Audio that :class:`ClipWriter` stores as 16-bit PCM, for AVI: AAC's priming samples
    start before the first frame, which AVI, with no edit list, cannot say (the muxer then
    shifts the video by a frame and the sound lags); PCM starts exactly with the first frame."""

    sample_rate: int
    channels: int


AUDIO_CODECS = {"aac": AacAudio, "pcm_s16le": PcmAudio}


class ClipWriter:
    """H.264 video plus, optionally, audio: ``audio`` is an :class:`AacAudio` or a
    :class:`PcmAudio` (samples given to :meth:`add_audio` are encoded) or a source's audio
    stream (its packets, given to :meth:`copy_audio`, are copied as they are). Video frames
    come first, then the audio (the muxer interleaves); use as a context manager.

    ``pix_fmt="yuv444p"`` takes any frame size, yuv420p needs even ones. ``variable_rate``:
    each frame's time is given to :meth:`add_frame` (default: evenly at ``fps``).
    ``rotation``: display rotation in degrees counter-clockwise, stored as container metadata
    (the pixels are written as given). ``keyint``: frames between keyframes at most (None:
    x264's default, 250). The container format follows the extension; ``codec`` is one of
    :data:`VIDEO_CODECS` (mpeg4 for AVI: see there).
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction, audio=None, crf: int = 18,
                 preset: str = "veryfast", pix_fmt: str = "yuv420p", variable_rate: bool = False,
                 rotation: int = 0, keyint: int | None = None, *, codec: str = "libx264"):
        if codec not in VIDEO_CODECS:
            raise ValueError(f"video codec {codec!r}: expected one of {', '.join(VIDEO_CODECS)}")
        self.codec = codec
        bitexact = os.fspath(path).lower().endswith(BITEXACT_FORMATS)
        self.container = av.open(os.fspath(path), mode="w",
                                 container_options={"fflags": "+bitexact"} if bitexact else None)
        self.fps, self.crf, self.preset, self.pix_fmt = fps_fraction(fps), crf, preset, pix_fmt
        self.variable_rate, self.rotation, self.audio_spec = variable_rate, rotation, audio
        self.keyint = keyint
        self.video = self.audio = None
        self.frames = 0
        self._flushed = False

    def __enter__(self) -> "ClipWriter":
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self._finish_video()
        finally:
            self.container.close()

    def add_frame(self, image: np.ndarray, time: float | None = None) -> None:
        if self.video is None:
            self._open_streams(*image.shape[:2])
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if self.variable_rate:
            frame.pts = round(time / VFR_TIME_BASE)
            frame.time_base = VFR_TIME_BASE
        self.container.mux(self.video.encode(frame))
        self.frames += 1

    def add_audio(self, audio: np.ndarray) -> None:
        """Encode float32 [channels, samples] in [-1, 1] as AAC or PCM (after the last frame)."""
        self._finish_video()
        rate, layout = self.audio.codec_context.sample_rate, self.audio.layout.name
        pcm = isinstance(self.audio_spec, PcmAudio)
        audio = audio.astype(np.float32)
        for start in range(0, audio.shape[1], AUDIO_FRAME_SAMPLES):
            chunk = audio[:, start : start + AUDIO_FRAME_SAMPLES]
            if pcm:  # packed: the channels' samples interleaved, in one plane
                chunk = np.round(np.clip(chunk, -1.0, 1.0).T.reshape(1, -1) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="s16" if pcm else "fltp",
                                               layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            self.container.mux(self.audio.encode(frame))
        self.container.mux(self.audio.encode(None))

    def copy_audio(self, packets: Iterable[av.Packet], offset: int) -> None:
        """Remux the source stream's ``packets`` unchanged, ``offset`` ticks of its time base
        earlier (after the last frame). A first packet that starts before 0 is trimmed by the
        mp4 edit list, so what plays at 0 is the source's sound at ``offset``."""
        self._finish_video()
        for packet in packets:
            packet.pts -= offset
            packet.dts -= offset
            packet.stream = self.audio
            self.container.mux(packet)

    def _open_streams(self, height: int, width: int) -> None:
        """Every stream is added before the first packet is written (the header)."""
        video = self.video = self.container.add_stream(self.codec, rate=self.fps)
        video.width, video.height, video.pix_fmt = width, height, self.pix_fmt
        if self.codec == "mpeg4":
            video.options = dict(MPEG4_OPTIONS)
            video.codec_context.qmin = video.codec_context.qmax = MPEG4_QUANTISER
            video.codec_context.thread_count = 1
        else:
            video.options = {"crf": str(self.crf), "preset": self.preset,
                             **({"x264-params": f"asm={X264_ASM}"} if X264_ASM else {})}
            video.codec_context.thread_count = X264_THREADS
        if self.keyint:
            video.codec_context.gop_size = self.keyint
        if self.variable_rate:
            video.time_base = video.codec_context.time_base = VFR_TIME_BASE
        if self.rotation:
            video.set_display_rotation(self.rotation)
        if isinstance(self.audio_spec, (AacAudio, PcmAudio)):
            layout = {1: "mono", 2: "stereo"}[self.audio_spec.channels]
            codec = "pcm_s16le" if isinstance(self.audio_spec, PcmAudio) else "aac"
            self.audio = self.container.add_stream(codec, rate=self.audio_spec.sample_rate, layout=layout)
            if getattr(self.audio_spec, "bitrate", None):
                self.audio.bit_rate = self.audio_spec.bitrate
        elif self.audio_spec is not None:
            self.audio = self.container.add_stream_from_template(self.audio_spec)

    def _finish_video(self) -> None:
        if self.video is not None and not self._flushed:
            self.container.mux(self.video.encode(None))
            self._flushed = True


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
    keyint: int | None = None,
    codec: str = "libx264",
    audio_codec: str = "aac",
) -> None:
    """Encode video (H.264 unless ``codec`` says otherwise) and, when ``audio`` (float32
    [channels, samples]) is given, audio (``audio_codec``: aac or pcm_s16le) into ``path``
    (see :class:`ClipWriter` for the arguments; ``timestamps``: each frame's time in seconds,
    for variable frame rate)."""
    spec = AUDIO_CODECS[audio_codec](sample_rate, audio.shape[0]) if audio is not None else None
    with ClipWriter(path, fps, spec, crf, preset, pix_fmt, timestamps is not None, rotation, keyint,
                    codec=codec) as writer:
        for i, image in enumerate(frames):
            writer.add_frame(image, timestamps[i] if timestamps is not None else None)
        if audio is not None:
            writer.add_audio(audio)


def mp4_takes(stream, packet: av.Packet) -> bool:
    """Whether an mp4 file can hold the packets of ``stream`` as they are (AAC, MP3, Opus can;
    PCM from Matroska, for one, cannot): tried by writing a file of its ``packet`` to memory,
    since the muxer may refuse only when it writes the index at the end."""
    try:
        with av.open(io.BytesIO(), mode="w", format="mp4") as trial:
            copy = trial.add_stream_from_template(stream)
            sample = av.Packet(bytes(packet))
            sample.pts = sample.dts = 0
            sample.time_base, sample.stream = stream.time_base, copy
            trial.mux(sample)
    except (av.error.FFmpegError, ValueError):
        return False
    return True


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


def describe(exc: BaseException) -> str:
    """An FFmpeg or OS error in words: 'Invalid data found when processing input: x.mp4',
    not '[Errno 1094995529] ...'."""
    words = getattr(exc, "strerror", None)
    if not words:
        return str(exc)
    filename = getattr(exc, "filename", None)
    return f"{words}: {filename}" if filename else words


def open_video(path: str | os.PathLike) -> av.container.InputContainer:
    """Open ``path`` for reading (close it, e.g. in a ``with`` block). Raises :class:`MediaError`
    with reason ``zero_duration`` (an empty file), ``corrupt_container`` (cannot be opened)
    or ``no_video_stream``."""
    try:
        if os.path.getsize(path) == 0:
            raise MediaError("zero_duration", f"empty file (0 bytes): {os.fspath(path)}")
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError("corrupt_container", describe(exc)) from None
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


def decoded_frames(container, streams: Sequence, notes: dict[str, float]) -> Iterator[tuple[int, av.frame.Frame]]:
    """(stream index, frame) of ``streams`` in demux order, as ffmpeg recovers them: a packet
    that does not decode is counted in ``notes['decode_errors']`` and skipped, and a container
    that breaks off mid-way ends the frames there (``notes['truncated']``)."""
    packets = container.demux(list(streams))
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError:
            notes["truncated"] = 1
            return
        try:
            for frame in packet.decode():
                yield packet.stream.index, frame
        except av.error.FFmpegError:
            notes["decode_errors"] = notes.get("decode_errors", 0) + 1
