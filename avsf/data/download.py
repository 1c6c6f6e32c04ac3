"""Fetch raw videos and trim annotated segments out of them into clips.

Data flow for one YouTube id and its segments::

    Source.fetch(id) ──> raw video ──probe──> trim_clip(start, end) ──> <clip_id>.mp4
    (local dir, http(s), yt-dlp)   (ledger reason on failure)   (temp name, validated, renamed)

Sources: a local directory or ``file://`` URL holding ``<youtube_id>.<ext>``; an http(s) URL
prefix (or a template with ``{youtube_id}``), fetched with resume, retries and timeouts; or
``youtube`` through yt-dlp (the optional extra ``avsf[youtube]``).

Failures are :class:`FetchError` / :class:`avsf.io.media.MediaError`, each with a ``reason``
that the stage writes to its ledger and counts in its metrics.
"""

from __future__ import annotations

import fcntl
import http.client
import itertools
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import av
import numpy as np

from avsf.data.kinetics import Segment
from avsf.io.atomic import atomic_output
from avsf.io.media import MediaError, MediaInfo, fps_fraction, probe, quarter_turns, write_video

log = logging.getLogger(__name__)

# Every reason the download stage can write to its ledger; metrics count each, zeros included.
REASONS = (
    "bad_manifest_row",
    "missing_source",
    "http_error",
    "network_error",
    "youtube_unavailable",
    "corrupt_container",
    "no_video_stream",
    "zero_duration",
    "segment_out_of_range",
    "unexpected_error",
)
YOUTUBE = "youtube"
YOUTUBE_EXTRA_HINT = "pip install avsf[youtube]"
# Partial downloads keep this suffix until complete; they survive a kill so a rerun resumes them.
PART_SUFFIX = ".part"
_PREFERRED_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".avi")


class FetchError(MediaError):
    """A raw video that could not be fetched; ``reason`` is a ledger code."""


class SourceUnavailable(RuntimeError):
    """The source itself cannot be used here (for example yt-dlp is not installed)."""


@dataclass(frozen=True)
class FetchSettings:
    retries: int = 3  # extra tries after the first
    backoff_s: float = 1.0  # wait before retry k (0-based) is backoff_s * 2**k
    timeout_s: float = 30.0  # per connection attempt and per read
    chunk_bytes: int = 1 << 20


class Source(Protocol):
    """Where raw videos come from. ``downloads`` is True when ``fetch`` writes into the cache
    (so the raw file may be deleted after trimming), False when it returns the source's own file."""

    downloads: bool

    def fetch(self, youtube_id: str, cache_dir: Path) -> Path: ...


def open_source(spec: str, settings: FetchSettings = FetchSettings()) -> Source:
    """The source a ``download.source`` string names: ``youtube``, ``http(s)://...``,
    ``file://...`` or a directory path."""
    if spec == YOUTUBE:
        return YoutubeSource(settings)
    scheme = urllib.parse.urlsplit(spec).scheme
    if scheme in ("http", "https"):
        return HttpSource(spec, settings)
    if scheme == "file":
        return LocalSource(Path(urllib.request.url2pathname(urllib.parse.urlsplit(spec).path)))
    if "://" in spec:
        raise SourceUnavailable(f"unsupported source scheme {scheme!r} in {spec!r}; use a directory, "
                                "file://, http(s):// or 'youtube'")
    return LocalSource(Path(spec))


# --------------------------------------------------------------------------- local


class LocalSource:
    """A directory of ``<youtube_id>.<ext>`` files, as a crawler leaves them."""

    downloads = False

    def __init__(self, root: Path):
        if not root.is_dir():
            raise SourceUnavailable(f"source directory not found: {root}")
        self.root = root

    def fetch(self, youtube_id: str, cache_dir: Path) -> Path:
        candidates = [p for p in self.root.glob(f"{youtube_id}.*")
                      if p.is_file() and p.suffix != PART_SUFFIX]
        if not candidates:
            raise FetchError("missing_source", f"no {youtube_id}.<ext> in {self.root}")
        return min(candidates, key=_ext_preference)


def _ext_preference(path: Path) -> tuple[int, str]:
    ext = path.suffix.lower()
    rank = _PREFERRED_EXTS.index(ext) if ext in _PREFERRED_EXTS else len(_PREFERRED_EXTS)
    return rank, path.name


# --------------------------------------------------------------------------- http(s)


class _Retryable(FetchError):
    """A failure worth another try: 5xx, 408, 429, a refused or cut connection, a timeout."""


