"""UCF101 and HMDB51 split files: the real UCF101 files parse as they are, HMDB51's layout on
files the tests write, both writers round-trip, and the split label source."""

from __future__ import annotations

from pathlib import Path

import pytest

from avsf.data.kinetics import ManifestError
from avsf.data.store import StoreEntry
from avsf.data.ucf_hmdb import (
    HmdbVideo,
    SplitLabels,
    UcfVideo,
    hmdb_classes,
    read_hmdb_splits,
    read_ucf_classes,
    read_ucf_split,
    ucf_video,
    write_hmdb_split,
    write_ucf_classes,
    write_ucf_split,
)

UCF = Path("/work/shared/reference-annotations/ucf101")


@pytest.fixture(scope="module")
def ucf_classes() -> list[str]:
    return read_ucf_classes(UCF / "classInd.txt")


def test_real_ucf_files_keep_crlf():
    for name, lines in (("classInd.txt", 101), ("trainlist01.head200.txt", 200), ("testlist01.head200.txt", 200)):
        data = (UCF / name).read_bytes()
        assert data.count(b"\r\n") == data.count(b"\n") == lines


def test_real_class_list(ucf_classes):
    assert len(ucf_classes) == 101
    assert ucf_classes[0] == "ApplyEyeMakeup" and ucf_classes[-1] == "YoYo"
    assert ucf_classes[36] == "HandstandPushups"  # "37 HandstandPushups"
    assert all("\r" not in c for c in ucf_classes)


