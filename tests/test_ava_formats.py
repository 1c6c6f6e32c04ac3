"""AVA's file formats (ground truth, detections, class lists, excluded timestamps) and the
keyframe-to-store-frame mapping."""

from pathlib import Path

import pytest

from avsf.data.ava import (
    AVA_FIRST_KEYFRAME,
    AVA_LAST_KEYFRAME,
    NO_ACTION,
    AvaBox,
    AvaDetection,
    AvaFormatError,
    frame_time,
    keyframe_frame,
    read_action_list,
    read_ava_detections,
    read_ava_ground_truth,
    read_excluded_timestamps,
    write_action_list,
    write_ava_detections,
    write_ava_ground_truth,
    write_excluded_timestamps,
)

REFERENCE = Path("/work/shared/reference-annotations/ava")
REAL_VAL = REFERENCE / "ava_val_v2.2.head100.csv"
REAL_ACTIONS = REFERENCE / "ava_action_list_v2.1_for_activitynet_2018.pbtxt"
needs_reference = pytest.mark.skipif(not REAL_VAL.is_file() or not REAL_ACTIONS.is_file(),
                                     reason="reference annotations not present")


@needs_reference
def test_the_real_val_excerpt_parses_as_it_is():
    boxes, keyframes = read_ava_ground_truth(REAL_VAL)
    assert len(boxes) == 100
    assert boxes[0] == AvaBox("1j20qq1JyX4", 902, (0.002, 0.118, 0.714, 0.977), 12, "1")
    assert boxes[15].person_id == "3_"  # line 16: kept as written, not an int
    assert (boxes[15].timestamp, boxes[15].action_id) == (906, 80)
    assert boxes[-1] == AvaBox("1j20qq1JyX4", 927, (0.762, 0.695, 0.936, 0.981), 12, "15")
    assert all(AVA_FIRST_KEYFRAME <= b.timestamp <= AVA_LAST_KEYFRAME for b in boxes)
    assert all(1 <= b.action_id <= 80 for b in boxes)
    assert all(0 <= v <= 1 for b in boxes for v in b.box)
    assert keyframes == {("1j20qq1JyX4", t) for t in range(902, 928)}


@needs_reference
def test_the_official_class_list_gives_the_60_evaluated_classes():
    classes = read_action_list(REAL_ACTIONS)
    assert len(classes) == 60
    assert classes[1] == "bend/bow (at the waist)"
    assert classes[14] == "walk"
    assert classes[79] == "talk to (e.g., self, a person, a group)"
    assert classes[80] == "watch (a person)"
    assert 2 not in classes  # "crawl": one of the 20 classes AVA does not evaluate
    assert list(classes)[:3] == [1, 3, 4]  # file order


def test_a_label_map_with_label_types_reads_too(tmp_path):
    path = tmp_path / "ava_action_list_v2.2.pbtxt"
    path.write_text('label {\n  name: "bend/bow (at the waist)"\n  label_id: 1\n  label_type: PERSON_MOVEMENT\n}\n'
                    'label {\n  name: "carry/hold (an object)"\n  label_id: 17\n  label_type: OBJECT_MANIPULATION\n}\n')
    assert read_action_list(path) == {1: "bend/bow (at the waist)", 17: "carry/hold (an object)"}


def test_a_class_list_without_an_id_is_refused(tmp_path):
    path = tmp_path / "bad.pbtxt"
    path.write_text('item {\n  name: "walk"\n}\n')
    with pytest.raises(AvaFormatError, match=":1"):
        read_action_list(path)


