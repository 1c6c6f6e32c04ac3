"""AVA's official frame-level mAP, with the semantics of the ActivityNet evaluator
(``get_ava_performance.py`` and the TF object-detection PASCAL evaluator it calls).

The rules, in the order the official code applies them:

1. Classes: only the evaluated classes (the 60 of the pbtxt) count; ground-truth rows and
   detections of any other class are dropped before anything else (so they take none of a
   keyframe's 50 places).
2. Keyframes: the scored keyframes are every keyframe the ground-truth file names, 2-column
   rows (no box) included, and keyframes whose rows all belong to other classes. Detections
   on any other keyframe are dropped (they change nothing); on a scored keyframe without a
   box of a class, each detection of that class is a false positive. Excluded keyframes
   (the older scripts' excluded-timestamps file) are dropped from both sides.
3. At most ``max_per_keyframe`` (50) detections per keyframe, across all classes, highest
   scores first. Reproduced exactly, ties included: the official reader keeps a min-heap of
   (score, action_id, y1, x1, y2, x2) per keyframe in file order; a row enters a full heap
   only with a score strictly above the heap's lowest, and then evicts the heap's smallest
   tuple (among equal scores: the lowest action id, then the lowest y1, x1, y2, x2). The
   kept detections are then put in order by decreasing score, a stable sort of the heap's
   list.
4. Boxes with x1 >= x2 or y1 >= y2 are removed (after the cap).
5. Matching, per keyframe and class, detections in that order: each takes the ground-truth
   box of its class with the highest IoU (the first such box on a tie); it is a true
   positive if that IoU >= 0.5 (equal counts) and the box is not yet taken, otherwise a false
   positive, even when another box with a lower IoU is free. IoU on the normalised
   coordinates, areas (x2 - x1)(y2 - y1) without the +1 of pixel boxes.
6. AP per class: the detections of all keyframes, in keyframe order (first appearance in
   the detections), ranked by ``np.argsort(scores)[::-1]`` as the official code does (the
   order of tied scores is numpy's, reproduced by building the same array); precision and
   recall at each rank (recall over the class's ground-truth boxes), precision made
   monotone from the right, summed over the recall steps (PASCAL VOC all-point). A class
   with ground truth but no detection has AP 0.
7. mAP: the mean over classes with ground truth; a class without any ground-truth box has
   no AP (the official evaluator's NaN, skipped by its nanmean; None here).

One difference that cannot matter to a real file: the official script reads an 8th
ground-truth column as a score and orders a keyframe's ground-truth boxes by it, which
decides only which of two boxes with exactly the same IoU a detection takes; here they keep
file order (the 8th column is a person id, which need not be a number).
"""

from __future__ import annotations

import csv
import heapq
import math
import os
from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple

import numpy as np

from avsf.data.ava import AvaBox, AvaDetection, Keyframe, box_iou
from avsf.io.atomic import atomic_output

IOU_THRESHOLD = 0.5
MAX_PER_KEYFRAME = 50
PER_CLASS_AP_COLUMNS = ("class", "ap", "count")


class FrameMap(NamedTuple):
    """The frame-mAP, per-class AP (None: no ground truth) and per-class ground-truth box
    counts over the scored keyframes."""

    mean_ap: float | None  # None when no class has ground truth
    class_ap: dict[int, float | None]
    class_count: dict[int, int]


