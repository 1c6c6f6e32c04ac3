"""The UCF101 and HMDB51 flavours of the demo world: classes new to the Kinetics demo, plans,
split files read back by the readers into the planned splits, and the AVI files."""

from __future__ import annotations

import pickle
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from avsf.data.decode import DecodeSettings, decode_clip
from avsf.data.demo.ucf_hmdb import (
    HMDB_CLASSES,
    TEST,
    TRAIN,
    UCF_CLASSES,
    UNUSED,
    HmdbWorldSpec,
    UcfWorldSpec,
    hmdb_cue_groups,
    plan_hmdb_world,
    plan_ucf_world,
    split_rows,
    ucf_cue_groups,
    ucf_test_groups,
    write_hmdb_annotations,
    write_hmdb_world,
    write_probe_video,
    write_ucf_annotations,
    write_ucf_world,
)
from avsf.data.demo.world import CLASSES as KINETICS_CLASSES
from avsf.data.demo.world import jump_pixels, placed_actor, render_frames
from avsf.data.ucf_hmdb import hmdb_classes, read_hmdb_splits, read_ucf_classes, read_ucf_split

REAL_UCF = Path("/work/shared/reference-annotations/ucf101")
UCF_SPEC, HMDB_SPEC = UcfWorldSpec(), HmdbWorldSpec()
TINY = dict(sizes=((48, 36),), video_seconds=(0.5, 0.7))
SPLITS = (1, 2, 3)


def look(cls) -> tuple:
    """What a class looks and sounds like, whatever its name."""
    c = getattr(cls, "look", cls)
    return c.shape, c.color, c.sound, c.pitch_hz, c.flicker_hz


def folded(name: str) -> str:
    return re.sub(r"[ _]", "", name).casefold()


@pytest.fixture(scope="module")
def ucf_plan():
    return plan_ucf_world(UCF_SPEC)


@pytest.fixture(scope="module")
def hmdb_plan():
    return plan_hmdb_world(HMDB_SPEC)


