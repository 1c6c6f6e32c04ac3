"""Charades files: the real excerpts parse as they are, the writers reproduce them byte for
byte, and CharadesLabels gives clips the classes active during their time span."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from avsf.data.charades import (
    CharadesAction,
    CharadesLabels,
    CharadesVideo,
    parse_actions,
    read_charades,
    read_charades_classes,
    video_labels,
    write_charades,
    write_charades_classes,
)
from avsf.data.clip_dataset import ClipDataset, ClipSampling
from avsf.data.kinetics import ManifestError
from avsf.data.store import StoreEntry
from clip_factory import ClipSpec, build_store

CHARADES = Path("/work/shared/reference-annotations/charades")
TRAIN, TEST = CHARADES / "Charades_v1_train.head201.csv", CHARADES / "Charades_v1_test.head201.csv"
pytestmark = pytest.mark.skipif(not CHARADES.is_dir(), reason="the reference annotation files are not here")


def test_the_real_excerpts_parse():
    train, test = read_charades(TRAIN), read_charades(TEST)
    assert len(train) == len(test) == 200
    first = train[0]
    assert (first.id, first.subject, first.scene, first.quality, first.relevance, first.verified) == \
        ("46GP8", "HR43", "Hallway", 6, 7, "Yes")
    assert first.actions == (CharadesAction(92, 11.9, 21.2), CharadesAction(147, 0.0, 12.6))
    assert first.length == 24.83 and first.objects == "food;stove;window"
    assert video_labels(first) == {92, 147}
    no_actions = next(v for v in train if v.id == "0IH69")  # an empty actions field
    assert no_actions.actions == () and video_labels(no_actions) == set() and no_actions.length == 30.25
    assert sum(not v.actions for v in train) == 7 and sum(not v.actions for v in test) == 8
    quoted = next(v for v in train if v.id == "N11GT")  # fields with commas, quoted
    assert quoted.script.startswith("One person opens up a folded blanket, then sneezes")
    assert next(v for v in train if v.id == "FPNT1").quality is None  # empty quality / relevance cells
    assert next(v for v in train if v.id == "MCQO5").relevance is None
    reversed_action = next(v for v in train if v.id == "00SL4")  # kept as written: end before start
    assert CharadesAction(71, 18.0, 10.0) in reversed_action.actions
    classes = read_charades_classes(CHARADES / "Charades_v1_classes.txt")
    assert len(classes) == 157
    assert (classes[0], classes[92], classes[156]) == ("Holding some clothes", "Watching/Looking outside of a window",
                                                       "Someone is eating something")


def test_writers_reproduce_the_real_files_byte_for_byte(tmp_path):
    for path in (TRAIN, TEST):
        write_charades(tmp_path / path.name, read_charades(path))
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()
    classes = CHARADES / "Charades_v1_classes.txt"
    write_charades_classes(tmp_path / classes.name, read_charades_classes(classes))
    assert (tmp_path / classes.name).read_bytes() == classes.read_bytes()


def test_demo_files_round_trip(tmp_path):
    videos = [CharadesVideo("DEMO1", "S1", "Kitchen", None, 5, "No", 'A person says "hi", then sits.', "chair",
                            "One; two, three.", (CharadesAction(3, 0.0, 1.5), CharadesAction(0, 1.25, 3.0)), 3.0),
              CharadesVideo("DEMO2", "S2", "Bedroom", 7, None, "Yes", "Nothing.", "", "", (), 12.5)]
    write_charades(tmp_path / "train.csv", videos)
    assert read_charades(tmp_path / "train.csv") == videos
    assert (tmp_path / "train.csv").read_bytes().split(b"\r\n")[2] == b"DEMO2,S2,Bedroom,7,,Yes,Nothing.,,,,12.50"
    write_charades_classes(tmp_path / "classes.txt", ["Holding", "Putting"])
    assert (tmp_path / "classes.txt").read_text() == "c000 Holding\nc001 Putting\n"
    assert read_charades_classes(tmp_path / "classes.txt") == ["Holding", "Putting"]


def test_broken_rows_and_class_lists_raise(tmp_path):
    lines = TRAIN.read_bytes().decode().split("\r\n")
    for old, new, field in [("c092 11.90 21.20", "c092 11.90", "actions"), (",24.83", ",long", "length"),
                            (",6,7,Yes,", ",six,7,Yes,", "quality")]:
        (tmp_path / "bad.csv").write_bytes(("\r\n".join([lines[0], lines[1].replace(old, new)]) + "\r\n").encode())
        with pytest.raises(ManifestError, match=f"bad.csv:2: {field}"):
            read_charades(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="cNNN"):
        parse_actions("c001 1.0 2.0;")
    (tmp_path / "classes.txt").write_text("c000 Holding\nc002 Putting\n")
    with pytest.raises(ManifestError, match="classes.txt:2"):
        read_charades_classes(tmp_path / "classes.txt")


def entry(video_id: str, num_frames: int, fps: float = 30.0) -> StoreEntry:
    return StoreEntry(f"{video_id}_000000_000001", "", "train", video_id, "shard-00000.h5", num_frames, fps,
                      num_frames / fps, True)


def video(video_id: str, actions: tuple[CharadesAction, ...], length: float = 10.0) -> CharadesVideo:
    return CharadesVideo(video_id, "S", "Kitchen", 5, 5, "Yes", "", "", "", actions, length)


def test_clip_targets_are_the_actions_overlapping_the_clip():
    videos = [video("A", (CharadesAction(0, 0.0, 1.0), CharadesAction(1, 0.9, 1.1), CharadesAction(2, 2.0, 5.0),
                          CharadesAction(3, 4.0, 3.0))),  # the last ends before it starts: never active
              video("B", ()), video("C", (CharadesAction(4, 0.0, 1.0),))]
    labels = CharadesLabels(videos, num_classes=5)
    samples = labels.samples([entry("C", 60), entry("A", 300)])
    assert [(s.entry.youtube_id, s.start_frame, s.stop_frame, s.target) for s in samples] == \
        [("A", 0, 300, {"video": 0}), ("C", 0, 60, {"video": 2})]
    assert labels.missing == ["B"]

    def active(sample, start, stop):
        target = labels.target(sample, start, stop)
        assert target["labels"].dtype == torch.float32 and target["labels"].shape == (5,)
        assert set(torch.unique(target["labels"]).tolist()) <= {0.0, 1.0}
        return {int(i) for i in target["labels"].nonzero()}, target["video"]

    a, c = samples
    assert active(a, 30, 60) == ({1}, 0)  # [1.0, 2.0): class 0 ends exactly at the start, class 1 runs 0.1 s in
    assert active(a, 33, 60) == (set(), 0)  # [1.1, 2.0): class 1 ended exactly at the start too
    assert active(a, 0, 27) == ({0}, 0)  # [0, 0.9): class 1 starts exactly at the end, not active
    assert active(a, 0, 28) == ({0, 1}, 0)
    assert active(a, 57, 63) == ({2}, 0)  # [1.9, 2.1)
    assert active(a, 90, 120) == ({2}, 0)  # [3.0, 4.0): the reversed action is not active
    assert active(c, 0, 16) == ({4}, 2)
    assert labels.blank()["video"] == -1 and torch.equal(labels.blank()["labels"], torch.zeros(5))
    assert labels.ground_truth() == {"A": {0, 1, 2, 3}, "B": set(), "C": {4}}
    assert labels.video(c).id == "C"
    with pytest.raises(ValueError, match="c005"):
        CharadesLabels([video("D", (CharadesAction(5, 0.0, 1.0),))], num_classes=5)


def test_a_clip_dataset_over_charades_labels_yields_multi_hot_targets(tmp_path):
    frames_dir, _ = build_store(tmp_path, [ClipSpec("46GP8", seconds=3.0)])
    first = read_charades(TRAIN)[0]
    actions = (CharadesAction(1, 0.0, 1.0), CharadesAction(2, 1.2, 3.0))
    labels = CharadesLabels([replace(first, actions=actions, length=3.0), video("MISSING", ())], num_classes=157)
    sampling = ClipSampling(num_frames=4, stride=4, alpha=4, test_scale=32, test_crop=32, test_clips=3,
                            test_crops=1, spec_frames=32)
    ds = ClipDataset(frames_dir, None, "train", "test", sampling, labels=labels)
    assert len(ds) == 3 and labels.missing == ["MISSING"]
    items = [ds[i] for i in range(3)]
    # 90 frames, 16-frame clips at 74 i / 3 (PySlowFast's rule): [0, 0.53) s, [0.8, 1.33) s, [1.63, 2.17) s.
    assert [round(i["start_s"] * 30) for i in items] == [0, 24, 49]
    assert [{int(k) for k in i["labels"].nonzero()} for i in items] == [{1}, {1, 2}, {2}]
    assert all(i["video"] == 0 and i["loaded"] and i["labels"].shape == (157,) for i in items)
