"""EPIC-Kitchens-100 action recognition, scored as the official evaluation script
(epic-kitchens/C1-Action-Recognition, ``evaluate.py``) scores it, and its results file.

Scores:

- verb and noun: top-1 and top-5 of the raw logits over the segments;
- action: a (verb, noun) pair, action id ``verb * 1000 + noun`` (the official
  ``action_id_from_verb_noun``). Its scores come from :func:`action_scores`: the top
  ``top_k`` (100) verbs and top ``top_k`` nouns of a segment by logit, a softmax over each
  kept set of logits (not over all classes), every product of a kept verb's and a kept
  noun's probability, and the top ``top_k`` products. A segment's action is right at k when
  its (verb, noun) is among its k best products. The softmax makes the ranking that of
  ``verb logit + noun logit``: fed probabilities instead, it ranks by ``p_verb + p_noun``,
  not by ``p_verb * p_noun`` (see :func:`action_scores`), so probabilities are refused;
- subsets: "tail" top-1 (the verb over segments whose verb is a tail verb, the noun over
  those whose noun is a tail noun, the action over those whose verb or noun is tail) and
  "unseen" (segments of participants absent from training) top-1 and top-5 (the official
  script prints top-1 only for both subsets).

Figures are percentages (the official script multiplies by 100), ``None`` where a subset
has no segment. The official script scores only the segments it is given, so a copy that
lacks some videos would report a flattering figure: :func:`epic_metrics` takes the labels
of every segment of the split with a ``predicted`` mask, and reports ``official`` (every
segment; one without a prediction misses at every k) beside ``available`` (only the
predicted ones), as the Kinetics report (avsf.evaluate.classification) does.

Ties: the official script ranks with numpy's default (unstable) argsort, so its order of
tied scores is unspecified; here a tie ranks the lower class index first (verbs, nouns),
and for actions the lower action id first, as everywhere in avsf.evaluate.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Iterable, Sequence

import numpy as np

from avsf.evaluate.classification import true_class_rank
from avsf.io.atomic import atomic_output

ACTION_TOP_K = 100  # the official script's top_n: verbs, nouns and actions kept
ACTION_VERB_MULTIPLIER = 1000  # action id = verb * 1000 + noun (official)
TOP_K = (1, 5)
ACTION_CHUNK = 256  # segments scored at once by action_scores
SUBMISSION_KEYS = ("narration_id", "verb_output", "noun_output")


def action_id(verb: Any, noun: Any) -> Any:
    """The official action id of (verb, noun): ``verb * 1000 + noun`` (ints or arrays)."""
    return np.asarray(verb) * ACTION_VERB_MULTIPLIER + np.asarray(noun)


def _as_numpy(values: Any, dtype: Any) -> np.ndarray:
    """``values`` (a numpy array, a torch tensor on any device, a list) as a numpy array."""
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def looks_like_probabilities(scores: np.ndarray, atol: float = 1e-3) -> bool:
    """True when every row of ``scores`` [N, C] (N > 0) lies in [0, 1] and sums to 1."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or not len(scores) or not np.isfinite(scores).all():
        return False
    return bool(((scores >= 0) & (scores <= 1)).all() and np.allclose(scores.sum(axis=1), 1.0, atol=atol))


def require_logits(name: str, scores: np.ndarray) -> None:
    """Raise ValueError when ``scores`` look like probabilities (see module docstring)."""
    if looks_like_probabilities(scores):
        raise ValueError(f"{name} look like probabilities (every row in [0, 1], summing to 1): the official "
                         f"action ranking takes a softmax of the raw logits, so pass logits, not probabilities "
                         f"(with probabilities the action ranking is wrong)")


