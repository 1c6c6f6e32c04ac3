"""EPIC-Kitchens-100 files: the real ones parse as they are, the writers reproduce them byte
for byte, and EpicSegments maps narrations onto stored videos."""

from __future__ import annotations

import ast
import csv
from dataclasses import replace
from pathlib import Path

import pytest

from avsf.data.clip_dataset import ClipDataset, ClipSampling
from avsf.data.epic import (
    TIMESTAMP_COLUMNS,
    EpicNarration,
    EpicSegments,
    EpicVideoInfo,
    format_timestamp,
    parse_timestamp,
    read_epic_annotations,
    read_epic_classes,
    read_epic_video_info,
    read_id_list,
    write_epic_annotations,
    write_epic_classes,
    write_epic_video_info,
    write_id_list,
)
from avsf.data.kinetics import ManifestError
from avsf.data.store import StoreEntry
from clip_factory import ClipSpec, build_store

EPIC = Path("/work/shared/reference-annotations/epic-kitchens-100")
pytestmark = pytest.mark.skipif(not EPIC.is_dir(), reason="the reference annotation files are not here")


@pytest.fixture(scope="module")
def validation() -> list[EpicNarration]:
    return read_epic_annotations(EPIC / "EPIC_100_validation.csv")


def test_timestamps_parse_and_format_as_the_files_write_them():
    assert parse_timestamp("00:00:01.89") == pytest.approx(1.89)
    assert parse_timestamp("01:02:03.456") == pytest.approx(3723.456)
    assert format_timestamp(1.89) == "00:00:01.89"
    assert format_timestamp(3723.456, 3) == "01:02:03.456"
    assert format_timestamp(59.999) == "00:01:00.00"  # rounding carries into the minutes
    for bad in ("1.89", "00:61:00.00", "aa:00:00.00", ""):
        with pytest.raises(ManifestError, match="timestamp"):
            parse_timestamp(bad)


def test_the_real_validation_file_parses(validation):
    assert len(validation) == 9668
    first = validation[0]
    assert (first.narration_id, first.participant_id, first.video_id) == ("P01_11_0", "P01", "P01_11")
    assert (first.start_s, first.stop_s, first.start_frame, first.stop_frame) == (0.0, 1.89, 1, 113)
    assert (first.verb, first.verb_class, first.noun, first.noun_class) == ("take", 0, "plate", 2)
    assert first.all_nouns == ("plate",) and first.all_noun_classes == (2,) and first.narration_s == 0.56
    two_nouns = next(n for n in validation if n.narration_id == "P01_11_12")
    assert two_nouns.all_nouns == ("paper", "bin") and two_nouns.all_noun_classes == (49, 36)
    assert sum(n.narration_s is None for n in validation) == 70  # empty narration_timestamp cells
    assert all(n.stop_s > n.start_s and n.labelled for n in validation)


def test_the_real_class_video_and_subset_files_parse():
    verbs = read_epic_classes(EPIC / "EPIC_100_verb_classes.csv")
    nouns = read_epic_classes(EPIC / "EPIC_100_noun_classes.csv")
    assert (len(verbs), len(nouns)) == (97, 300)
    assert verbs[:2] == ["take", "put"] and nouns[:3] == ["tap", "spoon", "plate"]
    info = read_epic_video_info(EPIC / "EPIC_100_video_info.csv")
    assert len(info) == 700
    assert info["P01_01"] == EpicVideoInfo("P01_01", 1652.152817, 59.9400599400599, "1920x1080")
    assert info["P37_101"].fps == 50.0
    assert {round(i.fps, 2) for i in info.values()} == {29.97, 47.95, 50.0, 59.94, 90.0}
    tail_verbs = read_id_list(EPIC / "EPIC_100_tail_verbs.csv")
    tail_nouns = read_id_list(EPIC / "EPIC_100_tail_nouns.csv")
    assert len(tail_verbs) == 86 and tail_verbs[:3] == ["10", "12", "13"]
    assert len(tail_nouns) == 228 and tail_nouns[0] == "56"
    assert read_id_list(EPIC / "EPIC_100_unseen_participant_ids_validation.csv") == ["P18", "P32"]