class HttpSource:
    """``<prefix>/<youtube_id>.mp4``, or ``template.format(youtube_id=...)`` when the URL holds
    ``{youtube_id}``. Downloads resume from a ``.part`` file with a Range request."""

    downloads = True

    def __init__(self, url: str, settings: FetchSettings = FetchSettings()):
        self.template = url if "{youtube_id}" in url else url.rstrip("/") + "/{youtube_id}.mp4"
        self.settings = settings

    def url_for(self, youtube_id: str) -> str:
        return self.template.format(youtube_id=urllib.parse.quote(youtube_id))

    def fetch(self, youtube_id: str, cache_dir: Path) -> Path:
        url = self.url_for(youtube_id)
        ext = Path(urllib.parse.urlsplit(url).path).suffix or ".mp4"
        dest = cache_dir / f"{youtube_id}{ext}"
        if dest.is_file():  # fetched completely by an earlier, interrupted run
            return dest
        cache_dir.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + PART_SUFFIX)
        s = self.settings
        for attempt in range(s.retries + 1):
            try:
                _http_download(url, part, s)
                os.replace(part, dest)
                return dest
            except _Retryable as exc:
                if attempt == s.retries:
                    raise FetchError(exc.reason, f"{exc.detail} (after {attempt + 1} tries)") from None
                wait = s.backoff_s * 2**attempt
                log.info("%s: %s; retry %d/%d in %.2f s", url, exc.detail, attempt + 1, s.retries, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")


def _http_download(url: str, part: Path, s: FetchSettings) -> None:
    """One try: fetch ``url`` into ``part``, continuing from its current size.
    Returns when ``part`` holds the whole body; raises :class:`_Retryable` or :class:`FetchError`."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "avsf-download"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=s.timeout_s)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:  # asked past the end: the part may already be whole
            total = _content_range_total(exc.headers.get("Content-Range", ""))
            if total == have:
                return
            part.unlink(missing_ok=True)
            raise _Retryable("http_error", f"HTTP 416 for a partial download of {have} bytes; restarting"
                             ) from None
        if exc.code in (408, 429) or exc.code >= 500:
            raise _Retryable("http_error", f"HTTP {exc.code} {exc.reason} for {url}") from None
        raise FetchError("http_error", f"HTTP {exc.code} {exc.reason} for {url}") from None
    except (urllib.error.URLError, OSError) as exc:  # refused, reset, DNS, timeout
        raise _Retryable("network_error", f"{_describe(exc)} for {url}") from None
    with response:
        if response.status == 206 and have:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != have:
                part.unlink(missing_ok=True)
                raise _Retryable("http_error", f"server resumed at byte {start}, not {have}; restarting")
            mode = "ab"
        else:  # 200: the server ignored the Range header, start over
            mode, have = "wb", 0
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length is not None else None
        got = have
        try:
            with part.open(mode) as f:
                while chunk := response.read(s.chunk_bytes):
                    f.write(chunk)
                    got += len(chunk)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # timeout or reset mid-body;
            # the part is kept for the next try to resume
            raise _Retryable("network_error", f"{_describe(exc)} after {got} bytes of {url}") from None
    if expected is not None and got < expected:
        raise _Retryable("network_error", f"connection closed after {got} of {expected} bytes of {url}")


def _content_range_start(value: str) -> int | None:
    match = re.match(r"bytes (\d+)-", value.strip())
    return int(match.group(1)) if match else None


def _content_range_total(value: str) -> int | None:
    match = re.search(r"/(\d+)\s*$", value)
    return int(match.group(1)) if match else None


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(exc, (socket.timeout, TimeoutError)) or isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    return f"{type(exc).__name__}: {reason if reason is not None else exc}"


# --------------------------------------------------------------------------- YouTube


_UNAVAILABLE = re.compile(
    r"unavailable|private|removed|terminated|copyright|sign in|not available|blocked|does not exist", re.I
)


class YoutubeSource:
    """YouTube through yt-dlp, one progressive mp4 per id (no ffmpeg needed for merging)."""

    downloads = True
    FORMAT = "b[ext=mp4]/b"

    def __init__(self, settings: FetchSettings = FetchSettings()):
        try:
            import yt_dlp
        except ImportError:
            raise SourceUnavailable(
                "download.source is 'youtube' but yt-dlp is not installed; "
                f"install the extra: {YOUTUBE_EXTRA_HINT}"
            ) from None
        self.yt_dlp = yt_dlp
        self.settings = settings

    def fetch(self, youtube_id: str, cache_dir: Path) -> Path:
        done = [p for p in cache_dir.glob(f"{youtube_id}.*") if p.suffix not in (PART_SUFFIX, ".ytdl")]
        if done:
            return min(done, key=_ext_preference)
        options = {
            "format": self.FORMAT,
            "outtmpl": str(cache_dir / f"{youtube_id}.%(ext)s"),
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "continuedl": True,
            "retries": self.settings.retries,
            "socket_timeout": self.settings.timeout_s,
        }
        url = f"https://www.youtube.com/watch?v={youtube_id}"
        try:
            with self.yt_dlp.YoutubeDL(options) as ydl:
                info = ydl.extract_info(url, download=True)
                path = Path(ydl.prepare_filename(info))
        except self.yt_dlp.utils.DownloadError as exc:
            message = " ".join(str(exc).split())
            reason = "youtube_unavailable" if _UNAVAILABLE.search(message) else "network_error"
            raise FetchError(reason, message) from None
        if not path.is_file():
            raise FetchError("youtube_unavailable", f"yt-dlp reported {path} but wrote no file")
        return path


# --------------------------------------------------------------------------- trimming


def trim_clip(raw: str | os.PathLike, dest: str | os.PathLike, start: float, end: float,
              crf: int = 18, min_fraction: float = 0.5, raw_info: MediaInfo | None = None) -> MediaInfo:
    """Cut ``[start, end]`` seconds of ``raw`` into ``dest`` by decoding and re-encoding
    (H.264 at the source's frame rate; AAC at the source's sample rate when it has audio).

    A segment that runs past the end of the video is cut short; one of which less than
    ``min_fraction`` exists raises ``MediaError('segment_out_of_range')``. ``dest`` appears
    only once written completely and probed valid. ``raw_info``: ``probe(raw)`` when the
    caller has it already. Returns the clip's probe.
    """
    source = raw_info or probe(raw)
    fps = fps_fraction(source.fps) if source.fps > 0 else Fraction(30)
    try:
        with av.open(os.fspath(raw)) as container:
            video_end = _video_end(container, source.duration)
            clip_end = min(end, video_end)
            n_frames = int(round((clip_end - start) * fps))
            if n_frames < 1 or (clip_end - start) < min_fraction * (end - start):
                raise MediaError("segment_out_of_range",
                                 f"[{start:g}, {end:g}] s of a video that ends at {video_end:.2f} s")
            audio, rate = _audio_segment(container, start, n_frames / fps)
            frames = _video_segment(container, start, fps, n_frames)
            first = next(frames, None)
            if first is None:
                raise MediaError("segment_out_of_range", f"no frames decoded in [{start:g}, {end:g}] s")
            with atomic_output(dest) as tmp:
                write_video(tmp, itertools.chain([first], frames), fps, audio=audio,
                            sample_rate=rate or 48000, crf=crf)
                info = probe(tmp)
    except av.error.FFmpegError as exc:
        raise MediaError("corrupt_container", f"{raw}: {exc}") from None
    return info


def _origin(container) -> float:
    """The container's start in seconds: manifest times count from here, for every stream,
    which keeps audio and video in sync when their own start times differ."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def _video_end(container, duration: float) -> float:
    """When the video stream ends, from the origin: a stream may start after the origin."""
    stream = container.streams.video[0]
    if stream.start_time is None or stream.duration is None:
        return duration
    return float(stream.start_time * stream.time_base) - _origin(container) + duration


def _seek(container, stream, seconds: float) -> float:
    """Seek ``stream`` to the keyframe at or before ``seconds`` after the origin; returns the origin."""
    origin = _origin(container)
    container.seek(max(int((origin + seconds) / stream.time_base), 0), stream=stream, backward=True)
    return origin


def _video_segment(container, start: float, fps: Fraction, n_frames: int) -> Iterator[np.ndarray]:
    """``n_frames`` RGB frames at ``start + k / fps``: for each target time the nearest decoded
    frame, never one shown before ``start`` (so a variable-rate source comes out constant)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    origin = _seek(container, stream, start)
    slack = 1e-3  # float round-off between container and manifest times
    k, prev = 0, None  # prev: (time, frame) of the last decoded frame at or after start
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        t = float(frame.time) - origin
        if t < start - slack:
            continue
        while k < n_frames:
            target = start + float(k / fps)
            if t < target - slack:
                break  # this frame is still before the target: decode on
            if prev is not None and target - prev[0] < t - target:
                yield _even_rgb(prev[1])
            else:
                yield _even_rgb(frame)
            k += 1
        if k == n_frames:
            return
        prev = (t, frame)
    # The stream ended a frame or two before its stated duration: hold the last frame.
    # A longer shortfall (a stream cut mid-way) ends the clip early instead of freezing it.
    if prev is not None and n_frames - k <= 2:
        for _ in range(n_frames - k):
            yield _even_rgb(prev[1])


def _even_rgb(frame) -> np.ndarray:
    """The frame as displayed: a display rotation (phone videos) is applied to the pixels,
    as ffmpeg does when it re-encodes, so the clip needs no rotation metadata."""
    image = frame.to_ndarray(format="rgb24")
    turns = quarter_turns(frame.rotation)
    if turns:
        image = np.rot90(image, turns)
    h, w = image.shape[:2]
    return np.ascontiguousarray(image[: h - h % 2, : w - w % 2])  # yuv420p needs even sizes


def _audio_segment(container, start: float, seconds: float) -> tuple[np.ndarray | None, int | None]:
    """``seconds`` of audio from ``start`` as float32 [channels, samples] (more than two
    channels are mixed down to stereo), zero-padded where the stream has none; or (None, None)."""
    if not container.streams.audio:
        return None, None
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate or stream.rate
    if not rate:
        return None, None
    layout = "mono" if (stream.codec_context.channels or 2) == 1 else "stereo"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    origin = _seek(container, stream, start)
    wanted = int(round(seconds * rate))
    chunks, first_time, have = [], None, 0
    for frame in container.decode(stream):
        if first_time is None:
            if frame.pts is None:
                continue
            first_time = float(frame.time) - origin
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray())
            have += out.samples
        if first_time + have / rate >= start + seconds:
            break
    channels = 1 if layout == "mono" else 2
    if not chunks:
        return np.zeros((channels, wanted), np.float32), rate
    samples = np.concatenate(chunks, axis=1).reshape(channels, -1)
    offset = int(round((start - first_time) * rate))
    if offset < 0:  # audio begins after the segment does
        samples = np.concatenate([np.zeros((channels, -offset), np.float32), samples], axis=1)
        offset = 0
    segment = samples[:, offset : offset + wanted]
    if segment.shape[1] < wanted:
        segment = np.pad(segment, ((0, 0), (0, wanted - segment.shape[1])))
    return np.ascontiguousarray(segment, dtype=np.float32), rate


# --------------------------------------------------------------------------- one video's clips


@dataclass(frozen=True)
class ClipOutcome:
    """What happened to one segment: ``status`` is downloaded, skipped_existing or failed."""

    segment: Segment
    status: str
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class ClipSettings:
    out_dir: Path
    raw_cache: Path
    keep_raw: bool = False
    crf: int = 18
    min_fraction: float = 0.5


def clip_path(out_dir: Path, segment: Segment) -> Path:
    return out_dir / f"{segment.clip_id}.mp4"


def is_valid_clip(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        probe(path)
    except MediaError:
        return False
    return True


def download_video_clips(youtube_id: str, segments: Sequence[Segment], source: Source,
                         settings: ClipSettings) -> list[ClipOutcome]:
    """Make every clip of one YouTube id that is not already there, fetching the raw video
    at most once. Never raises for bad input: each segment gets an outcome."""
    try:
        if not source.downloads:
            return _download(youtube_id, segments, source, settings)
        with _video_lock(settings.raw_cache, youtube_id):
            return _download(youtube_id, segments, source, settings)
    except Exception as exc:  # noqa: BLE001 - one video's trouble must not stop the others
        return [_failed(s, exc) for s in segments]


def _download(youtube_id: str, segments: Sequence[Segment], source: Source,
              settings: ClipSettings) -> list[ClipOutcome]:
    outcomes, pending = {}, []
    for s in segments:
        if is_valid_clip(clip_path(settings.out_dir, s)):
            outcomes[s] = ClipOutcome(s, "skipped_existing")
        else:
            pending.append(s)
    if pending:
        raw = None
        try:
            raw = source.fetch(youtube_id, settings.raw_cache)
            raw_info = probe(raw)  # one verdict on the raw file, instead of one per segment
            for s in pending:
                try:
                    trim_clip(raw, clip_path(settings.out_dir, s), s.time_start, s.time_end,
                              settings.crf, settings.min_fraction, raw_info)
                    outcomes[s] = ClipOutcome(s, "downloaded")
                except Exception as exc:  # noqa: BLE001
                    outcomes[s] = _failed(s, exc)
        except Exception as exc:  # noqa: BLE001 - the raw video is unusable
            for s in pending:
                outcomes[s] = _failed(s, exc)
        finally:
            if raw is not None and source.downloads and not settings.keep_raw:
                raw.unlink(missing_ok=True)
    return [outcomes[s] for s in segments]


def _failed(segment: Segment, exc: Exception) -> ClipOutcome:
    """A failed outcome: a MediaError (FetchError too) carries its reason; anything else is
    a case nobody foresaw, logged with its traceback."""
    if isinstance(exc, MediaError):
        log.info("%s: %s %s", segment.clip_id, exc.reason, exc.detail)  # the ledger keeps it
        return ClipOutcome(segment, "failed", exc.reason, exc.detail)
    log.warning("%s: unexpected error", segment.clip_id, exc_info=exc)
    return ClipOutcome(segment, "failed", "unexpected_error", f"{type(exc).__name__}: {exc}")


@contextmanager
def _video_lock(cache_dir: Path, youtube_id: str) -> Iterator[None]:
    """Hold an exclusive lock per YouTube id across processes: a job orphaned by a killed
    stage and the rerun must not append to the same partial download."""
    locks = cache_dir / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{youtube_id}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
