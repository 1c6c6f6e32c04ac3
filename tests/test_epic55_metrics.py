"""EPIC-Kitchens-55 metrics and submission files (avsf.evaluate.epic55): known answers by hand,
the official library's own known answers, missing segments, and the server's JSON format."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest

from avsf.evaluate.epic55 import (
    action_id,
    epic55_metrics,
    ranked_actions,
    read_epic55_submission,
    submission_results,
    write_epic55_submission,
    zip_submission,
)


def test_action_id_is_the_official_verb_times_352_plus_noun():
    assert action_id(0, 351) == 351 and action_id(1, 0) == 352 and action_id(2, 7) == 711
    assert action_id(np.array([0, 1, 2]), np.array([0, 1, 2])).tolist() == [0, 353, 706]


def test_actions_are_the_top_k_verbs_times_top_k_nouns_softmaxed_over_the_kept_ones():
    # p_verb (.6, .3, .1) and p_noun (.8, .2) as logits; top_k=2 keeps verbs 0, 1 (softmax of
    # the kept: 2/3, 1/3) and both nouns: products (0,0) 8/15, (1,0) 4/15, (0,1) 2/15, (1,1) 1/15.
    verbs, nouns = np.log([[0.6, 0.3, 0.1]]), np.log([[0.8, 0.2]])
    v, n, scores = ranked_actions(verbs, nouns, top_k=2)
    assert (v.tolist(), n.tolist()) == ([[0, 1]], [[0, 0]])
    np.testing.assert_allclose(scores, [[8 / 15, 4 / 15]], rtol=1e-12)
    v, n, scores = ranked_actions(verbs, nouns)  # top 100 of the 6 pairs: all of them
    assert list(zip(v[0].tolist(), n[0].tolist())) == [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (2, 1)]
    np.testing.assert_allclose(scores[0], [0.48, 0.24, 0.12, 0.08, 0.06, 0.02], rtol=1e-12)
    with pytest.raises(ValueError, match="logits, not probabilities"):
        ranked_actions(np.exp(verbs), np.exp(nouns))
    with pytest.raises(ValueError, match="353 noun classes"):
        ranked_actions(np.zeros((1, 2)), np.arange(353.0)[None])


def test_the_official_librarys_own_known_answers():
    # epic-kitchens/epic-kitchens-55-lib, tests/unit/test_metrics.py (TestComputeMetrics): its
    # scores, passed as logits (their logs), give the values it asserts (fractions there, % here).
    verbs = np.log([[0.1, 0.9], [0.6, 0.4], [0.1, 0.9], [0.9, 0.1]])
    nouns = np.log([[0.1, 0.2, 0.7], [0.2, 0.7, 0.1], [0.3, 0.4, 0.3], [0.1, 0.1, 0.8]])
    m = epic55_metrics(verbs, nouns, [0, 0, 1, 1], [0, 0, 1, 2], [0, 1], [0, 1], [(0, 0), (1, 1)])["official"]
    assert [m[f"{k}_top{i}"] for k in ("verb", "noun", "action") for i in (1, 5)] == [50, 100, 50, 100, 25, 75]
    assert {k: m["precision"][k] for k in ("verb", "noun", "action")} == {"verb": 50, "noun": 25, "action": 50}
    assert {k: m["recall"][k] for k in ("verb", "noun", "action")} == {"verb": 50, "noun": 50, "action": 50}


# Five segments, 3 verbs and 2 nouns; the fifth has no prediction. Predicted classes get logit
# 2 (verbs) or 3 (nouns), the others 0, so a segment's actions rank by verb + noun logit:
# the predicted pair (5), the other verbs with the predicted noun (3), the predicted verb with
# the other noun (2), the rest (0).
TRUTH = [(0, 0), (0, 1), (1, 0), (2, 0), (1, 1)]
PREDICTED = [(0, 0), (1, 1), (1, 0), (0, 0), None]


def hand_made():
    verbs, nouns = np.zeros((5, 3)), np.zeros((5, 2))
    for row, pair in enumerate(PREDICTED):
        if pair:
            verbs[row, pair[0]], nouns[row, pair[1]] = 2.0, 3.0
    return verbs, nouns, [v for v, _ in TRUTH], [n for _, n in TRUTH], np.array([p is not None for p in PREDICTED])


def test_known_answers_with_a_missing_segment_and_many_shot_classes():
    verbs, nouns, verb_truth, noun_truth, predicted = hand_made()
    report = epic55_metrics(verbs, nouns, verb_truth, noun_truth, many_shot_verbs=[0, 1], many_shot_nouns=[0, 1],
                            many_shot_actions=[(0, 0), (1, 1), (2, 1)], predicted=predicted)
    assert (report["missing"], report["missing_rows"]) == (1, [4])
    o = report["official"]  # every segment; the fifth misses and predicts nothing
    assert o["segments"] == 5
    # top-1: verbs right on segments 0, 2; nouns on 0-3; actions on 0, 2. Top-5: each
    # predicted segment's true class is within its first 5 (segment 1's action (0,1) ranks
    # 2nd, tied with (2,1) and the lower pair first; segment 3's (2,0) 3rd, after (1,0)).
    assert [o[f"{k}_top{i}"] for k in ("verb", "noun", "action") for i in (1, 5)] == [40, 80, 80, 80, 40, 80]
    # Verb 0: predicted on 0, 3 (right on 0), true on 0, 1 -> 50 / 50; verb 1: predicted on
    # 1, 2 (right on 2), true on 2, 4 -> 50 / 50. Verb 2 is not many-shot.
    assert o["precision"]["verb"] == 50 and o["recall"]["verb"] == 50
    assert o["precision"]["verb_per_class"] == {"0": 50, "1": 50} == o["recall"]["verb_per_class"]
    # Noun 0: predicted on 0, 2, 3, all right, true there -> 100 / 100; noun 1: predicted on
    # 1 (right), true on 1 and the missing 4 -> 100 / 50.
    assert (o["precision"]["noun"], o["recall"]["noun"]) == (100, 75)
    # Actions: (2,1) never occurs, so it is left out; (0,0) predicted on 0, 3 (right on 0),
    # true on 0 -> 50 / 100; (1,1) predicted on 1 (wrong), true on the missing 4 -> 0 / 0.
    assert (o["precision"]["action"], o["recall"]["action"]) == (25, 50)
    assert o["many_shot_classes"] == {"verb": 2, "noun": 2, "action": 2}
    a = report["available"]  # the four predicted segments only
    assert [a[f"{k}_top{i}"] for k in ("verb", "noun", "action") for i in (1, 5)] == [50, 100, 100, 100, 50, 100]
    assert (a["precision"]["verb"], a["recall"]["verb"]) == (50, 75)  # verb 1's only true segment is right
    assert (a["precision"]["noun"], a["recall"]["noun"]) == (100, 100)
    assert (a["precision"]["action"], a["recall"]["action"]) == (50, 100)  # (1,1) no longer occurs
    assert a["many_shot_classes"] == {"verb": 2, "noun": 2, "action": 1}


def test_a_class_never_predicted_has_precision_zero_and_a_diverged_row_misses():
    verbs = np.array([[2.0, 0.0], [2.0, 0.0], [np.nan, 0.0]])
    nouns = np.array([[0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])
    m = epic55_metrics(verbs, nouns, [0, 1, 1], [1, 1, 1], [0, 1], [1], [(1, 1)])["official"]
    # Verb 0: predicted on 0, 1 (right on 0) -> 50 / 100; verb 1 never predicted -> 0 / 0
    # (the NaN row predicts nothing).
    assert m["precision"]["verb_per_class"] == {"0": 50, "1": 0} and m["recall"]["verb_per_class"] == {"0": 100,
                                                                                                        "1": 0}
    assert m["verb_top1"] == pytest.approx(100 / 3) and m["noun_top1"] == pytest.approx(200 / 3)
    # Row 0's action (0,1) is its first, row 1's (1,1) its second of 4; row 2 misses everywhere.
    assert m["action_top1"] == pytest.approx(100 / 3) and m["action_top5"] == pytest.approx(200 / 3)


def test_empty_subsets_give_none_and_bad_inputs_raise():
    m = epic55_metrics(np.zeros((1, 2)), np.zeros((1, 2)), [0], [0], [1], [1], [(1, 1)], predicted=[False])
    assert m["available"]["verb_top1"] is None and m["available"]["precision"]["verb"] is None
    assert m["official"]["verb_top1"] == 0 and m["official"]["precision"]["verb"] is None  # verb 1 not in labels
    with pytest.raises(ValueError, match="logits, not probabilities"):
        epic55_metrics(np.array([[0.2, 0.8]]), np.array([[1.0, 0.0]]), [0], [0], [], [], [])
    with pytest.raises(ValueError, match=r"verb labels outside \[0, 2\)"):
        epic55_metrics(np.zeros((1, 2)), np.zeros((1, 3)), [2], [0], [], [], [])
    with pytest.raises(ValueError, match="one row per segment"):
        epic55_metrics(np.zeros((2, 2)), np.zeros((1, 3)), [0], [0], [], [], [])


# --------------------------------------------------------------------------- submission files


def test_the_writer_writes_the_servers_format(tmp_path):
    rng = np.random.default_rng(0)
    verbs, nouns = rng.normal(size=(2, 125)).astype(np.float32), rng.normal(size=(2, 352)).astype(np.float32)
    verbs[0, 0] = 1.223
    write_epic55_submission(tmp_path / "seen.json", [1924, "1925"], verbs, nouns)
    text = (tmp_path / "seen.json").read_text()
    data = json.loads(text)
    assert list(data) == ["version", "challenge", "results"]
    assert (data["version"], data["challenge"]) == ("0.1", "action_recognition")
    assert list(data["results"]) == ["1924", "1925"]
    entry = data["results"]["1924"]
    assert list(entry) == ["verb", "noun", "action"]
    assert list(entry["verb"]) == [str(c) for c in range(125)] and list(entry["noun"]) == [str(c) for c in range(352)]
    assert '"0":1.223,' in text  # float32 scores written as their shortest decimals
    assert all(np.float32(entry["noun"][str(c)]) == nouns[0, c] for c in range(352))
    assert len(entry["action"]) == 100  # exactly 100 where the pairs allow it (125 x 352 do)
    v, n, scores = ranked_actions(verbs, nouns)
    assert list(entry["action"]) == [f"{a},{b}" for a, b in zip(v[0], n[0])]
    np.testing.assert_allclose(list(entry["action"].values()), scores[0], rtol=1e-6)
    assert all(key.count(",") == 1 and " " not in key for key in entry["action"])

    sub = read_epic55_submission(tmp_path / "seen.json", uids=["1924", "1925"], verb_classes=125, noun_classes=352)
    assert sub.uids == ["1924", "1925"]
    np.testing.assert_array_equal(sub.verb.astype(np.float32), verbs)  # the same float32s
    np.testing.assert_array_equal(sub.noun.astype(np.float32), nouns)
    assert list(sub.actions[1]) == list(zip(v[1].tolist(), n[1].tolist()))


def test_few_classes_carry_every_pair_and_actions_may_be_left_out(tmp_path):
    verbs, nouns = np.arange(5.0)[None], np.arange(8.0)[None]
    data = submission_results(["3"], verbs, nouns)
    assert len(data["results"]["3"]["action"]) == 40  # the demo's 5 verbs x 8 nouns: fewer than 100
    assert next(iter(data["results"]["3"]["action"])) == "4,7"
    data = submission_results(["3"], verbs, nouns, action_top_k=None)
    assert list(data["results"]["3"]) == ["verb", "noun"]
    write_epic55_submission(tmp_path / "unseen.json", ["3"], verbs, nouns, action_top_k=None)
    assert read_epic55_submission(tmp_path / "unseen.json").actions == [None]


def test_scoring_a_read_submission_gives_the_figures_of_its_logits(tmp_path):
    verbs, nouns, verb_truth, noun_truth, _ = hand_made()
    write_epic55_submission(tmp_path / "seen.json", range(5), verbs, nouns)
    sub = read_epic55_submission(tmp_path / "seen.json", uids=range(5), verb_classes=3, noun_classes=2)
    args = (verb_truth, noun_truth, [0, 1], [0, 1], [(0, 0), (1, 1)])
    assert epic55_metrics(sub.verb, sub.noun, *args) == epic55_metrics(verbs, nouns, *args)


def test_the_writer_refuses_what_the_server_cannot_take(tmp_path):
    logits = np.zeros((2, 3)), np.zeros((2, 4))
    with pytest.raises(ValueError, match="uids repeat"):
        submission_results(["1", "1"], *logits)
    with pytest.raises(ValueError, match="not an EPIC-55 uid"):
        submission_results(["P01_01_0", "1"], *logits)
    with pytest.raises(ValueError, match="NaN or infinite"):
        submission_results(["1", "2"], np.array([[0.0, math.inf, 0.0]] * 2), logits[1])
    with pytest.raises(ValueError, match="logits, not probabilities"):
        submission_results(["1", "2"], np.full((2, 3), 1 / 3), logits[1])
    with pytest.raises(ValueError, match="1 to 100 action scores"):
        submission_results(["1", "2"], *logits, action_top_k=101)
    with pytest.raises(ValueError, match=r"need \[N\], \[N, V\], \[N, Nn\]"):
        write_epic55_submission(tmp_path / "seen.json", ["1"], *logits)
    assert not (tmp_path / "seen.json").exists()


def entry(verbs: int = 2, nouns: int = 3, **extra) -> dict:
    return {"verb": {str(c): 0.5 for c in range(verbs)}, "noun": {str(c): 0.5 for c in range(nouns)}, **extra}


@pytest.mark.parametrize("text, message", [
    ('{"version": "0.2", "challenge": "action_recognition", "results": {}}', "version '0.2'"),
    ('{"version": "0.1", "challenge": "action_anticipation", "results": {}}', "challenge 'action_anticipation'"),
    ('{"version": "0.1", "challenge": "action_recognition"}', "the format has version, challenge, results"),
    ('{"version": "0.1", "challenge": "action_recognition", "results": {}, "x": 1}', "the top level has"),
    (json.dumps({"version": "0.1", "challenge": "action_recognition", "results": {"1": entry(), "2": entry()}}),
     r"1 segment\(s\) of the test set missing \(e.g. \['3'\]\), 1 not in it \(e.g. \['2'\]\)"),
])
def test_the_reader_checks_the_top_level_and_the_segments(tmp_path, text, message):
    path = tmp_path / "seen.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_epic55_submission(path, uids=["1", "3"])
    assert str(path) in str(info.value)


@pytest.mark.parametrize("results, message", [
    ({"1": entry(verbs=1)}, r"results\['1'\].verb: keys are not the classes 0..1"),
    ({"1": {"verb": entry()["verb"]}}, r"results\['1'\]: has \['verb'\]; an entry has verb, noun"),
    ({"1": entry(scores=1)}, r"has \['noun', 'scores', 'verb'\]"),
    ({"1": entry(action={f"{v},{n}": 0.1 for v in range(2) for n in range(3)} | {"0,9": 0.1})},
     r"key '0,9' is not '<verb>,<noun>' of classes below 2, 3"),
    ({"1": entry(action={"1-2": 0.1})}, "key '1-2' is not"),
    ({"1": entry(action={"1,2": "high"})}, r"action\['1,2'\]: score 'high' is not a finite number"),
    ({"1": {"verb": {"0": True, "1": 0.0}, "noun": entry()["noun"]}}, "score True is not a finite number"),
    ({"P01": entry()}, r"results\['P01'\]: the key is not a uid"),
    ({"1": entry(), "2": entry(nouns=4)}, r"results\['2'\].noun: keys are not the classes 0..2"),
])
def test_the_reader_checks_each_entry(tmp_path, results, message):
    path = tmp_path / "seen.json"
    path.write_text(json.dumps({"version": "0.1", "challenge": "action_recognition", "results": results}))
    with pytest.raises(ValueError, match=message):
        read_epic55_submission(path, verb_classes=2, noun_classes=3)


def test_the_reader_refuses_more_than_100_actions_nan_and_repeated_keys(tmp_path):
    path = tmp_path / "seen.json"
    many = {f"{v},{n}": 0.01 for v in range(11) for n in range(10)}
    path.write_text(json.dumps({"version": "0.1", "challenge": "action_recognition",
                                "results": {"1": entry(11, 10, action=many)}}))
    with pytest.raises(ValueError, match="110 action scores; at most 100"):
        read_epic55_submission(path)
    path.write_text('{"version": "0.1", "challenge": "action_recognition", '
                    '"results": {"1": {"verb": {"0": NaN}, "noun": {"0": 1}}}}')
    with pytest.raises(ValueError, match="score nan is not a finite number"):
        read_epic55_submission(path)
    path.write_text('{"version": "0.1", "challenge": "action_recognition", '
                    '"results": {"1": {"verb": {"0": 1, "0": 2}, "noun": {"0": 1}}}}')
    with pytest.raises(ValueError, match="key '0' repeats in one object"):
        read_epic55_submission(path)
    path.write_text('{"version": ')
    with pytest.raises(ValueError, match="not JSON"):
        read_epic55_submission(path)


def test_the_archive_holds_both_files_at_its_top_level(tmp_path):
    for name in ("seen.json", "unseen.json"):
        write_epic55_submission(tmp_path / "results" / name, ["1"], np.zeros((1, 2)), np.ones((1, 3)))
    zip_submission(tmp_path / "submission.zip", [tmp_path / "results" / "seen.json",
                                                 tmp_path / "results" / "unseen.json"])
    with zipfile.ZipFile(tmp_path / "submission.zip") as archive:
        assert archive.namelist() == ["seen.json", "unseen.json"]
        assert archive.read("seen.json") == (tmp_path / "results" / "seen.json").read_bytes()
