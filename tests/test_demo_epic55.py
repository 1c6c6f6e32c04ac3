"""The EPIC-Kitchens-55 files of the EPIC demo world (avsf.data.demo.epic55): the real files'
layouts, uids, seen / unseen test sets, many-shot lists, read back by avsf.data.epic55."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from avsf.data import epic55
from avsf.data.demo.epic import NOUNS, VERBS, EpicWorldSpec, plan_epic_world
from avsf.data.demo.epic55 import MANY_SHOT_MORE_THAN, epic55_counts, epic55_narrations, write_epic55_annotations

REAL = Path("/work/shared/reference-annotations/epic-kitchens-55")
FILES = (epic55.TRAIN_LABELS, *epic55.TEST_TIMESTAMPS.values(), *epic55.CLASS_FILES.values(),
         *epic55.MANY_SHOT_FILES.values(), epic55.VIDEO_INFO)


@pytest.fixture(scope="module")
def plan():
    return plan_epic_world(EpicWorldSpec())  # no video is rendered


@pytest.fixture(scope="module")
def written(plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("epic55")
    write_epic55_annotations(out, plan)
    return out


@pytest.mark.skipif(not REAL.is_dir(), reason="the reference annotation files are not here")
def test_the_files_have_the_real_names_headers_and_line_ends(written):
    assert sorted(p.name for p in written.iterdir()) == sorted(FILES)
    for name in FILES:
        real, ours = (REAL / name).read_bytes(), (written / name).read_bytes()
        assert ours.splitlines()[0] == real.splitlines()[0], name
        assert (b"\r\n" in ours, ours.endswith(b"\n")) == (b"\r\n" in real, real.endswith(b"\n")), name


def test_train_is_the_worlds_train_split_and_the_test_sets_its_validation_split(plan, written):
    train = epic55.read_epic55_narrations(written / epic55.TRAIN_LABELS)
    s1 = epic55.read_epic55_narrations(written / epic55.TEST_TIMESTAMPS["s1"])
    s2 = epic55.read_epic55_narrations(written / epic55.TEST_TIMESTAMPS["s2"])
    segments = {split: sum(len(v.segments) for v in plan if v.split == split) for split in ("train", "validation")}
    assert len(train) == segments["train"] == 70 and len(s1) + len(s2) == segments["validation"]
    assert all(n.labelled for n in train) and not any(n.labelled for n in s1 + s2)
    # Seen kitchens (S1): the participants who also filmed training videos; unseen (S2): the others.
    trained = {n.participant_id for n in train}
    assert trained == {"P01", "P02", "P03"} == {n.participant_id for n in s1}
    assert {n.participant_id for n in s2} == {"P04"}
    # One uid space, running through every video in id order: the files interleave, each sorted.
    uids = [[int(n.narration_id) for n in rows] for rows in (train, s1, s2)]
    assert all(u == sorted(u) for u in uids)
    assert sorted(u for file_uids in uids for u in file_uids) == list(range(sum(segments.values())))
    assert uids[1][0] == 24 and s1[0].video_id == "P01_04"  # after P01's 3 training videos (8 segments each)
    # Each row agrees with the plan's segment.
    by_video = {v.video_id: v for v in plan}
    for rows in (train, s1):
        first = rows[0]
        segment = by_video[first.video_id].segments[0]
        assert (first.start_s, first.stop_s, first.start_frame, first.stop_frame) == (
            segment.start, segment.stop, segment.start_frame, segment.stop_frame)
    row = train[1]
    segment = by_video["P01_01"].segments[1]
    assert (row.verb_class, row.noun_class, row.verb, row.noun, row.all_nouns) == (
        segment.verb.id, segment.noun.id, segment.verb_word, segment.noun.key, (segment.noun.key,))


def test_epic55_narrations_keep_the_test_labels_the_files_leave_out(plan, written):
    files = epic55_narrations(plan)
    s2 = epic55.read_epic55_narrations(written / epic55.TEST_TIMESTAMPS["s2"])
    assert [n.narration_id for n in files["s2"]] == [n.narration_id for n in s2]
    assert all(n.labelled for n in files["s1"] + files["s2"])
    assert {n.noun for n in files["s2"]} <= {n.key for n in NOUNS}


def test_classes_and_video_info_read_back(plan, written):
    verbs = epic55.read_epic55_class_table(written / epic55.CLASS_FILES["verb"], "verb")
    assert [c.key for c in verbs] == [v.key for v in VERBS] and verbs[0].instances == VERBS[0].instances
    assert epic55.read_epic55_classes(written / epic55.CLASS_FILES["noun"], "noun") == [n.key for n in NOUNS]
    info = epic55.read_epic55_video_info(written / epic55.VIDEO_INFO)
    assert list(info) == sorted(v.video_id for v in plan)
    for video in plan:
        assert info[video.video_id].fps == video.native_fps
        assert info[video.video_id].duration == pytest.approx(video.duration, abs=5e-7)
        assert info[video.video_id].resolution == f"{video.scene.width}x{video.scene.height}"
    assert "P02_01,128x96,24.007317,59.94005994005994\n" in (written / epic55.VIDEO_INFO).read_text()


def test_many_shot_lists_follow_the_rule_with_the_demos_count(written):
    train = epic55.read_epic55_narrations(written / epic55.TRAIN_LABELS)
    verbs = Counter(n.verb_class for n in train)
    nouns = Counter(n.noun_class for n in train)
    many_verbs = epic55.read_many_shot_classes(written / epic55.MANY_SHOT_FILES["verb"], "verb")
    many_nouns = epic55.read_many_shot_classes(written / epic55.MANY_SHOT_FILES["noun"], "noun")
    many_actions = epic55.read_many_shot_actions(written / epic55.MANY_SHOT_FILES["action"])
    assert set(many_verbs) == {c for c, k in verbs.items() if k > MANY_SHOT_MORE_THAN}
    assert set(many_nouns) == {c for c, k in nouns.items() if k > MANY_SHOT_MORE_THAN}
    # The tail classes (shake, sponge) are the few-shot ones.
    assert {v.key for v in VERBS if v.id not in many_verbs} == {"shake"}
    assert {n.key for n in NOUNS if n.id not in many_nouns} == {"sponge"}
    pairs = Counter((n.verb_class, n.noun_class) for n in train)
    assert set(many_actions) == {p for p in pairs if p[0] in many_verbs and p[1] in many_nouns}
    assert [pairs[p] for p in many_actions] == sorted((pairs[p] for p in many_actions), reverse=True)
    assert [verbs[c] for c in many_verbs] == sorted((verbs[c] for c in many_verbs), reverse=True)
    assert (written / epic55.MANY_SHOT_FILES["verb"]).read_text().splitlines()[1:3] == ["0,take", "1,put"]


def test_counts_and_a_world_without_unseen_participants(plan, tmp_path):
    counts = epic55_counts(plan)
    assert counts["segments"] == {"train": 70, "s1": 23, "s2": 15}
    assert counts["participants"] == {"train": 3, "s1": 3, "s2": 1}
    assert counts["videos"] == {"train": 9, "test": 5}
    assert counts["many_shot"] == {"verbs": 4, "nouns": 7, "actions": 27}
    assert counts["video_seconds"] == pytest.approx(sum(v.duration for v in plan), abs=0.01)
    small = plan_epic_world(EpicWorldSpec(participants=2, unseen_participants=0, train_videos_per_participant=1,
                                          video_seconds=8.0))
    write_epic55_annotations(tmp_path, small)
    assert (tmp_path / epic55.TEST_TIMESTAMPS["s2"]).read_text() == ",".join(epic55.TIMESTAMP_COLUMNS) + "\n"
    assert epic55.read_epic55_narrations(tmp_path / epic55.TEST_TIMESTAMPS["s2"]) == []
    assert epic55_counts(small)["segments"]["s2"] == 0 and epic55_counts(small)["participants"]["s1"] == 2
