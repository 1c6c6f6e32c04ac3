"""EPIC-Kitchens-55 action recognition, scored as its official evaluation did, and the S1 / S2
submission files in the challenge server's JSON format.

The official code is epic-kitchens/epic-kitchens-55-lib (v1.7): ``epic_kitchens/metrics.py``
(``compute_metrics``) and ``epic_kitchens/scoring.py`` (``compute_action_scores``); the format
is its ``docs/source/submission_format.md``. What it computes:

- verb and noun: top-1 and top-5 accuracy of the scores over the segments;
- action: a (verb, noun) pair, official id ``verb * 352 + noun`` (``meta.action_id_from_verb_noun``).
  Unless a submission brings its own action scores, a segment's come from its verb and noun
  scores: the top 100 verbs and top 100 nouns, a softmax over each kept set (per segment),
  every product of a kept verb's and a kept noun's probability, the 100 best products. Top-1
  and top-5 accuracy over that ranking (a pair outside it misses). This is the scoring of
  EPIC-100's evaluation, so :func:`avsf.evaluate.epic.action_scores` computes it here too,
  and as there the softmax makes the ranking that of ``verb score + noun score``: fed
  probabilities, it ranks by ``p_verb + p_noun``, so raw logits are required (probabilities
  raise ValueError);
- many-shot precision and recall (the leaderboard's "average class precision / recall"): the
  top-1 verb, noun and action of each segment, each class's precision (true positives over
  the segments predicted as it; 0 for a class never predicted, scikit-learn's
  ``precision_recall_fscore_support`` as the official code calls it) and recall (true
  positives over the segments of that class), averaged over the many-shot classes that
  occur in the split's labels (``_exclude_non_existent_classes``); a class's precision
  counts the predictions on every segment, whatever its true class. The verbs' per-class
  figures are given too (the official ``verb_per_class``).

The official code returns fractions; the leaderboard and Table 2 give percentages, as here
(``None`` where nothing is counted). It scores only the segments it is given, so a split of
which some videos failed would look better than it is: :func:`epic55_metrics` takes every
segment of the split with a ``predicted`` mask and reports ``official`` (every segment; one
without a prediction misses at every k, counts in its class's recall and predicts no class)
beside ``available`` (only the predicted ones), as avsf.evaluate.epic does for EPIC-100.

Ties: the official code ranks with numpy's default (unstable) argsort, reversed, so its order
of tied scores is unspecified; here a tie ranks the lower class index first, and for actions
the lower (verb, noun) pair first, as everywhere in avsf.evaluate.

The submission (one JSON per test set, ``seen.json`` for S1 and ``unseen.json`` for S2,
zipped flat)::

    {"version": "0.1", "challenge": "action_recognition",
     "results": {"<uid>": {"verb": {"0": s, ..., "124": s}, "noun": {"0": s, ..., "351": s},
                           "action": {"<verb>,<noun>": s, ...}}}}

a score for every verb and every noun class (the format's words), keyed by the segment's uid;
``action`` is optional: the server computes the action scores as above when it is absent, and
ranks a segment's own when present (the format document asks for exactly 100 of them; the
reference README for at most 100). :func:`write_epic55_submission` writes the logits, and the
official top-100 actions (fewer only where fewer pairs exist), so the server's ranking and
ours agree.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from avsf.evaluate.classification import true_class_rank
from avsf.evaluate.epic import (
    ACTION_TOP_K,
    ACTION_VERB_MULTIPLIER,
    _as_numpy,
    action_scores,
    require_logits,
)
from avsf.io.atomic import atomic_output

TOP_K = (1, 5)
ACTION_NOUN_CLASSES = 352  # the official action id: verb * 352 + noun
KINDS = ("verb", "noun", "action")
VERSION = "0.1"
CHALLENGE = "action_recognition"
SUBMISSION_FILES = {"s1": "seen.json", "s2": "unseen.json"}  # seen kitchens (S1), unseen (S2)
MAX_ACTIONS = 100  # action scores per segment a submission may carry


def action_id(verb: Any, noun: Any) -> Any:
    """The official EPIC-55 action id of (verb, noun): ``verb * 352 + noun`` (ints or arrays)."""
    return np.asarray(verb) * ACTION_NOUN_CLASSES + np.asarray(noun)


def ranked_actions(verb_logits: Any, noun_logits: Any, top_k: int = ACTION_TOP_K
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each segment's official action ranking: (verbs [N, k], nouns [N, k], scores [N, k]),
    best first, k = min(top_k, kept verbs x kept nouns); see the module docstring. Raises
    ValueError on probabilities, mismatched shapes, or more than 352 noun classes."""
    nouns = _as_numpy(noun_logits, np.float64)
    if nouns.ndim == 2 and nouns.shape[1] > ACTION_NOUN_CLASSES:
        raise ValueError(f"{nouns.shape[1]} noun classes: the official action id allows {ACTION_NOUN_CLASSES}")
    ids, scores = action_scores(verb_logits, nouns, top_k)
    verbs, nouns_kept = np.divmod(ids, ACTION_VERB_MULTIPLIER)
    return verbs, nouns_kept, scores


