"""Charades v1 video classification mAP, as the official ``Charades_v1_classify.m`` scores
it or as the common scikit-learn reimplementations do, and the official predictions file.

Inputs: ``scores`` (video id -> [classes] scores, for the videos with a prediction) and
``ground_truth`` (video id -> set of class indices, for EVERY video of the split's
ground-truth file, in the file's order, a video whose ``actions`` field is empty mapping
to an empty set). Predictions of videos not in ``ground_truth`` are ignored, as the
official script ignores them.

``variant="official"`` follows the official script:

- one row per ground-truth video; a video without a prediction scores -inf in every class
  (its positives still count, ranked last);
- a video whose ``actions`` field is empty never matches its prediction (the script does
  not record its id): it scores -inf in every class, whatever was predicted, and has no
  positive. It so drops out of every class, except that it ranks ahead of the positives of
  any video without a prediction that comes after it in the file (ties keep file order);
- per class, non-interpolated AP: rank the videos by decreasing score (a stable sort, so
  tied scores keep the ground-truth file's order), and average the precision at each
  positive's rank over the class's positives;
- mAP = the plain mean of the per-class APs. A class without positives has AP 0/0 = NaN
  in the official script, which makes its mAP NaN: kept (the full test set has positives
  of all 157 classes; a subset may not, then use the sklearn variant).

``variant="sklearn"`` is ``sklearn.metrics.average_precision_score`` per class (computed
here, without sklearn): every ground-truth video, empty-actions videos included as plain
negatives scored by their prediction, a video without a prediction below every score;
tied scores form one threshold (precision counted after the whole tied group); classes
without positives are dropped from the mean (their AP is NaN in the per-class array).

No variant needs the other's quirks labelled away: report which one a figure uses.
"""

from __future__ import annotations

import os
from typing import Iterable, Literal, Mapping

import numpy as np

from avsf.io.atomic import write_text

NUM_CLASSES = 157
VARIANTS = ("official", "sklearn")


def _score_matrix(scores: Mapping[str, np.ndarray], ids: list[str], num_classes: int) -> np.ndarray:
    """[videos, classes] float64: each ground-truth video's scores, -inf where it has none."""
    matrix = np.full((len(ids), num_classes), -np.inf)
    for row, video in enumerate(ids):
        if video not in scores:
            continue
        values = np.asarray(scores[video], np.float64).reshape(-1)
        if values.shape != (num_classes,):
            raise ValueError(f"video {video}: {values.size} scores, not {num_classes}")
        if np.isnan(values).any():
            raise ValueError(f"video {video}: NaN scores")
        matrix[row] = values
    return matrix


def _label_matrix(ground_truth: Mapping[str, Iterable[int]], ids: list[str], num_classes: int) -> np.ndarray:
    labels = np.zeros((len(ids), num_classes), bool)
    for row, video in enumerate(ids):
        classes = [int(c) for c in ground_truth[video]]
        if any(not 0 <= c < num_classes for c in classes):
            raise ValueError(f"video {video}: classes {classes} outside [0, {num_classes})")
        labels[row, classes] = True
    return labels


def official_average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated AP of one class: rows ranked by decreasing ``scores`` (stable: ties
    keep row order), the mean over the ``positives`` of the precision at their rank; NaN
    without a positive (the official 0/0)."""
    order = np.argsort(-scores, kind="stable")
    hits = positives[order]
    count = int(hits.sum())
    if count == 0:
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / count)


def sklearn_average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """``sklearn.metrics.average_precision_score(positives, scores)``: sum over the distinct
    scores, from the highest, of (recall gained) x (precision after every row at or above
    that score); NaN without a positive."""
    count = int(positives.sum())
    if count == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positives[order]
    # The last row of each group of equal scores (-inf ties with -inf too).
    group_end = np.r_[ranked[1:] != ranked[:-1], True]
    true_pos = np.cumsum(hits)[group_end]
    seen = np.arange(1, len(hits) + 1)[group_end]
    recall_gain = np.diff(np.r_[0, true_pos]) / count
    return float((recall_gain * true_pos / seen).sum())


def charades_map(scores: Mapping[str, np.ndarray], ground_truth: Mapping[str, Iterable[int]],
                 num_classes: int = NUM_CLASSES, variant: Literal["official", "sklearn"] = "official"
                 ) -> tuple[float, np.ndarray]:
    """(mAP, per-class AP [num_classes]) of ``scores`` against ``ground_truth`` (see the
    module docstring for the inputs and the two variants). APs are fractions in [0, 1]."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    ids = list(ground_truth)
    matrix = _score_matrix(scores, ids, num_classes)
    labels = _label_matrix(ground_truth, ids, num_classes)
    if variant == "official":
        unmatched = ~labels.any(axis=1)  # empty `actions`: the script never matches their prediction
        matrix[unmatched] = -np.inf
        aps = np.array([official_average_precision(matrix[:, c], labels[:, c]) for c in range(num_classes)])
        return float(np.mean(aps)) if num_classes else float("nan"), aps
    aps = np.array([sklearn_average_precision(matrix[:, c], labels[:, c]) for c in range(num_classes)])
    scored = aps[~np.isnan(aps)]
    return (float(scored.mean()) if len(scored) else float("nan")), aps


def write_charades_predictions(path: str | os.PathLike, scores: Mapping[str, np.ndarray]) -> None:
    """The official predictions file, atomically: one line per video, ``id s1 ... sC``,
    space-separated, each score written so that it reads back exactly (shortest repr)."""
    lines = []
    for video, values in scores.items():
        video = str(video)
        if not video or any(ch.isspace() for ch in video):
            raise ValueError(f"video id {video!r} is empty or holds white space")
        row = np.asarray(values, np.float64).reshape(-1)
        lines.append(" ".join([video, *(repr(float(v)) for v in row)]))
    write_text(path, "".join(line + "\n" for line in lines))


def read_charades_predictions(path: str | os.PathLike, num_classes: int | None = NUM_CLASSES
                              ) -> dict[str, np.ndarray]:
    """Video id -> [classes] float64 scores of a predictions file (fields separated by
    spaces and/or tabs; blank lines skipped). ``num_classes``: the scores each line must
    hold (None: any, the same on every line). Raises ValueError on a bad line or a repeated id."""
    out: dict[str, np.ndarray] = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            video, values = fields[0], fields[1:]
            expected = num_classes if num_classes is not None else (
                len(next(iter(out.values()))) if out else len(values))
            if len(values) != expected:
                raise ValueError(f"{path}:{number}: {len(values)} scores, not {expected}")
            if video in out:
                raise ValueError(f"{path}:{number}: video {video} repeats")
            try:
                out[video] = np.array([float(v) for v in values], np.float64)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return out
