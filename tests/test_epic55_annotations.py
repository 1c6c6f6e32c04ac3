"""EPIC-Kitchens-55 files (avsf.data.epic55): the real ones parse as they are, the writers
reproduce them byte for byte, the many-shot rule gives the real lists, and the paper's
participant split."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from avsf.data import epic55
from avsf.data.epic import EpicNarration, EpicSegments, EpicVideoInfo
from avsf.data.kinetics import ManifestError
from avsf.data.store import StoreEntry

REAL = Path("/work/shared/reference-annotations/epic-kitchens-55")
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="the reference annotation files are not here")


@pytest.fixture(scope="module")
def train() -> list[EpicNarration]:
    return epic55.read_epic55_narrations(REAL / epic55.TRAIN_LABELS)


def test_the_real_train_labels_parse(train):
    assert len(train) == 28472
    first = train[0]
    assert (first.narration_id, first.participant_id, first.video_id, first.narration) == ("0", "P01", "P01_01",
                                                                                           "open door")
    assert (first.start_s, first.stop_s, first.start_frame, first.stop_frame) == (0.14, 3.37, 8, 202)
    assert (first.verb, first.verb_class, first.noun, first.noun_class) == ("open", 2, "door", 8)
    assert first.all_nouns == ("door",) and first.all_noun_classes == (8,) and first.narration_s is None
    by_uid = {n.narration_id: n for n in train}
    assert by_uid["45"].all_nouns == ("courgette", "pan") and by_uid["45"].all_noun_classes == (69, 1)
    # The file's own inconsistency, kept: one noun named, two noun classes.
    assert by_uid["68"].all_nouns == ("celery",) and by_uid["68"].all_noun_classes == (185, 25)
    assert sum(len(n.all_nouns) != len(n.all_noun_classes) for n in train) == 232
    assert by_uid["39236"].verb == "close" and train[-1].narration_id == "39236"
    assert [int(n.narration_id) for n in train] == sorted(int(n.narration_id) for n in train)
    assert len({n.participant_id for n in train}) == 28 and all(n.labelled for n in train)
    assert max(n.verb_class for n in train) == 124 and max(n.noun_class for n in train) <= 351


def test_the_real_test_timestamps_parse_without_labels(train):
    s1 = epic55.read_epic55_narrations(REAL / epic55.TEST_TIMESTAMPS["s1"])
    s2 = epic55.read_epic55_narrations(REAL / epic55.TEST_TIMESTAMPS["s2"])
    assert (len(s1), len(s2)) == (8047, 2929)
    assert (s1[0].narration_id, s1[0].video_id, s1[0].start_s, s1[0].stop_s, s1[0].start_frame, s1[0].stop_frame) \
        == ("1924", "P01_11", 0.0, 1.89, 1, 113)
    assert s2[0].narration_id == "15582" and s2[0].participant_id == "P09"
    assert not any(n.labelled for n in s1 + s2) and s1[0].verb_class == -1 and s1[0].all_nouns == ()
    seen, unseen = {n.participant_id for n in s1}, {n.participant_id for n in s2}
    trained = {n.participant_id for n in train}
    assert seen == trained and unseen == {"P09", "P11", "P18", "P32"} and not unseen & trained
    assert len(trained | unseen) == 32
    uids = [n.narration_id for n in train + s1 + s2]
    assert len(set(uids)) == len(uids)  # one uid space over train and both test sets


def test_the_real_class_many_shot_and_video_files_parse():
    verbs = epic55.read_epic55_classes(REAL / epic55.CLASS_FILES["verb"], "verb")
    nouns = epic55.read_epic55_classes(REAL / epic55.CLASS_FILES["noun"], "noun")
    assert (len(verbs), len(nouns)) == (125, 352)
    assert verbs[:3] == ["take", "put", "open"] and nouns[:3] == ["Nothing", "pan", "pan:dust"]
    table = epic55.read_epic55_class_table(REAL / epic55.CLASS_FILES["noun"], "noun")
    assert table[2] == epic55.Epic55Class(2, "pan:dust", ("pan:dust", "dustpan"))
    many_verbs = epic55.read_many_shot_classes(REAL / epic55.MANY_SHOT_FILES["verb"], "verb")
    many_nouns = epic55.read_many_shot_classes(REAL / epic55.MANY_SHOT_FILES["noun"], "noun")
    many_actions = epic55.read_many_shot_actions(REAL / epic55.MANY_SHOT_FILES["action"])
    assert (len(many_verbs), len(many_nouns), len(many_actions)) == (26, 71, 819)
    assert many_verbs[:3] == [1, 0, 4] and many_nouns[:3] == [3, 4, 8] and many_actions[:2] == [(12, 78), (9, 84)]
    assert all(v in many_verbs and n in many_nouns for v, n in many_actions)
    info = epic55.read_epic55_video_info(REAL / epic55.VIDEO_INFO)
    assert len(info) == 432
    assert info["P01_01"] == EpicVideoInfo("P01_01", 1652.152817, 59.9400599400599, "1920x1080")
    rates = Counter(round(i.fps, 2) for i in info.values())
    assert rates == {59.94: 423, 47.95: 4, 29.97: 4, 90.0: 1}
    assert info["P18_09"].fps == 90.0 and info["P12_01"].resolution == "1280x720"


def test_the_writers_reproduce_every_real_file_byte_for_byte(train, tmp_path):
    def same(name: str) -> bool:
        return (tmp_path / name).read_bytes() == (REAL / name).read_bytes()

    epic55.write_epic55_narrations(tmp_path / epic55.TRAIN_LABELS, train)
    assert same(epic55.TRAIN_LABELS)
    for name in epic55.TEST_TIMESTAMPS.values():
        epic55.write_epic55_narrations(tmp_path / name, epic55.read_epic55_narrations(REAL / name))
        assert same(name)
    names = {}
    for kind, name in epic55.CLASS_FILES.items():
        table = epic55.read_epic55_class_table(REAL / name, kind)
        names[kind] = [c.key for c in table]
        epic55.write_epic55_classes(tmp_path / name, kind, names[kind], [c.instances for c in table])
        assert same(name)  # CRLF lines, the last one too
    for kind in ("verb", "noun"):
        name = epic55.MANY_SHOT_FILES[kind]
        epic55.write_many_shot_classes(tmp_path / name, kind, epic55.read_many_shot_classes(REAL / name, kind),
                                       names[kind])
        assert same(name)
    name = epic55.MANY_SHOT_FILES["action"]
    epic55.write_many_shot_actions(tmp_path / name, epic55.read_many_shot_actions(REAL / name), names["verb"],
                                   names["noun"])
    assert same(name)
    epic55.write_epic55_video_info(tmp_path / epic55.VIDEO_INFO,
                                   epic55.read_epic55_video_info(REAL / epic55.VIDEO_INFO).values())
    assert same(epic55.VIDEO_INFO)


def test_the_many_shot_rule_gives_the_real_lists(train):
    many = epic55.many_shot_classes(train)
    real_verbs = epic55.read_many_shot_classes(REAL / epic55.MANY_SHOT_FILES["verb"], "verb")
    real_nouns = epic55.read_many_shot_classes(REAL / epic55.MANY_SHOT_FILES["noun"], "noun")
    real_actions = epic55.read_many_shot_actions(REAL / epic55.MANY_SHOT_FILES["action"])
    assert list(many.verbs) == real_verbs  # most frequent first (the file has no other tie than ours)
    assert set(many.nouns) == set(real_nouns) and set(many.actions) == set(real_actions)
    counts = Counter(n.noun_class for n in train)
    assert min(counts[c] for c in many.nouns) == 101 and counts[many.nouns[0]] == 1225
    # The rule at the boundary: more than the count, not as many.
    toy = [EpicNarration(str(i), "P01", "P01_01", 0.0, 1.0, 1, 2, verb_class=i % 2, noun_class=0) for i in range(5)]
    assert epic55.many_shot_classes(toy, more_than=2) == epic55.ManyShot((0,), (0,), ((0, 0),))
    assert epic55.many_shot_classes(toy, more_than=3) == epic55.ManyShot((), (0,), ())


def test_the_papers_split_holds_out_participants_26_to_31(train):
    fit, held_out = epic55.split_by_participants(train)
    # facebookresearch/video-long-term-feature-banks: TRAIN.DATASET_SIZE 23191, TEST.DATASET_SIZE 5281.
    assert (len(fit), len(held_out)) == (23191, 5281)
    assert {n.participant_id for n in held_out} == {"P26", "P27", "P28", "P29", "P30", "P31"}
    assert max(int(n.participant_id[1:]) for n in fit) == 25
    assert [n.narration_id for n in held_out] == [n.narration_id for n in train if n.participant_id >= "P26"]
    mine_fit, mine_held = epic55.split_by_participants(train, validation=["P02", "P99"])
    assert {n.participant_id for n in mine_held} == {"P02"}
    assert len(mine_held) == Counter(n.participant_id for n in train)["P02"] and len(mine_fit) + len(mine_held) == 28472


def test_epic_segments_take_epic55_narrations_unchanged(train):
    first_two = train[:2]  # P01_01: 0.14-3.37 s and 4.37-6.17 s
    entry = StoreEntry("P01_01", "", "train", "P01_01", "P01_01.h5", 600, 60.0, 10.0, True)
    labels = EpicSegments(first_two)
    samples = labels.samples([entry])
    assert [(s.start_frame, s.stop_frame, s.target) for s in samples] == [
        (8, 202, {"verb": 2, "noun": 8, "segment": 0}), (262, 370, {"verb": 12, "noun": 113, "segment": 1})]
    assert labels.narration(samples[1]).narration_id == "1"


LABEL_HEADER = ",".join(epic55.LABEL_COLUMNS)
GOOD_ROW = "0,P01,P01_01,open door,00:00:00.14,00:00:03.37,8,202,open,2,door,8,['door'],[8]"


@pytest.mark.parametrize("row, message", [
    (GOOD_ROW.replace("0,P01", "x,P01", 1), r":2: uid 'x'"),
    (GOOD_ROW.replace("0,P01", "-3,P01", 1), r":2: uid '-3': negative"),
    (GOOD_ROW.replace("00:00:03.37", "00:00:00.10"), r":2: stop_timestamp '00:00:00.10': not after"),
    (GOOD_ROW.replace("00:00:00.14", "0:0:0.14"), r":2: start_timestamp"),
    (GOOD_ROW.replace(",2,door", ",two,door"), r":2: verb_class 'two'"),
    (GOOD_ROW.replace("['door']", "[door]"), r":2: all_nouns"),
    (GOOD_ROW.replace(",[8]", ",['8']"), r":2: all_noun_classes"),
    (GOOD_ROW.rsplit(",", 1)[0], r":2: all_noun_classes None: missing"),
    (GOOD_ROW + "\n" + GOOD_ROW, r":3: uid '0': repeats the uid of line 2"),
])
def test_a_broken_row_names_file_line_and_field(tmp_path, row, message):
    path = tmp_path / "EPIC_train_action_labels.csv"
    path.write_text(f"{LABEL_HEADER}\n{row}\n")
    with pytest.raises(ManifestError, match=message) as info:
        epic55.read_epic55_narrations(path)
    assert str(path) in str(info.value)


def test_broken_files_raise_manifest_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    with pytest.raises(ManifestError, match="not found"):
        epic55.read_epic55_narrations(tmp_path / "absent.csv")
    bad.write_text("narration_id,participant_id,video_id\nP01_01_0,P01,P01_01\n")  # an EPIC-100 header
    with pytest.raises(ManifestError, match="an EPIC-Kitchens-55 file has uid,"):
        epic55.read_epic55_narrations(bad)
    bad.write_text("verb_id,class_key,verbs\r\n0,take,['take']\r\n2,put,['put']\r\n")
    with pytest.raises(ManifestError, match=r"class ids are not 0\.\.1"):
        epic55.read_epic55_classes(bad, "verb")
    with pytest.raises(ManifestError, match="expected noun_id,class_key,nouns"):
        epic55.read_epic55_classes(bad, "noun")
    bad.write_text('action_class,noun,noun_class,verb,verb_class\n"(12, 78)",top,79,turn-on,12\n')
    disagreeing = r":2: action_class '\(12, 78\)': disagrees with verb_class, noun_class 12, 79"
    with pytest.raises(ManifestError, match=disagreeing):
        epic55.read_many_shot_actions(bad)
    bad.write_text('action_class,noun,noun_class,verb,verb_class\n"[12, 78]",top,78,turn-on,12\n')
    with pytest.raises(ManifestError, match="not a .verb class, noun class. pair"):
        epic55.read_many_shot_actions(bad)
    bad.write_text("verb_class,verb\n1,put\n1,put\n")
    with pytest.raises(ManifestError, match="listed twice"):
        epic55.read_many_shot_classes(bad, "verb")
    bad.write_text("video,resolution,duration,fps\nP01_01,1920-1080,10.000000,59.94\n")
    with pytest.raises(ManifestError, match=r":2: resolution '1920-1080': not WIDTHxHEIGHT"):
        epic55.read_epic55_video_info(bad)
    bad.write_text("video,resolution,duration,fps\nP01_01,1920x1080,0.000000,59.94\n")
    with pytest.raises(ManifestError, match="not positive"):
        epic55.read_epic55_video_info(bad)


def test_the_narration_writer_refuses_what_the_format_cannot_hold(train, tmp_path):
    unlabelled = EpicNarration("7", "P01", "P01_01", 0.0, 1.0, 1, 60)
    with pytest.raises(ValueError, match="labels or not"):
        epic55.write_epic55_narrations(tmp_path / "x.csv", [train[0], unlabelled])
    with pytest.raises(ValueError, match="not an EPIC-55 uid"):
        epic55.write_epic55_narrations(tmp_path / "x.csv", [replace(unlabelled, narration_id="P01_01_0")])
    assert not (tmp_path / "x.csv").exists()
    epic55.write_epic55_narrations(tmp_path / "x.csv", [unlabelled])
    assert (tmp_path / "x.csv").read_text() == (",".join(epic55.TIMESTAMP_COLUMNS)
                                                + "\n7,P01,P01_01,00:00:00.00,00:00:01.00,1,60\n")
    assert epic55.read_epic55_narrations(tmp_path / "x.csv") == [unlabelled]
    with pytest.raises(ValueError, match="without labels cannot be written to a train labels file"):
        epic55.write_epic55_narrations(tmp_path / "y.csv", [unlabelled], labels=True)
    epic55.write_epic55_narrations(tmp_path / "y.csv", train[:1], labels=False)  # a test file of labelled segments
    assert (tmp_path / "y.csv").read_text().splitlines()[1] == "0,P01,P01_01,00:00:00.14,00:00:03.37,8,202"
    epic55.write_epic55_narrations(tmp_path / "z.csv", [])  # nothing to label: the test layout
    assert (tmp_path / "z.csv").read_text() == ",".join(epic55.TIMESTAMP_COLUMNS) + "\n"
