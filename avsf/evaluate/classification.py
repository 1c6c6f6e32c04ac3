"""Kinetics' official accuracy over a manifest, and the same figures over the videos that
have a prediction.

The official rule counts every video of the split's manifest: one that could not be
downloaded, decoded or loaded (no prediction) is a miss. Since a copy of Kinetics always
lacks some videos (taken down from YouTube), the report gives both figures, side by side:

- ``official``: over every manifest video; a video with no prediction misses at every k;
- ``available``: over the videos with a prediction only.

Each holds top-1, top-5, per-class top-1 with its video count, the mean class accuracy
(mean of the per-class top-1 over classes with at least one video) and, for each group of
classes (Kinetics-Sounds, the demo's cues), top-1 over the group's videos with its binomial
standard error ``sqrt(p (1 - p) / n)``. The report also lists the missing videos and a
confusion matrix (true x predicted counts over the available videos, and the missing ones
per true class).

Top-k: a video is a hit when its true class is among the k highest scores, ranked by a
stable sort of the scores in decreasing order, so that tied scores rank the lower class
index first (the true class's rank is the number of classes scoring higher plus the number
of lower-indexed classes scoring the same). k above the number of classes is capped at it
(every video with a prediction is then a hit). The predicted class of the confusion matrix
is the class ranked first by the same rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

TOP_K = (1, 5)

# The 32 Kinetics-400 classes whose sound says what happens: Kinetics-Sounds as listed in
# AVSlowFast (Xiao et al. 2020), Appendix B.
KINETICS_SOUNDS: tuple[str, ...] = (
    "blowing nose", "blowing out candles", "bowling", "chopping wood", "dribbling basketball", "laughing",
    "mowing lawn", "playing accordion", "playing bagpipes", "playing bass guitar", "playing clarinet",
    "playing drums", "playing guitar", "playing harmonica", "playing keyboard", "playing organ", "playing piano",
    "playing saxophone", "playing trombone", "playing trumpet", "playing violin", "playing xylophone",
    "ripping paper", "shoveling snow", "shuffling cards", "singing", "stomping grapes", "strumming guitar",
    "tap dancing", "tapping guitar", "tapping pen", "tickling",
)
KINETICS_SOUNDS_GROUP = "kinetics_sounds"


def kinetics_sounds_groups(classes: Sequence[str]) -> dict[str, str]:
    """The groups mapping for ``classes``: each Kinetics-Sounds class present -> "kinetics_sounds"
    (empty when none is present, as in the demo)."""
    sounds = set(KINETICS_SOUNDS)
    return {name: KINETICS_SOUNDS_GROUP for name in classes if name in sounds}


def true_class_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[videos] int: the rank (0 = first) of each video's true class in a stable sort of its
    ``scores`` [videos, classes] by decreasing score (ties: lower class index first)."""
    true = scores[np.arange(len(labels)), labels][:, None]
    lower_index = np.arange(scores.shape[1])[None, :] < labels[:, None]
    rank = ((scores > true) | ((scores == true) & lower_index)).sum(axis=1)
    # A row with a NaN or infinite score (a diverged model) ranks no class: a miss at every k.
    return np.where(np.isfinite(scores).all(axis=1), rank, scores.shape[1])


def ranked_classes(scores: Sequence[float] | np.ndarray, k: int | None = None) -> list[int]:
    """Class indices by decreasing score (ties: lower index first), the first ``k``; the
    order every ranking here uses. A non-finite score ranks last."""
    values = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf, posinf=-np.inf)
    return [int(c) for c in np.argsort(-values, kind="stable")[:k]]


def top_class(scores: np.ndarray) -> np.ndarray:
    """[videos] int: the class ranked first (the highest score; ties: the lower index)."""
    return np.argmax(scores, axis=1)  # argmax returns the first of equal maxima


@dataclass
class GroupAccuracy:
    """Top-1 over the videos of a group's classes, with its binomial standard error."""

    top1: float | None  # None: the group has no video
    videos: int
    stderr: float | None

    @classmethod
    def of(cls, hits: int, videos: int) -> "GroupAccuracy":
        if videos == 0:
            return cls(None, 0, None)
        p = hits / videos
        return cls(p, videos, math.sqrt(p * (1 - p) / videos))


@dataclass
class Figures:
    """One way of counting (official or available): accuracy over ``videos`` videos."""

    videos: int
    top1: float | None  # None: no video to count
    top5: float | None
    class_top1: dict[str, float | None]  # per class (None: no video of the class)
    class_videos: dict[str, int]
    mean_class_accuracy: float | None  # over the classes with at least one video
    groups: dict[str, GroupAccuracy]

    def to_dict(self) -> dict[str, Any]:
        return {
            "videos": self.videos, "top1": self.top1, "top5": self.top5,
            "mean_class_accuracy": self.mean_class_accuracy,
            "per_class": {name: {"top1": self.class_top1[name], "videos": self.class_videos[name]}
                          for name in self.class_top1},
            "groups": {name: {"top1": g.top1, "videos": g.videos, "stderr": g.stderr}
                       for name, g in self.groups.items()},
        }


