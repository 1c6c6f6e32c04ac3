"""Sources, http resume and retries, trimming, and the failure ledger of the download stage."""

from __future__ import annotations

import os
import socket
import sys
import threading
import types
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avsf.data.download import (
    ClipSettings,
    FetchError,
    FetchSettings,
    HttpSource,
    LocalSource,
    SourceUnavailable,
    TrimSettings,
    YoutubeSource,
    download_video_clips,
    open_source,
    trim_clip,
)
from avsf.data.kinetics import Segment
from avsf.data.ledger import Failure, append_ledger, count_by_reason, read_ledger, write_ledger
from avsf.io.media import MediaError, write_video
from file_server import FileServer

BITS = 8
FAST = FetchSettings(retries=3, backoff_s=0.01, timeout_s=5.0, chunk_bytes=4096)


# --------------------------------------------------------------------------- inputs


def index_frame(i: int, height: int = 32) -> np.ndarray:
    """A frame whose index is written as BITS black/white vertical bars (bit 0 leftmost)."""
    bars = np.array([255 if (i >> b) & 1 else 0 for b in range(BITS)], np.uint8)
    row = np.repeat(bars, 16)
    return np.repeat(row[None, :, None], height, axis=0).repeat(3, axis=2)


def read_index(image: np.ndarray) -> int:
    centres = image[:, 8::16].mean(axis=(0, 2))
    return int(sum(1 << b for b, value in enumerate(centres[:BITS]) if value > 127))