def test_ground_truth_rows_of_2_7_and_8_columns(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("v,0902,0.1,0.2,0.3,0.4,12,3_\n"
                    "v,0903,0.1,0.2,0.3,0.4,80\n"
                    "w,1798\n"
                    "\n")
    boxes, keyframes = read_ava_ground_truth(path)
    assert boxes == [AvaBox("v", 902, (0.1, 0.2, 0.3, 0.4), 12, "3_"), AvaBox("v", 903, (0.1, 0.2, 0.3, 0.4), 80)]
    assert keyframes == {("v", 902), ("v", 903), ("w", 1798)}


def test_a_ground_truth_row_of_another_width_names_its_line(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("v,0902,0.1,0.2,0.3,0.4,12,1\nv,0903,0.1\n")
    with pytest.raises(AvaFormatError, match=r"gt.csv:2: 3 columns"):
        read_ava_ground_truth(path)


def test_ground_truth_round_trips_with_its_empty_keyframes(tmp_path):
    boxes = [AvaBox("v", 902, (0.002, 0.118, 0.714, 0.977), 12, "3_"),
             AvaBox("v", 902, (0.002, 0.118, 0.714, 0.977), 79, "3_"),
             AvaBox("w", 1798, (0.5, 0.5, 1.0, 1.0), 80, None)]
    path = tmp_path / "gt.csv"
    write_ava_ground_truth(path, boxes, {("v", 902), ("v", 1000), ("u", 905)})
    assert path.read_text().splitlines() == [
        "v,0902,0.002,0.118,0.714,0.977,12,3_",
        "v,0902,0.002,0.118,0.714,0.977,79,3_",
        "w,1798,0.500,0.500,1.000,1.000,80",
        "u,0905",  # the keyframes without a box, sorted, as 2-column rows
        "v,1000",
    ]
    read_boxes, keyframes = read_ava_ground_truth(path)
    assert read_boxes == boxes
    assert keyframes == {("v", 902), ("w", 1798), ("v", 1000), ("u", 905)}


def test_detections_are_written_in_the_official_format_and_read_back(tmp_path):
    detections = [AvaDetection("v", 902, (0.1, 0.2, 0.3, 0.4), 12, 0.875),
                  AvaDetection("v", 1798, (0.0, 0.25, 1.0, 0.75), 80, 0.123456789012345),
                  AvaDetection("w", 905, (0.1, 0.2, 0.3, 0.4), NO_ACTION, 0.99)]
    path = tmp_path / "detections.csv"
    write_ava_detections(path, detections)
    assert path.read_text().splitlines() == [
        "v,0902,0.100,0.200,0.300,0.400,12,0.875",
        "v,1798,0.000,0.250,1.000,0.750,80,0.123456789012345",
        "w,0905,0.100,0.200,0.300,0.400,,0.99",
    ]
    assert read_ava_detections(path) == detections
    assert not list(tmp_path.glob(".*"))  # atomic: no temporary left behind


def test_person_detector_files_with_an_empty_or_a_person_action(tmp_path):
    """PySlowFast's ava_val_predicted_boxes.csv leaves action_id empty (read as -1); other
    detectors write a person class; a 7-column row has no score (1.0, as the official reader)."""
    path = tmp_path / "ava_val_predicted_boxes.csv"
    path.write_text("v,0902,0.077,0.151,0.283,0.811,,0.996\n"
                    "v,0902,0.332,0.194,0.481,0.891,1,0.9\n"
                    "v,0903,0.332,0.194,0.481,0.891,1\n")
    assert read_ava_detections(path) == [AvaDetection("v", 902, (0.077, 0.151, 0.283, 0.811), NO_ACTION, 0.996),
                                         AvaDetection("v", 902, (0.332, 0.194, 0.481, 0.891), 1, 0.9),
                                         AvaDetection("v", 903, (0.332, 0.194, 0.481, 0.891), 1, 1.0)]


def test_a_detection_with_a_bad_score_names_its_line(tmp_path):
    path = tmp_path / "detections.csv"
    path.write_text("v,0902,0.1,0.2,0.3,0.4,12,0.5\nv,0902,0.1,0.2,0.3,0.4,12,high\n")
    with pytest.raises(AvaFormatError, match=r"detections.csv:2: score 'high'"):
        read_ava_detections(path)


def test_excluded_timestamps(tmp_path):
    path = tmp_path / "ava_val_excluded_timestamps_v2.1.csv"
    path.write_text("-FaXLcSFjUI,0925\n-FaXLcSFjUI,0926\n")
    assert read_excluded_timestamps(path) == {("-FaXLcSFjUI", 925), ("-FaXLcSFjUI", 926)}


def test_keyframe_frames_in_the_30_fps_store():
    assert keyframe_frame(900) == 0
    assert keyframe_frame(902) == 60
    assert keyframe_frame(1798) == 26940  # the last keyframe, 2 s before the 27000-frame end
    assert keyframe_frame(902, fps=15.0) == 30  # another store rate scales the same way
    assert keyframe_frame(902, start_s=0.0) == 27060  # a store decoded from the movie's start


@pytest.mark.parametrize("native_fps", [24000 / 1001, 25.0, 30.0])
def test_the_keyframe_at_second_s_is_store_frame_s_minus_900_times_30_for_any_native_rate(native_fps):
    """The store resamples to 30 fps from 900 s: frame k shows movie time 900 + k / 30,
    whatever the native rate. So the keyframe at second s is store frame (s - 900) x 30, and
    that frame shows exactly second s. Counting native frames into the store (the pitfall)
    lands elsewhere unless the movie is natively 30 fps."""
    for s in range(AVA_FIRST_KEYFRAME, AVA_LAST_KEYFRAME + 1):
        frame = keyframe_frame(s)
        assert frame == (s - 900) * 30
        assert frame_time(frame) == s
    naive = round((1798 - 900) * native_fps)  # native frames since 900 s, used as a store index
    assert (naive == keyframe_frame(1798)) == (native_fps == 30.0)


@needs_reference
def test_the_official_class_list_is_written_back_byte_for_byte(tmp_path):
    path = tmp_path / "ava_action_list_v2.1_for_activitynet_2018.pbtxt"
    write_action_list(path, read_action_list(REAL_ACTIONS))
    assert path.read_bytes() == REAL_ACTIONS.read_bytes()


def test_a_label_map_round_trips_with_its_label_types(tmp_path):
    path = tmp_path / "ava_action_list_v2.2.pbtxt"
    classes = {12: "stand", 79: "talk to (e.g., self, a person, a group)", 2: "crawl"}
    write_action_list(path, classes, {12: "PERSON_MOVEMENT", 79: "PERSON_INTERACTION", 2: "PERSON_MOVEMENT"})
    assert read_action_list(path) == classes and list(read_action_list(path)) == [12, 79, 2]
    assert path.read_text().startswith('label {\n  name: "stand"\n  label_id: 12\n  label_type: PERSON_MOVEMENT\n}\n')


def test_excluded_timestamps_round_trip_sorted_with_four_digits(tmp_path):
    path = tmp_path / "ava_val_excluded_timestamps_v2.2.csv"
    write_excluded_timestamps(path, [("b", 1798), ("-a", 902), ("b", 1798), ("b", 950)])
    assert path.read_text() == "-a,0902\nb,0950\nb,1798\n"
    assert read_excluded_timestamps(path) == {("-a", 902), ("b", 950), ("b", 1798)}