# --------------------------------------------------------------------------- metrics


def _percent(hits: np.ndarray) -> float | None:
    return float(100.0 * hits.mean()) if len(hits) else None


def _precision_recall(predictions: np.ndarray, truth: np.ndarray, classes: Iterable[int]
                      ) -> tuple[float | None, float | None, dict[str, float], dict[str, float], int]:
    """Mean precision and recall (%) over ``classes`` that occur in ``truth``, the per-class
    values, and how many classes were averaged. ``predictions``: a top-1 class per segment,
    -1 for none."""
    present = set(truth.tolist())
    kept = sorted({int(c) for c in classes} & present)
    precision, recall = {}, {}
    for c in kept:
        predicted_c, true_c = predictions == c, truth == c
        hits = int((predicted_c & true_c).sum())
        precision[str(c)] = 100.0 * hits / int(predicted_c.sum()) if predicted_c.any() else 0.0
        recall[str(c)] = 100.0 * hits / int(true_c.sum())
    if not kept:
        return None, None, precision, recall, 0
    return (float(np.mean(list(precision.values()))), float(np.mean(list(recall.values()))), precision, recall,
            len(kept))


def _figures(ranks: dict[str, np.ndarray], predictions: dict[str, np.ndarray], truth: dict[str, np.ndarray],
             many_shot: dict[str, Iterable[int]]) -> dict[str, Any]:
    out: dict[str, Any] = {"segments": len(truth["verb"])}
    for kind in KINDS:
        for k in TOP_K:
            out[f"{kind}_top{k}"] = _percent(ranks[kind] < k)
    out["precision"], out["recall"], out["many_shot_classes"] = {}, {}, {}
    for kind in KINDS:
        precision, recall, per_precision, per_recall, count = _precision_recall(
            predictions[kind], truth[kind], many_shot[kind])
        out["precision"][kind], out["recall"][kind], out["many_shot_classes"][kind] = precision, recall, count
        if kind == "verb":
            out["precision"]["verb_per_class"], out["recall"]["verb_per_class"] = per_precision, per_recall
    return out