@dataclass
class ClassificationReport:
    """Official and available figures, the missing videos, and the confusion matrix."""

    classes: list[str]
    official: Figures  # every manifest video; no prediction = a miss
    available: Figures  # only the videos with a prediction
    missing_ids: list[str]  # manifest videos with no prediction, sorted
    confusion: np.ndarray  # [classes, classes] int: true x predicted, over the available videos
    missing_per_class: np.ndarray  # [classes] int: the missing videos by true class

    @property
    def missing(self) -> int:
        return len(self.missing_ids)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (None where a figure has no video to count)."""
        return {
            "official": self.official.to_dict(),
            "available": self.available.to_dict(),
            "missing": self.missing,
            "missing_ids": list(self.missing_ids),
            "confusion": {"classes": list(self.classes), "counts": self.confusion.tolist(),
                          "missing": self.missing_per_class.tolist()},
        }


def _figures(classes: Sequence[str], labels: np.ndarray, ranks: np.ndarray, group_of: Mapping[str, str]
             ) -> Figures:
    """Figures over videos of true class ``labels`` whose true class ranked ``ranks`` (a
    missing video: rank = number of classes, a miss at every k)."""
    n_classes = len(classes)
    hits = {k: ranks < min(k, n_classes) for k in TOP_K}
    videos = np.bincount(labels, minlength=n_classes)
    class_hits = np.bincount(labels, weights=hits[1], minlength=n_classes)
    class_top1 = {name: (float(class_hits[c] / videos[c]) if videos[c] else None) for c, name in enumerate(classes)}
    seen = [v for v in class_top1.values() if v is not None]
    groups = {}
    for group in dict.fromkeys(group_of.values()):
        members = np.array([group_of.get(name) == group for name in classes])
        in_group = members[labels]
        groups[group] = GroupAccuracy.of(int(hits[1][in_group].sum()), int(in_group.sum()))
    total = len(labels)
    return Figures(
        videos=total,
        top1=float(hits[1].mean()) if total else None,
        top5=float(hits[5].mean()) if total else None,
        class_top1=class_top1,
        class_videos={name: int(videos[c]) for c, name in enumerate(classes)},
        mean_class_accuracy=float(np.mean(seen)) if seen else None,
        groups=groups,
    )


def classification_report(labels: Mapping[str, int], scores: Mapping[str, np.ndarray], classes: Sequence[str],
                          groups: Mapping[str, str] | None = None) -> ClassificationReport:
    """The report over the manifest videos ``labels`` (video id -> class index: every video
    of the split, the official denominator), given ``scores`` (video id -> [classes] scores,
    for the videos with a prediction only) and ``groups`` (class name -> group name; a class
    not in it belongs to no group). See the module docstring for the rules."""
    classes = list(classes)
    n_classes = len(classes)
    groups = dict(groups or {})
    unknown = sorted(set(groups) - set(classes))
    if unknown:
        raise ValueError(f"groups name classes that are not among the {n_classes}: {unknown[:5]}")
    stray = sorted(set(scores) - set(labels))
    if stray:
        raise ValueError(f"{len(stray)} predictions for videos not in the manifest, e.g. {stray[:3]}")
    ids = sorted(labels)
    truth = np.array([labels[i] for i in ids], np.int64)
    if len(truth) and (truth.min() < 0 or truth.max() >= n_classes):
        bad = next(i for i in ids if not 0 <= labels[i] < n_classes)
        raise ValueError(f"video {bad}: label {labels[bad]} is not a class index in [0, {n_classes})")
    present = np.array([i in scores for i in ids], bool)
    available_ids = [i for i, p in zip(ids, present) if p]
    matrix = np.zeros((len(available_ids), n_classes), np.float64)
    for row, video in enumerate(available_ids):
        values = np.asarray(scores[video], np.float64)
        if values.shape != (n_classes,):
            raise ValueError(f"video {video}: scores of shape {values.shape}, not ({n_classes},)")
        matrix[row] = values
    truth_available = truth[present]
    ranks = np.full(len(ids), n_classes, np.int64)  # a missing video ranks its true class nowhere
    ranks[present] = true_class_rank(matrix, truth_available)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (truth_available, top_class(matrix)), 1)
    return ClassificationReport(
        classes=classes,
        official=_figures(classes, truth, ranks, groups),
        available=_figures(classes, truth_available, ranks[present], groups),
        missing_ids=[i for i, p in zip(ids, present) if not p],
        confusion=confusion,
        missing_per_class=np.bincount(truth[~present], minlength=n_classes).astype(np.int64),
    )
