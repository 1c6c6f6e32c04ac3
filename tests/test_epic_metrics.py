"""EPIC-Kitchens-100 metrics (avsf.evaluate.epic): the official action scoring, the subsets,
missing segments, and the results file."""

import itertools
import math
import pickle

import numpy as np
import pytest
import torch

from avsf.evaluate.epic import action_id, action_scores, epic_metrics, read_epic_submission, write_epic_submission


def test_action_id_is_the_official_verb_times_1000_plus_noun():
    assert action_id(0, 351) == 351
    assert action_id(2, 7) == 2007
    assert action_id(np.array([0, 1]), np.array([5, 0])).tolist() == [5, 1000]


def test_action_ranking_follows_the_logits_where_probabilities_would_rank_otherwise():
    # Probabilities p_verb = (0.7, 0.3), p_noun = (0.5, 0.4, 0.1), passed as their logs: the
    # products rank (0,0) .35, (0,1) .28, (1,0) .15, (1,1) .12, (0,2) .07, (1,2) .03.
    # Fed the probabilities themselves, the official softmax would rank by p_v + p_n and put
    # (0,2) (sum 0.8) above (1,1) (sum 0.7): hence probabilities are refused.
    p_verb, p_noun = np.array([[0.7, 0.3]]), np.array([[0.5, 0.4, 0.1]])
    ids, scores = action_scores(np.log(p_verb), np.log(p_noun))
    assert ids.tolist() == [[0, 1, 1000, 1001, 2, 1002]]
    np.testing.assert_allclose(scores, [[0.35, 0.28, 0.15, 0.12, 0.07, 0.03]], rtol=1e-12)
    with pytest.raises(ValueError, match="logits, not probabilities"):
        action_scores(p_verb, p_noun)


def test_action_scores_softmax_over_the_kept_top_k_only():
    # top_k=2 keeps verbs 0, 1 (logits ln 3, 0 -> softmax 3/4, 1/4) and nouns 1, 0 (ln 4, 0
    # -> 4/5, 1/5); a softmax over all three classes would give less. Products:
    # (0,1) .6, (1,1) .2, (0,0) .15, (1,0) .05; the top 2 are kept.
    verbs = np.array([[math.log(3), 0.0, -5.0]])
    nouns = np.array([[0.0, math.log(4), -9.0]])
    ids, scores = action_scores(verbs, nouns, top_k=2)
    assert ids.tolist() == [[1, 1001]]
    np.testing.assert_allclose(scores, [[0.6, 0.2]], rtol=1e-12)


def test_action_scores_match_a_brute_force_ranking_of_logit_sums():
    rng = np.random.default_rng(3)
    verbs, nouns = rng.normal(size=(6, 7)), rng.normal(size=(6, 9))
    ids, scores = action_scores(verbs, nouns, top_k=5)
    for row in range(6):
        kept_verbs = sorted(range(7), key=lambda v: -verbs[row, v])[:5]
        kept_nouns = sorted(range(9), key=lambda n: -nouns[row, n])[:5]
        pairs = sorted(itertools.product(kept_verbs, kept_nouns), key=lambda vn: -(verbs[row, vn[0]] + nouns[row, vn[1]]))
        assert ids[row].tolist() == [v * 1000 + n for v, n in pairs[:5]]
    assert (np.diff(scores, axis=1) <= 0).all()


def test_tied_actions_rank_the_lower_action_id_first():
    ids, scores = action_scores(np.zeros((1, 2)), np.zeros((1, 2)))
    assert ids.tolist() == [[0, 1, 1000, 1001]]
    np.testing.assert_allclose(scores, 0.25)


def _four_segments():
    """Four segments (3 verbs, 4 nouns), the third without a prediction (its logits zeros)."""
    verbs = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 0], [0, 0, 4]], float)
    nouns = np.array([[0, 2, 0, 0], [0, 0, 0, 5], [0, 0, 0, 0], [1, 0, 0, 0]], float)
    return dict(verb_logits=verbs, noun_logits=nouns, verb_labels=[0, 2, 1, 2], noun_labels=[1, 3, 2, 2],
                participant_ids=["P01", "P02", "P02", "P03"], tail_verbs=[2], tail_nouns=[2],
                unseen_participants=["P02"], predicted=[True, True, False, True])