def epic55_metrics(verb_logits: Any, noun_logits: Any, verb_labels: Any, noun_labels: Any,
                   many_shot_verbs: Iterable[int], many_shot_nouns: Iterable[int],
                   many_shot_actions: Iterable[tuple[int, int]], predicted: Any = None,
                   top_k: int = ACTION_TOP_K) -> dict[str, Any]:
    """EPIC-Kitchens-55 figures over every segment of a split (see the module docstring).

    One row per segment in every argument: ``verb_logits`` [N, V] and ``noun_logits`` [N, Nn]
    raw logits (rows of segments without a prediction are ignored: zeros will do),
    ``verb_labels`` / ``noun_labels`` [N]; ``predicted`` [N] bool, False for a segment with no
    prediction (None: all predicted). ``many_shot_*``: the class ids of
    EPIC_many_shot_{verbs,nouns}.csv and the (verb, noun) pairs of EPIC_many_shot_actions.csv.

    Returns ``{"official": figures over all N, "available": figures over the predicted
    segments, "missing": count, "missing_rows": their row indices}``; figures: ``segments``,
    ``{verb,noun,action}_top{1,5}``, ``precision`` and ``recall`` (``verb``, ``noun``,
    ``action`` averaged over the many-shot classes in the labels, and ``verb_per_class``),
    ``many_shot_classes`` (how many each average took), all in %. Raises ValueError on
    probabilities, shapes that disagree or labels outside the classes."""
    verbs = _as_numpy(verb_logits, np.float64)
    nouns = _as_numpy(noun_logits, np.float64)
    verb_truth = _as_numpy(verb_labels, np.int64)
    noun_truth = _as_numpy(noun_labels, np.int64)
    n = len(verb_truth)
    present = np.ones(n, bool) if predicted is None else _as_numpy(predicted, bool)
    for name, array in (("verb_logits", verbs), ("noun_logits", nouns)):
        if array.ndim != 2 or len(array) != n:
            raise ValueError(f"{name} of shape {array.shape}: need one row per segment ({n})")
    for name, array in (("verb_labels", verb_truth), ("noun_labels", noun_truth), ("predicted", present)):
        if array.shape != (n,):
            raise ValueError(f"{name} of shape {array.shape}: need one per segment ({n},)")
    for name, truth, classes in (("verb", verb_truth, verbs.shape[1]), ("noun", noun_truth, nouns.shape[1])):
        if n and (truth.min() < 0 or truth.max() >= classes):
            raise ValueError(f"{name} labels outside [0, {classes})")
    if nouns.shape[1] > ACTION_NOUN_CLASSES:
        raise ValueError(f"{nouns.shape[1]} noun classes: the official action id allows {ACTION_NOUN_CLASSES}")
    require_logits("verb logits", verbs[present])
    require_logits("noun logits", nouns[present])

    # A segment without a prediction ranks its true class past every k and predicts no class (-1).
    never = max(verbs.shape[1], nouns.shape[1], top_k) + 1
    ranks = {kind: np.full(n, never, np.int64) for kind in KINDS}
    predictions = {kind: np.full(n, -1, np.int64) for kind in KINDS}
    truth = {"verb": verb_truth, "noun": noun_truth, "action": action_id(verb_truth, noun_truth)}
    # A row with a NaN or infinite logit (a diverged model) ranks nothing: a miss everywhere.
    scored = present & np.isfinite(verbs).all(axis=1) & np.isfinite(nouns).all(axis=1)
    if scored.any():
        ranks["verb"][scored] = true_class_rank(verbs[scored], verb_truth[scored])
        ranks["noun"][scored] = true_class_rank(nouns[scored], noun_truth[scored])
        predictions["verb"][scored] = np.argmax(verbs[scored], axis=1)  # ties: the lower index, as the ranks
        predictions["noun"][scored] = np.argmax(nouns[scored], axis=1)
        action_verbs, action_nouns, _ = ranked_actions(verbs[scored], nouns[scored], top_k)
        ids = action_id(action_verbs, action_nouns)
        match = ids == truth["action"][scored][:, None]
        ranks["action"][scored] = np.where(match.any(axis=1), match.argmax(axis=1), never)
        predictions["action"][scored] = ids[:, 0]
    many_shot = {"verb": list(many_shot_verbs), "noun": list(many_shot_nouns),
                 "action": [int(action_id(v, u)) for v, u in many_shot_actions]}

    def predicted_only(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {kind: array[present] for kind, array in values.items()}

    return {
        "official": _figures(ranks, predictions, truth, many_shot),
        "available": _figures(predicted_only(ranks), predicted_only(predictions), predicted_only(truth), many_shot),
        "missing": int((~present).sum()),
        "missing_rows": [int(i) for i in np.flatnonzero(~present)],
    }


# --------------------------------------------------------------------------- submission files


def _shortest(values: np.ndarray) -> list[float]:
    """float32 scores as the shortest decimals that read back to the same float32 (JSON
    stays about half the size of full doubles)."""
    return [float(text) for text in np.asarray(values, np.float32).astype(str)]


def submission_results(uids: Sequence[str | int], verb_logits: Any, noun_logits: Any,
                       action_top_k: int | None = ACTION_TOP_K) -> dict[str, Any]:
    """The submission's JSON object for segments ``uids`` (one row of logits each): every
    verb and noun class's logit, and (unless ``action_top_k`` is None) the official top
    ``action_top_k`` action scores (at most 100). Raises ValueError on repeated or
    non-integer uids, shapes that disagree, non-finite values or probabilities."""
    ids = [str(u) for u in uids]
    verbs = _as_numpy(verb_logits, np.float32)
    nouns = _as_numpy(noun_logits, np.float32)
    n = len(ids)
    if verbs.ndim != 2 or nouns.ndim != 2 or len(verbs) != n or len(nouns) != n:
        raise ValueError(f"{n} uids, verb logits {verbs.shape}, noun logits {nouns.shape}: need [N], [N, V], [N, Nn]")
    if len(set(ids)) != n:
        raise ValueError("uids repeat")
    bad = next((u for u in ids if not u.isdigit()), None)
    if bad is not None:
        raise ValueError(f"uid {bad!r} is not an EPIC-55 uid (an integer)")
    if not (np.isfinite(verbs).all() and np.isfinite(nouns).all()):
        raise ValueError("a logit is NaN or infinite: JSON cannot carry it")
    if action_top_k is not None and not 1 <= action_top_k <= MAX_ACTIONS:
        raise ValueError(f"action_top_k {action_top_k}: a submission carries 1 to {MAX_ACTIONS} action scores")
    require_logits("verb logits", verbs)
    require_logits("noun logits", nouns)
    verb_keys = [str(c) for c in range(verbs.shape[1])]
    noun_keys = [str(c) for c in range(nouns.shape[1])]
    if action_top_k is not None:
        action_verbs, action_nouns, scores = ranked_actions(verbs, nouns, action_top_k)
    results: dict[str, Any] = {}
    for row, uid in enumerate(ids):
        entry: dict[str, Any] = {"verb": dict(zip(verb_keys, _shortest(verbs[row]))),
                                 "noun": dict(zip(noun_keys, _shortest(nouns[row])))}
        if action_top_k is not None:
            entry["action"] = {f"{v},{u}": s for v, u, s in
                               zip(action_verbs[row].tolist(), action_nouns[row].tolist(), _shortest(scores[row]))}
        results[uid] = entry
    return {"version": VERSION, "challenge": CHALLENGE, "results": results}


def write_epic55_submission(path: str | os.PathLike, uids: Sequence[str | int], verb_logits: Any, noun_logits: Any,
                            action_top_k: int | None = ACTION_TOP_K) -> None:
    """Write one test set's submission file (``seen.json`` or ``unseen.json``) atomically:
    :func:`submission_results` as compact JSON."""
    data = submission_results(uids, verb_logits, noun_logits, action_top_k)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n", encoding="utf-8")


def zip_submission(path: str | os.PathLike, files: Iterable[str | os.PathLike]) -> None:
    """The archive the server takes: ``files`` (seen.json, unseen.json) at its top level."""
    with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, arcname=Path(file).name)


