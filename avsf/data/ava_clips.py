"""AVA keyframes as clips: the label source that makes each keyframe a sample of the clip
dataset, with its person boxes and their multi-hot actions.

One sample per keyframe (video_id, timestamp) of a stored movie::

    store entry (video_id)  frame 0 shows movie second movie_start_s (900 for AVA's store)
    keyframe at second s    store frame round((s - movie_start_s) x entry.fps)   (keyframe_frame)
    clip                    T x tau frames centred there (:attr:`Sample.centre_frame`),
                            shifted to stay inside the stored movie at its ends

Boxes (SlowFast Sec. 5, PySlowFast's loader): in training, the ground-truth boxes plus the
person detections with IoU > ``train_iou`` (0.9) to a ground-truth box, which take that
box's labels; in test, the detections alone. Either way only detections scoring at least
``detection_score`` (:data:`DETECTION_SCORE`) count, as PySlowFast reads every predicted-box file. A test box
is labelled with the ground-truth box it overlaps most at IoU >= ``test_label_iou`` (0.5,
the metric's threshold; no labels when none does), so that validation has a loss; the
official frame-mAP (:mod:`avsf.evaluate.ava`) uses :attr:`AvaKeyframes.ground_truth`.

Rows of one keyframe with the same box are one box (AVA writes a row per action, and a
detection file may write one per action too: the box's score is then their highest).
Actions are indexed by their place in ``classes`` (AVA ids, 1..80); a ground-truth box none
of whose actions is listed stays, with no positive (a negative for every class). The
target (see :mod:`avsf.data.clip_dataset` for how boxes are moved with the crop)::

    boxes       float32 [n, 4]  x1, y1, x2, y2 normalised to the stored frame
    box_labels  float32 [n, C]  multi-hot over ``classes``
    box_scores  float32 [n]     1 for ground truth, the detector's score for detections
    video_id, timestamp         the keyframe
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from avsf.data.ava import AVA_FIRST_SECOND, AvaBox, AvaDetection, Box, Keyframe, box_iou, keyframe_frame
from avsf.data.clip_dataset import Sample
from avsf.data.store import StoreEntry

# SlowFast Sec. 5 (PySlowFast's AVA defaults): person boxes scoring at least this are used;
# training adds detections overlapping a true box at IoU above TRAIN_IOU.
DETECTION_SCORE, TRAIN_IOU = 0.8, 0.9


class KeyframeBoxes(NamedTuple):
    """The boxes of one keyframe: normalised [n, 4], multi-hot labels [n, C], scores [n]."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


def _unique_boxes(rows: Iterable[tuple[Keyframe, Box, float]]) -> dict[Keyframe, dict[Box, float]]:
    """Keyframe -> its distinct boxes (first-appearance order) with their highest score."""
    out: dict[Keyframe, dict[Box, float]] = {}
    for keyframe, box, score in rows:
        boxes = out.setdefault(keyframe, {})
        boxes[box] = max(score, boxes.get(box, score))
    return out


