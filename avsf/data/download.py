"""Fetch raw videos and trim annotated segments out of them into clips.

Data flow for one YouTube id and its segments::

    Source.fetch(id) ──> raw video ──probe──> trim_clip(start, end) ──> <clip_id>.mp4
    (local dir, http(s), yt-dlp)   (ledger reason on failure)   (temp name, validated, renamed)
                                                        └─> <clip_id>.json: fingerprint, digest, duration, notes

A clip is video re-encoded from the first frame shown at ``start`` and the source's audio
from that instant, copied packet for packet where mp4 can hold it (:func:`trim_clip`). Its
record's fingerprint (:func:`clip_fingerprint`) lets a rerun keep exactly the clips made by
the same code and settings, and, for a local source, from the same raw video
(:meth:`LocalSource.identity`): a video replaced under the same name is trimmed again.

Sources: a local directory or ``file://`` URL holding ``<youtube_id>.<ext>``; an http(s) URL
prefix (or a template with ``{youtube_id}``), fetched with resume, retries and timeouts; or
``youtube`` through yt-dlp (the optional extra ``avsf[youtube]``).

Failures are :class:`FetchError` / :class:`avsf.io.media.MediaError`, each with a ``reason``
that the stage writes to its ledger and counts in its metrics.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import http.client
import logging
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import av
import numpy as np

from avsf.data.kinetics import Segment, clip_record_path, read_clip_record
from avsf.io.atomic import atomic_output, write_json
from avsf.io.digest import digest, file_identity
from avsf.io.media import (
    AacAudio,
    ClipWriter,
    MediaError,
    MediaInfo,
    decoded_frames,
    describe,
    fps_fraction,
    mp4_takes,
    open_video,
    probe,
    quarter_turns,
)

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
    "too_little_decoded",
    "unexpected_error",
)
# Part of every clip's fingerprint: bump it when the same source and settings would give a
# different clip, so clips made by older code are made again, not kept.
# 2: audio copied by default; frames and audio from the first frame shown; damaged packets
#    skipped; x264 with a fixed thread count.
# 3: x264's assembly pinned to SSE2 (avsf.io.media.X264_ASM); a hole at the start of a
#    segment no longer moves the clip later.
DOWNLOAD_VERSION = 3
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
    (so the raw file may be deleted after trimming), False when it returns the source's own file.
    ``identity`` names the raw video a clip would be cut from without fetching it, or None where
    that cannot be known cheaply (a remote): a clip records it, and one recorded with another
    identity is cut again."""

    downloads: bool

    def fetch(self, youtube_id: str, cache_dir: Path) -> Path: ...

    def identity(self, youtube_id: str) -> str | None: ...


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
    """A directory of ``<youtube_id>.<ext>`` files, as a crawler leaves them, or of
    ``<class>/<video_id>.<ext>`` (UCF101's and HMDB51's extracted archives).

    The directory is listed once, on the first fetch, not searched once per video: a glob per
    video reads the whole listing each time, so fetching a Kinetics-size directory's 260,000
    videos was quadratic (43 ms a video at 32,000 files, 25 CPU-hours at 260,000)."""

    downloads = False

    def __init__(self, root: Path):
        if not root.is_dir():
            raise SourceUnavailable(f"source directory not found: {root}")
        self.root = root
        self._listing: tuple[dict[str, list[str]], dict[str, list[str]]] | None = None
        self._lock = threading.Lock()  # download's worker threads share one source

    def fetch(self, youtube_id: str, cache_dir: Path) -> Path:
        top, nested = self._files()
        candidates = top.get(youtube_id) or nested.get(youtube_id)
        if not candidates:
            raise FetchError("missing_source", f"no {youtube_id}.<ext> in {self.root}")
        return min((self.root / name for name in candidates), key=_ext_preference)

    def identity(self, youtube_id: str) -> str | None:
        """The video's file name and size and a digest of its first and last 64 KiB (where a
        container keeps its headers and index), or None when it is not there (a clip cut from
        a source since removed is kept). Not the mtime: staging a copy of the source on a
        node's scratch disk must not trim every clip again; and not the whole file: a rerun
        would read every raw video to decide what to skip."""
        try:
            path = self.fetch(youtube_id, self.root)
            return file_identity(path, name=str(path.relative_to(self.root)))
        except (FetchError, OSError):
            return None

    def _files(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """Video id -> the names of its files (relative to the root), at the top level and one
        folder down: every ``<id>.<anything>`` file, as the glob ``<id>.*`` matches it, except
        unfinished downloads (``.part``)."""
        with self._lock:
            if self._listing is None:
                top: dict[str, list[str]] = {}
                nested: dict[str, list[str]] = {}
                with os.scandir(self.root) as entries:
                    for entry in entries:
                        if entry.name.startswith("."):  # .locks of a download cache, .git, ...
                            continue
                        if entry.is_dir():
                            with os.scandir(entry.path) as inner:
                                for file in inner:
                                    _add_file(nested, file, f"{entry.name}/{file.name}")
                        else:
                            _add_file(top, entry, entry.name)
                self._listing = top, nested
        return self._listing


def _add_file(index: dict[str, list[str]], entry: os.DirEntry, name: str) -> None:
    """Index a file under every id whose ``<id>.*`` it matches (each prefix before a dot)."""
    if entry.name.endswith(PART_SUFFIX) or not entry.is_file():
        return
    for i, char in enumerate(entry.name):
        if char == "." and i > 0:
            index.setdefault(entry.name[:i], []).append(name)


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

    def identity(self, youtube_id: str) -> str | None:
        return None  # known only by fetching it

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
    """YouTube through yt-dlp, one progressive mp4 per id (no ffmpeg needed for merging).

    A video already in the download cache (an earlier run's, kept by ``download.keep_raw``) is
    not fetched again. The cache is listed once, on the first fetch, not searched once per
    video: with ``keep_raw`` it holds every video fetched so far, and a glob per video made a
    Kinetics-size run quadratic, as it did the local source's."""

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
        self._cached: dict[Path, dict[str, list[str]]] = {}  # cache dir -> id -> its files' names
        self._lock = threading.Lock()  # download's worker threads share one source

    def identity(self, youtube_id: str) -> str | None:
        return None  # known only by fetching it

    def fetch(self, youtube_id: str, cache_dir: Path) -> Path:
        cached = self._cached_files(cache_dir)
        # a file listed may be gone since: trimmed and deleted (keep_raw false) by a job before
        done = [p for p in (cache_dir / name for name in cached.get(youtube_id, ())) if p.is_file()]
        if not done:  # or written since the listing (another job's fetch of the same video): a few stats
            done = [p for p in (cache_dir / f"{youtube_id}{ext}" for ext in _PREFERRED_EXTS) if p.is_file()]
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
        with self._lock:
            cached.setdefault(youtube_id, []).append(path.name)
        return path

    def _cached_files(self, cache_dir: Path) -> dict[str, list[str]]:
        """Video id -> the names of its finished downloads in ``cache_dir`` (every ``<id>.*``
        file but yt-dlp's unfinished ``.part`` and ``.ytdl``), listed on the first call."""
        with self._lock:
            if cache_dir not in self._cached:
                index: dict[str, list[str]] = {}
                try:
                    with os.scandir(cache_dir) as entries:
                        for entry in entries:
                            if not entry.name.endswith(".ytdl"):
                                _add_file(index, entry, entry.name)
                except FileNotFoundError:  # nothing fetched yet: yt-dlp makes it
                    pass
                self._cached[cache_dir] = index
            return self._cached[cache_dir]


# --------------------------------------------------------------------------- trimming


@dataclass(frozen=True)
class TrimSettings:
    """How a segment becomes a clip; every field changes the clip, so all of them are part of
    its fingerprint."""

    crf: int = 18  # x264 quality of the re-encoded video
    min_fraction: float = 0.5  # of the segment that must exist and decode
    audio: str = "copy"  # "copy": the source's audio packets as they are (AAC where mp4 cannot hold them); "aac"
    audio_bitrate: int = 192_000  # bit/s of AAC where audio is re-encoded


@dataclass(frozen=True)
class TrimmedClip:
    """A clip written by :func:`trim_clip`: its probe, its length, and what to know about it."""

    info: MediaInfo
    duration: float  # seconds: frames / fps
    notes: dict[str, Any]
    sha256: str  # of the file's bytes


def trim_clip(raw: str | os.PathLike, dest: str | os.PathLike, start: float, end: float,
              settings: TrimSettings = TrimSettings(), raw_info: MediaInfo | None = None,
              before_rename: Callable[[TrimmedClip], None] | None = None) -> TrimmedClip:
    """Cut ``[start, end]`` seconds of ``raw`` into ``dest``: the video decoded and re-encoded
    (H.264 at the source's frame rate, from the first frame shown at or after ``start``, or
    from ``start`` itself where damage hides that frame), the audio from that same instant, its packets copied as they are or re-encoded to AAC (see
    :class:`TrimSettings`).

    An infinite ``end`` means the video's end.

    Decoding goes on past packets that do not decode (counted in the notes, with the output
    frames that had to repeat a neighbour across the hole). A segment that runs past the end of
    the video, or past where the file breaks off, is cut short (noted). Raises
    ``MediaError('segment_out_of_range')`` when less than ``settings.min_fraction`` of the
    segment lies inside the video, and ``MediaError('too_little_decoded')`` when less than that
    decodes. ``dest`` appears only once written completely and probed valid; ``before_rename``
    is called with the clip just before. ``raw_info``: ``probe(raw)`` when the caller has it.
    """
    source = raw_info or probe(raw)
    fps = fps_fraction(source.fps) if source.fps > 0 else Fraction(30)
    notes: dict[str, Any] = {}
    try:
        with open_video(raw) as container:
            video_end = _video_end(container, source.duration)
            if math.isinf(end):  # a whole video of unknown length (UCF101, HMDB51): to its end
                end = video_end
            wanted = end - start
            clip_end = min(end, video_end)
            n_frames = int(round((clip_end - start) * fps))
            if n_frames < 1 or (clip_end - start) < settings.min_fraction * wanted:
                raise MediaError("segment_out_of_range",
                                 f"[{start:g}, {end:g}] s of a video that ends at {video_end:.2f} s")
            audio_in = container.streams.audio[0] if container.streams.audio else None
            audio_out, packets = _audio_plan(container, audio_in, start, wanted, settings, notes)
            video = _VideoSegment(container, start, fps, n_frames, notes)
            with atomic_output(dest) as tmp:
                with ClipWriter(tmp, fps, audio_out, crf=settings.crf) as writer:
                    for image in video:
                        writer.add_frame(image)
                    if writer.frames == 0:
                        raise MediaError("too_little_decoded", f"no frame decodes in [{start:g}, {end:g}] s")
                    duration = writer.frames / fps
                    decoded = (writer.frames - video.missing) / fps
                    if decoded < settings.min_fraction * wanted:
                        raise MediaError("too_little_decoded", f"{float(decoded):.2f} s of the {wanted:g} s "
                                         f"segment [{start:g}, {end:g}] decode ({_damage(notes)})")
                    if packets is not None:
                        _copy_audio(container, audio_in, packets, writer, video.first_time, float(duration))
                    elif audio_out is not None:
                        writer.add_audio(_audio_samples(container, audio_in, audio_out, video.first_time,
                                                        float(duration), notes))
                if writer.frames < n_frames - 2:  # the stream stopped before the end the container claims
                    notes["truncated"] = 1
                if wanted - float(duration) > 0.5 / fps:
                    notes["cut_short_s"] = round(wanted - float(duration), 3)
                if video.missing:
                    notes["missing_frames"] = video.missing
                clip = TrimmedClip(probe(tmp), round(float(duration), 6), dict(sorted(notes.items())),
                                   hashlib.sha256(tmp.read_bytes()).hexdigest())
                if before_rename is not None:
                    before_rename(clip)
    except av.error.FFmpegError as exc:
        raise MediaError("corrupt_container", f"{raw}: {describe(exc)}") from None
    return clip


def _damage(notes: dict[str, Any]) -> str:
    errors = notes.get("decode_errors", 0)
    return f"{errors} packets did not decode" if errors else "the file breaks off"


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


class _VideoSegment:
    """``n_frames`` RGB frames at ``first_time + k / fps``, where ``first_time`` is the first
    frame shown at or after ``start``: for each target time the nearest decoded frame, so a
    variable-rate source comes out constant and a hole left by undecodable packets is filled
    by its neighbours (counted in ``missing``).

    The first frame that decodes is that first frame only when it lies within a frame period
    of ``start``; one farther on follows a hole at the start of the segment, so the clip
    still starts at ``start`` and the frames before it repeat it (counted in ``missing``):
    anchoring there instead moved the whole clip, and its sound, later than its segment."""

    SLACK = 1e-3  # float round-off between container and manifest times
    HOLE = 1.5  # a source frame farther than this many frame periods from its target is missing

    def __init__(self, container, start: float, fps: Fraction, n_frames: int, notes: dict[str, Any]):
        self.container, self.start, self.fps, self.n_frames, self.notes = container, start, fps, n_frames, notes
        self.first_time = start
        self.missing = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = _seek(self.container, stream, self.start)
        period = 1 / float(self.fps)
        k, prev = 0, None  # prev: (time, frame) of the last decoded frame at or after start
        for _, frame in decoded_frames(self.container, [stream], self.notes):
            if frame.pts is None:
                continue
            t = float(frame.time) - origin
            if t < self.start - self.SLACK:
                continue
            if prev is None and t < self.start + period - self.SLACK:
                self.first_time = t
            while k < self.n_frames:
                target = self.first_time + k * period
                if t < target - self.SLACK:
                    break  # this frame is still before the target: decode on
                shown_at, shown = prev if prev is not None and target - prev[0] < t - target else (t, frame)
                if abs(shown_at - target) > self.HOLE * period:
                    self.missing += 1
                yield _even_rgb(shown)
                k += 1
            if k == self.n_frames:
                return
            prev = (t, frame)
        # The stream ended a frame or two before its stated duration: hold the last frame.
        # A longer shortfall (a file cut mid-way) ends the clip early instead of freezing it.
        if prev is not None and self.n_frames - k <= 2:
            for _ in range(self.n_frames - k):
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


def _audio_plan(container, stream, start: float, seconds: float, settings: TrimSettings,
                notes: dict[str, Any]) -> tuple[Any, list[av.Packet] | None]:
    """What the clip's audio will be, decided before the video is written (the file's header
    names every stream): the source stream itself with its packets around the segment (to
    copy), an :class:`AacAudio` (to re-encode, mixed down to stereo at most), or None."""
    if stream is None:
        return None, None
    codec = stream.codec_context.name
    if settings.audio == "copy":
        packets = _audio_packets(container, stream, start, seconds, notes)
        if not packets:
            notes["audio_missing"] = 1  # the stream has no sound in the segment
            return None, None
        if mp4_takes(stream, packets[0]):
            notes["audio_copied"] = codec
            return stream, packets
    rate = stream.codec_context.sample_rate or stream.rate
    if not rate:
        notes["audio_unusable"] = codec
        return None, None
    why = "download.audio is aac" if settings.audio == "aac" else "mp4 cannot hold it"
    notes["audio_reencoded"] = f"{codec} ({why}): AAC {settings.audio_bitrate // 1000} kb/s"
    channels = 1 if (stream.codec_context.channels or 2) == 1 else 2
    return AacAudio(rate, channels, settings.audio_bitrate), None


def _audio_packets(container, stream, start: float, seconds: float, notes: dict[str, Any]) -> list[av.Packet]:
    """The stream's packets that may sound in the segment: from a little before ``start`` to a
    second past its end (the exact span is known once the video is written)."""
    origin = _seek(container, stream, start)
    base = stream.time_base
    begin, stop = round((origin + start - 0.1) / base), round((origin + start + seconds + 1.0) / base)
    packets = []
    try:
        for packet in container.demux(stream):
            if packet.pts is None or packet.dts is None or not packet.size:
                continue
            if packet.pts >= stop:
                break
            if packet.pts + (packet.duration or 0) > begin:
                packets.append(packet)
    except av.error.FFmpegError:
        notes["truncated"] = 1  # the file breaks off: keep the sound that came before
    return packets


def _copy_audio(container, stream, packets: list[av.Packet], writer: ClipWriter, start: float,
                seconds: float) -> None:
    """The packets that sound in [start, start + seconds), copied into the clip from ``start``,
    with the one before as pre-roll: the edit list skips its sound, but a decoder that needs
    the previous packet (AAC's overlapping transform) gets it, so the first one sounds right."""
    base = stream.time_base
    origin = _origin(container)
    begin, stop = round((origin + start) / base), round((origin + start + seconds) / base)
    first = next((i for i, p in enumerate(packets) if p.pts + (p.duration or 0) > begin), len(packets))
    writer.copy_audio([p for p in packets[max(first - 1, 0) :] if p.pts < stop], begin)


def _audio_samples(container, stream, spec: AacAudio, start: float, seconds: float,
                   notes: dict[str, Any]) -> np.ndarray:
    """``seconds`` of decoded audio from ``start`` as float32 [channels, samples] at the
    stream's rate, zero-padded where the stream has none."""
    layout = "mono" if spec.channels == 1 else "stereo"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=spec.sample_rate)
    origin = _seek(container, stream, start)
    rate = spec.sample_rate
    wanted = int(round(seconds * rate))
    chunks, first_time, have = [], None, 0
    for _, frame in decoded_frames(container, [stream], notes):
        if first_time is None:
            if frame.pts is None:
                continue
            first_time = float(frame.time) - origin
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray())
            have += out.samples
        if first_time + have / rate >= start + seconds:
            break
    if not chunks:
        return np.zeros((spec.channels, wanted), np.float32)
    samples = np.concatenate(chunks, axis=1).reshape(spec.channels, -1)
    offset = int(round((start - first_time) * rate))
    if offset < 0:  # audio begins after the segment does
        samples = np.concatenate([np.zeros((spec.channels, -offset), np.float32), samples], axis=1)
        offset = 0
    segment = samples[:, offset : offset + wanted]
    if segment.shape[1] < wanted:
        segment = np.pad(segment, ((0, 0), (0, wanted - segment.shape[1])))
    return np.ascontiguousarray(segment, dtype=np.float32)


