"""The demo world: what each class depends on, sync of sound and picture, variety, determinism."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import numpy as np
import pytest

from avsf.data.demo.kinetics import KineticsWorldSpec, manifest_lines, plan_world, write_raw_video
from avsf.data.demo.world import (
    CLASS_BY_NAME,
    CLASSES,
    EVENT_SECONDS,
    Actor,
    Scene,
    render_audio,
    jump_pixels,
    render_frames,
)
from avsf.io.media import MediaError, probe

SPEC = KineticsWorldSpec(
    train_videos_per_class=4,
    val_videos_per_class=2,
    sizes=((160, 120), (128, 96), (96, 128)),
    no_audio_fraction=0.15,
)


def scene_of(name: str, fps: float = 30.0, duration: float = 4.0, rate: int | None = 16000,
             events: tuple[float, ...] = (0.5, 1.3, 2.2, 3.1)) -> Scene:
    actor = Actor(CLASS_BY_NAME[name], (0.3, 0.3, 0.6, 0.7), 0.0, duration, events, brightness=0.6)
    return Scene(160, 120, fps, duration, (actor,), seed=7, sample_rate=rate)


def actor_level(scene: Scene) -> np.ndarray:
    """Mean brightness of the actor's centre, per frame."""
    frames = np.stack(list(render_frames(scene))).astype(np.float32)
    return frames[:, 55:65, 70:80].mean(axis=(1, 2, 3))


def test_flicker_aliases_at_stride_16_and_is_plain_at_stride_2():
    # No events, so only the flicker moves the actor's brightness.
    blinking = actor_level(scene_of("blinking light", events=()))
    steady = actor_level(scene_of("steady light", events=()))
    assert np.ptp(blinking[::16]) < 1.0  # Slow (1 frame in 16) sees a steady light
    assert np.ptp(blinking[::2]) > 100.0  # Fast (1 frame in 2) sees it blink
    alternation = np.abs(np.diff(blinking[::2]))
    assert alternation.min() > 100.0  # on, off, on, off ...
    assert np.ptp(steady[::2]) < 1.0


def test_sound_classes_differ_only_in_sound():
    beeping, humming = scene_of("beeping"), scene_of("humming")
    for a, b in zip(render_frames(beeping), render_frames(humming)):
        np.testing.assert_array_equal(a, b)
    for scene, pitch in ((beeping, 1200.0), (humming, 250.0)):
        audio = render_audio(scene)[0]
        spectrum = np.abs(np.fft.rfft(audio))
        peak_hz = np.argmax(spectrum) * scene.sample_rate / len(audio)
        assert abs(peak_hz - pitch) < 5.0


def test_sound_events_are_synchronised_with_visible_events():
    scene = scene_of("drumming", rate=16000)
    level = np.stack(list(render_frames(scene))).astype(np.float32)
    # A jump moves the bar: the per-frame change of the picture marks visual events.
    motion = np.r_[0.0, np.abs(np.diff(level, axis=0)).mean(axis=(1, 2, 3))]
    audio = render_audio(scene)[0]
    per_frame = len(audio) // scene.num_frames
    energy = (audio[: per_frame * scene.num_frames].reshape(scene.num_frames, -1) ** 2).mean(axis=1)

    def agreement(shift_frames: int) -> float:
        shifted = np.roll(energy, shift_frames)
        return float(np.corrcoef(motion, shifted)[0, 1])

    in_sync = agreement(0)
    assert in_sync > 0.5
    for shift_s in (0.5, -0.5, 1.0):  # a shift of 0.5 s or more is detectable
        assert agreement(int(shift_s * scene.fps)) < in_sync - 0.3


def test_event_pulses_last_event_seconds():
    scene = scene_of("red square", events=(1.0,))
    level = actor_level(scene)
    flashing = np.flatnonzero(level > level[0] + 20) / scene.fps
    assert flashing.min() == pytest.approx(1.0, abs=1 / scene.fps)
    assert flashing.max() == pytest.approx(1.0 + EVENT_SECONDS, abs=1 / scene.fps)


def test_world_varies_as_real_sources_do():
    videos = plan_world(SPEC)
    present = [v.scene for v in videos if v.scene is not None]
    assert len(videos) == len(CLASSES) * 6 + SPEC.missing_sources
    assert {s.fps for s in present} == {25.0, 29.97, 30.0}
    assert {s.sample_rate for s in present} == {None, 44100, 48000}
    assert {s.channels for s in present if s.sample_rate} == {1, 2}
    assert {(s.width, s.height) for s in present} == set(SPEC.sizes)
    assert sum(v.corrupt for v in videos) == 1
    assert sum(v.scene is None for v in videos) == 1
    for v in videos:
        assert v.time_end - v.time_start == SPEC.clip_seconds
        if v.scene is not None:
            assert 0 <= v.time_start and v.time_end <= v.scene.duration