def _top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """[N, min(k, C)] class indices by decreasing score, ties: lower index first."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def action_scores(verb_logits: Any, noun_logits: Any, top_k: int = ACTION_TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """The official action scores of each segment: (action ids [N, k], scores [N, k]),
    best first, k = min(top_k, kept verbs x kept nouns).

    Per segment: the top ``top_k`` verbs and nouns by logit (ties: lower index), a softmax
    over the kept logits of each, the outer product of the two, its ``top_k`` best entries
    (ties: lower action id first). The official code (``compute_action_scores``) calls
    scipy's softmax without an axis, normalising over the whole [N, k] array rather than
    per row: that scales each segment's products by one constant and so changes no
    ranking; the scores here are per-segment probabilities (a segment's full k x k products
    sum to 1). Computed in float64. Raises ValueError on probabilities (see the module
    docstring) or mismatched shapes."""
    verbs = _as_numpy(verb_logits, np.float64)
    nouns = _as_numpy(noun_logits, np.float64)
    if verbs.ndim != 2 or nouns.ndim != 2 or len(verbs) != len(nouns):
        raise ValueError(f"verb logits {verbs.shape} and noun logits {nouns.shape}: need [N, V] and [N, Nn]")
    if top_k < 1:
        raise ValueError(f"top_k must be positive, not {top_k}")
    require_logits("verb logits", verbs)
    require_logits("noun logits", nouns)
    chunks = [_action_chunk(verbs[i:i + ACTION_CHUNK], nouns[i:i + ACTION_CHUNK], top_k)
              for i in range(0, len(verbs), ACTION_CHUNK)]
    if not chunks:
        k = min(top_k, min(top_k, verbs.shape[1]) * min(top_k, nouns.shape[1]))
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float64)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def _action_chunk(verbs: np.ndarray, nouns: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`action_scores` of a few rows (the k x k products of all rows at once would
    take gigabytes on a whole split)."""
    rows = np.arange(len(verbs))[:, None]
    top_verbs, top_nouns = _top_indices(verbs, top_k), _top_indices(nouns, top_k)
    p_verb = _softmax_rows(verbs[rows, top_verbs])
    p_noun = _softmax_rows(nouns[rows, top_nouns])
    products = (p_verb[:, :, None] * p_noun[:, None, :]).reshape(len(verbs), -1)
    ids = action_id(np.repeat(top_verbs, top_nouns.shape[1], axis=1), np.tile(top_nouns, (1, top_verbs.shape[1])))
    # Decreasing score, ties by increasing action id (lexsort's last key is the primary one).
    keep = np.lexsort((ids, -products), axis=-1)[:, :top_k]
    return ids[rows, keep].astype(np.int64), products[rows, keep]


def _top_hits(ranks: np.ndarray, k: int) -> np.ndarray:
    return ranks < k


def _percent(hits: np.ndarray) -> float | None:
    return float(100.0 * hits.mean()) if len(hits) else None


def _figures(verb_ranks: np.ndarray, noun_ranks: np.ndarray, action_ranks: np.ndarray, tail_verb: np.ndarray,
             tail_noun: np.ndarray, unseen: np.ndarray) -> dict[str, Any]:
    """The figures over segments whose true verb, noun and action ranked as given (a
    missing segment: rank >= every k)."""
    ranks = {"verb": verb_ranks, "noun": noun_ranks, "action": action_ranks}
    out: dict[str, Any] = {"segments": int(len(verb_ranks))}
    for task, r in ranks.items():
        for k in TOP_K:
            out[f"{task}_top{k}"] = _percent(_top_hits(r, k))
    tail_masks = {"verb": tail_verb, "noun": tail_noun, "action": tail_verb | tail_noun}
    out["tail"] = {}
    for task, mask in tail_masks.items():
        out["tail"][f"{task}_top1"] = _percent(_top_hits(ranks[task][mask], 1))
        out["tail"][f"{task}_segments"] = int(mask.sum())
    out["unseen"] = {"segments": int(unseen.sum())}
    for task, r in ranks.items():
        for k in TOP_K:
            out["unseen"][f"{task}_top{k}"] = _percent(_top_hits(r[unseen], k))
    return out


