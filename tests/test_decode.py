"""decode_clip on videos written with PyAV: rates, sizes, audio, and every robustness case."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from avsf.data.decode import DecodeSettings, decode_clip, output_size
from avsf.data.jpeg import decode_jpeg
from avsf.io.media import MediaError
from clip_factory import ClipSpec, frame_index, write_audio_gap, write_clip, write_garbled

SMALL = DecodeSettings(fps=30.0, short_side=32, jpeg_quality=90, sample_rate=16000)


def decode(tmp_path: Path, spec: ClipSpec, settings: DecodeSettings = SMALL):
    return decode_clip(write_clip(tmp_path / f"{spec.name}.mp4", spec), settings)


def indices(clip) -> list[int]:
    return [frame_index(decode_jpeg(jpeg)) for jpeg in clip.frames]


def test_output_size_keeps_aspect_with_exact_short_side():
    assert output_size(340, 256, 128) == (170, 128)
    assert output_size(48, 64, 32) == (32, 43)
    assert output_size(3, 5, 32) == (32, 53)


@pytest.mark.parametrize("fps, expected", [
    (30.0, list(range(60))),
    # 25 -> 30 fps: output frame k shows the source frame nearest to k / 30 s (later on a tie).
    (25.0, [int(k * 25 / 30 + 0.5 + 1e-9) for k in range(60)]),
    # 60 -> 30 fps: every other source frame.
    (60.0, list(range(0, 120, 2))),
])
def test_frames_resampled_to_the_fixed_rate_by_timestamp(tmp_path, fps, expected):
    clip = decode(tmp_path, ClipSpec("rate", seconds=2.0, fps=fps, audio_seconds=0))
    assert clip.fps == 30.0
    assert clip.source_fps == pytest.approx(fps)
    assert len(clip.frames) == 60 and clip.duration == pytest.approx(2.0)
    assert indices(clip) == [k % 256 for k in expected]


def test_ntsc_rate_keeps_duration(tmp_path):
    clip = decode(tmp_path, ClipSpec("ntsc", seconds=2.0, fps=29.97, audio_seconds=0))
    assert len(clip.frames) == round(round(2.0 * 29.97) / 29.97 * 30)  # 60 source frames span 2.002 s
    assert indices(clip)[:30] == list(range(30))


def test_frames_resized_to_short_side_and_stored_as_jpeg(tmp_path):
    clip = decode(tmp_path, ClipSpec("size", size=(64, 48), audio_seconds=0))
    first = decode_jpeg(clip.frames[0])
    assert first.shape == (32, 43, 3) and (clip.height, clip.width) == (32, 43)
    assert clip.frames[0][:2] == b"\xff\xd8"  # JPEG start-of-image
    portrait = decode(tmp_path, ClipSpec("portrait", size=(48, 64), audio_seconds=0))
    assert (portrait.height, portrait.width) == (43, 32)


def test_audio_resampled_to_16k_mono_and_as_long_as_the_frames(tmp_path):
    clip = decode(tmp_path, ClipSpec("audio", seconds=2.0, channels=2, sample_rate=48000, tone_hz=1000.0))
    assert clip.has_audio and clip.audio.dtype == np.int16
    assert clip.audio.shape == (round(clip.duration * 16000),)
    spectrum = np.abs(np.fft.rfft(clip.audio[4000:20000].astype(np.float64)))
    assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(1000, abs=2)  # 1 Hz bins
    assert "audio_padded_s" not in clip.notes


def test_sound_lines_up_with_the_frame_it_belongs_to(tmp_path):
    clip = decode(tmp_path, ClipSpec("sync", seconds=3.0, flash_frames=(45, 46)))
    frames = [decode_jpeg(j).mean() for j in clip.frames]
    assert int(np.argmax(frames)) == 45
    energy = np.convolve(clip.audio.astype(np.float64) ** 2, np.ones(160), mode="same")
    # The burst is played from 1.5 s to 1.5667 s; its energy peaks inside that window.
    assert 1.5 <= np.argmax(energy) / 16000 <= 1.5 + 2 / 30


# --------------------------------------------------------------------------- robustness (issue 3, section 5)


def test_corrupt_file_is_a_media_error(tmp_path):
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(b"not a video at all " * 50)
    with pytest.raises(MediaError) as info:
        decode_clip(path, SMALL)
    assert info.value.reason == "corrupt_container"


def test_truncated_file_is_a_media_error_or_a_shorter_clip(tmp_path):
    good = write_clip(tmp_path / "good.mp4", ClipSpec("good", seconds=2.0))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    try:
        clip = decode_clip(cut, SMALL)
    except MediaError as exc:
        assert exc.reason in ("corrupt_container", "no_frames")
    else:
        assert 0 < len(clip.frames) <= 60


def test_zero_decodable_frames_is_no_frames(tmp_path):
    template = write_clip(tmp_path / "template.mp4", ClipSpec("t", seconds=1.0, audio_seconds=0))
    with pytest.raises(MediaError) as info:
        decode_clip(write_garbled(tmp_path / "garbled.mp4", template), SMALL)
    assert info.value.reason == "no_frames"


def test_no_audio_stream(tmp_path):
    clip = decode(tmp_path, ClipSpec("silent", audio_seconds=0))
    assert not clip.has_audio and clip.audio is None and len(clip.frames) == 60


def test_audio_shorter_than_video_is_padded_and_recorded(tmp_path):
    clip = decode(tmp_path, ClipSpec("short", seconds=2.0, audio_seconds=1.0, tone_hz=1000.0))
    assert clip.audio.shape == (32000,)
    assert clip.notes["audio_padded_s"] == pytest.approx(1.0, abs=0.08)  # AAC frames round it
    assert np.abs(clip.audio[:15000]).max() > 1000  # the tone
    assert np.abs(clip.audio[17500:]).max() == 0  # the padding


def test_audio_timestamp_gap_becomes_silence_and_later_sound_stays_in_sync(tmp_path):
    template = write_clip(tmp_path / "whole.mp4", ClipSpec("whole", seconds=2.0, tone_hz=1000.0))
    gapped = write_audio_gap(tmp_path / "gap.mp4", template, at=0.5, gap=0.5)
    clip = decode_clip(gapped, SMALL)
    assert len(clip.frames) == 60 and clip.audio.shape == (32000,)
    loud = np.abs(clip.audio.astype(np.int32)).reshape(20, 1600).max(axis=1) > 1000  # per 0.1 s
    # Packets from 0.5 s on were moved 0.5 s later (AAC packets cut the gap at ~0.51 s).
    assert loud[:5].all() and not loud[6:10].any() and loud[11:].all()
    assert clip.notes["audio_gap_s"] == pytest.approx(0.5, abs=0.001)


def test_audio_timestamp_jump_of_minutes_is_not_filled(tmp_path):
    template = write_clip(tmp_path / "whole.mp4", ClipSpec("whole", seconds=2.0, tone_hz=1000.0))
    jumped = write_audio_gap(tmp_path / "jump.mp4", template, at=1.0, gap=120.0)
    clip = decode_clip(jumped, SMALL)
    assert clip.audio.shape == (32000,)
    assert clip.notes["audio_timestamp_jumps"] == 1 and "audio_gap_s" not in clip.notes
    assert np.abs(clip.audio[:31000]).reshape(-1, 1000).max(axis=1).min() > 1000  # tone throughout


def test_variable_frame_rate_comes_out_evenly_spaced(tmp_path):
    times = [0.0, 0.03, 0.05, 0.2, 0.21, 0.5, 0.9, 1.0]
    clip = decode(tmp_path, ClipSpec("vfr", seconds=1.0, timestamps=times, audio_seconds=0),
                  DecodeSettings(fps=10.0, short_side=32))
    # Output frame k at k / 10 s shows the nearest source frame (the later one on a tie, as at 0.7 s).
    exact = [Fraction(str(t)) for t in times]
    nearest = [min(range(len(times)), key=lambda i: (abs(exact[i] - Fraction(k, 10)), -i)) for k in range(12)]
    assert nearest == [0, 2, 3, 4, 5, 5, 5, 6, 6, 6, 7, 7]
    assert indices(clip) == nearest  # the last frame is shown for its own duration (0.15 s)
    assert clip.notes["variable_frame_rate"] == 1


@pytest.mark.parametrize("size", [(33, 17), (17, 33), (3, 5), (1, 1)])
def test_odd_and_tiny_sizes(tmp_path, size):
    clip = decode(tmp_path, ClipSpec("odd", seconds=0.5, size=size, pix_fmt="yuv444p", audio_seconds=0))
    width, height = size
    expected = output_size(width, height, 32)
    assert (clip.width, clip.height) == expected
    assert decode_jpeg(clip.frames[0]).shape == (expected[1], expected[0], 3)
    assert len(clip.frames) == 15


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    spec = ClipSpec(f"rot{rotation % 360}", seconds=0.5, size=(64, 48), audio_seconds=0, rotation=rotation)
    clip = decode(tmp_path, spec)
    image = decode_jpeg(clip.frames[0]).mean(axis=-1)
    # Frame 0 is dark in its stored top half (all stripes 0) and grey below. A display
    # rotation of 90 degrees counter-clockwise puts that half on the left, -90 on the
    # right, 180 at the bottom.
    rows, cols = image.shape[0] // 2, image.shape[1] // 2
    halves = {"top": image[:rows].mean(), "bottom": image[rows:].mean(),
              "left": image[:, :cols].mean(), "right": image[:, cols:].mean()}
    assert min(halves, key=halves.get) == {90: "left", -90: "right", 180: "bottom"}[rotation]
    assert (clip.height, clip.width) == ((43, 32) if rotation % 180 else (32, 43))
    assert clip.notes["rotation"] % 360 == rotation % 360
