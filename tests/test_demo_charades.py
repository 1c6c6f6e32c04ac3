"""The Charades flavour of the demo world: its plan, its files against the real ones, one video."""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from avsf.data.charades import CHARADES_COLUMNS, read_charades, read_charades_classes
from avsf.data.demo.charades import (
    CLASSES,
    CharadesWorldSpec,
    charades_cue_groups,
    plan_charades_world,
    write_charades_annotations,
    write_charades_world,
)
from avsf.data.demo.world import render_frames
from avsf.io.media import probe

REAL = Path("/work/shared/reference-annotations/charades")
SPEC = CharadesWorldSpec()
ACTIONS = re.compile(r"^c\d{3} \d+\.\d{2} \d+\.\d{2}(;c\d{3} \d+\.\d{2} \d+\.\d{2})*$")
LENGTH = re.compile(r"^\d+\.\d{2}$")
CLASS_LINE = re.compile(r"^c\d{3} [A-Z][a-z].*$")


@pytest.fixture(scope="module")
def plan():
    return plan_charades_world(SPEC)


@pytest.fixture(scope="module")
def written(plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("charades")
    write_charades_annotations(out, plan)
    return out


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_videos_hold_two_to_four_overlapping_actions_of_distinct_classes(plan):
    assert Counter(v.split for v in plan) == {"train": 12, "test": 8}
    for video in plan:
        if not video.actions:
            continue
        assert 2 <= len(video.actions) <= 4
        assert len({a.class_index for a in video.actions}) == len(video.actions)
        spans = [(a.start, a.end) for a in video.actions]
        assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])
        assert all(0 <= s < e <= video.length for s, e in spans)
        assert SPEC.video_seconds[0] <= video.length <= SPEC.video_seconds[1]
        # Each action is one actor, shown and sounding during its interval only.
        for action, actor in zip(video.actions, video.scene.actors):
            assert actor.cls == CLASSES[action.class_index].look
            assert (actor.start, actor.end) == (action.start, action.end)
            assert actor.events and all(action.start <= e < action.end for e in actor.events)
    assert {len(v.actions) for v in plan} == {0, 2, 3, 4}
    assert {a.class_index for v in plan for a in v.actions} == set(range(len(CLASSES)))


def test_empty_videos_have_nothing_in_them(plan):
    empty = [v for v in plan if not v.actions]
    assert [(v.split, v.scene.actors) for v in empty] == [("train", ()), ("test", ())]


def test_actors_of_one_video_never_cover_one_another(plan):
    for video in plan:
        h, w = video.scene.height, video.scene.width
        masks = []
        for actor in video.scene.actors:
            only = replace(video.scene, actors=(replace(actor, start=0.0, end=1.0, events=()),), duration=0.1)
            background = next(render_frames(replace(only, actors=())))
            frame = next(render_frames(only))
            masks.append(np.any(frame != background, axis=2))
            x1, y1, x2, y2 = actor.box
            quarter = (int((x1 + x2) > 1), int((y1 + y2) > 1))  # which quarter its centre is in
            ys, xs = np.nonzero(masks[-1])
            # The shape, and the shape lifted by a jump (a twelfth of the height), stay in the quarter.
            assert ys.min() - h // 12 >= quarter[1] * h // 2 and ys.max() < (quarter[1] + 1) * h // 2 + 1
            assert xs.min() >= quarter[0] * w // 2 and xs.max() < (quarter[0] + 1) * w // 2 + 1
        assert not np.any(np.sum(masks, axis=0) > 1)


def test_classes_cover_every_cue_twice_under_charades_names():
    assert Counter(charades_cue_groups().values()) == {"appearance": 2, "motion": 2, "sound": 2, "audiovisual": 2}
    assert [c.code for c in CLASSES] == [f"c{i:03d}" for i in range(8)]


def test_csv_files_have_the_real_header_quoting_and_formats(plan, written):
    real_train = (REAL / "Charades_v1_train.head201.csv").read_bytes()
    for split, count in (("train", 12), ("test", 8)):
        raw = (written / f"Charades_v1_{split}.csv").read_bytes()
        assert raw.splitlines()[0] == real_train.splitlines()[0]
        assert raw.count(b"\r\n") == count + 1 and raw.endswith(b"\r\n")  # CRLF, as the real files
        rows = rows_of(written / f"Charades_v1_{split}.csv")
        assert len(rows) == count and all(list(r) == list(CHARADES_COLUMNS) for r in rows)
        for row in rows:
            assert re.fullmatch(r"[A-Z0-9]{5}", row["id"]) and re.fullmatch(r"[A-Z0-9]{4}", row["subject"])
            assert row["actions"] == "" or ACTIONS.match(row["actions"])
            assert LENGTH.match(row["length"]) and row["verified"] in ("Yes", "No")
            assert row["quality"] in ("", "4", "5", "6", "7")
        assert sum(r["actions"] == "" for r in rows) == 1
    for row in rows_of(REAL / "Charades_v1_train.head201.csv"):  # the patterns are the real ones'
        assert (row["actions"] == "" or ACTIONS.match(row["actions"])) and LENGTH.match(row["length"])
    video = next(v for v in plan if len(v.actions) == 3)
    row = next(r for r in rows_of(written / f"Charades_v1_{video.split}.csv") if r["id"] == video.id)
    first = CLASSES[min(video.actions, key=lambda a: a.start).class_index]
    assert row["script"].startswith(f"A person {first.phrase}, then ")
    assert f'"{row["script"]}"' in (written / f"Charades_v1_{video.split}.csv").read_text()  # commas: quoted
    assert row["actions"] == ";".join(f"c{a.class_index:03d} {a.start:.2f} {a.end:.2f}" for a in video.actions)
    assert row["objects"] == ";".join(sorted({CLASSES[a.class_index].obj for a in video.actions}))
    assert float(row["length"]) == video.length


def test_classes_file_is_in_the_real_format(written):
    real = (REAL / "Charades_v1_classes.txt").read_text().splitlines()
    ours = (written / "Charades_v1_classes.txt").read_bytes()
    assert b"\r" not in ours and ours.endswith(b"\n")
    assert all(CLASS_LINE.match(line) for line in real + ours.decode().splitlines())
    assert ours.decode().splitlines()[0] == "c000 Holding a red box"


def test_the_readers_read_the_world_back(plan, written):
    assert read_charades(written / "Charades_v1_test.csv") == [v.row for v in plan if v.split == "test"]
    assert read_charades_classes(written / "Charades_v1_classes.txt") == [c.name for c in CLASSES]


def test_plan_is_deterministic_and_seeded(plan):
    assert plan_charades_world(SPEC) == plan
    assert [v.id for v in plan_charades_world(replace(SPEC, seed=1))] != [v.id for v in plan]


def test_a_short_video_renders_and_reads_back(tmp_path):
    spec = CharadesWorldSpec(train_videos=1, test_videos=0, empty_train_videos=0, empty_test_videos=0,
                             video_seconds=(3.0, 3.5), sizes=((64, 48),))
    (video,) = write_charades_world(spec, tmp_path)
    info = probe(tmp_path / "videos" / f"{video.id}.mp4")
    assert info.fps == pytest.approx(video.scene.fps, abs=0.01)
    assert info.duration == pytest.approx(video.length, abs=0.05)
    assert (info.width, info.height, info.has_audio, info.sample_rate) == (64, 48, True, video.scene.sample_rate)
    assert [r["id"] for r in rows_of(tmp_path / "Charades_v1_train.csv")] == [video.id]
    assert rows_of(tmp_path / "Charades_v1_test.csv") == []