def test_world_is_deterministic_and_seeded():
    assert plan_world(SPEC) == plan_world(SPEC)
    other = plan_world(replace(SPEC, seed=1))
    assert [v.youtube_id for v in other] != [v.youtube_id for v in plan_world(SPEC)]
    first = plan_world(SPEC)[3].scene
    np.testing.assert_array_equal(np.stack(list(render_frames(first))),
                                  np.stack(list(render_frames(first))))
    np.testing.assert_array_equal(render_audio(first), render_audio(first))


def test_manifests_are_in_the_real_kinetics_format():
    videos = plan_world(SPEC)
    text = "\n".join(manifest_lines(videos, "train")) + "\n"
    assert text.splitlines()[0] == "label,youtube_id,time_start,time_end,split,is_cc"
    assert '"red square",' in text  # labels with spaces are quoted, as in the real files
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == sum(v.split == "train" for v in videos)
    assert {r["label"] for r in rows} == {c.name for c in CLASSES}
    assert all(len(r["youtube_id"]) == 11 for r in rows)


def test_raw_videos_encode_as_planned_and_corrupt_ones_do_not_open(tmp_path):
    videos = plan_world(SPEC)
    good = next(v for v in videos if v.scene and v.scene.sample_rate and not v.corrupt)
    info = probe(write_raw_video(good, tmp_path))
    assert (info.width, info.height) == (good.scene.width, good.scene.height)
    assert info.fps == pytest.approx(good.scene.fps, abs=0.01)
    assert info.duration == pytest.approx(good.scene.duration, abs=0.1)
    assert (info.has_audio, info.sample_rate, info.channels) == (True, good.scene.sample_rate, good.scene.channels)

    silent = next(v for v in videos if v.scene and v.scene.sample_rate is None and not v.corrupt)
    assert probe(write_raw_video(silent, tmp_path)).has_audio is False

    corrupt = next(v for v in videos if v.corrupt)
    with pytest.raises(MediaError) as err:
        probe(write_raw_video(corrupt, tmp_path))
    assert err.value.reason == "corrupt_container"

    missing = next(v for v in videos if v.scene is None)
    assert write_raw_video(missing, tmp_path) is None
    assert not (tmp_path / f"{missing.youtube_id}.mp4").exists()
    assert not list(tmp_path.glob(".*"))  # no temporaries left behind


def test_light_from_above_shades_every_shape_top_bright_bottom_dark_and_moves_with_it():
    # A red square (appearance: full colour, no flicker) lit at 0.5: its top row is its colour
    # x 1.5 (clipped at 255), its bottom row x 0.5, linear between; the background is untouched.
    flat, lit = scene_of("red square", events=()), replace(scene_of("red square", events=()), light=0.5)
    flat_frame, lit_frame = next(render_frames(flat)), next(render_frames(lit))
    shape = np.any(flat_frame != next(render_frames(replace(flat, actors=()))), axis=2)
    rows = np.nonzero(shape.any(axis=1))[0]
    np.testing.assert_array_equal(lit_frame[~shape], flat_frame[~shape])
    top, bottom = lit_frame[rows[0]][shape[rows[0]]], lit_frame[rows[-1]][shape[rows[-1]]]
    assert (top == [255, 60, 60]).all() and (bottom == [110, 20, 20]).all()
    red = lit_frame[rows, :, 0][shape[rows]].reshape(len(rows), -1)[:, 0].astype(int)
    assert (np.diff(red) <= 0).all() and red[0] > red[-1]
    # The flavours that take it light every scene of theirs.
    from avsf.data.demo.ucf_hmdb import HmdbWorldSpec, UcfWorldSpec, plan_hmdb_world, plan_ucf_world

    assert {v.scene.light for v in plan_world(replace(SPEC, light=0.3)) if v.scene} == {0.3}
    assert {v.scene.light for v in plan_ucf_world(UcfWorldSpec(light=0.3))} == {0.3}
    assert {v.scene.light for v in plan_hmdb_world(HmdbWorldSpec(light=0.3))} == {0.3}
    # A jumping bar carries its shading up with it: its column is the resting one, lifted.
    bar = Actor(CLASS_BY_NAME["drumming"], (0.3, 0.3, 0.6, 0.7), 0.0, 1.0, (0.0,))
    scene = Scene(160, 120, 30.0, 1.0, (bar,), seed=7, light=0.5)
    frames = list(render_frames(scene))
    jumping, resting = frames[0][:, 72], frames[10][:, 72]  # the bar's middle column; its event is over at 10
    lift = jump_pixels(120)
    background = next(render_frames(replace(scene, actors=())))[:, 72]
    body = np.nonzero((resting != background).any(axis=1))[0]  # the bar's rows at rest
    np.testing.assert_array_equal(jumping[body - lift], resting[body])
    assert resting[body[0], 0] > resting[body[-1], 0]
