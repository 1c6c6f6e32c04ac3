"""What a clip keeps of its source: damaged and cut files, the audio stream, alignment at a
fractional start, clips made with other settings, and the same bytes on any machine."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avsf.data.decode import DecodeSettings, decode_clip
from avsf.data.download import (
    ClipSettings,
    LocalSource,
    TrimSettings,
    download_video_clips,
    trim_clip,
)
from avsf.data.kinetics import Segment
from avsf.data.logmel import LogMelSettings, log_mel
from avsf.data.store import PCM_SCALE
from avsf.io.media import MediaError, probe, write_video
from test_download import burst_time, decoded_indices, index_frame, read_index


def noisy_frames(count: int, size=(96, 128), seed: int = 0) -> list[np.ndarray]:
    """Frames that compress poorly (so a file has bytes to damage), each with its index in
    its top 32 rows (read back by :func:`indices`)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        image[:32, :128] = index_frame(i)
        frames.append(image)
    return frames


def indices(path: Path) -> list[int]:
    with av.open(os.fspath(path)) as c:
        return [read_index(f.to_ndarray(format="rgb24")[:32, :128]) for f in c.decode(video=0)]


def rich_audio(seconds: float, rate: int = 48000, seed: int = 0) -> np.ndarray:
    """Stereo sound with content across the spectrum: a chirp, chords, noise bursts, clicks."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    left = 0.15 * np.sin(2 * np.pi * (200 * t + 900 * t**2))  # 200 Hz rising through the clip
    left += sum(0.05 * np.sin(2 * np.pi * f * t) for f in (330, 660, 1320, 2640))
    right = 0.1 * np.sin(2 * np.pi * 5000 * t) * (1 + np.sin(2 * np.pi * 1.5 * t))
    bursts = (np.sin(2 * np.pi * 2 * t) > 0.6) * rng.normal(0, 0.2, t.size)
    clicks = np.zeros_like(t)
    clicks[:: rate // 7] = 0.9
    return np.stack([left + bursts + clicks, right + bursts]).astype(np.float32)


def remux(src: Path, dst: Path, **options: str) -> Path:
    """``src``'s packets into ``dst`` unchanged, with muxer ``options`` (e.g. movflags=faststart)."""
    with av.open(os.fspath(src)) as i, av.open(os.fspath(dst), "w", options=options) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for packet in i.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            o.mux(packet)
    return dst


def outcome_of(tmp_path: Path, raw: Path, start: float, end: float, **trim) -> tuple:
    """download_video_clips on one segment of ``raw`` (a local source)."""
    settings = ClipSettings(tmp_path / "clips", tmp_path / "cache", trim=TrimSettings(**trim))
    segment = Segment(raw.stem, start, end, "train", "a")
    [outcome] = download_video_clips(raw.stem, [segment], LocalSource(raw.parent), settings)
    return outcome, settings.out_dir / f"{segment.clip_id}.mp4"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- cut and damaged files


