"""Kinetics' accuracy report on hand-made predictions with answers worked out by hand:
official (a missing video is a miss) and available figures, per-class and mean class
accuracy, groups with their standard error, top-k with few classes and with ties, the
confusion matrix; and the Kinetics-Sounds classes in the real Kinetics-400 val manifest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from avsf.data.demo.world import CLASSES as DEMO_CLASSES, demo_cue_groups
from avsf.data.kinetics import class_names, read_manifest
from avsf.evaluate.classification import (
    KINETICS_SOUNDS,
    classification_report,
    kinetics_sounds_groups,
    ranked_classes,
    true_class_rank,
)

REAL_VAL = Path("/work/shared/reference-annotations/kinetics/kinetics-400_val.csv")
CLASSES = ["a", "b", "c", "d"]
A, B, C, D = range(4)
# video id: (true class, scores or None when the video has no prediction)
VIDEOS = {
    "v01": (A, [0.7, 0.2, 0.1, 0.0]),  # hit
    "v02": (A, [0.1, 0.6, 0.3, 0.0]),  # miss: predicted b, a ranks third
    "v03": (A, [0.5, 0.4, 0.1, 0.0]),  # hit
    "v04": (A, None),
    "v05": (B, [0.2, 0.7, 0.1, 0.0]),  # hit
    "v06": (B, None),
    "v10": (B, [0.3, 0.6, 0.1, 0.0]),  # hit
    "v07": (C, [0.6, 0.1, 0.3, 0.0]),  # miss: predicted a
    "v08": (C, [0.1, 0.1, 0.8, 0.0]),  # hit
    "v09": (C, [0.0, 0.1, 0.9, 0.0]),  # hit
    "v11": (D, None),  # d: its only video is missing
}
GROUPS = {"a": "g1", "c": "g1", "b": "g2"}  # d in no group


def report():
    labels = {video: label for video, (label, _) in VIDEOS.items()}
    scores = {video: np.array(s) for video, (_, s) in VIDEOS.items() if s is not None}
    return classification_report(labels, scores, CLASSES, GROUPS)


def test_official_figures_count_a_missing_video_as_a_miss():
    official = report().official
    assert official.videos == 11
    assert official.top1 == pytest.approx(6 / 11)  # v01 v03 v05 v10 v08 v09
    assert official.top5 == pytest.approx(8 / 11)  # top-5 of 4 classes: every predicted video, no missing one
    assert official.class_videos == {"a": 4, "b": 3, "c": 3, "d": 1}
    assert official.class_top1 == pytest.approx({"a": 2 / 4, "b": 2 / 3, "c": 2 / 3, "d": 0.0})
    assert official.mean_class_accuracy == pytest.approx((1 / 2 + 2 / 3 + 2 / 3 + 0) / 4)


def test_available_figures_count_only_the_videos_with_a_prediction():
    available = report().available
    assert available.videos == 8
    assert available.top1 == pytest.approx(6 / 8) and available.top5 == 1.0
    assert available.class_videos == {"a": 3, "b": 2, "c": 3, "d": 0}
    assert available.class_top1 == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 2 / 3, "d": None})
    assert available.mean_class_accuracy == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)  # d has no video: left out


def test_groups_have_their_top1_and_binomial_standard_error():
    r = report()
    g1, g2 = r.official.groups["g1"], r.official.groups["g2"]
    assert set(r.official.groups) == {"g1", "g2"}
    assert (g1.videos, g1.top1, g1.stderr) == (7, pytest.approx(4 / 7), pytest.approx(math.sqrt(4 / 7 * 3 / 7 / 7)))
    assert (g2.videos, g2.top1, g2.stderr) == (3, pytest.approx(2 / 3), pytest.approx(math.sqrt(2 / 27)))
    g1, g2 = r.available.groups["g1"], r.available.groups["g2"]
    assert (g1.videos, g1.top1, g1.stderr) == (6, pytest.approx(4 / 6), pytest.approx(math.sqrt(1 / 27)))
    assert (g2.videos, g2.top1, g2.stderr) == (2, 1.0, 0.0)


def test_missing_videos_and_the_confusion_matrix():
    r = report()
    assert r.missing == 3 and r.missing_ids == ["v04", "v06", "v11"]
    assert r.confusion.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    assert r.missing_per_class.tolist() == [1, 1, 0, 1]
    assert r.confusion.sum() + r.missing == r.official.videos


def test_to_dict_is_plain_json():
    d = json.loads(json.dumps(report().to_dict()))
    assert d["official"]["top1"] == pytest.approx(6 / 11) and d["available"]["top1"] == pytest.approx(0.75)
    assert d["available"]["per_class"]["d"] == {"top1": None, "videos": 0}
    assert d["official"]["per_class"]["b"] == {"top1": pytest.approx(2 / 3), "videos": 3}
    assert d["available"]["groups"]["g2"] == {"top1": 1.0, "videos": 2, "stderr": 0.0}
    assert d["missing"] == 3 and d["missing_ids"] == ["v04", "v06", "v11"]
    assert d["confusion"] == {"classes": CLASSES, "counts": [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]],
                              "missing": [1, 1, 0, 1]}


def test_top5_cuts_at_the_fifth_class_and_ties_rank_the_lower_index_first():
    classes = list("abcdefg")
    falling = [0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    flat = [0.2] * 7
    pair = [0.1, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]
    cases = {  # video: (true class, scores, rank of the true class)
        "fifth": (4, falling, 4), "sixth": (5, falling, 5),
        "flat_first": (0, flat, 0), "flat_fifth": (4, flat, 4), "flat_last": (6, flat, 6),
        "pair_lower": (1, pair, 0), "pair_upper": (2, pair, 1),
    }
    scores = np.array([s for _, s, _ in cases.values()])
    truth = np.array([t for t, _, _ in cases.values()])
    assert true_class_rank(scores, truth).tolist() == [rank for _, _, rank in cases.values()]
    r = classification_report({v: t for v, (t, _, _) in cases.items()},
                              {v: np.array(s) for v, (_, s, _) in cases.items()}, classes)
    assert r.official.top1 == pytest.approx(2 / 7)  # flat_first, pair_lower
    assert r.official.top5 == pytest.approx(5 / 7)  # all but sixth and flat_last
    assert r.confusion[:, 0].sum() == 5 and r.confusion[2, 1] == 1  # ties predict the lower index
    assert r.official.class_top1["d"] is None and r.official.groups == {}  # a class with no video; no groups


def test_k_above_the_number_of_classes_is_capped():
    r = classification_report({"x": 1, "y": 0}, {"x": np.array([0.9, 0.1]), "y": np.array([0.5, 0.5])}, ["p", "q"])
    assert (r.official.top1, r.official.top5) == (0.5, 1.0)


def test_inconsistent_inputs_are_refused():
    with pytest.raises(ValueError, match="not in the manifest"):
        classification_report({"x": 0}, {"x": np.ones(2), "y": np.ones(2)}, ["p", "q"])
    with pytest.raises(ValueError, match="label 2"):
        classification_report({"x": 2}, {}, ["p", "q"])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        classification_report({"x": 0}, {"x": np.ones(3)}, ["p", "q"])
    with pytest.raises(ValueError, match="groups name classes"):
        classification_report({"x": 0}, {}, ["p", "q"], {"r": "g"})


def test_nothing_predicted_leaves_the_available_figures_empty():
    r = classification_report({"x": 0, "y": 1}, {}, ["p", "q"], {"p": "g"})
    assert (r.official.top1, r.official.mean_class_accuracy) == (0.0, 0.0)
    assert (r.available.videos, r.available.top1, r.available.mean_class_accuracy) == (0, None, None)
    assert r.available.groups["g"].top1 is None and r.official.groups["g"].stderr == 0.0
    assert r.confusion.sum() == 0 and r.missing_per_class.tolist() == [1, 1]


def test_kinetics_sounds_groups_and_the_demo_cues():
    assert len(KINETICS_SOUNDS) == len(set(KINETICS_SOUNDS)) == 32
    assert kinetics_sounds_groups(["bowling", "abseiling", "singing"]) == {"bowling": "kinetics_sounds",
                                                                         "singing": "kinetics_sounds"}
    names = [c.name for c in DEMO_CLASSES]
    assert kinetics_sounds_groups(names) == {}
    cues = demo_cue_groups()
    assert list(cues) == names and cues["humming"] == "sound" and cues["blinking light"] == "motion"
    assert sorted(set(cues.values())) == ["appearance", "audiovisual", "motion", "sound"]


@pytest.mark.skipif(not REAL_VAL.is_file(), reason="reference annotations not present")
def test_the_kinetics_400_val_manifest_holds_every_kinetics_sounds_class():
    classes = class_names(read_manifest(REAL_VAL).segments)
    assert len(classes) == 400
    assert sorted(set(KINETICS_SOUNDS) - set(classes)) == []
    assert len(kinetics_sounds_groups(classes)) == 32


def test_a_video_with_non_finite_scores_is_a_miss_and_ranks_last():
    nan = float("nan")
    labels = {"a": 0, "b": 1}
    scores = {"a": np.array([nan, nan, nan]), "b": np.array([0.1, np.inf, 0.2])}
    report = classification_report(labels, scores, ["x", "y", "z"])
    assert report.official.top1 == 0.0 and report.official.top5 == 0.0  # a diverged model scores nothing
    assert ranked_classes([0.2, nan, 0.5, 0.2]) == [2, 0, 3, 1]
    assert ranked_classes([0.3, 0.3, 0.9], k=2) == [2, 0]
