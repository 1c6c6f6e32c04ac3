"""The AVA flavour of the demo world: its plan, its files read back with avsf.data.ava's
readers, the rendered people where their boxes say, and movies at their native rates."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avsf.data.ava import (
    NO_ACTION,
    read_action_list,
    read_ava_detections,
    read_ava_ground_truth,
    read_excluded_timestamps,
)
from avsf.data.demo.ava import (
    ACTION_BY_ID,
    ACTION_BY_NAME,
    ACTIONS,
    EVALUATED_ACTION_LIST,
    FILE_NAMES,
    AvaWorldSpec,
    ava_cue_groups,
    ground_truth_rows,
    plan_ava_world,
    write_ava_annotations,
    write_ava_movie,
)
from avsf.data.demo.world import FLICKER_HZ, render_frames
from avsf.evaluate.ava import box_iou
from avsf.io.media import probe

REAL_ACTIONS = Path("/work/shared/reference-annotations/ava/ava_action_list_v2.1_for_activitynet_2018.pbtxt")
SPEC = AvaWorldSpec()
POSES = {a.id for a in ACTIONS if a.cue == "pose"}
SOUNDS = {a.id for a in ACTIONS if a.cue == "sound"}


@pytest.fixture(scope="module")
def plan():
    return plan_ava_world(SPEC)


@pytest.fixture(scope="module")
def written(plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("ava")
    write_ava_annotations(out, plan)
    return out


def people(plan, split=None):
    """(movie, keyframe, person) of every person on every keyframe."""
    return [(m, kf, p) for m in plan if split in (None, m.split) for kf in m.keyframes for p in kf.people]


def test_the_plan_is_deterministic_in_the_seed(plan):
    assert plan_ava_world(SPEC) == plan
    other = plan_ava_world(replace(SPEC, seed=1))
    assert [m.video_id for m in other] != [m.video_id for m in plan]


def test_movies_are_segments_of_films_at_their_native_rates(plan):
    assert Counter(m.split for m in plan) == {"train": 6, "val": 3}
    assert len({m.video_id for m in plan}) == 9 and all(len(m.video_id) == 11 for m in plan)
    for split in ("train", "val"):  # every split meets every native rate
        assert {m.native_fps for m in plan if m.split == split} == {Fraction(24000, 1001), 25, 30}
    assert {m.extension for m in plan} == {".mp4", ".mkv"}
    for m in plan:
        assert m.movie_start_s == 898.0 and m.scene.duration == 907 + 2.5 - 898  # 2.5 s past the last keyframe
        assert [kf.timestamp for kf in m.keyframes] == list(range(902, 908))
        assert m.file_time(902) == 4.0 and m.file_time(907) + 1.0 < m.scene.duration
        assert 2 <= len(m.tracks) <= 4
    with pytest.raises(ValueError, match="movie_start_s"):
        plan_ava_world(replace(SPEC, movie_start_s=901.5))


def test_every_person_has_one_pose_and_actions_as_the_rules_say(plan):
    for m, kf, p in people(plan):
        actions = set(p.action_ids)
        assert len(actions & POSES) == 1 and len(actions & SOUNDS) <= 1
        assert 14 not in actions or 12 in actions  # walking is standing
        assert list(p.action_ids) == sorted(actions)
        assert 0 <= p.box[0] < p.box[2] <= 1 and 0 <= p.box[1] < p.box[3] <= 1
    for m in plan:  # people stand in columns of their own: no two boxes overlap
        for kf in m.keyframes:
            boxes = [p.box for p in kf.people]
            overlap = box_iou(boxes, boxes) - np.eye(len(boxes))
            assert overlap.max() == 0
    several = Counter(len(p.action_ids) for _, _, p in people(plan))
    assert several[1] and several[2] and several[3]
    changed = sum(a.action_ids != b.action_ids for m in plan for a, b in zip(m.keyframes, m.keyframes[1:])
                  for a, b in zip(a.people, b.people))
    moved = sum(a.box != b.box for m in plan for a, b in zip(m.keyframes, m.keyframes[1:])
                for a, b in zip(a.people, b.people))
    assert changed >= 10 and moved >= 10
    train = Counter(a for _, _, p in people(plan, "train") for a in p.action_ids)
    val = Counter(a for _, _, p in people(plan, "val") for a in p.action_ids)
    assert set(train) == {a.id for a in ACTIONS}
    assert {a.id for a in ACTIONS if a.evaluated} <= set(val)
    assert train[2] < train[11] / 5 and train[21] < train[67] / 5  # crawl and clink glass are rare


def test_each_action_shows_in_the_look_the_motion_or_the_sound(plan):
    """The world actor behind each interval renders its actions: pose as the rectangle's
    aspect, walking (and crawling) as a drift, waving as a flicker, sounds as the events'."""
    aspects = {11: (0.9, 1.5), 12: (2.0, 3.0), 2: (0.3, 0.6)}  # height / width in pixels
    sounds = {None: ("click", 0.0), 79: ("tone", 300.0), 67: ("noise", 0.0), 21: ("tone", 2600.0)}
    for m in plan:
        for track in m.tracks:
            for actor, ids in zip(track.segments, track.action_ids):
                x1, y1, x2, y2 = actor.box
                aspect = (y2 - y1) * m.scene.height / ((x2 - x1) * m.scene.width)
                (pose,) = set(ids) & POSES
                assert aspects[pose][0] < aspect < aspects[pose][1]
                assert (actor.movement == "drift") == bool({14, 2} & set(ids))
                assert (actor.cls.flicker_hz == FLICKER_HZ) == (69 in ids)
                assert (actor.cls.sound, actor.cls.pitch_hz) == sounds[next(iter(set(ids) & SOUNDS), None)]
                assert actor.cls.shape == "rect" and actor.cls.cue == "motion"  # a steady person has its brightness
                assert all(actor.start <= e < actor.end for e in actor.events)
                assert not actor.events or set(ids) & SOUNDS  # only a person making a sound flashes
            for actor, ids in zip(track.segments, track.action_ids):
                for kf in m.keyframes:  # a flash (and its sound) in the clip around a keyframe it sounds at
                    t = m.file_time(kf.timestamp)
                    if set(ids) & SOUNDS and actor.start + 1.0 <= t < actor.end - 1.0:
                        assert any(abs(e - t) < 1.0 for e in actor.events)
            starts = [a.start for a in track.segments]
            assert starts[0] == 0 and [a.end for a in track.segments][:-1] == starts[1:]
    walking = [a for m in plan for t in m.tracks for a in t.segments if a.movement == "drift"]
    assert min(abs(a.velocity[0]) for a in walking) >= 0.02  # frame widths per second: plainly moving
    assert ava_cue_groups()["hand clap"] == "sound" and ava_cue_groups()["hand wave"] == "motion"