def test_epic_metrics_count_missing_segments_as_misses_and_score_the_subsets():
    # seg0: verb 0 rank 0, noun 1 rank 0, action (0,1) rank 0.
    # seg1: verb 2 rank 2 (3 for verb 1; verb 0 ties at 0 with the lower index), noun 3 rank 0,
    #       action (2,3) rank 2 (sums: (1,3) 8, then (0,3) and (2,3) tie at 5, id 3 first).
    # seg2: no prediction: a miss at every k.
    # seg3: verb 2 rank 0, noun 2 rank 2 (noun 0 scores 1, noun 1 ties lower), action (2,2)
    #       rank 2 ((2,0) 5, then (2,1), (2,2), (2,3) tie at 4).
    result = epic_metrics(**_four_segments())
    official, available = result["official"], result["available"]
    assert result["missing"] == 1 and result["missing_rows"] == [2]
    assert official["segments"] == 4 and available["segments"] == 3
    assert {k: official[k] for k in ("verb_top1", "verb_top5", "noun_top1", "noun_top5", "action_top1",
                                     "action_top5")} == {"verb_top1": 50.0, "verb_top5": 75.0, "noun_top1": 50.0,
                                                         "noun_top5": 75.0, "action_top1": 25.0, "action_top5": 75.0}
    assert available["verb_top1"] == pytest.approx(200 / 3) and available["verb_top5"] == 100.0
    assert available["action_top1"] == pytest.approx(100 / 3) and available["action_top5"] == 100.0
    # Tail: verb 2 (seg1, seg3), noun 2 (seg2, seg3), action: verb or noun tail (seg1, seg2, seg3).
    assert official["tail"] == {"verb_top1": 50.0, "verb_segments": 2, "noun_top1": 0.0, "noun_segments": 2,
                                "action_top1": 0.0, "action_segments": 3}
    assert available["tail"] == {"verb_top1": 50.0, "verb_segments": 2, "noun_top1": 0.0, "noun_segments": 1,
                                 "action_top1": 0.0, "action_segments": 2}
    # Unseen: participant P02 (seg1, seg2 officially; seg1 among the available).
    assert official["unseen"] == {"segments": 2, "verb_top1": 0.0, "verb_top5": 50.0, "noun_top1": 50.0,
                                  "noun_top5": 50.0, "action_top1": 0.0, "action_top5": 50.0}
    assert available["unseen"]["segments"] == 1 and available["unseen"]["noun_top1"] == 100.0


def test_epic_metrics_all_predicted_by_default_and_empty_subsets_are_none():
    case = _four_segments()
    del case["predicted"]
    case.update(unseen_participants=["P99"], tail_nouns=[])
    result = epic_metrics(**case)
    assert result["missing"] == 0 and result["official"] == result["available"]
    assert result["official"]["unseen"]["segments"] == 0 and result["official"]["unseen"]["verb_top1"] is None
    assert result["official"]["tail"]["noun_top1"] is None


def test_epic_metrics_refuse_probabilities():
    case = _four_segments()
    case["verb_logits"] = torch.softmax(torch.tensor(case["verb_logits"]), dim=1)  # a tensor, too
    with pytest.raises(ValueError, match="probabilities"):
        epic_metrics(**case)


def test_epic_metrics_reject_labels_outside_the_classes():
    case = _four_segments()
    case["noun_labels"] = [1, 3, 4, 2]
    with pytest.raises(ValueError, match="noun labels"):
        epic_metrics(**case)


def test_submission_is_a_pickle_of_numpy_arrays_even_from_torch_tensors(tmp_path):
    path = tmp_path / "results" / "val.pkl"
    verbs = torch.tensor([[1.5, -2.0, 0.0], [0.25, 3.0, 1.0]], dtype=torch.float64)
    nouns = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    write_epic_submission(path, ["P01_101_0", "P01_101_1"], verbs, nouns)
    assert [p.name for p in path.parent.iterdir()] == ["val.pkl"]  # written atomically, no temporary left
    with open(path, "rb") as f:
        raw = pickle.load(f)
    assert set(raw) == {"narration_id", "verb_output", "noun_output"}
    assert type(raw["verb_output"]) is np.ndarray and raw["verb_output"].dtype == np.float32
    assert type(raw["noun_output"]) is np.ndarray and raw["noun_output"].shape == (2, 2)
    assert type(raw["narration_id"]) is np.ndarray and raw["narration_id"].tolist() == ["P01_101_0", "P01_101_1"]
    back = read_epic_submission(path)
    np.testing.assert_array_equal(back["verb_output"], verbs.numpy().astype(np.float32))
    np.testing.assert_array_equal(back["noun_output"], nouns.numpy())


def test_submission_refuses_probabilities_and_mismatched_rows(tmp_path):
    with pytest.raises(ValueError, match="probabilities"):
        write_epic_submission(tmp_path / "p.pkl", ["a"], np.array([[0.25, 0.75]]), np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="narration ids"):
        write_epic_submission(tmp_path / "p.pkl", ["a", "b"], np.zeros((1, 2)), np.zeros((1, 2)))
    assert not (tmp_path / "p.pkl").exists()