def test_writers_reproduce_the_real_files_byte_for_byte(tmp_path, validation):
    write_epic_annotations(tmp_path / "val.csv", validation)
    assert (tmp_path / "val.csv").read_bytes() == (EPIC / "EPIC_100_validation.csv").read_bytes()
    write_epic_video_info(tmp_path / "info.csv", read_epic_video_info(EPIC / "EPIC_100_video_info.csv").values())
    assert (tmp_path / "info.csv").read_bytes() == (EPIC / "EPIC_100_video_info.csv").read_bytes()
    for name, header in [("EPIC_100_tail_nouns.csv", "noun"), ("EPIC_100_unseen_participant_ids_validation.csv",
                                                                "participant_id")]:
        write_id_list(tmp_path / name, header, read_id_list(EPIC / name))
        assert (tmp_path / name).read_bytes() == (EPIC / name).read_bytes()
    # Noun classes: CRLF lines, no line end after the last. (The verb file has one hand-typed
    # "'slice-into','slice-of'" without the space Python's repr writes, so only its values compare.)
    for name in ("EPIC_100_noun_classes.csv", "EPIC_100_verb_classes.csv"):
        rows = list(csv.DictReader((EPIC / name).open(newline="")))
        write_epic_classes(tmp_path / name, read_epic_classes(EPIC / name), [r["category"] for r in rows],
                           [ast.literal_eval(r["instances"]) for r in rows])
        written = list(csv.DictReader((tmp_path / name).open(newline="")))
        assert [(r["key"], r["category"], ast.literal_eval(r["instances"])) for r in written] == \
            [(r["key"], r["category"], ast.literal_eval(r["instances"])) for r in rows]
    assert (tmp_path / "EPIC_100_noun_classes.csv").read_bytes() == (EPIC / "EPIC_100_noun_classes.csv").read_bytes()


def test_demo_files_round_trip(tmp_path):
    narrations = [
        EpicNarration("P90_01_0", "P90", "P90_01", 0.5, 2.25, 31, 135, "cut onion, slowly", "cut", 7, "onion", 23,
                      ("onion", "knife"), (23, 4), 0.61),
        EpicNarration("P90_01_1", "P90", "P90_01", 3661.0, 3662.07, 219661, 219725, "wash it", "wash", 2, "plate", 2,
                      ("plate",), (2,), None),
    ]
    write_epic_annotations(tmp_path / "train.csv", narrations)
    assert read_epic_annotations(tmp_path / "train.csv") == narrations
    assert (tmp_path / "train.csv").read_text().splitlines()[1] == \
        'P90_01_0,P90,P90_01,00:00:00.610,00:00:00.50,00:00:02.25,31,135,"cut onion, slowly",cut,7,onion,23,' \
        '"[\'onion\', \'knife\']","[23, 4]"'
    unlabelled = [EpicNarration(n.narration_id, n.participant_id, n.video_id, n.start_s, n.stop_s, n.start_frame,
                                n.stop_frame, narration_s=n.narration_s) for n in narrations]
    write_epic_annotations(tmp_path / "test.csv", unlabelled)  # the test-timestamps layout
    assert (tmp_path / "test.csv").read_text().splitlines()[0] == ",".join(TIMESTAMP_COLUMNS)
    assert read_epic_annotations(tmp_path / "test.csv") == unlabelled
    assert all(n.verb_class == n.noun_class == -1 for n in unlabelled)
    with pytest.raises(ValueError, match="labels"):
        write_epic_annotations(tmp_path / "mixed.csv", [narrations[0], unlabelled[1]])
    write_epic_classes(tmp_path / "verbs.csv", ["take", "put"], ["retrieve", "leave"])
    assert (tmp_path / "verbs.csv").read_bytes() == b"id,key,instances,category\r\n0,take,['take'],retrieve\r\n" \
                                                   b"1,put,['put'],leave"
    assert read_epic_classes(tmp_path / "verbs.csv") == ["take", "put"]
    write_epic_video_info(tmp_path / "info.csv", [EpicVideoInfo("P90_01", 12.5, 29.97002997002997, "64x48")])
    assert read_epic_video_info(tmp_path / "info.csv") == {"P90_01": EpicVideoInfo("P90_01", 12.5, 29.97002997002997,
                                                                                   "64x48")}