def write_indexed(path: Path, seconds: float, fps: float, sample_rate: int | None = 48000,
                  channels: int = 2, burst_at: float = 1.5) -> Path:
    """``seconds`` of index frames; audio silent except a 50 ms burst at ``burst_at``."""
    n = int(round(seconds * float(Fraction(fps).limit_denominator(1001))))
    audio = None
    if sample_rate:
        audio = np.zeros((channels, int(seconds * sample_rate)), np.float32)
        start = int(burst_at * sample_rate)
        audio[:, start : start + sample_rate // 20] = 0.8
    write_video(path, (index_frame(i) for i in range(n)), fps, audio=audio, sample_rate=sample_rate or 48000)
    return path


def decoded_indices(path: Path) -> list[int]:
    with av.open(os.fspath(path)) as c:
        return [read_index(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def burst_time(path: Path) -> float:
    """When the clip's audio first gets loud, in seconds."""
    with av.open(os.fspath(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.codec_context.sample_rate
        samples = np.concatenate([f.to_ndarray().reshape(f.layout.nb_channels, -1) for f in c.decode(stream)], axis=1)
    return float(np.argmax(np.abs(samples[0]) > 0.4)) / rate


def write_audio_only(path: Path) -> Path:
    with av.open(os.fspath(path), "w") as c:
        stream = c.add_stream("aac", rate=48000, layout="mono")
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, i * 1024
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    return path


def settings(tmp_path: Path, **kw) -> ClipSettings:
    return ClipSettings(tmp_path / "clips", tmp_path / "cache", **kw)


# --------------------------------------------------------------------------- local sources


def test_local_directory_and_file_url(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_indexed(videos / "vid-A_1.mp4", 1.0, 25, sample_rate=None)
    (videos / "vid-A_1.webm").write_bytes(b"not chosen: mp4 is preferred")
    (videos / "other.mp4.part").write_bytes(b"an unfinished download is not a source")
    for source in (open_source(str(videos)), open_source(videos.resolve().as_uri())):
        assert isinstance(source, LocalSource) and not source.downloads
        assert source.fetch("vid-A_1", tmp_path) == videos / "vid-A_1.mp4"
        with pytest.raises(FetchError) as err:
            source.fetch("other", tmp_path)
        assert err.value.reason == "missing_source"


def test_a_local_source_lists_its_directory_once_whatever_the_number_of_videos(tmp_path, monkeypatch):
    """One listing per source, not a glob per video (quadratic in a Kinetics-size directory)."""
    videos = tmp_path / "videos"
    (videos / "Class").mkdir(parents=True)
    for i in range(50):
        (videos / f"v{i}.mp4").write_bytes(b"x")
    (videos / "v7.webm").write_bytes(b"x")  # mp4 preferred
    (videos / "v8.mkv.part").write_bytes(b"x")  # unfinished: not a source
    (videos / "Class" / "nested.avi").write_bytes(b"x")  # <class>/<id>.<ext>, as UCF101's
    (videos / "Class" / "v9.mkv").write_bytes(b"x")  # the top level comes first
    (videos / ".locks").mkdir()  # a download cache's locks, when the source is one
    (videos / ".locks" / "locked.lock").write_bytes(b"")
    listed = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listed.append(path) or scandir(path))
    source = LocalSource(videos)
    assert [source.fetch(f"v{i}", tmp_path) for i in range(50)] == [videos / f"v{i}.mp4" for i in range(50)]
    assert source.fetch("nested", tmp_path) == videos / "Class" / "nested.avi"
    for absent in ("absent", "v", "v8.mkv", "locked"):
        with pytest.raises(FetchError, match="missing_source|no "):
            source.fetch(absent, tmp_path)
    assert len(listed) == 2  # the directory and its one folder, once (not .locks)


def test_open_source_rejects_what_it_cannot_read(tmp_path):
    with pytest.raises(SourceUnavailable, match="not found"):
        open_source(str(tmp_path / "absent"))
    with pytest.raises(SourceUnavailable, match="unsupported source scheme 'ftp'"):
        open_source("ftp://host/videos")
    assert HttpSource("http://h/v/").url_for("a-b") == "http://h/v/a-b.mp4"
    assert HttpSource("https://h/{youtube_id}/raw.mkv").url_for("x") == "https://h/x/raw.mkv"


# --------------------------------------------------------------------------- trimming


@pytest.mark.parametrize("fps, start, first_index", [(25, 1.0, 25), (29.97, 1.0, 30), (30, 2.0, 60)])
def test_trim_starts_at_time_start_and_lasts_the_segment(tmp_path, fps, start, first_index):
    raw = write_indexed(tmp_path / "raw.mp4", 4.0, fps, burst_at=start + 0.5)
    clip = tmp_path / "clip.mp4"
    info = trim_clip(raw, clip, start, start + 1.5).info
    n = int(round(1.5 * float(Fraction(fps).limit_denominator(1001))))
    # The first frame is the first one shown at or after time_start; none is lost or repeated.
    assert decoded_indices(clip) == list(range(first_index, first_index + n))
    assert info.duration == pytest.approx(1.5, abs=0.04)
    assert info.fps == pytest.approx(float(fps), abs=0.01)
    assert (info.width, info.height, info.has_audio, info.sample_rate, info.channels) == (128, 32, True, 48000, 2)
    # The sound event 0.5 s after time_start in the source is 0.5 s into the clip.
    assert burst_time(clip) == pytest.approx(0.5, abs=0.005)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_trim_keeps_mono_and_rate_and_handles_silent_sources(tmp_path):
    mono = write_indexed(tmp_path / "mono.mp4", 3.0, 25, sample_rate=44100, channels=1)
    info = trim_clip(mono, tmp_path / "a.mp4", 1.0, 2.0).info
    assert (info.has_audio, info.sample_rate, info.channels) == (True, 44100, 1)
    assert burst_time(tmp_path / "a.mp4") == pytest.approx(0.5, abs=0.005)
    silent = write_indexed(tmp_path / "silent.mp4", 3.0, 25, sample_rate=None)
    info = trim_clip(silent, tmp_path / "b.mp4", 1.0, 2.0).info
    assert not info.has_audio and decoded_indices(tmp_path / "b.mp4")[0] == 25


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_trim_applies_a_display_rotation_to_the_pixels(tmp_path, degrees):
    raw = tmp_path / "phone.mp4"
    write_video(raw, [index_frame(i) for i in range(50)], 25, rotation=degrees)
    info = trim_clip(raw, tmp_path / "clip.mp4", 1.0, 1.4).info
    with av.open(os.fspath(tmp_path / "clip.mp4")) as c:
        frames = list(c.decode(video=0))
    assert frames[0].rotation == 0
    assert (info.height, info.width) == np.rot90(index_frame(0), degrees // 90).shape[:2]
    upright = [np.rot90(f.to_ndarray(format="rgb24"), -(degrees // 90)) for f in frames]
    assert [read_index(image) for image in upright] == list(range(25, 35))


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_trim_counts_time_from_the_container_start(tmp_path, ext):
    """Video that starts 0.5 s after the audio: times count from the file's start for both."""
    raw = tmp_path / f"late.{ext}"
    audio = np.zeros((1, 3 * 48000), np.float32)
    audio[:, int(1.5 * 48000) : int(1.55 * 48000)] = 0.8
    write_video(raw, [index_frame(i) for i in range(50)], 25, audio=audio,
                timestamps=[0.5 + i / 25 for i in range(50)])  # frame i shows at 0.5 + i/25 s
    trim_clip(raw, tmp_path / "a.mp4", 1.0, 2.0)
    assert decoded_indices(tmp_path / "a.mp4")[:3] == [13, 14, 15]  # 1.02 s is the first at or after 1 s
    # The clip starts at that frame, sound included: the burst at 1.5 s plays with frame 25,
    # the clip's frame 12, at 0.48 s.
    assert burst_time(tmp_path / "a.mp4") == pytest.approx(0.48, abs=0.005)
    trim_clip(raw, tmp_path / "b.mp4", 2.0, 2.4)  # the video runs to 2.5 s
    assert decoded_indices(tmp_path / "b.mp4") == list(range(38, 48))


def test_trim_past_the_end(tmp_path):
    raw = write_indexed(tmp_path / "raw.mp4", 2.0, 25)
    clip = trim_clip(raw, tmp_path / "short.mp4", 1.0, 2.8, TrimSettings(min_fraction=0.5))  # 1.0 of 1.8 s exists
    assert clip.info.duration == pytest.approx(1.0, abs=0.04)
    assert decoded_indices(tmp_path / "short.mp4") == list(range(25, 50))
    for start, end in [(1.5, 3.5), (2.0, 4.0), (7.0, 9.0)]:
        with pytest.raises(MediaError) as err:
            trim_clip(raw, tmp_path / "none.mp4", start, end, TrimSettings(min_fraction=0.5))
        assert err.value.reason == "segment_out_of_range"
    assert not (tmp_path / "none.mp4").exists()


# --------------------------------------------------------------------------- one video's clips


def test_download_video_clips_outcomes(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_indexed(videos / "good.mp4", 3.0, 25)
    (videos / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    write_audio_only(videos / "audio.m4a")
    write_video(videos / "still.nut", [index_frame(0)], 25)  # one frame, no duration
    source, cfg = LocalSource(videos), settings(tmp_path)
    segs = [Segment("good", 0, 1, "train", "a"), Segment("good", 1, 2, "train", "a"), Segment("good", 2.5, 9, "train", "a")]

    outcomes = download_video_clips("good", segs, source, cfg)
    assert [(o.status, o.reason) for o in outcomes] == [
        ("downloaded", ""), ("downloaded", ""), ("failed", "segment_out_of_range")]
    assert decoded_indices(cfg.out_dir / "good_000001_000002.mp4")[0] == 25
    assert (videos / "good.mp4").exists()  # a local source's file is never deleted

    # Done clips are probed and kept; a broken file under a clip's name is made again.
    kept = cfg.out_dir / "good_000000_000001.mp4"
    mtime = kept.stat().st_mtime_ns
    (cfg.out_dir / "good_000001_000002.mp4").write_bytes(b"garbage")
    outcomes = download_video_clips("good", segs[:2], source, cfg)
    assert [o.status for o in outcomes] == ["skipped_existing", "downloaded"]
    assert kept.stat().st_mtime_ns == mtime
    assert decoded_indices(cfg.out_dir / "good_000001_000002.mp4")[0] == 25

    for youtube_id, reason in [("corrupt", "corrupt_container"), ("audio", "no_video_stream"),
                               ("still", "zero_duration"), ("absent", "missing_source")]:
        [outcome] = download_video_clips(youtube_id, [Segment(youtube_id, 0, 1)], source, cfg)
        assert (outcome.status, outcome.reason) == ("failed", reason), youtube_id
    assert sorted(p.name for p in cfg.out_dir.iterdir()) == [  # each clip with its record
        "good_000000_000001.json", "good_000000_000001.mp4", "good_000001_000002.json", "good_000001_000002.mp4"]


def test_a_replaced_source_video_is_cut_again_and_a_copy_is_not(tmp_path):
    """A clip records the raw video it was cut from (name, size, its first and last bytes): a
    rerun cuts again the clips of a video replaced under the same name, keeps those of a video
    copied over (same bytes, a new mtime: staged on a node's scratch disk), and keeps a clip
    whose source is gone."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_indexed(videos / "v.mp4", 3.0, 25)
    cfg, segment = settings(tmp_path), Segment("v", 0, 1, "train", "a")
    clip = cfg.out_dir / "v_000000_000001.mp4"

    def status() -> str:
        [outcome] = download_video_clips("v", [segment], LocalSource(videos), cfg)
        return outcome.status

    assert status() == "downloaded"
    copy = videos / "copy.tmp"
    copy.write_bytes((videos / "v.mp4").read_bytes())
    os.replace(copy, videos / "v.mp4")
    os.utime(videos / "v.mp4", ns=(1, 1))
    assert status() == "skipped_existing"
    write_indexed(videos / "v.mp4", 3.0, 30)  # another video under the same name
    assert status() == "downloaded"
    assert av.open(str(clip)).streams.video[0].average_rate == 30
    (videos / "v.mp4").unlink()
    assert status() == "skipped_existing"


def test_an_unforeseen_error_fails_its_video_only(tmp_path):
    class FlakySource:
        downloads = True

        def fetch(self, youtube_id, cache_dir):
            raise RuntimeError("disk on fire")

        def identity(self, youtube_id):
            return None

    [outcome] = download_video_clips("x", [Segment("x", 0, 1)], FlakySource(), settings(tmp_path))
    assert (outcome.status, outcome.reason, outcome.detail) == ("failed", "unexpected_error",
                                                                "RuntimeError: disk on fire")


# --------------------------------------------------------------------------- http


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def raw_bytes(tmp_path_factory) -> bytes:
    return write_indexed(tmp_path_factory.mktemp("raw") / "raw.mp4", 3.0, 25).read_bytes()


def test_http_download_then_trim_then_drop_the_raw(server, raw_bytes, tmp_path):
    server.files["v1.mp4"] = raw_bytes
    source = open_source(server.url + "/", FAST)
    assert isinstance(source, HttpSource) and source.downloads
    [outcome] = download_video_clips("v1", [Segment("v1", 1, 2)], source, settings(tmp_path))
    assert outcome.status == "downloaded"
    assert decoded_indices(tmp_path / "clips" / "v1_000001_000002.mp4")[0] == 25
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.is_file()] == []  # raw removed
    [outcome] = download_video_clips("v1", [Segment("v1", 0, 1)], source, settings(tmp_path, keep_raw=True))
    assert (tmp_path / "cache" / "v1.mp4").read_bytes() == raw_bytes
    assert server.requests == [("v1.mp4", None), ("v1.mp4", None)]


def test_http_retries_503_with_backoff(server, raw_bytes, tmp_path):
    server.files["v.mp4"] = raw_bytes
    server.fail_first["v.mp4"] = 2
    path = HttpSource(server.url, FAST).fetch("v", tmp_path)
    assert path.read_bytes() == raw_bytes and len(server.requests) == 3

    server.fail_first["v.mp4"] = 5
    with pytest.raises(FetchError) as err:
        HttpSource(server.url, FetchSettings(retries=1, backoff_s=0.01)).fetch("v", tmp_path / "other")
    assert err.value.reason == "http_error" and "503" in err.value.detail and "after 2 tries" in err.value.detail


def test_http_resumes_a_cut_body_with_range(server, raw_bytes, tmp_path):
    server.files["v.mp4"] = raw_bytes
    server.cut_first["v.mp4"] = 2
    server.cut_bytes = 3000
    path = HttpSource(server.url, FAST).fetch("v", tmp_path)
    assert path.read_bytes() == raw_bytes
    assert server.requests == [("v.mp4", None), ("v.mp4", "bytes=3000-"), ("v.mp4", "bytes=6000-")]
    assert not (tmp_path / "v.mp4.part").exists()


def test_http_resumes_the_part_a_killed_run_left(server, raw_bytes, tmp_path):
    server.files["v.mp4"] = raw_bytes
    (tmp_path / "v.mp4.part").write_bytes(raw_bytes[:5000])
    assert HttpSource(server.url, FAST).fetch("v", tmp_path).read_bytes() == raw_bytes
    assert server.requests == [("v.mp4", "bytes=5000-")]
    # A part that is already whole: the server answers 416 and the part is taken as it is.
    (tmp_path / "w.mp4.part").write_bytes(raw_bytes)
    server.files["w.mp4"] = raw_bytes
    assert HttpSource(server.url, FAST).fetch("w", tmp_path).read_bytes() == raw_bytes


def test_two_workers_on_one_video_fetch_it_once(server, raw_bytes, tmp_path):
    """As when a job orphaned by a killed stage and the rerun meet: the per-id lock makes
    the second wait, then find the clip made, instead of appending to the same .part."""
    server.files["v.mp4"] = raw_bytes
    server.slow["v.mp4"] = 0.3
    source, cfg, results = HttpSource(server.url, FAST), settings(tmp_path), []
    workers = [threading.Thread(target=lambda: results.extend(
        download_video_clips("v", [Segment("v", 1, 2)], source, cfg))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(o.status for o in results) == ["downloaded", "skipped_existing"]
    assert server.requests == [("v.mp4", None)]


def test_http_failures_have_reasons(server, tmp_path):
    with pytest.raises(FetchError) as err:
        HttpSource(server.url, FAST).fetch("absent", tmp_path)
    assert err.value.reason == "http_error" and "404" in err.value.detail
    assert len(server.requests) == 1  # a 404 is not retried

    server.files["slow.mp4"] = b"x" * 10
    server.slow["slow.mp4"] = 1.0
    with pytest.raises(FetchError) as err:
        HttpSource(server.url, FetchSettings(retries=0, timeout_s=0.2)).fetch("slow", tmp_path)
    assert err.value.reason == "network_error" and "timed out" in err.value.detail

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(FetchError) as err:
        HttpSource(closed, FetchSettings(retries=1, backoff_s=0.01)).fetch("v", tmp_path)
    assert err.value.reason == "network_error" and "refused" in err.value.detail.lower()


# --------------------------------------------------------------------------- youtube


def test_youtube_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "yt_dlp", None)  # import yt_dlp raises ImportError
    with pytest.raises(SourceUnavailable, match=r"yt-dlp is not installed.*pip install avsf\[youtube\]"):
        open_source("youtube")


class _DownloadError(Exception):
    pass


def fake_yt_dlp(monkeypatch, fetch) -> None:
    """yt-dlp's API as avsf calls it, without a network: ``fetch(video_id)`` gives the bytes
    the download writes (or raises _DownloadError, yt-dlp's)."""

    class YoutubeDL:
        def __init__(self, options):
            self.template = options["outtmpl"]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def extract_info(self, url, download):
            info = {"id": url.rsplit("=", 1)[1], "ext": "mp4"}
            Path(self.prepare_filename(info)).write_bytes(fetch(info["id"]))
            return info

        def prepare_filename(self, info):
            return self.template.replace("%(ext)s", info["ext"])

    fake = types.ModuleType("yt_dlp")
    fake.YoutubeDL, fake.utils = YoutubeDL, types.SimpleNamespace(DownloadError=_DownloadError)
    monkeypatch.setitem(sys.modules, "yt_dlp", fake)


def test_youtube_through_a_yt_dlp_stand_in(monkeypatch, tmp_path, raw_bytes):
    """The calls avsf makes of yt-dlp, against a stand-in with the same API."""

    def fetch(video: str) -> bytes:
        if video == "gone":
            raise _DownloadError("ERROR: [youtube] gone: Video unavailable. This video has been removed")
        if video == "offline":
            raise _DownloadError("ERROR: Unable to download webpage: <urlopen error [Errno -3]>")
        return raw_bytes

    fake_yt_dlp(monkeypatch, fetch)
    source = open_source("youtube", FAST)
    assert isinstance(source, YoutubeSource) and source.downloads
    segs = {yid: [Segment(yid, 1, 2)] for yid in ("ok", "gone", "offline")}
    results = {yid: download_video_clips(yid, s, source, settings(tmp_path))[0] for yid, s in segs.items()}
    assert results["ok"].status == "downloaded"
    assert results["gone"].reason == "youtube_unavailable"
    assert results["offline"].reason == "network_error"
    assert not (tmp_path / "cache" / "ok.mp4").exists()
    # With keep_raw, the download cache made a local source later keeps the clips cut from it.
    kept = settings(tmp_path / "kept", keep_raw=True)
    assert download_video_clips("ok", segs["ok"], source, kept)[0].status == "downloaded"
    cache = LocalSource(kept.raw_cache)
    assert download_video_clips("ok", segs["ok"], cache, kept)[0].status == "skipped_existing"


def test_youtube_lists_its_download_cache_once_whatever_the_number_of_videos(monkeypatch, tmp_path):
    """With download.keep_raw the cache holds every video fetched so far: one listing per
    source, not a glob per video (quadratic in a Kinetics-size cache)."""
    fetched = []
    fake_yt_dlp(monkeypatch, lambda video: fetched.append(video) or b"fetched")
    cache = tmp_path / "cache"
    (cache / ".locks").mkdir(parents=True)
    for i in range(40):
        (cache / f"v{i}.mp4").write_bytes(b"cached")
    (cache / "v7.webm").write_bytes(b"cached")  # mp4 preferred
    (cache / "v40.f18.mp4.part").write_bytes(b"x")  # yt-dlp's unfinished download: fetched again
    (cache / "v41.mp4.ytdl").write_bytes(b"x")
    listed = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listed.append(path) or scandir(path))
    source = open_source("youtube", FAST)
    assert source.fetch("v0", cache) == cache / "v0.mp4"
    (cache / "v5.mp4").unlink()  # trimmed and deleted by an earlier job since the listing
    got = [source.fetch(f"v{i}", cache) for i in range(1, 43)]
    assert got == [cache / f"v{i}.mp4" for i in range(1, 43)]
    assert fetched == ["v5", "v40", "v41", "v42"]  # the rest were in the cache
    assert (cache / "v5.mp4").read_bytes() == b"fetched"
    assert source.fetch("v42", cache) == cache / "v42.mp4" and fetched[-1] == "v42" and len(fetched) == 4
    (cache / "v43.mkv").write_bytes(b"another job's")  # fetched by another job since the listing
    assert source.fetch("v43", cache) == cache / "v43.mkv" and len(fetched) == 4
    assert len(listed) == 1  # the cache, once


# --------------------------------------------------------------------------- ledger


def test_ledger_write_read_append(tmp_path):
    path = tmp_path / "ledger" / "download.csv"
    assert read_ledger(path) == []
    write_ledger(path, [Failure("a_000001_000011", "download", "missing_source", "no a.<ext>\nin dir")])
    append_ledger(path, [Failure("m.csv:3", "download", "bad_manifest_row", 'quote " and, comma'),
                         Failure("b", "decode", "corrupt_container")])
    rows = read_ledger(path)
    assert path.read_text().splitlines()[0] == "id,stage,reason,detail"
    assert rows[0].detail == "no a.<ext> in dir"  # one line per row
    assert rows[1] == Failure("m.csv:3", "download", "bad_manifest_row", 'quote " and, comma')
    assert count_by_reason(rows) == {"bad_manifest_row": 1, "corrupt_container": 1, "missing_source": 1}
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a failure ledger"):
        read_ledger(tmp_path / "x.csv")