class AvaKeyframes:
    """AVA action detection as a label source (see the module docstring).

    ``classes``: the AVA action ids trained on, in index order (``range(1, 81)``; the 60 of
    the evaluation list for a 60-way head). ``mode`` "train" gives ground truth + matched
    detections on every keyframe with a ground-truth box; "test" the detections on every
    keyframe with one at or above the threshold. ``movie_start_s``: the movie second the
    stored video's frame 0 shows (one for every video, or per video id). A keyframe whose
    movie is not stored, or whose frame lies outside the stored video, makes no sample and
    goes to ``missing``.
    """

    def __init__(self, classes: Sequence[int], ground_truth: Iterable[AvaBox] = (),
                 detections: Iterable[AvaDetection] = (), mode: Literal["train", "test"] = "train",
                 detection_score: float = DETECTION_SCORE, train_iou: float = TRAIN_IOU,
                 test_label_iou: float = 0.5,
                 movie_start_s: float | Mapping[str, float] = AVA_FIRST_SECOND):
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', not {mode!r}")
        self.classes = list(classes)
        self.mode = mode
        self.movie_start_s = movie_start_s
        self.ground_truth = list(ground_truth)
        self.missing: list[Keyframe] = []
        index = {action: i for i, action in enumerate(self.classes)}
        truth = self._ground_truth_boxes(self.ground_truth, index)
        detected = _unique_boxes((d.keyframe, d.box, d.score) for d in detections if d.score >= detection_score)
        if mode == "train":
            per_keyframe = {k: self._with_matches(boxes, detected.get(k, {}), train_iou) for k, boxes in truth.items()}
        else:
            per_keyframe = {k: self._labelled(boxes, truth.get(k), test_label_iou) for k, boxes in detected.items()}
        self.keyframes: list[Keyframe] = sorted(per_keyframe)
        self.boxes: list[KeyframeBoxes] = [per_keyframe[k] for k in self.keyframes]

    # ------------------------------------------------------------------ boxes

    def _ground_truth_boxes(self, rows: Sequence[AvaBox], index: dict[int, int]) -> dict[Keyframe, KeyframeBoxes]:
        grouped: dict[Keyframe, dict[Box, list[int]]] = {}
        for row in rows:
            grouped.setdefault(row.keyframe, {}).setdefault(row.box, []).append(row.action_id)
        out = {}
        for keyframe, boxes in grouped.items():
            labels = np.zeros((len(boxes), len(self.classes)), np.float32)
            for i, actions in enumerate(boxes.values()):
                labels[i, [index[a] for a in actions if a in index]] = 1.0
            out[keyframe] = KeyframeBoxes(np.array(list(boxes), np.float32).reshape(-1, 4), labels,
                                          np.ones(len(boxes), np.float32))
        return out

    @staticmethod
    def _with_matches(truth: KeyframeBoxes, detected: dict[Box, float], min_iou: float) -> KeyframeBoxes:
        """Ground truth plus the detections with IoU > ``min_iou`` to a ground-truth box,
        each labelled as the box it overlaps most."""
        if not detected:
            return truth
        boxes = np.array(list(detected), np.float32).reshape(-1, 4)
        iou = box_iou(boxes, truth.boxes)
        match, best = iou.argmax(axis=1), iou.max(axis=1)
        keep = best > min_iou
        return KeyframeBoxes(np.concatenate([truth.boxes, boxes[keep]]),
                             np.concatenate([truth.labels, truth.labels[match[keep]]]),
                             np.concatenate([truth.scores, np.array(list(detected.values()), np.float32)[keep]]))

    def _labelled(self, detected: dict[Box, float], truth: KeyframeBoxes | None, min_iou: float) -> KeyframeBoxes:
        """The detections, labelled as the ground-truth box they overlap most at IoU >= ``min_iou``."""
        boxes = np.array(list(detected), np.float32).reshape(-1, 4)
        labels = np.zeros((len(boxes), len(self.classes)), np.float32)
        if truth is not None:
            iou = box_iou(boxes, truth.boxes)
            matched = iou.max(axis=1) >= min_iou
            labels[matched] = truth.labels[iou.argmax(axis=1)[matched]]
        return KeyframeBoxes(boxes, labels, np.array(list(detected.values()), np.float32))

    # ------------------------------------------------------------------ label source

    def start_second(self, video_id: str) -> float:
        """The movie second frame 0 of ``video_id``'s stored video shows."""
        start = self.movie_start_s
        return float(start[video_id] if isinstance(start, Mapping) else start)

    def samples(self, entries: Sequence[StoreEntry]) -> list[Sample]:
        stored: dict[str, StoreEntry] = {}
        for entry in entries:
            stored.setdefault(entry.youtube_id, entry)  # one entry per movie: the first
        samples, self.missing = [], []
        for position, (video_id, timestamp) in enumerate(self.keyframes):
            entry = stored.get(video_id)
            frame = keyframe_frame(timestamp, entry.fps, self.start_second(video_id)) if entry else -1
            if entry is None or not 0 <= frame < entry.num_frames:
                self.missing.append((video_id, timestamp))
                continue
            samples.append(Sample(entry, 0, entry.num_frames, {"keyframe": position}, centre_frame=frame))
        return samples

    def keyframe(self, sample: Sample) -> Keyframe:
        return self.keyframes[sample.target["keyframe"]]

    def target(self, sample: Sample, start_frame: int, stop_frame: int) -> dict[str, Any]:  # noqa: ARG002
        position = sample.target["keyframe"]
        boxes = self.boxes[position]
        video_id, timestamp = self.keyframes[position]
        return {"boxes": torch.from_numpy(boxes.boxes.copy()), "box_labels": torch.from_numpy(boxes.labels.copy()),
                "box_scores": torch.from_numpy(boxes.scores.copy()), "video_id": video_id, "timestamp": timestamp}

    def blank(self) -> dict[str, Any]:
        return {"boxes": torch.zeros(0, 4), "box_labels": torch.zeros(0, len(self.classes)),
                "box_scores": torch.zeros(0), "video_id": "", "timestamp": -1}
