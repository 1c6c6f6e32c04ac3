"""AVA's official frame-mAP on hand-made cases whose APs are worked out by hand.

The AP arithmetic (PASCAL VOC all-point): rank the detections by score; precision p_k and
recall r_k after each; make precision monotone from the right; AP = sum over the ranks
where recall rises of (r_k - r_{k-1}) x p_k (monotone).
"""

import math

import numpy as np
import pytest

from avsf.data.ava import (
    AvaBox,
    AvaDetection,
    read_ava_detections,
    read_ava_ground_truth,
    write_ava_detections,
    write_ava_ground_truth,
)
from avsf.evaluate.ava import (
    box_iou,
    frame_map,
    per_class_ap_table,
    voc_average_precision,
    write_per_class_ap_csv,
)

EVALUATED = (1, 3, 4)  # stands for the 60; class 2 is one AVA does not evaluate
A = (0.0, 0.0, 0.5, 0.5)
B = (0.5, 0.5, 1.0, 1.0)


def gt(timestamp, box, action=1, video="v"):
    return AvaBox(video, timestamp, box, action, "0")


def det(timestamp, box, score, action=1, video="v"):
    return AvaDetection(video, timestamp, box, action, score)


def evaluate(truth, detections, keyframes=(), classes=EVALUATED, **kwargs):
    return frame_map(truth, keyframes, detections, classes, **kwargs)


TWO_PERSONS = [gt(902, A), gt(903, B)]
PERFECT = [det(902, A, 0.9), det(903, B, 0.8)]


def test_iou_on_normalised_boxes_has_no_plus_one():
    iou = box_iou(np.array([A]), np.array([A, B, (0.25, 0.0, 0.75, 0.5)]))
    # the half-overlapping box: 0.125 / (0.25 + 0.25 - 0.125) = 1/3 (with +1 areas: ~0.99)
    assert iou.tolist() == [[1.0, 0.0, pytest.approx(1 / 3)]]


def test_voc_all_point_average_precision():
    # TP, FP, TP against 3 boxes: p = 1, 1/2, 2/3; r = 1/3, 1/3, 2/3
    # AP = 1/3 x 1 + 1/3 x 2/3 = 5/9 (recall never reaches the third box)
    assert voc_average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 3) == pytest.approx(5 / 9)
    # unsorted input ranks the same: FP at 0.95 first -> p = 0, 1/2; r = 0, 1; AP = 1/2
    assert voc_average_precision(np.array([0.5, 0.95]), np.array([True, False]), 1) == pytest.approx(0.5)
    assert voc_average_precision(np.zeros(0), np.zeros(0, bool), 2) == 0.0  # ground truth, no detection


def test_a_perfect_detector_scores_1():
    result = evaluate(TWO_PERSONS, PERFECT)
    assert result.class_ap[1] == 1.0
    assert result.mean_ap == 1.0
    assert result.class_count == {1: 2, 3: 0, 4: 0}


def test_a_duplicate_detection_of_the_same_box_is_a_false_positive():
    # ranked: A (TP), A again (FP: A is taken), B (TP); p = 1, 1/2, 2/3; r = 1/2, 1/2, 1
    # monotone p = 1, 2/3, 2/3 -> AP = 1/2 x 1 + 1/2 x 2/3 = 5/6
    result = evaluate(TWO_PERSONS, [det(902, A, 0.9), det(902, A, 0.85), det(903, B, 0.8)])
    assert result.class_ap[1] == pytest.approx(5 / 6)


def test_a_box_matched_twice_is_a_false_positive_even_with_another_box_free():
    """Two people side by side; the second detection overlaps the first person best
    (IoU 0.818, taken) and the second well (0.739 >= 0.5, free): still a false positive, as
    the official per-image evaluation never falls back to a lower-IoU box."""
    left, right = (0.0, 0.0, 0.4, 1.0), (0.1, 0.0, 0.5, 1.0)
    between = (0.04, 0.0, 0.44, 1.0)
    iou = box_iou(np.array([between]), np.array([left, right]))[0]
    assert iou[0] == pytest.approx(0.36 / 0.44) and iou[1] == pytest.approx(0.34 / 0.46) and iou[1] >= 0.5
    # ranked: TP, FP over 2 boxes: p = 1, 1/2; r = 1/2, 1/2 -> AP = 1/2
    result = evaluate([gt(902, left), gt(902, right)], [det(902, left, 0.9), det(902, between, 0.8)])
    assert result.class_ap[1] == pytest.approx(0.5)