@dataclass(frozen=True)
class Epic55Submission:
    """A read submission: its uids (as the file orders them), the verb [N, V] and noun
    [N, Nn] scores, and each segment's action scores ({(verb, noun): score}; None where the
    file carries none)."""

    uids: list[str]
    verb: np.ndarray
    noun: np.ndarray
    actions: list[dict[tuple[int, int], float] | None]


class _Problem(ValueError):
    pass


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = next(k for k in keys if keys.count(k) > 1)
        raise _Problem(f"key {repeated!r} repeats in one object")
    return dict(pairs)


def _score(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Problem(f"score {value!r} is not a finite number")
    return float(value)


def _class_scores(where: str, scores: Any, count: int | None) -> list[float]:
    if not isinstance(scores, dict):
        raise _Problem(f"{where}: not an object of class scores")
    expected = [str(c) for c in range(len(scores) if count is None else count)]
    if set(scores) != set(expected):
        raise _Problem(f"{where}: keys are not the classes 0..{len(expected) - 1} (each once)")
    try:
        return [_score(scores[c]) for c in expected]
    except _Problem as exc:
        raise _Problem(f"{where}: {exc}") from None


def _action_scores(where: str, scores: Any, verbs: int, nouns: int) -> dict[tuple[int, int], float]:
    if not isinstance(scores, dict):
        raise _Problem(f"{where}: not an object of action scores")
    if len(scores) > MAX_ACTIONS:
        raise _Problem(f"{where}: {len(scores)} action scores; at most {MAX_ACTIONS}")
    out = {}
    for key, value in scores.items():
        verb, comma, noun = key.partition(",")
        if not (comma and verb.isdigit() and noun.isdigit() and int(verb) < verbs and int(noun) < nouns):
            raise _Problem(f"{where}: key {key!r} is not '<verb>,<noun>' of classes below {verbs}, {nouns}")
        try:
            out[(int(verb), int(noun))] = _score(value)
        except _Problem as exc:
            raise _Problem(f"{where}[{key!r}]: {exc}") from None
    return out


def read_epic55_submission(path: str | os.PathLike, uids: Iterable[str | int] | None = None,
                           verb_classes: int | None = None, noun_classes: int | None = None) -> Epic55Submission:
    """Read and check a submission file against the format: version "0.1", challenge
    "action_recognition", every entry a score for each of the verb and noun classes
    (``verb_classes`` / ``noun_classes`` of them when given, else as many as the first entry
    has), at most 100 ``"<verb>,<noun>"`` action scores, finite numbers only, no key twice;
    with ``uids``, exactly those segments. Raises ValueError naming the file and the place."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_repeated_keys)
        return _submission(data, None if uids is None else [str(u) for u in uids], verb_classes, noun_classes)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    except _Problem as exc:
        raise ValueError(f"{path}: {exc}") from None


def _submission(data: Any, uids: list[str] | None, verb_classes: int | None, noun_classes: int | None
                ) -> Epic55Submission:
    if not isinstance(data, dict) or set(data) != {"version", "challenge", "results"}:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise _Problem(f"the top level has {keys}; the format has version, challenge, results")
    if data["version"] != VERSION:
        raise _Problem(f"version {data['version']!r}; the format is {VERSION!r}")
    if data["challenge"] != CHALLENGE:
        raise _Problem(f"challenge {data['challenge']!r}; action recognition's is {CHALLENGE!r}")
    results = data["results"]
    if not isinstance(results, dict):
        raise _Problem("results: not an object keyed by uid")
    if uids is not None:
        missing = [u for u in uids if u not in results]
        extra = [u for u in results if u not in set(uids)]
        if missing or extra:
            raise _Problem(f"results: {len(missing)} segment(s) of the test set missing (e.g. {missing[:3]}), "
                           f"{len(extra)} not in it (e.g. {extra[:3]})")
    verbs, nouns, actions = [], [], []
    for uid, entry in results.items():
        where = f"results[{uid!r}]"
        if not uid.isdigit():
            raise _Problem(f"{where}: the key is not a uid (an integer)")
        if not isinstance(entry, dict) or not {"verb", "noun"} <= set(entry) <= {"verb", "noun", "action"}:
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise _Problem(f"{where}: has {keys}; an entry has verb, noun and optionally action")
        verbs.append(_class_scores(f"{where}.verb", entry["verb"], verb_classes))
        nouns.append(_class_scores(f"{where}.noun", entry["noun"], noun_classes))
        verb_classes, noun_classes = len(verbs[-1]), len(nouns[-1])  # every entry as the first
        actions.append(_action_scores(f"{where}.action", entry["action"], verb_classes, noun_classes)
                       if "action" in entry else None)
    shape = (len(results), verb_classes or 0), (len(results), noun_classes or 0)
    return Epic55Submission(list(results), np.asarray(verbs, np.float64).reshape(shape[0]),
                            np.asarray(nouns, np.float64).reshape(shape[1]), actions)
