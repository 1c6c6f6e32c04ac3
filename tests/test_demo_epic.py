"""The EPIC-Kitchens flavour of the demo world: its plan, its files against the real ones, one video."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from avsf.data.demo.epic import (
    NOUNS,
    VERBS,
    EpicWorldSpec,
    epic_noun_cues,
    epic_verb_cues,
    plan_epic_world,
    write_epic_annotations,
    write_epic_video,
    write_epic_world,
)
from avsf.data.epic import ANNOTATION_COLUMNS, read_epic_annotations, read_epic_classes, read_epic_video_info
from avsf.data.demo.world import CLASS_BY_NAME, Actor, Scene, render_frames
from avsf.io.media import probe

REAL = Path("/work/shared/reference-annotations/epic-kitchens-100")
SPEC = EpicWorldSpec()
SHORT_TIMESTAMP = re.compile(r"^\d{2}:\d{2}:[0-5]\d\.\d{2}$")  # start/stop
LONG_TIMESTAMP = re.compile(r"^\d{2}:\d{2}:[0-5]\d\.\d{3}$")  # narration
FILES = ("EPIC_100_validation.csv", "EPIC_100_video_info.csv", "EPIC_100_verb_classes.csv",
         "EPIC_100_noun_classes.csv", "EPIC_100_tail_verbs.csv", "EPIC_100_tail_nouns.csv",
         "EPIC_100_unseen_participant_ids_validation.csv")


@pytest.fixture(scope="module")
def plan():
    return plan_epic_world(SPEC)


@pytest.fixture(scope="module")
def written(plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("epic")
    write_epic_annotations(out, plan)
    return out


def seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_unseen_participant_is_in_validation_only(plan):
    by_split = {split: {v.participant_id for v in plan if v.split == split} for split in ("train", "validation")}
    assert by_split == {"train": {"P01", "P02", "P03"}, "validation": {"P01", "P02", "P03", "P04"}}
    validation = Counter(v.participant_id for v in plan if v.split == "validation")
    assert validation == {"P01": 1, "P02": 1, "P03": 1, "P04": 2}
    assert [v.video_id for v in plan if v.participant_id == "P01"] == ["P01_01", "P01_02", "P01_03", "P01_04"]
    assert {v.scene.fps for v in plan} == {50.0, 60000 / 1001}
    # A participant films in one kitchen: one tint; the unseen one's is new.
    tints = {p: {v.scene.tint for v in plan if v.participant_id == p} for p in ("P01", "P04")}
    assert len(tints["P01"]) == 1 and tints["P01"] != tints["P04"]


def test_tail_classes_are_rare_and_the_common_ones_balanced(plan):
    for split, tail_count in (("train", SPEC.tail_train_segments), ("validation", SPEC.tail_validation_segments)):
        segments = [s for v in plan if v.split == split for s in v.segments]
        for counts, classes in ((Counter(s.verb.key for s in segments), VERBS),
                                (Counter(s.noun.key for s in segments), NOUNS)):
            tail = [c.key for c in classes if c.tail]
            common = [counts[c.key] for c in classes if not c.tail]
            assert [counts[k] for k in tail] == [tail_count]
            assert max(common) - min(common) <= 1 and min(common) >= 2 * tail_count
    assert [v.key for v in VERBS if v.tail] == ["shake"] and [n.key for n in NOUNS if n.tail] == ["sponge"]
    assert [v.id for v in VERBS] == list(range(len(VERBS))) and [n.id for n in NOUNS] == list(range(len(NOUNS)))


def test_segments_are_inside_their_video_in_order_and_apart(plan):
    for video in plan:
        assert len(video.segments) >= 6
        previous_stop = 0.0
        for s in video.segments:
            assert SPEC.segment_seconds[0] - 0.01 <= s.stop - s.start <= SPEC.segment_seconds[1] + 0.01
            assert previous_stop < s.start and s.stop <= SPEC.video_seconds
            previous_stop = s.stop
            assert (s.actor.start, s.actor.end) == (s.start, s.stop)
            assert all(s.start <= e < s.stop for e in s.actor.events) and len(s.actor.events) >= 2


def test_frame_numbers_are_the_frames_shown_at_the_timestamps(plan):
    for video in plan:
        fps = video.native_fps
        assert fps in (50.0, 60000 / 1001)
        for s in video.segments:
            for t, frame in ((s.start, s.start_frame), (s.stop, s.stop_frame)):
                assert (frame - 1) / fps <= t + 1e-9 < frame / fps
            assert 1 <= s.start_frame < s.stop_frame <= video.scene.num_frames


def test_verbs_show_in_motion_and_sound_nouns_share_one_look():
    cues = epic_noun_cues()
    sound = [n for n in NOUNS if cues[n.key] == "sound"]
    assert [n.key for n in sound] == ["kettle", "microwave", "blender"]
    assert len({(n.shape, n.color) for n in sound}) == 1  # the same grey box ...
    assert len({(n.sound, n.pitch_hz) for n in sound}) == 3  # ... told apart by ear only
    looks = [(n.shape, n.color) for n in NOUNS if cues[n.key] == "appearance"]
    assert len(set(looks)) == len(looks) == 5 and (sound[0].shape, sound[0].color) not in looks
    assert {n.sound for n in NOUNS if cues[n.key] == "appearance"} == {"click"}
    assert epic_verb_cues() == {"take": "movement", "put": "movement", "wash": "motion", "hold": "motion",
                                "shake": "movement"}


def centroid(frame: np.ndarray, background: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(np.abs(frame.astype(int) - background.astype(int)).sum(axis=2) > 30)
    return float(ys.mean()), float(xs.mean())


@pytest.mark.parametrize("movement, axis, sign", [("rise", 0, -1), ("fall", 0, 1), ("sway", 1, 0)])
def test_movements_move_the_actor_as_named(movement, axis, sign):
    still = Actor(CLASS_BY_NAME["red square"], (0.4, 0.4, 0.6, 0.6), 0.0, 2.0, (), movement=movement, travel=0.2)
    scene = Scene(96, 96, 30.0, 2.0, (still,), seed=3, sample_rate=None)
    background = next(render_frames(Scene(96, 96, 30.0, 0.1, (), seed=3, sample_rate=None)))
    track = np.array([centroid(f, background)[axis] for f in render_frames(scene)])
    if sign:  # rise / fall: evenly by 0.2 heights (19 px) over the interval, in one direction
        assert sign * (track[-1] - track[0]) == pytest.approx(0.2 * 96 * 59 / 60, abs=1.0)
        assert np.all(sign * np.diff(track) >= 0)
    else:  # sway: +-0.2 heights at 1.5 Hz, along x only
        assert track.max() - 48 == pytest.approx(19, abs=1) and 48 - track.min() == pytest.approx(19, abs=1)
        assert track[5] == pytest.approx(48 + 19, abs=1)  # a quarter period (1/6 s) in


def test_annotation_files_have_the_real_headers_and_formats(plan, written):
    for name in FILES:
        real, ours = (REAL / name).read_bytes(), (written / name).read_bytes()
        assert ours.splitlines()[0] == real.splitlines()[0], name
        # Line ends as the real file's: CRLF without a last one for the class lists, else LF.
        assert (b"\r\n" in ours, ours.endswith(b"\n")) == (b"\r\n" in real, real.endswith(b"\n")), name
    real_rows = list(csv.DictReader(io.StringIO((REAL / "EPIC_100_validation.csv").read_text())))[:200]
    for split, count in (("train", 9), ("validation", 5)):
        rows = list(csv.DictReader(io.StringIO((written / f"EPIC_100_{split}.csv").read_text())))
        assert len({r["video_id"] for r in rows}) == count
        assert [r["narration_id"] for r in rows] == sorted(r["narration_id"] for r in rows)
        for row in rows + real_rows:
            assert list(row) == list(ANNOTATION_COLUMNS)
            assert LONG_TIMESTAMP.match(row["narration_timestamp"])
            assert SHORT_TIMESTAMP.match(row["start_timestamp"]) and SHORT_TIMESTAMP.match(row["stop_timestamp"])
            assert row["narration_id"].startswith(row["video_id"] + "_")
            assert row["video_id"].startswith(row["participant_id"] + "_")
        for row in rows:
            assert row["all_nouns"] == f"['{row['noun']}']" and row["all_noun_classes"] == f"[{row['noun_class']}]"
            assert row["narration"] == f"{row['verb'].replace('-', ' ')} {row['noun']}"
            assert row["verb"] in VERBS[int(row["verb_class"])].instances
    text = (written / "EPIC_100_validation.csv").read_text()
    assert "P01_04_0,P01,P01_04," in text and '"' not in text  # one noun per segment: nothing to quote
    info = {r["video_id"]: r for r in csv.DictReader(io.StringIO((written / "EPIC_100_video_info.csv").read_text()))}
    assert len(info) == len(plan) == 14
    video = plan[0]
    assert info[video.video_id] == {"video_id": video.video_id, "duration": repr(video.duration),
                                    "fps": repr(video.native_fps), "resolution": "128x96"}
    assert {r["fps"] for r in info.values()} == {"50.0", "59.94005994005994"}
    nouns = list(csv.DictReader(io.StringIO((written / "EPIC_100_noun_classes.csv").read_text())))
    assert nouns[1] == {"id": "1", "key": "plate", "instances": "['plate', 'dish']", "category": "crockery"}
    assert '"[\'take\', \'get\', \'grab\', \'pick-up\']"' in (written / "EPIC_100_verb_classes.csv").read_text()
    assert (written / "EPIC_100_tail_verbs.csv").read_text() == "verb\n4\n"
    assert (written / "EPIC_100_tail_nouns.csv").read_text() == "noun\n7\n"
    assert (written / "EPIC_100_unseen_participant_ids_validation.csv").read_text() == "participant_id\nP04\n"


def test_written_rows_agree_with_the_plan(plan, written):
    rows = {r["narration_id"]: r for r in csv.DictReader(io.StringIO((written / "EPIC_100_train.csv").read_text()))}
    video = next(v for v in plan if v.split == "train" and v.scene.fps != 50.0)
    for s in video.segments:
        row = rows[s.narration_id]
        assert seconds(row["start_timestamp"]) == pytest.approx(s.start, abs=1e-9)
        assert seconds(row["stop_timestamp"]) == pytest.approx(s.stop, abs=1e-9)
        assert int(row["start_frame"]) == int(s.start * 60000 / 1001) + 1
        assert (int(row["verb_class"]), int(row["noun_class"])) == (s.verb.id, s.noun.id)


def test_the_readers_read_the_world_back(plan, written):
    narrations = read_epic_annotations(written / "EPIC_100_validation.csv")
    segments = {s.narration_id: (v, s) for v in plan for s in v.segments}
    assert len(narrations) == sum(len(v.segments) for v in plan if v.split == "validation")
    for n in narrations:
        video, s = segments[n.narration_id]
        assert (n.start_s, n.stop_s, n.start_frame, n.stop_frame) == (s.start, s.stop, s.start_frame, s.stop_frame)
        assert (n.verb_class, n.noun_class, n.narration_s) == (s.verb.id, s.noun.id, s.narration_time)
    assert read_epic_classes(written / "EPIC_100_noun_classes.csv") == [n.key for n in NOUNS]
    info = read_epic_video_info(written / "EPIC_100_video_info.csv")
    assert info[plan[-1].video_id].duration == plan[-1].scene.num_frames / plan[-1].native_fps


def test_plan_is_deterministic_and_seeded(plan):
    assert plan_epic_world(SPEC) == plan
    other = plan_epic_world(replace(SPEC, seed=1))
    assert [s.start for s in other[0].segments] != [s.start for s in plan[0].segments]


def test_a_short_world_renders_and_reads_back(tmp_path):
    spec = EpicWorldSpec(participants=2, train_videos_per_participant=1, validation_videos_per_participant=0,
                         unseen_validation_videos=1, video_seconds=3.0, sizes=((64, 48),))
    plan = write_epic_world(spec, tmp_path)
    assert [(v.video_id, v.split) for v in plan] == [("P01_01", "train"), ("P02_01", "validation")]
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["P01_01.MP4", "P02_01.MP4"]
    assert {p.name for p in tmp_path.glob("EPIC_100_*.csv")} == set(FILES) | {"EPIC_100_train.csv"}
    for video in plan:
        info = probe(tmp_path / "videos" / f"{video.video_id}.MP4")
        assert info.fps == pytest.approx(video.native_fps, abs=0.01)
        assert info.duration == pytest.approx(3.0, abs=0.05)
        assert (info.width, info.height, info.has_audio, info.sample_rate) == (64, 48, True, 48000)
    again = write_epic_video(plan[0], tmp_path / "again")
    assert again.read_bytes() == (tmp_path / "videos" / "P01_01.MP4").read_bytes()  # same spec, same bytes