def test_a_detection_on_a_keyframe_without_ground_truth_is_dropped():
    # counted, it would rank first as a false positive: AP 2/3; dropped, AP stays 1
    stray = [det(950, A, 0.99), det(902, A, 0.97, video="another_movie")]
    assert evaluate(TWO_PERSONS, PERFECT + stray).class_ap[1] == 1.0


def test_detections_on_an_empty_keyframe_are_false_positives(tmp_path):
    """A 2-column ground-truth row: the keyframe is scored and has no box."""
    path = tmp_path / "gt.csv"
    path.write_text("v,0902,0.0,0.0,0.5,0.5,1,0\nv,0903,0.5,0.5,1.0,1.0,1,1\nv,0904\n")
    truth, keyframes = read_ava_ground_truth(path)
    # ranked: FP (904), TP, TP: p = 0, 1/2, 2/3; r = 0, 1/2, 1; monotone p = 2/3 throughout
    # AP = 1/2 x 2/3 + 1/2 x 2/3 = 2/3
    result = evaluate(truth, PERFECT + [det(904, A, 0.95)], keyframes)
    assert result.class_ap[1] == pytest.approx(2 / 3)
    assert evaluate(truth, PERFECT + [det(904, A, 0.95)]).class_ap[1] == 1.0  # without it: not scored


def test_a_keyframe_whose_only_boxes_are_unevaluated_classes_is_still_scored():
    """The official reader notes every ground-truth keyframe before it drops other classes."""
    truth = TWO_PERSONS + [gt(905, A, action=2)]
    assert evaluate(truth, PERFECT + [det(905, A, 0.95)]).class_ap[1] == pytest.approx(2 / 3)


def test_only_the_50_highest_scored_detections_of_a_keyframe_count():
    # 50 false positives (on B, no person there) outscore the one true positive on A
    flood = [det(902, B, 0.5 + i / 100) for i in range(50)]
    truth = [gt(902, A)]
    assert evaluate(truth, flood + [det(902, A, 0.1)]).class_ap[1] == 0.0  # the TP is the 51st: dropped
    # with room for 51 it ranks last: p = 1/51 at r = 1 -> AP = 1/51
    assert evaluate(truth, flood + [det(902, A, 0.1)], max_per_keyframe=51).class_ap[1] == pytest.approx(1 / 51)
    # a detection ahead of the flood in the file is evicted all the same: the cap keeps the highest scores
    assert evaluate(truth, [det(902, A, 0.1)] + flood).class_ap[1] == 0.0


def test_the_50_are_counted_across_classes_but_not_unevaluated_ones():
    truth = [gt(902, A)]
    other_class = [det(902, B, 0.5 + i / 100, action=3) for i in range(50)]
    assert evaluate(truth, other_class + [det(902, A, 0.1)]).class_ap[1] == 0.0
    unevaluated = [det(902, B, 0.9, action=2) for _ in range(60)]  # dropped before the cap
    assert evaluate(truth, unevaluated + [det(902, A, 0.1)]).class_ap[1] == 1.0


def test_at_the_cap_a_tied_score_does_not_displace_an_earlier_row():
    """The official heap admits a row into a full keyframe only with a strictly higher score."""
    truth = [gt(902, A)]
    assert evaluate(truth, [det(902, B, 0.5), det(902, A, 0.5)], max_per_keyframe=1).class_ap[1] == 0.0
    assert evaluate(truth, [det(902, A, 0.5), det(902, B, 0.5)], max_per_keyframe=1).class_ap[1] == 1.0


