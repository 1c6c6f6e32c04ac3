"""Charades mAP (avsf.evaluate.charades): the official script's semantics, the sklearn
variant, and the predictions file."""

import numpy as np
import pytest

from avsf.evaluate.charades import charades_map, read_charades_predictions, write_charades_predictions


def _five_videos():
    """3 classes; v3's `actions` is empty; v4 has no prediction."""
    ground_truth = {"v1": {0}, "v2": {0, 1}, "v3": set(), "v4": {1}, "v5": {0, 2}}
    scores = {"v1": np.array([0.9, 0.1, 0.2]), "v2": np.array([0.8, 0.7, 0.1]),
              "v3": np.array([0.95, 0.9, 0.99]), "v5": np.array([0.3, 0.2, 0.6])}
    return scores, ground_truth


def test_official_map_by_hand():
    # Official: v3 (empty actions) and v4 (no prediction) score -inf; ties keep file order.
    # class 0: v1 .9 P, v2 .8 P, v5 .3 P, v3, v4        -> (1/1 + 2/2 + 3/3) / 3 = 1
    # class 1: v2 .7 P, v5 .2, v1 .1, v3 -inf, v4 -inf P -> (1/1 + 2/5) / 2     = 0.7
    # class 2: v5 .6 P, v1 .2, v2 .1, v3, v4             -> 1/1                 = 1
    # mAP = (1 + 0.7 + 1) / 3 = 0.9
    scores, ground_truth = _five_videos()
    mean_ap, aps = charades_map(scores, ground_truth, num_classes=3)
    np.testing.assert_allclose(aps, [1.0, 0.7, 1.0])
    assert mean_ap == pytest.approx(0.9)


def test_official_ignores_the_prediction_of_an_empty_actions_video_and_keeps_file_order_for_ties():
    scores, ground_truth = _five_videos()
    scores["v3"] = np.array([-5.0, -5.0, -5.0])  # whatever it predicts, it scores -inf
    assert charades_map(scores, ground_truth, num_classes=3)[1][1] == pytest.approx(0.7)
    scores.pop("v3")
    assert charades_map(scores, ground_truth, num_classes=3)[1][1] == pytest.approx(0.7)
    # With v4 before v3 in the file, v4's positive ranks 4th: class 1 -> (1/1 + 2/4) / 2 = 0.75.
    reordered = {k: ground_truth[k] for k in ("v1", "v2", "v4", "v3", "v5")}
    assert charades_map(scores, reordered, num_classes=3)[1][1] == pytest.approx(0.75)


def test_sklearn_variant_by_hand():
    # v3 is a plain negative scored by its prediction; v4 (no prediction) ranks last.
    # class 0: v3 .95, v1 .9 P, v2 .8 P, v5 .3 P, v4 -> (1/2 + 2/3 + 3/4) / 3 = 0.638889
    # class 1: v3 .9, v2 .7 P, v5 .2, v1 .1, v4 P    -> (1/2 + 2/5) / 2       = 0.45
    # class 2: v3 .99, v5 .6 P, ...                  -> 1/2                   = 0.5
    scores, ground_truth = _five_videos()
    mean_ap, aps = charades_map(scores, ground_truth, num_classes=3, variant="sklearn")
    np.testing.assert_allclose(aps, [(1 / 2 + 2 / 3 + 3 / 4) / 3, 0.45, 0.5])
    assert mean_ap == pytest.approx(((1 / 2 + 2 / 3 + 3 / 4) / 3 + 0.45 + 0.5) / 3)


def test_a_class_without_positives_makes_the_official_map_nan_and_is_dropped_by_sklearn():
    scores, ground_truth = _five_videos()
    ground_truth["v5"] = {0}  # class 2 now has no positive
    official, official_aps = charades_map(scores, ground_truth, num_classes=3)
    assert np.isnan(official) and np.isnan(official_aps[2])
    np.testing.assert_allclose(official_aps[:2], [1.0, 0.7])
    mean_ap, aps = charades_map(scores, ground_truth, num_classes=3, variant="sklearn")
    assert np.isnan(aps[2]) and mean_ap == pytest.approx(np.mean(aps[:2]))