@pytest.fixture(scope="module")
def ucf_files(ucf_plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("ucf")
    write_ucf_annotations(out, ucf_plan)
    return out


@pytest.fixture(scope="module")
def hmdb_files(hmdb_plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("hmdb")
    write_hmdb_annotations(out, hmdb_plan)
    return out


# --------------------------------------------------------------------------- classes


def test_no_class_is_a_kinetics_demo_class_by_name_or_by_look():
    kinetics = {folded(c.name) for c in KINETICS_CLASSES}, {look(c) for c in KINETICS_CLASSES}
    ucf = {folded(c.name) for c in UCF_CLASSES}, {look(c) for c in UCF_CLASSES}
    hmdb = {folded(c.name) for c in HMDB_CLASSES}, {look(c) for c in HMDB_CLASSES}
    for names, looks in (ucf, hmdb):
        assert not names & kinetics[0] and not looks & kinetics[1]
    assert not ucf[0] & hmdb[0] and not ucf[1] & hmdb[1]  # the flavours share no look either
    for classes in (UCF_CLASSES, HMDB_CLASSES):  # within a flavour: look and movement tell each apart
        assert len({(look(c), c.movement) for c in classes}) == len(classes)


def test_names_are_in_each_datasets_style_and_order():
    assert all(re.fullmatch(r"([A-Z][a-z]+)+", c.name) for c in UCF_CLASSES)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)+", c.name) for c in HMDB_CLASSES)
    for classes in (UCF_CLASSES, HMDB_CLASSES):
        assert [c.name for c in classes] == sorted(c.name for c in classes)
    mismatched = [c for c in UCF_CLASSES if c.file_name]
    assert [(c.name, c.file_name) for c in mismatched] == [("HandstandPushups", "HandStandPushups")]


def test_every_cue_is_covered_and_each_pair_differs_in_its_cue_only():
    assert Counter(ucf_cue_groups().values()) == {"appearance": 2, "motion": 2, "sound": 2, "audiovisual": 2}
    assert Counter(hmdb_cue_groups().values()) == {"appearance": 1, "motion": 2, "sound": 2, "audiovisual": 1}
    for classes in (UCF_CLASSES, HMDB_CLASSES):
        motion = [c for c in classes if c.cue == "motion"]
        sound = [c for c in classes if c.cue == "sound"]
        picture = lambda c: (c.look.shape, c.look.color, c.look.pulse)
        assert len({picture(c) for c in motion}) == 1 and len({(c.movement, c.look.flicker_hz) for c in motion}) == 2
        assert len({(picture(c), c.movement, c.look.flicker_hz) for c in sound}) == 1
        assert len({(c.look.sound, c.look.pitch_hz) for c in sound}) == 2
        assert all(c.look.sound == "click" for c in classes if c.cue == "appearance")
    # UCF's flicker is new: 3.75 Hz, still constant at stride 16 of 30 fps (two periods)
    (flicker,) = [c.look.flicker_hz for c in UCF_CLASSES if c.look.flicker_hz]
    assert flicker == 3.75 and flicker * 16 / 30 == 2.0
    assert {c.movement for c in UCF_CLASSES + HMDB_CLASSES} == {"still", "rise", "fall", "sway"}


# --------------------------------------------------------------------------- plans


def test_plans_are_deterministic_and_seeded(ucf_plan, hmdb_plan):
    assert pickle.dumps(plan_ucf_world(UCF_SPEC)) == pickle.dumps(ucf_plan)
    assert pickle.dumps(plan_hmdb_world(HMDB_SPEC)) == pickle.dumps(hmdb_plan)
    other_ucf = plan_ucf_world(replace(UCF_SPEC, seed=1))
    assert [v.path for v in other_ucf] == [v.path for v in ucf_plan]  # UCF names are not random ...
    assert [v.scene for v in other_ucf] != [v.scene for v in ucf_plan]  # ... its clips are
    assert [v.path for v in plan_hmdb_world(replace(HMDB_SPEC, seed=1))] != [v.path for v in hmdb_plan]


def test_ucf_plan_has_every_group_and_one_actor_per_clip(ucf_plan):
    assert len(ucf_plan) == len(UCF_CLASSES) * 6 * 2
    assert ucf_plan[0].path == "BlowHorn/v_BlowHorn_g01_c01.avi"
    assert {(v.label, v.row.group) for v in ucf_plan} == {(c, g) for c in range(8) for g in range(1, 7)}
    for video in ucf_plan:
        (actor,) = video.scene.actors
        assert actor.cls == UCF_CLASSES[video.label].look and actor.movement == UCF_CLASSES[video.label].movement
        assert (actor.start, actor.end) == (0.0, video.scene.duration) and actor.events
        assert 3.0 <= video.scene.duration <= 4.0 and video.scene.fps == 25.0
    # a group is one long video: its clips share the background, but not the actor's place
    first, second = ucf_plan[0].scene, ucf_plan[1].scene
    assert (first.seed, first.tint) == (second.seed, second.tint) and first.actors[0].box != second.actors[0].box
    assert ucf_plan[2].scene.seed != first.seed


def test_ucf_splits_test_on_their_groups(ucf_plan):
    assert [ucf_test_groups(UCF_SPEC, k) for k in SPLITS] == [(1, 2), (3, 4), (5, 6)]
    for video in ucf_plan:
        assert [k for k in SPLITS if video.tags[k - 1] == TEST] == [(video.row.group + 1) // 2]
    spec = replace(UCF_SPEC, groups=4, test_groups=1)  # group 4 is always trained on, as UCF101's 22-25
    assert {v.tags for v in plan_ucf_world(spec) if v.row.group == 4} == {(TRAIN, TRAIN, TRAIN)}
    with pytest.raises(ValueError, match="3 splits"):
        plan_ucf_world(replace(UCF_SPEC, groups=5))


def test_hmdb_splits_are_three_partitions_with_unused_videos(hmdb_plan):
    assert len(hmdb_plan) == len(HMDB_CLASSES) * 12
    for label in range(len(HMDB_CLASSES)):
        tags = np.array([v.tags for v in hmdb_plan if v.label == label])
        for k in range(3):
            assert Counter(tags[:, k].tolist()) == {TRAIN: 7, TEST: 3, UNUSED: 2}
        assert len({tuple(tags[:, k]) for k in range(3)}) == 3  # three different partitions
    for video in hmdb_plan:
        cls = HMDB_CLASSES[video.label].name
        assert re.fullmatch(rf"[A-Z].+_{cls}_[fulh]_(cm|nm)_np1_(fr|ba|le|ri)_(goo|med|bad)_\d+", video.video_id)
        assert video.path == f"{cls}/{video.video_id}.avi"
    assert len({v.video_id for v in hmdb_plan}) == len(hmdb_plan)
    assert any("!" in v.video_id for v in hmdb_plan)
    with pytest.raises(ValueError, match="exceed"):
        plan_hmdb_world(replace(HMDB_SPEC, test_videos=6))
    with pytest.raises(ValueError, match="not 4"):
        split_rows(hmdb_plan, 4)


def test_moving_and_jumping_actors_stay_whole_in_the_frame(ucf_plan, hmdb_plan):
    """render_frames rolls a moving or jumping shape: past an edge it would wrap round to the other."""
    for plan, classes in ((ucf_plan, UCF_CLASSES), (hmdb_plan, HMDB_CLASSES)):
        for label, cls in enumerate(classes):
            if cls.movement == "still" and cls.look.pulse != "jump":
                continue
            for video in [v for v in plan if v.label == label][:2]:
                scene = replace(video.scene, width=80, height=60)  # the same places, fewer pixels
                background = next(render_frames(replace(scene, actors=())))
                (actor,) = scene.actors
                side = (actor.box[3] - actor.box[1]) * scene.height
                tall = side * (1.4 if cls.look.shape == "bar" else 1.0)
                for frame in render_frames(scene):
                    ys, xs = np.nonzero(np.any(frame != background, axis=2))
                    assert ys.max() - ys.min() <= tall + 1 and xs.max() - xs.min() <= side + 1


def test_placed_actors_have_room_for_their_whole_movement():
    """Over many placements (the plan's few rarely reach the edges): the shape's highest and
    lowest reach, jump and movement included, stays inside the frame."""
    width, height = 160, 120
    for cls in UCF_CLASSES + HMDB_CLASSES:
        for seed in range(200):
            rng = np.random.default_rng(seed)
            travel = 0.25 if cls.movement in ("rise", "fall") else 0.12 if cls.movement == "sway" else 0.0
            actor = placed_actor(rng, cls.look, 0.0, 3.0, width, height, 0.42, cls.movement, travel)
            x1, y1, x2, y2 = actor.box
            half = (y2 - y1) / 2 * height  # pixels; the box is square in pixels
            assert (x2 - x1) * width == pytest.approx(2 * half)
            reach = half * (1.4 if cls.look.shape == "bar" else 1.0)
            cy, cx = (y1 + y2) / 2 * height, (x1 + x2) / 2 * width
            top = cy - reach - (jump_pixels(height) if cls.look.pulse == "jump" else 0)
            top -= travel * height if cls.movement == "rise" else 0
            bottom = cy + reach + (travel * height if cls.movement == "fall" else 0)
            sway = travel * height if cls.movement == "sway" else 0
            assert top >= 0 and bottom <= height and cx - half - sway >= 0 and cx + half + sway <= width


# --------------------------------------------------------------------------- split files


@pytest.mark.parametrize("split", SPLITS)
def test_ucf_split_files_read_back_into_the_planned_split(ucf_plan, ucf_files, split):
    classes = read_ucf_classes(ucf_files / "classInd.txt")
    assert classes == [c.name for c in UCF_CLASSES]
    train = read_ucf_split(ucf_files / f"trainlist{split:02d}.txt", classes)
    test = read_ucf_split(ucf_files / f"testlist{split:02d}.txt", classes)
    assert train == [v.row for v in ucf_plan if v.tags[split - 1] == TRAIN]
    assert test == [v.row for v in ucf_plan if v.tags[split - 1] == TEST]
    assert {v.group for v in test} == set(ucf_test_groups(UCF_SPEC, split))
    assert not {v.video_id for v in train} & {v.video_id for v in test}
    assert len(train) + len(test) == len(ucf_plan)
    assert Counter(v.label for v in test) == {label: 4 for label in range(len(classes))}


def test_ucf_files_are_laid_out_as_the_real_ones(ucf_files):
    for name, with_label in (("classInd.txt", None), ("trainlist01.txt", True), ("testlist01.txt", False)):
        ours, real = (ucf_files / name).read_bytes(), (REAL_UCF / name.replace("list01", "list01.head200")).read_bytes()
        for data in (ours, real):
            assert data.endswith(b"\r\n") and data.count(b"\r\n") == data.count(b"\n")
            first = data.split(b"\r\n")[0].decode()
            if with_label is None:
                assert re.fullmatch(r"1 [A-Z][A-Za-z]+", first)
            else:
                assert re.fullmatch(r"([A-Za-z]+)/v_\1_g\d\d_c\d\d\.avi" + (r" \d+" if with_label else ""), first)
    assert (ucf_files / "trainlist01.txt").read_text().splitlines()[0] == "BlowHorn/v_BlowHorn_g03_c01.avi 1"


def test_the_case_mismatch_class_resolves(ucf_plan, ucf_files):
    classes = read_ucf_classes(ucf_files / "classInd.txt")
    label = classes.index("HandstandPushups")
    rows = [v for v in read_ucf_split(ucf_files / "testlist01.txt", classes) if v.label == label]
    assert [v.path for v in rows] == [f"HandstandPushups/v_HandStandPushups_g0{g}_c0{c}.avi"
                                      for g in (1, 2) for c in (1, 2)]
    assert "HandstandPushups/v_HandStandPushups_g03_c01.avi 3" in (ucf_files / "trainlist01.txt").read_text()


@pytest.mark.parametrize("split", SPLITS)
def test_hmdb_split_files_read_back_into_the_planned_split(hmdb_plan, hmdb_files, split):
    assert hmdb_classes(hmdb_files) == [c.name for c in HMDB_CLASSES]
    train, test = read_hmdb_splits(hmdb_files, split)
    assert train == [v.row for v in hmdb_plan if v.tags[split - 1] == TRAIN]
    assert test == [v.row for v in hmdb_plan if v.tags[split - 1] == TEST]
    assert not {v.video_id for v in train} & {v.video_id for v in test}
    lines = (hmdb_files / f"wave_hand_test_split{split}.txt").read_text().splitlines()
    assert len(lines) == 12 and Counter(line[-2] for line in lines) == {"1": 7, "2": 3, "0": 2}
    assert all(line.endswith(" ") and line.split()[0].endswith(".avi") for line in lines)


# --------------------------------------------------------------------------- videos


def test_written_worlds_decode_with_their_frames_and_sound(tmp_path):
    ucf_spec = UcfWorldSpec(groups=3, test_groups=1, clips_per_group=1, **TINY)
    hmdb_spec = HmdbWorldSpec(videos_per_class=2, train_videos=1, test_videos=1, **TINY)
    worlds = [(tmp_path / "ucf", write_ucf_world(ucf_spec, tmp_path / "ucf")),
              (tmp_path / "hmdb", write_hmdb_world(hmdb_spec, tmp_path / "hmdb"))]
    assert (tmp_path / "ucf/videos/HandstandPushups/v_HandStandPushups_g01_c01.avi").is_file()
    assert read_ucf_split(tmp_path / "ucf/testlist03.txt", [c.name for c in UCF_CLASSES])[0].group == 3
    assert len(read_hmdb_splits(tmp_path / "hmdb", 2)[1]) == len(HMDB_CLASSES)
    for out, plan in worlds:
        assert sorted(p.relative_to(out / "videos").as_posix() for p in (out / "videos").rglob("*")
                      if p.is_file()) == sorted(v.path for v in plan)
        for video in plan:
            scene = video.scene
            with av.open(str(out / "videos" / video.path)) as container:
                assert container.format.name == "avi"
                stream, audio = container.streams.video[0], container.streams.audio[0]
                assert (stream.codec_context.name, stream.width, stream.height) == ("mpeg4", 48, 36)
                assert audio.sample_rate == scene.sample_rate
                # AVI keeps no presentation times: frames read back in order from 0, none skipped
                assert [f.pts for f in container.decode(stream)] == list(range(scene.num_frames))
            with av.open(str(out / "videos" / video.path)) as container:
                samples = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
            assert samples.shape[1] == round(scene.duration * scene.sample_rate)
    # the pipeline's decoder reads one as a clip, the sound starting with the first frame
    video = worlds[0][1][0]
    clip = decode_clip(tmp_path / "ucf/videos" / video.path, DecodeSettings(fps=25.0, short_side=36))
    assert len(clip.frames) == video.scene.num_frames and clip.has_audio and clip.notes == {}


def test_the_same_video_is_the_same_bytes(tmp_path, ucf_plan):
    video = replace(ucf_plan[0], scene=replace(ucf_plan[0].scene, width=48, height=36, duration=0.5))
    first = write_probe_video(video, tmp_path / "a").read_bytes()
    assert write_probe_video(video, tmp_path / "b").read_bytes() == first