def test_broken_rows_raise_naming_file_line_and_field(tmp_path, validation):
    path = tmp_path / "bad.csv"
    good = validation[:3]
    cases = [
        (replace(good[1], stop_s=good[1].start_s), "line 3.*stop_timestamp.*not after"),
        (replace(good[1], stop_frame=good[1].start_frame), "line 3.*stop_frame"),
    ]
    for row, message in cases:
        write_epic_annotations(path, [good[0], row, good[2]])
        with pytest.raises(ManifestError, match=message.replace("line 3", "bad.csv:3")):
            read_epic_annotations(path)
    text = (EPIC / "EPIC_100_validation.csv").read_text().splitlines()
    for old, new, field in [(",0,plate,2,", ",zero,plate,2,", "verb_class"),
                            ("00:00:01.89", "00:00:1.89", "stop_timestamp"),
                            ("[2]\n", "[2\n", "all_noun_classes")]:
        path.write_text(text[0] + "\n" + (text[1] + "\n").replace(old, new, 1) + text[2] + "\n")
        with pytest.raises(ManifestError, match=f"bad.csv:2: {field}"):
            read_epic_annotations(path)
    path.write_text("narration_id,video_id\nP01_11_0,P01_11\n")
    with pytest.raises(ManifestError, match="missing column"):
        read_epic_annotations(path)
    path.write_text("id,key,instances,category\n0,take,['take'],r\n2,put,['put'],l\n")
    with pytest.raises(ManifestError, match="0..1"):
        read_epic_classes(path)


def entry(video_id: str, num_frames: int, fps: float = 30.0) -> StoreEntry:
    return StoreEntry(f"{video_id}_000000_000001", "", "val", video_id, "shard-00000.h5", num_frames, fps,
                      num_frames / fps, True)


def narration(nid: str, video: str, start_s: float, stop_s: float, verb: int = 3, noun: int = 5) -> EpicNarration:
    return EpicNarration(nid, video[:3], video, start_s, stop_s, 1, 2, "x", "v", verb, "n", noun, ("n",), (noun,))


def test_segments_cut_frames_at_the_store_rate_clamp_and_report_misses():
    narrations = [
        narration("A_0", "A", 1.0, 2.5),  # frames [30, 75) at 30 fps
        narration("B_0", "B", 0.0, 1.0),  # B is not stored
        narration("A_1", "A", 9.0, 12.0, verb=1, noun=2),  # runs past A's end (300 frames): clamped
        narration("A_2", "A", 10.5, 11.0),  # starts past A's end (the video was cut short)
        narration("A_4", "A", 10.0, 10.5),  # starts at A's last frame's end: no frame of it is stored
        narration("A_3", "A", 4.00, 4.01),  # shorter than a frame: still one frame
        narration("C_0", "C", 1.0, 2.0),  # C stored at 25 fps
    ]
    labels = EpicSegments(narrations)
    samples = labels.samples([entry("A", 300), entry("C", 100, 25.0)])
    assert [(s.entry.youtube_id, s.start_frame, s.stop_frame) for s in samples] == \
        [("A", 30, 75), ("A", 270, 300), ("A", 120, 121), ("C", 25, 50)]
    assert [s.target for s in samples[:2]] == [{"verb": 3, "noun": 5, "segment": 0},
                                               {"verb": 1, "noun": 2, "segment": 2}]
    assert labels.missing == ["B_0", "A_2", "A_4"]
    assert [labels.narration(s).narration_id for s in samples] == ["A_0", "A_1", "A_3", "C_0"]
    assert labels.target(samples[1], 280, 296) == {"verb": 1, "noun": 2, "segment": 2}
    assert labels.blank() == {"verb": -1, "noun": -1, "segment": -1}


def test_a_clip_dataset_over_epic_segments_yields_their_targets(tmp_path):
    frames_dir, _ = build_store(tmp_path, [ClipSpec("P90_01", seconds=3.0)])
    labels = EpicSegments([narration("P90_01_0", "P90_01", 0.5, 2.5, verb=4, noun=7),
                           narration("P90_02_0", "P90_02", 0.0, 1.0)])
    sampling = ClipSampling(num_frames=4, stride=4, alpha=4, test_scale=32, test_crop=32, test_clips=2,
                            test_crops=1, spec_frames=32)
    ds = ClipDataset(frames_dir, None, "train", "test", sampling, labels=labels)
    assert len(ds) == 2 and labels.missing == ["P90_02_0"]
    items = [ds[0], ds[1]]
    assert [(i["verb"], i["noun"], i["segment"], i["loaded"]) for i in items] == [(4, 7, 0, True)] * 2
    # Frames [15, 75) of the stored video: clip i of 2 starts at 15 + (60 - 16) i / 2 (PySlowFast's rule).
    assert [round(i["start_s"] * 30) for i in items] == [15, 15 + (60 - sampling.span) // 2]
    assert items[0]["fast"].shape == (3, 16, 32, 32)