def voc_average_precision(scores: np.ndarray, true_positive: np.ndarray, positives: int) -> float:
    """PASCAL VOC all-point AP of detections ``scores`` labelled ``true_positive`` against
    ``positives`` ground-truth boxes (> 0): ranked as the official code ranks them, precision
    made monotone from the right, summed over the steps of recall."""
    if positives <= 0:
        raise ValueError("AP needs at least one ground-truth box")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(np.asarray(scores, np.float64))[::-1]
    hits = np.asarray(true_positive, bool)[order].astype(np.int64)
    tp = np.cumsum(hits)
    fp = np.cumsum(1 - hits)
    precision = np.concatenate([[0.0], tp / (tp + fp), [0.0]])
    recall = np.concatenate([[0.0], tp / positives, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def _kept_detections(detections: Iterable[AvaDetection], classes: set[int], scored: set[Keyframe],
                     capacity: int) -> dict[Keyframe, list[AvaDetection]]:
    """Per scored keyframe (in order of first appearance), its detections of the evaluated
    classes after the cap, by decreasing score (rule 3 of the module docstring)."""
    heaps: dict[Keyframe, list[tuple]] = {}
    for d in detections:
        if d.action_id not in classes or d.keyframe not in scored:
            continue
        if math.isnan(d.score):
            raise ValueError(f"detection on {d.keyframe} has a NaN score")
        x1, y1, x2, y2 = d.box
        entry = (d.score, d.action_id, y1, x1, y2, x2)
        heap = heaps.setdefault(d.keyframe, [])
        if capacity < 1 or len(heap) < capacity:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)
    kept = {}
    for keyframe, heap in heaps.items():
        ranked = sorted(heap, key=lambda e: -e[0])
        kept[keyframe] = [AvaDetection(keyframe[0], keyframe[1], (x1, y1, x2, y2), action, score)
                          for score, action, y1, x1, y2, x2 in ranked]
    return kept


def match_keyframe(detected: np.ndarray, truth: np.ndarray, iou_threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """[N] bool: which of the detections ``detected`` [N, 4] (one class, one keyframe, in
    ranked order) are true positives against the ground-truth boxes ``truth`` [M, 4]
    (rule 5 of the module docstring)."""
    hits = np.zeros(len(detected), bool)
    if len(detected) == 0 or len(truth) == 0:
        return hits
    iou = box_iou(detected, truth)
    best = np.argmax(iou, axis=1)  # the first of equal maxima
    taken = np.zeros(len(truth), bool)
    for i, j in enumerate(best):
        if iou[i, j] >= iou_threshold and not taken[j]:
            hits[i] = taken[j] = True
    return hits


def frame_map(ground_truth: Iterable[AvaBox], keyframes: Iterable[Keyframe], detections: Iterable[AvaDetection],
              class_ids: Iterable[int], excluded: Iterable[Keyframe] = (), iou_threshold: float = IOU_THRESHOLD,
              max_per_keyframe: int = MAX_PER_KEYFRAME) -> FrameMap:
    """The official frame-mAP of ``detections`` against ``ground_truth``. ``keyframes``: the
    ground truth's keyframes (all of them, or only those without boxes: the keyframes of the
    boxes count anyway); ``class_ids``: the evaluated classes (the pbtxt's 60);
    ``excluded``: keyframes dropped from both sides. See the module docstring for the rules."""
    classes = set(class_ids)
    excluded = set(excluded)
    ground_truth = list(ground_truth)
    scored = (set(keyframes) | {b.keyframe for b in ground_truth}) - excluded
    truth: dict[tuple[Keyframe, int], list[tuple[float, float, float, float]]] = {}
    for b in ground_truth:
        if b.action_id in classes and b.keyframe in scored:
            truth.setdefault((b.keyframe, b.action_id), []).append(b.box)
    class_count = {c: 0 for c in sorted(classes)}
    for (_, action), boxes in truth.items():
        class_count[action] += len(boxes)

    scores: dict[int, list[np.ndarray]] = {c: [] for c in classes}
    hits: dict[int, list[np.ndarray]] = {c: [] for c in classes}
    for keyframe, kept in _kept_detections(detections, classes, scored, max_per_keyframe).items():
        kept = [d for d in kept if d.box[0] < d.box[2] and d.box[1] < d.box[3]]
        for action in dict.fromkeys(d.action_id for d in kept):
            mine = [d for d in kept if d.action_id == action]
            boxes = np.array([d.box for d in mine], np.float64)
            scores[action].append(np.array([d.score for d in mine], np.float64))
            hits[action].append(match_keyframe(boxes, np.array(truth.get((keyframe, action), []), np.float64)
                                               .reshape(-1, 4), iou_threshold))

    class_ap: dict[int, float | None] = {}
    for c in sorted(classes):
        if class_count[c] == 0:
            class_ap[c] = None
            continue
        class_scores = np.concatenate(scores[c]) if scores[c] else np.zeros(0)
        class_hits = np.concatenate(hits[c]) if hits[c] else np.zeros(0, bool)
        class_ap[c] = voc_average_precision(class_scores, class_hits, class_count[c])
    defined = [ap for ap in class_ap.values() if ap is not None]
    return FrameMap(float(np.mean(defined)) if defined else None, class_ap, class_count)


@dataclass(frozen=True)
class ClassAp:
    """One row of the per-class table: a class, its AP and its ground-truth box count."""

    class_id: int
    name: str
    ap: float
    count: int


def per_class_ap_table(result: FrameMap, class_names: Mapping[int, str]) -> list[ClassAp]:
    """The classes with ground truth, most frequent first (ties: lower class id first), as
    SlowFast's Fig. 3 orders AVA's classes; classes without ground truth have no AP and are
    left out."""
    rows = [ClassAp(c, class_names.get(c, str(c)), ap, result.class_count[c])
            for c, ap in result.class_ap.items() if ap is not None]
    return sorted(rows, key=lambda r: (-r.count, r.class_id))


def write_per_class_ap_csv(path: str | os.PathLike, table: Iterable[ClassAp]) -> None:
    """Write the table atomically as ``class,ap,count`` rows, in its order (a DVC bar plot
    of ap by class)."""
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PER_CLASS_AP_COLUMNS)
        for row in table:
            writer.writerow([row.name, f"{row.ap:.6f}", row.count])
