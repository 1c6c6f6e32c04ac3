"""Kinetics manifests, clip names and the clip index."""

from pathlib import Path

import pytest

from avsf.data.kinetics import (
    ClipRecord,
    ManifestError,
    Segment,
    class_names,
    clip_id,
    read_clip_index,
    read_manifest,
    write_clip_index,
)

REAL_VAL = Path("/work/shared/reference-annotations/kinetics/kinetics-400_val.csv")


def test_clip_id_is_the_official_crawler_name():
    assert clip_id("0wR5jVB-WPk", 417, 427) == "0wR5jVB-WPk_000417_000427"
    assert Segment("abc", 1.0, 11.0).clip_id == "abc_000001_000011"


def test_fractional_times_keep_their_fraction_in_the_clip_id():
    """The crawler's %06d would name 1.5-3.5 and 1-3 alike; whole seconds keep its name."""
    assert clip_id("--nQbRBEz2s", 4.9, 14.2) == "--nQbRBEz2s_000004.9_000014.2"
    assert clip_id("a", 1.5, 3.5) != clip_id("a", 1.0, 3.0) == "a_000001_000003"
    assert clip_id("a", 1.25, 3.0) == "a_000001.25_000003"
    assert clip_id("a", 0.000001, 2) == "a_000000.000001_000002"


@pytest.mark.skipif(not REAL_VAL.is_file(), reason="reference annotations not present")
def test_real_kinetics_400_val_parses():
    manifest = read_manifest(REAL_VAL)
    assert manifest.invalid == []
    assert len(manifest.segments) == manifest.total_rows == 19906
    names = class_names(manifest.segments)
    assert len(names) == 400
    assert "air drumming" in names and "hurling (sport)" in names  # quoted in the file
    first = manifest.segments[0]
    assert first == Segment("0wR5jVB-WPk", 417.0, 427.0, "val", "abseiling")
    assert len({s.clip_id for s in manifest.segments}) == 19906
    # Whole-second rows (all of Kinetics) keep the official crawler's names.
    assert all(s.clip_id == f"{s.youtube_id}_{int(s.time_start):06d}_{int(s.time_end):06d}"
               for s in manifest.segments)


def test_test_manifest_without_labels(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("youtube_id,time_start,time_end,split\naaa,0,10,test\nbbb,5,15,test\n")
    manifest = read_manifest(path)
    assert [s.label for s in manifest.segments] == [None, None]
    assert [s.clip_id for s in manifest.segments] == ["aaa_000000_000010", "bbb_000005_000015"]
    assert class_names(manifest.segments) == []


def test_a_byte_order_mark_does_not_hide_the_label_column(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("label,youtube_id,time_start,time_end,split,is_cc\nyoga,abc,1,11,train,0\n".encode("utf-8-sig"))
    assert read_manifest(path).segments == [Segment("abc", 1.0, 11.0, "train", "yoga")]


def test_bad_rows_are_reported_not_raised(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        '"air drumming",ok1,1,11,train,0\n'
        "x,../etc,1,11,train,0\n"      # path-like id
        "x,ok2,ten,20,train,0\n"       # not a number
        "x,ok3,12,11,train,0\n"        # end before start
        ",ok4,1,11,train,0\n"          # no label in a labelled manifest
    )
    manifest = read_manifest(path)
    assert [s.youtube_id for s in manifest.segments] == ["ok1"]
    assert manifest.segments[0].label == "air drumming"
    assert [bad.where for bad in manifest.invalid] == [f"{path}:{n}" for n in (3, 4, 5, 6)]
    assert "not an id" in manifest.invalid[0].detail
    assert "not numbers" in manifest.invalid[1].detail
    assert manifest.total_rows == 5


def test_unreadable_manifests_raise(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "absent.csv")
    path = tmp_path / "m.csv"
    path.write_text("label,youtube_id,split\nx,a,train\n")
    with pytest.raises(ManifestError, match="missing column.*time_start, time_end"):
        read_manifest(path)


def test_clip_index_round_trip(tmp_path):
    records = [
        ClipRecord.for_segment(Segment("a", 1.0, 11.0, "train", "air drumming, loud"), "a_000001_000011.mp4",
                               9.28, {"cut_short_s": 0.72, "audio_copied": "aac"}),
        ClipRecord.for_segment(Segment("b", 2.5, 4.0, "test", None), "b_000002.5_000004.mp4"),
    ]
    path = tmp_path / "clips.csv"
    write_clip_index(path, records)
    lines = path.read_text().splitlines()
    assert lines[0] == "clip_id,label,youtube_id,time_start,time_end,split,path,duration,notes"
    assert lines[1] == ('a_000001_000011,"air drumming, loud",a,1,11,train,a_000001_000011.mp4,9.28,'
                        '"{""audio_copied"": ""aac"", ""cut_short_s"": 0.72}"')
    assert read_clip_index(path) == records


def test_a_clip_index_from_before_durations_and_notes_still_reads(tmp_path):
    path = tmp_path / "clips.csv"
    path.write_text("clip_id,label,youtube_id,time_start,time_end,split,path\n"
                    "a_000001_000011,yoga,a,1,11,train,a_000001_000011.mp4\n")
    assert read_clip_index(path) == [ClipRecord("a_000001_000011", "yoga", "a", 1.0, 11.0, "train",
                                                "a_000001_000011.mp4")]