def epic_metrics(verb_logits: Any, noun_logits: Any, verb_labels: Any, noun_labels: Any,
                 participant_ids: Sequence[str], tail_verbs: Iterable[int], tail_nouns: Iterable[int],
                 unseen_participants: Iterable[str], predicted: Any = None,
                 top_k: int = ACTION_TOP_K) -> dict[str, Any]:
    """EPIC-Kitchens-100 figures over every segment of a split (see the module docstring).

    One row per segment of the split in every argument: ``verb_logits`` [N, V] and
    ``noun_logits`` [N, Nn] raw logits (rows of segments without a prediction are ignored:
    zeros will do), ``verb_labels`` / ``noun_labels`` [N] class indices, ``participant_ids``
    [N] (e.g. "P01"); ``predicted`` [N] bool, False for a segment with no prediction (its
    video failed; None: all predicted). ``tail_verbs`` / ``tail_nouns``: the tail class
    indices; ``unseen_participants``: the participant ids of the unseen subset.

    Returns ``{"official": figures over all N (missing = a miss at every k), "available":
    figures over the predicted segments, "missing": count, "missing_rows": their row
    indices}``; figures: ``segments``, ``{verb,noun,action}_top{1,5}`` (%), ``tail``
    (``{task}_top1`` with ``{task}_segments``) and ``unseen`` (``segments``,
    ``{task}_top{1,5}``). Raises ValueError on probabilities, shapes that disagree or labels
    outside the classes."""
    verbs = _as_numpy(verb_logits, np.float64)
    nouns = _as_numpy(noun_logits, np.float64)
    verb_truth = _as_numpy(verb_labels, np.int64)
    noun_truth = _as_numpy(noun_labels, np.int64)
    participants = np.asarray([str(p) for p in participant_ids], dtype=object)
    n = len(verb_truth)
    present = np.ones(n, bool) if predicted is None else _as_numpy(predicted, bool)
    for name, array in (("verb_logits", verbs), ("noun_logits", nouns)):
        if array.ndim != 2 or len(array) != n:
            raise ValueError(f"{name} of shape {array.shape}: need one row per segment ({n})")
    for name, array in (("noun_labels", noun_truth), ("participant_ids", participants), ("predicted", present)):
        if array.shape != (n,):
            raise ValueError(f"{name} of shape {array.shape}: need one per segment ({n},)")
    for name, truth, classes in (("verb", verb_truth, verbs.shape[1]), ("noun", noun_truth, nouns.shape[1])):
        if n and (truth.min() < 0 or truth.max() >= classes):
            raise ValueError(f"{name} labels outside [0, {classes})")
    require_logits("verb logits", verbs[present])
    require_logits("noun logits", nouns[present])

    # A missing segment ranks its true class past every k.
    never = max(verbs.shape[1], nouns.shape[1], top_k) + 1
    verb_ranks = np.full(n, never, np.int64)
    noun_ranks = np.full(n, never, np.int64)
    action_ranks = np.full(n, never, np.int64)
    # A row with a NaN or infinite logit (a diverged model) ranks nothing: a miss everywhere.
    scored = present & np.isfinite(verbs).all(axis=1) & np.isfinite(nouns).all(axis=1)
    verb_ranks[scored] = true_class_rank(verbs[scored], verb_truth[scored])
    noun_ranks[scored] = true_class_rank(nouns[scored], noun_truth[scored])
    if scored.any():
        ids, _ = action_scores(verbs[scored], nouns[scored], top_k)
        match = ids == action_id(verb_truth[scored], noun_truth[scored])[:, None]
        action_ranks[scored] = np.where(match.any(axis=1), match.argmax(axis=1), never)

    tail_verb = np.isin(verb_truth, np.asarray(list(tail_verbs), np.int64))
    tail_noun = np.isin(noun_truth, np.asarray(list(tail_nouns), np.int64))
    unseen = np.isin(participants, np.asarray([str(p) for p in unseen_participants], dtype=object))
    everything = (verb_ranks, noun_ranks, action_ranks, tail_verb, tail_noun, unseen)
    return {
        "official": _figures(*everything),
        "available": _figures(*(a[present] for a in everything)),
        "missing": int((~present).sum()),
        "missing_rows": [int(i) for i in np.flatnonzero(~present)],
    }


def write_epic_submission(path: str | os.PathLike, narration_ids: Sequence[str], verb_logits: Any,
                          noun_logits: Any) -> None:
    """Write the official results file (the C1 README's "dict format", a pickle):
    ``{"narration_id": np.ndarray of str [N], "verb_output": np.ndarray float32 [N, V],
    "noun_output": np.ndarray float32 [N, Nn]}``, atomically. Torch tensors are turned into
    numpy arrays (the official script fails on tensors). Raw logits, not probabilities (the
    official action ranking takes their softmax): probabilities raise ValueError."""
    ids = np.asarray([str(i) for i in narration_ids], dtype=str)
    verbs = _as_numpy(verb_logits, np.float32)
    nouns = _as_numpy(noun_logits, np.float32)
    n = len(ids)
    if verbs.ndim != 2 or nouns.ndim != 2 or len(verbs) != n or len(nouns) != n:
        raise ValueError(f"{n} narration ids, verb logits {verbs.shape}, noun logits {nouns.shape}: "
                         f"need [N], [N, V], [N, Nn]")
    if len(set(ids.tolist())) != n:
        raise ValueError("narration ids repeat")
    require_logits("verb logits", verbs)
    require_logits("noun logits", nouns)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump({"narration_id": ids, "verb_output": verbs, "noun_output": nouns}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)


def read_epic_submission(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The results file :func:`write_epic_submission` wrote (or any in the dict format):
    ``{"narration_id": [N] str, "verb_output": [N, V] float32, "noun_output": [N, Nn] float32}``."""
    with open(path, "rb") as f:
        data = pickle.load(f)
    if not isinstance(data, dict) or set(data) != set(SUBMISSION_KEYS):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: not an EPIC results dict with keys {SUBMISSION_KEYS}: {keys}")
    return {"narration_id": np.asarray(data["narration_id"], dtype=str),
            "verb_output": _as_numpy(data["verb_output"], np.float32),
            "noun_output": _as_numpy(data["noun_output"], np.float32)}