# --------------------------------------------------------------------------- one video's clips


@dataclass(frozen=True)
class ClipOutcome:
    """What happened to one segment: ``status`` is downloaded, skipped_existing or failed;
    a clip that exists has its ``duration`` (s) and ``notes``."""

    segment: Segment
    status: str
    reason: str = ""
    detail: str = ""
    duration: float | None = None
    notes: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ClipSettings:
    out_dir: Path
    raw_cache: Path
    keep_raw: bool = False
    trim: TrimSettings = TrimSettings()


def clip_path(out_dir: Path, segment: Segment) -> Path:
    return out_dir / f"{segment.clip_id}.mp4"


def clip_fingerprint(segment: Segment, trim: TrimSettings) -> str:
    """What a clip is made from, besides its source file: the trimming code's version, its
    settings and the segment."""
    return digest("download", DOWNLOAD_VERSION, asdict(trim), segment.time_start, segment.time_end)


def existing_clip(path: Path, fingerprint: str, source: str | None = None) -> dict[str, Any] | None:
    """The record of a complete clip at ``path`` made with ``fingerprint`` from the raw video
    ``source`` names (None: unknown, any), or None: a clip that is missing, does not probe, has
    no record, or was made with other settings or code, or from another raw video."""
    record = read_clip_record(path)
    if record is None or record.get("fingerprint") != fingerprint:
        return None
    if source is not None and record.get("source") != source:
        return None
    try:
        probe(path)
    except MediaError:
        return None
    return record


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
    source_identity = source.identity(youtube_id)
    for s in segments:
        record = existing_clip(clip_path(settings.out_dir, s), clip_fingerprint(s, settings.trim), source_identity)
        if record is not None:
            outcomes[s] = ClipOutcome(s, "skipped_existing", duration=record["duration"], notes=record["notes"])
        else:
            pending.append(s)
    if pending:
        raw = None
        try:
            raw = source.fetch(youtube_id, settings.raw_cache)
            # a fetched video's own identity: the download cache, made a local source later
            # (download.keep_raw), then keeps these clips
            made_from = source_identity or file_identity(raw, raw.name)
            raw_info = probe(raw)  # one verdict on the raw file, instead of one per segment
            for s in pending:
                try:
                    outcomes[s] = _make_clip(raw, raw_info, s, settings, made_from)
                except Exception as exc:  # noqa: BLE001
                    outcomes[s] = _failed(s, exc)
        except Exception as exc:  # noqa: BLE001 - the raw video is unusable
            for s in pending:
                outcomes[s] = _failed(s, exc)
        finally:
            if raw is not None and source.downloads and not settings.keep_raw:
                raw.unlink(missing_ok=True)
    return [outcomes[s] for s in segments]


def _make_clip(raw: Path, raw_info: MediaInfo, segment: Segment, settings: ClipSettings,
               made_from: str) -> ClipOutcome:
    """Trim one segment; its record is written just before the clip gets its final name, and
    a stale clip is removed first, so a kill at any moment never pairs a record with the
    wrong clip."""
    dest = clip_path(settings.out_dir, segment)
    dest.unlink(missing_ok=True)
    clip = trim_clip(raw, dest, segment.time_start, segment.time_end, settings.trim, raw_info,
                     before_rename=lambda clip: write_json(clip_record_path(dest), {
                         "fingerprint": clip_fingerprint(segment, settings.trim), "source": made_from,
                         "sha256": clip.sha256,
                         "duration": clip.duration, "notes": clip.notes, "settings": asdict(settings.trim)}))
    return ClipOutcome(segment, "downloaded", duration=clip.duration, notes=clip.notes)


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