def test_ties_official_in_file_order_sklearn_as_one_threshold():
    # One class; a (P) and b (N) tie at 0.5, c (P) at 0.2.
    # official, a before b: (1/1 + 2/3) / 2 = 0.8333; b before a: (1/2 + 2/3) / 2 = 0.5833
    # sklearn: the tie is one threshold: recall 1/2 at precision 1/2, then 1/2 at 2/3 -> 0.5833
    # (b is a positive of class 1, so that its actions are not empty: official keeps its score.)
    scores = {"a": [0.5, 0.0], "b": [0.5, 0.0], "c": [0.2, 0.0]}
    a_first = {"a": {0}, "b": {1}, "c": {0}}
    b_first = {k: a_first[k] for k in ("b", "a", "c")}
    assert charades_map(scores, a_first, 2)[1][0] == pytest.approx(5 / 6)
    assert charades_map(scores, b_first, 2)[1][0] == pytest.approx(7 / 12)
    assert charades_map(scores, a_first, 2, "sklearn")[1][0] == pytest.approx(7 / 12)
    assert charades_map(scores, b_first, 2, "sklearn")[1][0] == pytest.approx(7 / 12)


def test_no_ties_official_and_sklearn_agree_when_every_video_has_actions_and_predictions():
    rng = np.random.default_rng(5)
    ground_truth = {f"v{i}": set(rng.choice(4, size=rng.integers(1, 3), replace=False).tolist()) for i in range(30)}
    scores = {video: rng.random(4) for video in ground_truth}
    official = charades_map(scores, ground_truth, 4)
    sklearn_like = charades_map(scores, ground_truth, 4, "sklearn")
    np.testing.assert_allclose(official[1], sklearn_like[1])


def test_sklearn_variant_equals_sklearn_average_precision_score():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    ids = [f"v{i}" for i in range(40)]
    ground_truth = {v: set(np.flatnonzero(rng.random(5) < 0.3).tolist()) for v in ids}
    scores = {v: np.round(rng.random(5), 1) for v in ids[:34]}  # rounded: many ties; 6 videos missing
    _, aps = charades_map(scores, ground_truth, 5, "sklearn")
    matrix = np.array([scores.get(v, np.full(5, -1.0)) for v in ids])  # missing: below every score
    labels = np.array([[c in ground_truth[v] for c in range(5)] for v in ids])
    for c in range(5):
        if labels[:, c].any():
            assert aps[c] == pytest.approx(metrics.average_precision_score(labels[:, c], matrix[:, c]))


def test_stray_predictions_are_ignored_and_wrong_lengths_refused():
    scores, ground_truth = _five_videos()
    baseline = charades_map(scores, ground_truth, 3)[0]
    assert charades_map({**scores, "not_in_split": np.ones(3)}, ground_truth, 3)[0] == baseline
    with pytest.raises(ValueError, match="2 scores, not 3"):
        charades_map({**scores, "v1": np.ones(2)}, ground_truth, 3)
    with pytest.raises(ValueError, match="variant"):
        charades_map(scores, ground_truth, 3, "voc")


def test_predictions_file_round_trip_and_tabs(tmp_path):
    path = tmp_path / "preds.txt"
    scores = {"46GP8": np.array([0.1, -2.5e-07, 3.0]), "N11GT": np.array([1 / 3, 0.0, -np.inf])}
    write_charades_predictions(path, scores)
    first = path.read_text().splitlines()[0]
    assert first.split(" ")[0] == "46GP8" and len(first.split(" ")) == 4
    back = read_charades_predictions(path, num_classes=3)
    assert list(back) == ["46GP8", "N11GT"]
    for video in scores:
        np.testing.assert_array_equal(back[video], scores[video])  # exact: shortest repr
    tabbed = tmp_path / "tabbed.txt"
    tabbed.write_text("A\t0.5\t0.25 1\n\nB 1\t2\t3\n")
    assert {k: v.tolist() for k, v in read_charades_predictions(tabbed, 3).items()} == {
        "A": [0.5, 0.25, 1.0], "B": [1.0, 2.0, 3.0]}
    tabbed.write_text("A 0.5 0.25\n")
    with pytest.raises(ValueError, match="2 scores, not 3"):
        read_charades_predictions(tabbed, 3)