def test_ground_truth_reads_back_as_planned(plan, written):
    for split in ("train", "val"):
        movies = sorted((m for m in plan if m.split == split), key=lambda m: m.video_id)
        boxes, keyframes = read_ava_ground_truth(written / f"ava_{split}_v2.2.csv")
        assert boxes == [row for m in movies for row in ground_truth_rows(m)]
        labels = {}
        for b in boxes:
            labels.setdefault((b.video_id, b.timestamp, b.person_id.rstrip("_"), b.box), []).append(b.action_id)
        expected = {(m.video_id, kf.timestamp, p.person_id, p.box): list(p.action_ids)
                    for m in movies for kf in m.keyframes if not kf.excluded for p in kf.people}
        assert labels == expected
        excluded = read_excluded_timestamps(written / f"ava_{split}_excluded_timestamps_v2.2.csv")
        assert len(excluded) == (1 if split == "train" else 2)
        assert excluded == {(m.video_id, kf.timestamp) for m in movies for kf in m.keyframes if kf.excluded}
        assert not excluded & keyframes
        assert len(keyframes) == 6 * len(movies) - len(excluded)
    boxes, _ = read_ava_ground_truth(written / "ava_val_v2.2.csv")
    quirky = [b for b in boxes if b.person_id.endswith("_")]
    assert len(quirky) == 1 and not any(b.person_id.endswith("_") for b in read_ava_ground_truth(
        written / "ava_train_v2.2.csv")[0])


def test_the_evaluated_list_is_a_subset_with_avas_names(written):
    every = read_action_list(written / "ava_action_list_v2.2.pbtxt")
    evaluated = read_action_list(written / EVALUATED_ACTION_LIST)
    assert every == {a.id: a.name for a in ACTIONS} and len(every) == 8
    assert evaluated.items() <= every.items() and len(evaluated) == 6
    assert set(every) - set(evaluated) == {ACTION_BY_NAME["crawl"].id, ACTION_BY_NAME["clink glass"].id}
    if REAL_ACTIONS.is_file():  # evaluated here: evaluated in AVA, under the same name and id
        real = read_action_list(REAL_ACTIONS)
        assert all(real[i] == name for i, name in evaluated.items())
        assert not set(every) - set(evaluated) & set(real)
    assert (written / "ava_action_list_v2.2.pbtxt").read_text().count("label_type: PERSON_INTERACTION") == 3