def test_excluded_keyframes_are_dropped_from_both_sides():
    detections = [det(902, A, 0.9), det(903, A, 0.95)]  # the one on 903 misses B
    # scored: FP (903), TP: p = 0, 1/2; r = 0, 1/2 -> AP = 1/2 x 1/2 = 1/4
    assert evaluate(TWO_PERSONS, detections).class_ap[1] == pytest.approx(0.25)
    excluded = evaluate(TWO_PERSONS, detections, excluded={("v", 903)})
    assert excluded.class_ap[1] == 1.0  # B and the miss both gone
    assert excluded.class_count[1] == 1


def test_a_class_outside_the_evaluated_ones_is_ignored():
    truth = TWO_PERSONS + [gt(902, B, action=2)]
    result = evaluate(truth, PERFECT + [det(902, A, 0.99, action=2)])
    assert 2 not in result.class_ap and 2 not in result.class_count
    assert result.mean_ap == 1.0


def test_classes_without_ground_truth_are_out_of_the_mean():
    truth = TWO_PERSONS + [gt(902, B, action=4)]  # class 4: ground truth, never detected (AP 0)
    result = evaluate(truth, PERFECT + [det(902, B, 0.7, action=3)])  # class 3: detected, no ground truth
    assert result.class_ap == {1: 1.0, 3: None, 4: 0.0}
    assert result.mean_ap == pytest.approx(0.5)  # (1 + 0) / 2, not over 3 classes
    assert evaluate([], PERFECT).mean_ap is None


def test_iou_of_exactly_one_half_matches():
    half = (0.0, 0.0, 0.5, 0.25)  # inside A, half its area: IoU = 0.125 / 0.25 = 0.5 exactly
    less = (0.0, 0.0, 0.5, 0.24)  # IoU 0.48
    assert box_iou(np.array([half]), np.array([A]))[0, 0] == 0.5
    assert evaluate([gt(902, A)], [det(902, half, 0.9)]).class_ap[1] == 1.0
    assert evaluate([gt(902, A)], [det(902, less, 0.9)]).class_ap[1] == 0.0


def test_a_detection_with_an_empty_box_is_removed_not_counted():
    inverted = (0.5, 0.0, 0.5, 0.5)  # x1 == x2: the official evaluator removes it
    assert evaluate(TWO_PERSONS, PERFECT + [det(902, inverted, 0.99)]).class_ap[1] == 1.0


def test_the_metric_reads_the_files_the_writers_write(tmp_path):
    write_ava_ground_truth(tmp_path / "gt.csv", TWO_PERSONS, {("v", 904)})
    write_ava_detections(tmp_path / "det.csv", PERFECT + [det(904, A, 0.95)])
    truth, keyframes = read_ava_ground_truth(tmp_path / "gt.csv")
    assert evaluate(truth, read_ava_detections(tmp_path / "det.csv"), keyframes).class_ap[1] == pytest.approx(2 / 3)


def test_per_class_table_is_sorted_by_ground_truth_frequency(tmp_path):
    truth = TWO_PERSONS + [gt(902, B, action=4), gt(903, A, action=4), gt(903, B, action=4), gt(902, B, action=3)]
    result = evaluate(truth, PERFECT + [det(902, B, 0.5, action=4)])
    # class 4: 3 boxes, 1 found first: p = 1, r = 1/3 -> AP 1/3; class 1: 2 boxes, AP 1; class 3: 1 box, AP 0
    table = per_class_ap_table(result, {1: "bend/bow (at the waist)", 3: "talk to (e.g., self)", 4: "dance"})
    assert [(r.name, r.count) for r in table] == [("dance", 3), ("bend/bow (at the waist)", 2),
                                                  ("talk to (e.g., self)", 1)]
    assert [r.ap for r in table] == [pytest.approx(1 / 3), 1.0, 0.0]
    write_per_class_ap_csv(tmp_path / "ap.csv", table)
    assert (tmp_path / "ap.csv").read_text().splitlines() == [
        "class,ap,count", "dance,0.333333,3", "bend/bow (at the waist),1.000000,2",
        '"talk to (e.g., self)",0.000000,1']  # a name with a comma is quoted
    assert math.isclose(result.mean_ap, (1 / 3 + 1 + 0) / 3)