def test_real_trainlist_labels_agree_with_folders(ucf_classes):
    videos = read_ucf_split(UCF / "trainlist01.head200.txt", ucf_classes)
    assert len(videos) == 200
    assert videos[0] == UcfVideo("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "v_ApplyEyeMakeup_g08_c01", 0, 8)
    for v in videos:
        assert ucf_classes[v.label] == v.path.split("/")[0]
    # the label column itself, read independently
    rows = (UCF / "trainlist01.head200.txt").read_text().split()
    assert [int(x) - 1 for x in rows[1::2]] == [v.label for v in videos]
    assert {v.label for v in videos} == {0, 1, 2}
    assert min(v.group for v in videos) == 8  # split 1 trains on groups 8..25


def test_real_testlist_has_no_labels(ucf_classes):
    videos = read_ucf_split(UCF / "testlist01.head200.txt", ucf_classes)
    assert len(videos) == 200
    assert videos[0] == UcfVideo("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "v_ApplyEyeMakeup_g01_c01", 0, 1)
    assert {v.group for v in videos} <= set(range(1, 8))  # split 1 tests on groups 1..7
    assert [ucf_classes[v.label] for v in videos] == [v.path.split("/")[0] for v in videos]


def test_handstand_pushups_case_mismatch_folder_wins(tmp_path, ucf_classes):
    # not in the 200-row excerpts: the real rows, written as the whole files write them
    train = tmp_path / "trainlist01.txt"
    train.write_bytes(b"HandstandPushups/v_HandStandPushups_g08_c01.avi 37\r\n"
                      b"HandstandWalking/v_HandstandWalking_g08_c01.avi 38\r\n\r\n")
    test = tmp_path / "testlist01.txt"
    test.write_bytes(b"HandstandPushups/v_HandStandPushups_g01_c04.avi\r\n")
    assert read_ucf_split(train, ucf_classes) == [
        UcfVideo("HandstandPushups/v_HandStandPushups_g08_c01.avi", "v_HandStandPushups_g08_c01", 36, 8),
        UcfVideo("HandstandWalking/v_HandstandWalking_g08_c01.avi", "v_HandstandWalking_g08_c01", 37, 8),
    ]
    assert read_ucf_split(test, ucf_classes)[0].label == 36


@pytest.mark.parametrize("row, message", [
    (b"ApplyLipstick/v_ApplyLipstick_g08_c01.avi 1", ":2: label '1', but folder 'ApplyLipstick' is class 2"),
    (b"ApplyLipstick/v_ApplyEyeMakeup_g08_c01.avi 2", ":2: file 'v_ApplyEyeMakeup_g08_c01.avi' names class"),
    (b"NoSuchClass/v_NoSuchClass_g08_c01.avi", ":2: class 'NoSuchClass' is not in the class list"),
    (b"ApplyLipstick/ApplyLipstick_08.avi 2", ":2: 'ApplyLipstick/ApplyLipstick_08.avi' is not"),
])
def test_bad_ucf_rows_name_their_line(tmp_path, ucf_classes, row, message):
    path = tmp_path / "trainlist01.txt"
    path.write_bytes(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n" + row + b"\r\n")
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(".", r"\.")):
        read_ucf_split(path, ucf_classes)


def test_class_ids_must_run_in_order(tmp_path):
    path = tmp_path / "classInd.txt"
    path.write_bytes(b"1 A\r\n3 B\r\n")
    with pytest.raises(ManifestError, match=r"classInd.txt:2: class id 3, expected 2"):
        read_ucf_classes(path)


def test_ucf_writers_round_trip_with_crlf(tmp_path):
    classes = ["HandstandPushups", "YoYo"]
    videos = [ucf_video("HandstandPushups", 8, 1, 0, file_class="HandStandPushups"), ucf_video("YoYo", 12, 3, 1)]
    assert videos[0].path == "HandstandPushups/v_HandStandPushups_g08_c01.avi"
    write_ucf_classes(tmp_path / "classInd.txt", classes)
    write_ucf_split(tmp_path / "trainlist01.txt", videos, with_labels=True)
    write_ucf_split(tmp_path / "testlist01.txt", videos, with_labels=False)
    assert (tmp_path / "classInd.txt").read_bytes() == b"1 HandstandPushups\r\n2 YoYo\r\n"
    assert (tmp_path / "trainlist01.txt").read_bytes() == (
        b"HandstandPushups/v_HandStandPushups_g08_c01.avi 1\r\nYoYo/v_YoYo_g12_c03.avi 2\r\n")
    assert (tmp_path / "testlist01.txt").read_bytes() == (
        b"HandstandPushups/v_HandStandPushups_g08_c01.avi\r\nYoYo/v_YoYo_g12_c03.avi\r\n")
    read_classes = read_ucf_classes(tmp_path / "classInd.txt")
    assert read_classes == classes
    assert read_ucf_split(tmp_path / "trainlist01.txt", read_classes) == videos
    assert read_ucf_split(tmp_path / "testlist01.txt", read_classes) == videos


# --------------------------------------------------------------------------- HMDB51


def test_hmdb_layout_with_tags_and_trailing_spaces(tmp_path):
    # as the real files: "<video>.avi <tag> " then a newline; classes come from the file names
    (tmp_path / "wave_test_split1.txt").write_text("w_a.avi 1 \nw_b.avi 2 \nw_c.avi 0 \n\n")
    (tmp_path / "brush_hair_test_split1.txt").write_text("b_a.avi 2 \r\nb_b.avi 1 \r\n")
    (tmp_path / "brush_hair_test_split2.txt").write_text("b_a.avi 1 \nb_b.avi 2 \n")
    (tmp_path / "wave_test_split2.txt").write_text("w_a.avi 2 \nw_b.avi 0 \nw_c.avi 1 \n")
    (tmp_path / "README").write_text("not a split file")
    assert hmdb_classes(tmp_path) == ["brush_hair", "wave"]
    train, test = read_hmdb_splits(tmp_path, 1)
    assert train == [HmdbVideo("brush_hair/b_b.avi", "b_b", 0), HmdbVideo("wave/w_a.avi", "w_a", 1)]
    assert test == [HmdbVideo("brush_hair/b_a.avi", "b_a", 0), HmdbVideo("wave/w_b.avi", "w_b", 1)]
    train, test = read_hmdb_splits(tmp_path, 2)
    assert [v.video_id for v in train] == ["b_a", "w_c"] and [v.video_id for v in test] == ["b_b", "w_a"]
    with pytest.raises(ManifestError, match="no split 3 file for class"):
        read_hmdb_splits(tmp_path, 3)
    with pytest.raises(ManifestError, match="splits 1, 2 and 3"):
        read_hmdb_splits(tmp_path, 4)


def test_hmdb_bad_tag_names_its_line(tmp_path):
    (tmp_path / "clap_test_split1.txt").write_text("c_a.avi 1 \nc_b.avi 3 \n")
    with pytest.raises(ManifestError, match=r"clap_test_split1.txt:2: expected '<video>.avi <0\|1\|2>'"):
        read_hmdb_splits(tmp_path, 1)


def test_hmdb_writer_round_trip(tmp_path):
    classes = ["clap", "wave"]
    train = [HmdbVideo("clap/c1.avi", "c1", 0), HmdbVideo("wave/w1.avi", "w1", 1)]
    test = [HmdbVideo("wave/w2.avi", "w2", 1)]
    unused = [HmdbVideo("clap/c2.avi", "c2", 0)]
    write_hmdb_split(tmp_path, 3, classes, train, test, unused)
    assert (tmp_path / "clap_test_split3.txt").read_text() == "c1.avi 1 \nc2.avi 0 \n"
    assert (tmp_path / "wave_test_split3.txt").read_text() == "w1.avi 1 \nw2.avi 2 \n"
    assert read_hmdb_splits(tmp_path, 3) == (train, test)


# --------------------------------------------------------------------------- label source


def _entry(video_id: str, frames: int = 30) -> StoreEntry:
    return StoreEntry(video_id, "", "train", video_id, "shard-0.tar", frames, 30.0, frames / 30, True)


def test_split_labels_samples_stored_videos_and_reports_missing():
    videos = [ucf_video("A", 8, 1, 0), ucf_video("B", 9, 1, 1), ucf_video("B", 9, 2, 1)]
    labels = SplitLabels.of(videos)
    entries = [_entry("v_B_g09_c01", 40), _entry("v_A_g08_c01"), _entry("v_C_g01_c01")]
    samples = labels.samples(entries)
    assert [(s.entry.youtube_id, s.start_frame, s.stop_frame, s.target) for s in samples] == [
        ("v_B_g09_c01", 0, 40, {"label": 1}), ("v_A_g08_c01", 0, 30, {"label": 0})]
    assert labels.missing == ["v_B_g09_c02"]
    assert labels.target(samples[0], 5, 10) == {"label": 1}
    assert labels.blank() == {"label": -1}