def test_a_cut_faststart_file_is_judged_on_what_decodes(tmp_path):
    """A web video (index at the front) cut after about 1.5 s of its 5: it opens and claims 5 s."""
    whole = tmp_path / "whole.mp4"
    write_video(whole, noisy_frames(125), 25, audio=rich_audio(5.0))
    data = remux(whole, tmp_path / "fast.mp4", movflags="faststart").read_bytes()
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "cut.mp4").write_bytes(data[: len(data) * 3 // 10])
    assert probe(videos / "cut.mp4").duration == pytest.approx(5.0, abs=0.05)

    outcome, clip = outcome_of(tmp_path, videos / "cut.mp4", 0, 5)
    assert (outcome.status, outcome.reason) == ("failed", "too_little_decoded")
    assert "of the 5 s segment [0, 5] decode" in outcome.detail and not clip.exists()

    outcome, clip = outcome_of(tmp_path, videos / "cut.mp4", 0, 5, min_fraction=0.1)
    assert outcome.status == "downloaded"
    frames = indices(clip)
    assert 0 < len(frames) < 5 * 25 * 0.5 and frames == list(range(len(frames)))
    assert outcome.duration == pytest.approx(len(frames) / 25)
    assert outcome.notes["truncated"] == 1
    assert outcome.notes["cut_short_s"] == pytest.approx(5 - len(frames) / 25, abs=1e-3)


def test_a_damaged_region_loses_only_its_frames(tmp_path):
    """40 KB zeroed in the middle of a 10 s file: ffmpeg decodes on past the bad packets."""
    videos = tmp_path / "videos"
    videos.mkdir()
    raw = videos / "zeroed.mp4"
    write_video(raw, noisy_frames(250), 25, audio=rich_audio(10.0), keyint=50)  # a keyframe every 2 s
    data = bytearray(raw.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 40_000] = bytes(40_000)
    raw.write_bytes(bytes(data))

    outcome, clip = outcome_of(tmp_path, raw, 0, 10)
    assert outcome.status == "downloaded", outcome.detail
    assert outcome.notes["decode_errors"] >= 1 and 1 <= outcome.notes["missing_frames"] < 25
    assert outcome.duration == 10.0 and "cut_short_s" not in outcome.notes
    frames = indices(clip)
    assert len(frames) == 250 and frames[:100] == list(range(100)) and frames[-50:] == list(range(200, 250))

    # Most of it zeroed: too little decodes to make a clip.
    data[len(data) // 10 : len(data) * 9 // 10] = bytes(len(data) * 8 // 10)
    raw.write_bytes(bytes(data))
    outcome, _ = outcome_of(tmp_path, raw, 1, 9)
    assert (outcome.status, outcome.reason) == ("failed", "too_little_decoded")


def zero_video_packets(path: Path, begin: float, end: float) -> None:
    """Overwrite with zeros the video packets of ``path`` shown from ``begin`` to ``end`` s."""
    with av.open(os.fspath(path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(video=0)
                 if p.pts is not None and begin <= float(p.pts * p.time_base) < end]
    data = bytearray(path.read_bytes())
    for pos, size in spans:
        data[pos : pos + size] = bytes(size)
    path.write_bytes(bytes(data))


def test_damage_at_the_start_of_a_segment_does_not_move_the_clip(tmp_path):
    """The packets from 2.0 to 3.5 s zeroed (keyframes every 2 s): the first frame of [2, 6]
    that decodes is at 3.52 s. The clip still starts at 2 s, its frames and sound there, the
    frames before the first decoded one repeat it and are counted missing."""
    videos = tmp_path / "videos"
    videos.mkdir()
    raw = videos / "hole.mp4"
    rate = 48000
    audio = np.zeros((2, 8 * rate), np.float32)
    audio[:, 5 * rate : int(5.05 * rate)] = 0.8  # a bang at 5 s: 3 s into the clip
    write_video(raw, noisy_frames(200), 25, audio=audio, sample_rate=rate, keyint=50)
    zero_video_packets(raw, 2.0, 3.5)

    outcome, clip = outcome_of(tmp_path, raw, 2, 6)
    assert outcome.status == "downloaded", outcome.detail
    assert outcome.duration == 4.0 and outcome.notes["decode_errors"] >= 1
    assert 35 <= outcome.notes["missing_frames"] <= 40  # 2.0-3.5 s, less the 1.5 periods a neighbour may fill
    frames = indices(clip)
    assert len(frames) == 100
    assert frames[50:] == list(range(100, 150))  # from the keyframe at 4 s: source frame 50 + k
    assert len(set(frames[:35])) == 1  # the first decoded frame, repeated
    assert burst_time(clip) == pytest.approx(3.0, abs=0.005)

    # Zeroed to 5 s: a quarter of [2, 6] decodes, too little, although 3 s of video follow.
    raw.unlink()
    write_video(raw, noisy_frames(200), 25, audio=audio, sample_rate=rate, keyint=50)
    zero_video_packets(raw, 2.0, 5.0)
    outcome, clip = outcome_of(tmp_path / "later", raw, 2, 6)
    assert (outcome.status, outcome.reason) == ("failed", "too_little_decoded"), outcome.notes
    assert "of the 4 s segment [2, 6] decode" in outcome.detail and not clip.exists()


def test_a_segment_past_the_end_of_its_video_is_noted(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "short.mp4", [index_frame(i) for i in range(132)], 25)  # 5.28 s
    outcome, clip = outcome_of(tmp_path, videos / "short.mp4", 0, 6)
    assert outcome.status == "downloaded"
    assert outcome.duration == pytest.approx(5.28) and probe(clip).duration == pytest.approx(5.28, abs=0.04)
    assert outcome.notes == {"cut_short_s": 0.72}


# --------------------------------------------------------------------------- audio


def logmel_of(audio: np.ndarray) -> np.ndarray:
    wave = torch.from_numpy(audio.astype(np.float32) / PCM_SCALE)
    return log_mel(wave, LogMelSettings(sample_rate=16000)).numpy()


def test_audio_is_copied_so_the_clip_sounds_as_the_source(tmp_path):
    """The source's AAC packets go into the clip as they are: the clip's log-mel is the
    source's (re-encoding differed by 0.18 on average)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    raw = videos / "rich.mp4"
    write_video(raw, [index_frame(i) for i in range(150)], 25, audio=rich_audio(6.0), sample_rate=48000)
    outcome, clip = outcome_of(tmp_path, raw, 2, 5)
    assert outcome.notes == {"audio_copied": "aac"}
    with av.open(os.fspath(clip)) as c:
        assert c.streams.audio[0].codec_context.name == "aac" and c.streams.audio[0].channels == 2
        copied = [bytes(p) for p in c.demux(audio=0) if p.size]
    with av.open(os.fspath(raw)) as c:
        source = {bytes(p) for p in c.demux(audio=0) if p.size}
    assert copied and all(p in source for p in copied)  # packet for packet

    settings = DecodeSettings(short_side=32)
    ours = decode_clip(clip, settings).audio
    reference = decode_clip(raw, settings).audio[2 * 16000 :][: ours.size]
    difference = np.abs(logmel_of(ours) - logmel_of(reference))
    assert difference.mean() < 0.05


def test_audio_mp4_cannot_hold_is_reencoded_at_the_set_bitrate(tmp_path):
    """PCM in Matroska (as screen recorders write it) cannot go into mp4: it becomes AAC, in sync."""
    videos = tmp_path / "videos"
    videos.mkdir()
    raw = videos / "screen.mkv"
    audio = np.random.default_rng(0).uniform(-0.1, 0.1, (2, 4 * 48000)).astype(np.float32)  # fills the bitrate
    audio[:, int(2.5 * 48000) : int(2.55 * 48000)] = 0.8
    with av.open(os.fspath(raw), "w") as c:
        video = c.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 128, 32, "yuv420p"
        pcm = c.add_stream("pcm_s16le", rate=48000, layout="stereo")
        for i in range(100):
            c.mux(video.encode(av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")))
        c.mux(video.encode(None))
        for start in range(0, audio.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray((audio[:, start : start + 1024].T * 32767).astype(np.int16).reshape(1, -1),
                                               format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            c.mux(pcm.encode(frame))
        c.mux(pcm.encode(None))
    outcome, clip = outcome_of(tmp_path, raw, 2, 3, audio_bitrate=96_000)
    assert outcome.status == "downloaded", outcome.detail
    assert outcome.notes == {"audio_reencoded": "pcm_s16le (mp4 cannot hold it): AAC 96 kb/s"}
    with av.open(os.fspath(clip)) as c:
        stream = c.streams.audio[0]
        assert (stream.codec_context.name, stream.codec_context.sample_rate) == ("aac", 48000)
        assert stream.bit_rate == pytest.approx(96_000, rel=0.25)
    assert burst_time(clip) == pytest.approx(0.5, abs=0.005)
    # download.audio = aac re-encodes even what mp4 could hold.
    outcome, _ = outcome_of(tmp_path / "aac", raw, 0, 1, audio="aac")
    assert outcome.notes["audio_reencoded"].startswith("pcm_s16le (download.audio is aac)")


# --------------------------------------------------------------------------- alignment and ids


def test_a_fractional_start_keeps_frames_and_sound_together(tmp_path):
    """1.5 s at 25 fps falls between frames (1.48, 1.52): the clip starts at the first frame
    shown from 1.5 s, and its sound starts there too, so a flash and its bang stay together."""
    raw = tmp_path / "flash.mp4"
    rate = 48000
    audio = np.zeros((1, 4 * rate), np.float32)
    audio[:, 2 * rate : int(2.04 * rate)] = 0.8  # with frame 50, shown from 2.0 s
    frames = [index_frame(i) for i in range(100)]
    frames[50] = np.full_like(frames[50], 255)
    write_video(raw, frames, 25, audio=audio, sample_rate=rate)
    trim_clip(raw, tmp_path / "clip.mp4", 1.5, 3.5)
    with av.open(os.fspath(tmp_path / "clip.mp4")) as c:
        images = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    flash = int(np.argmax([image.mean() for image in images]))
    assert flash == 12  # frame 50 is the 13th from frame 38 (1.52 s)
    assert burst_time(tmp_path / "clip.mp4") == pytest.approx(flash / 25, abs=0.003)


def test_rows_that_differ_in_a_fraction_are_different_clips(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "v.mp4", [index_frame(i) for i in range(100)], 25)
    settings = ClipSettings(tmp_path / "clips", tmp_path / "cache")
    segments = [Segment("v", 1, 3), Segment("v", 1.5, 3.5)]
    outcomes = download_video_clips("v", segments, LocalSource(videos), settings)
    assert [o.status for o in outcomes] == ["downloaded", "downloaded"]
    assert decoded_indices(settings.out_dir / "v_000001_000003.mp4")[0] == 25
    assert decoded_indices(settings.out_dir / "v_000001.5_000003.5.mp4")[0] == 38


# --------------------------------------------------------------------------- made again, or the same


def test_clips_made_with_other_settings_are_made_again(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "v.mp4", noisy_frames(50), 25, audio=rich_audio(2.0))
    segment = Segment("v", 0, 1)

    def run(**trim):
        settings = ClipSettings(tmp_path / "clips", tmp_path / "cache", trim=TrimSettings(**trim))
        [outcome] = download_video_clips("v", [segment], LocalSource(videos), settings)
        return outcome.status, sha(settings.out_dir / "v_000000_000001.mp4")

    status, first = run(crf=18)
    assert status == "downloaded"
    assert run(crf=18) == ("skipped_existing", first)
    status, other = run(crf=30)
    assert status == "downloaded" and other != first
    assert run(crf=30) == ("skipped_existing", other)
    assert run(crf=30, audio="aac")[0] == "downloaded"
    record = tmp_path / "clips" / "v_000000_000001.json"
    assert json.loads(record.read_text())["settings"]["audio"] == "aac"
    assert json.loads(record.read_text())["sha256"] == sha(tmp_path / "clips" / "v_000000_000001.mp4")
    record.unlink()  # a clip without its record (a clip made by older code) is made again
    assert run(crf=30, audio="aac")[0] == "downloaded"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to compare")
def test_a_clip_is_the_same_bytes_whatever_cores_the_process_may_use(tmp_path):
    """x264 picked its threads, and so its slices, from the cores it may use: a job pinned
    to one core (SLURM, taskset) wrote other bytes than one on the whole machine."""
    raw = tmp_path / "raw.mp4"
    write_video(raw, noisy_frames(20, size=(256, 340)), 25)
    cores = os.sched_getaffinity(0)
    try:
        trim_clip(raw, tmp_path / "all.mp4", 0, 0.6)
        os.sched_setaffinity(0, {min(cores)})
        trim_clip(raw, tmp_path / "one.mp4", 0, 0.6)
    finally:
        os.sched_setaffinity(0, cores)
    assert sha(tmp_path / "one.mp4") == sha(tmp_path / "all.mp4")


M_PERTURB = -6  # glibc's mallopt: fill each block malloc hands out with the given byte ^ 0xff


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's mallopt")
def test_concurrent_clips_are_the_same_bytes_whatever_the_heap_held(tmp_path):
    """Download's worker threads trim side by side, each decoding while others encode, so each
    encoder gets memory that other work left behind. x264's AVX-512 code read memory it had
    not written, and its bytes followed: 1-5 of 60 concurrent trims differed. Here more
    threads than cores trim while every block malloc hands out holds 0xfe (the garbage that
    changed x264's output), against a clip made before on a clean heap."""
    raw = tmp_path / "raw.mp4"
    write_video(raw, noisy_frames(40, size=(240, 320)), 25, audio=rich_audio(1.6))
    trim_clip(raw, tmp_path / "reference.mp4", 0.2, 1.4)
    threads = len(os.sched_getaffinity(0)) * 2 + 2
    libc = ctypes.CDLL(None)
    libc.mallopt(M_PERTURB, 1)
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda i: trim_clip(raw, tmp_path / f"clip{i}.mp4", 0.2, 1.4), range(threads)))
    finally:
        libc.mallopt(M_PERTURB, 0)
    reference = sha(tmp_path / "reference.mp4")
    assert [sha(tmp_path / f"clip{i}.mp4") for i in range(threads)] == [reference] * threads


# --------------------------------------------------------------------------- ledger words


def test_an_empty_file_is_zero_duration_and_errors_are_words(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "junk.mp4").write_bytes(b"not a video " * 100)
    outcome, _ = outcome_of(tmp_path, videos / "empty.mp4", 0, 1)
    assert (outcome.reason, outcome.detail) == ("zero_duration", f"empty file (0 bytes): {videos / 'empty.mp4'}")
    outcome, _ = outcome_of(tmp_path, videos / "junk.mp4", 0, 1)
    assert outcome.reason == "corrupt_container"
    assert outcome.detail == f"Invalid data found when processing input: {videos / 'junk.mp4'}"
    with pytest.raises(MediaError, match="^zero_duration"):
        probe(videos / "empty.mp4")