def test_detections_look_like_a_detectors(plan, written):
    for split in ("train", "val"):
        movies = sorted((m for m in plan if m.split == split), key=lambda m: m.video_id)
        path = written / f"ava_{split}_predicted_boxes.csv"
        assert read_ava_detections(path) == [d.detection for m in movies for d in m.detections]
        assert all(line.split(",")[6] == "" for line in path.read_text().splitlines())  # no action column
        true_boxes = len(people(movies))
        kinds = Counter(d.kind for m in movies for d in m.detections)
        misses = sum(len(m.misses) for m in movies)
        share = lambda f: max(1, round(f * true_boxes))
        assert misses == share(SPEC.missed_fraction)
        assert kinds["low"] == share(SPEC.low_score_fraction)
        assert kinds["false"] == share(SPEC.false_positive_fraction)
        assert kinds["true"] + kinds["low"] + misses == true_boxes
        shifts, ious = [], []
        for m in movies:
            truth = {(kf.timestamp, p.person_id): p.box for kf in m.keyframes for p in kf.people}
            for d in m.detections:
                det = d.detection
                assert det.action_id == NO_ACTION and det.video_id == m.video_id
                if d.kind == "false":
                    others = [box for (ts, _), box in truth.items() if ts == det.timestamp]
                    assert box_iou([det.box], others).max() < 0.2
                    continue
                box = truth[(det.timestamp, d.person_id)]
                ious.append(float(box_iou([det.box], [box])[0, 0]))
                shifts.append(np.abs(np.subtract(det.box, box)).max())
                assert (0.85 <= det.score <= 1.0) if d.kind == "true" else (0.3 <= det.score < 0.8)
            found = {(d.detection.timestamp, d.person_id) for d in m.detections}
            assert not found & set(m.misses)
        assert min(ious) > 0.6 and np.mean(ious) > 0.85 and np.mean(shifts) > 0.003  # jittered, not far
        assert 0 < sum(i > 0.9 for i in ious) < len(ious)  # some pass the training's IoU > 0.9, some not
        scores = [d.detection.score for m in movies for d in m.detections if d.kind == "false"]
        assert sum(s < 0.8 for s in scores) > len(scores) / 2


def test_keyframe_boxes_are_where_the_rendered_people_are():
    spec = replace(SPEC, train_movies=2, val_movies=0, keyframes_per_movie=3, tail_s=0.5, movie_start_s=900.0)
    for movie in plan_ava_world(spec):
        scene = movie.scene
        background = next(render_frames(replace(scene, actors=())))
        frames = list(render_frames(scene))
        for kf in movie.keyframes:
            frame = frames[round(movie.file_time(kf.timestamp) * scene.fps)]
            changed = np.any(frame != background, axis=2)
            for person in kf.people:
                x1, y1, x2, y2 = np.multiply(person.box, [scene.width, scene.height] * 2)
                column = int(person.person_id)
                lo, hi = (scene.width * column) // len(kf.people), (scene.width * (column + 1)) // len(kf.people)
                ys, xs = np.nonzero(changed[:, lo:hi])
                assert abs(xs.min() + lo - x1) <= 1 and abs(xs.max() + lo + 1 - x2) <= 1
                assert abs(ys.min() - y1) <= 1 and abs(ys.max() + 1 - y2) <= 1
                assert len(xs) == (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)  # a filled rectangle
                inside = frame[ys.min() : ys.max() + 1, xs.min() + lo : xs.max() + lo + 1].reshape(-1, 3)
                assert np.all(inside == inside[0])  # one colour: the person's own, at a level the world gives
                actor = movie.tracks[column].segments[0]
                assert tuple(inside[0]) in person_colours(actor.cls.color, actor.brightness)


def person_colours(color, brightness) -> set[tuple[int, ...]]:
    """What render_frames may paint a person: steady (its brightness), flicker on or off,
    each maybe flashing (+90)."""
    colours = set()
    for level in (brightness, 1.0, 0.15):
        c = np.asarray(color, np.float32) * level
        colours |= {tuple(int(v) for v in c.astype(np.uint8)),
                    tuple(int(v) for v in np.minimum(c + 90.0, 255.0).astype(np.uint8))}
    return colours


def test_movies_decode_at_their_native_rates(tmp_path):
    spec = replace(SPEC, train_movies=3, val_movies=0, keyframes_per_movie=2, tail_s=0.5, movie_start_s=900.0)
    for movie in plan_ava_world(spec):
        path = write_ava_movie(movie, tmp_path)
        assert path.name == movie.file_name
        info = probe(path)
        assert info.fps == pytest.approx(float(movie.native_fps), abs=1e-9)
        assert (info.width, info.height) == (movie.scene.width, movie.scene.height)
        assert info.has_audio and info.sample_rate == movie.scene.sample_rate
        with av.open(str(path)) as container:
            times = [frame.time for frame in container.decode(video=0)]
        assert len(times) == movie.scene.num_frames
        assert times[-1] == pytest.approx((movie.scene.num_frames - 1) / movie.scene.fps, abs=1e-3)
    assert {m.native_fps for m in plan_ava_world(spec)} == {Fraction(24000, 1001), 25, 30}
    names = sorted(m.file_name for m in plan_ava_world(spec))
    write_ava_annotations(tmp_path, plan_ava_world(spec))
    assert (tmp_path / FILE_NAMES).read_text().splitlines() == names
    # The same bytes on every run, Matroska's too (its muxer's random UIDs are not written)
    assert ".mkv" in {m.extension for m in plan_ava_world(spec)}
    (tmp_path / "again").mkdir()
    for movie in plan_ava_world(spec):
        assert write_ava_movie(movie, tmp_path / "again").read_bytes() == (tmp_path / movie.file_name).read_bytes()


def test_action_ids_are_avas():
    assert ACTION_BY_ID[79].name == "talk to (e.g., self, a person, a group)"
    assert [a.id for a in ACTIONS] == sorted(a.id for a in ACTIONS)
