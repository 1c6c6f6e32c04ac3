"""AVA's own file formats: ground truth, detections, the class list, excluded timestamps,
and where a keyframe lies in the decoded store.

Ground truth (``ava_{train,val}_v2.2.csv``), no header, one (person box, action) a row::

    video_id,timestamp,x1,y1,x2,y2,action_id,person_id      -> AvaBox
    video_id,timestamp                                      -> a keyframe with no box

Boxes are normalised to [0, 1]; timestamps are whole seconds written with 4 digits
(``0902``), at 1 fps from 902 to 1798 of each movie; action ids 1..80. Person ids need not
be integers (the real val file has ``3_``): they are kept as the strings they are. The
official evaluation script reads an 8th ground-truth column as a *score*; nothing here
depends on that column (it is read back as the person id, and may be absent).

Detections (person-detector outputs and our action detections), the same layout with a
score last::

    video_id,timestamp,x1,y1,x2,y2,action_id,score          -> AvaDetection

A person detector's file (PySlowFast's ``ava_{train,val}_predicted_boxes.csv``) leaves
``action_id`` empty (PySlowFast reads an empty action as -1) or names the person class; an
empty action reads as :data:`NO_ACTION` (-1) here. A 7-column row has no score and reads
as 1.0, as the official script reads it.

Class lists: the evaluated classes (``ava_action_list_v2.x_for_activitynet_*.pbtxt``:
``item { name: "..." id: N }``) and label maps (``label { name: "..." label_id: N
label_type: ... }``). Excluded timestamps: ``video_id,timestamp`` rows. Each format has a
writer beside its reader (the demo world writes its AVA flavour with them).

Keyframe timing: the store holds each movie decoded at 30 fps from second 900 to 1800,
whatever the movie's native rate (:func:`keyframe_frame`).
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from avsf.io.atomic import atomic_output

AVA_FIRST_SECOND = 900  # the annotated 15 minutes of each movie start here ...
AVA_LAST_SECOND = 1800  # ... and end here: the store decodes [900, 1800) s
AVA_FIRST_KEYFRAME = 902  # keyframes at 1 fps, 902 .. 1798 inclusive
AVA_LAST_KEYFRAME = 1798
AVA_STORE_FPS = 30.0  # the rate the store resamples every movie to
NO_ACTION = -1  # a detection row with an empty action_id (a person box, no action)

Box = tuple[float, float, float, float]  # (x1, y1, x2, y2), normalised
Keyframe = tuple[str, int]  # (video_id, timestamp in whole seconds)


class AvaFormatError(ValueError):
    """A file that does not read as the AVA format; the message names ``path:line``."""


@dataclass(frozen=True)
class AvaBox:
    """One ground-truth row: a person's box on a keyframe, with one of its actions."""

    video_id: str
    timestamp: int
    box: Box
    action_id: int
    person_id: str | None = None  # the 8th column as written ("3_" stays "3_"); None: absent

    @property
    def keyframe(self) -> Keyframe:
        return (self.video_id, self.timestamp)


@dataclass(frozen=True)
class AvaDetection:
    """One detection row: a box on a keyframe, an action (:data:`NO_ACTION` for a bare
    person box) and its score."""

    video_id: str
    timestamp: int
    box: Box
    action_id: int
    score: float

    @property
    def keyframe(self) -> Keyframe:
        return (self.video_id, self.timestamp)


# --------------------------------------------------------------------------- reading


def _rows(path: str | os.PathLike) -> Iterable[tuple[str, list[str]]]:
    """(``path:line``, stripped cells) for each non-blank row."""
    path = Path(path)
    if not path.is_file():
        raise AvaFormatError(f"file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for cells in reader:
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            yield f"{path}:{reader.line_num}", cells


def _timestamp(text: str, where: str) -> int:
    """'0902' -> 902; a whole number written as '902.0' is accepted, a fraction is not."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise AvaFormatError(f"{where}: timestamp {text!r} is not a number") from None
    if not value.is_integer():
        raise AvaFormatError(f"{where}: timestamp {text!r} is not a whole second")
    return int(value)


def _box(cells: list[str], where: str) -> Box:
    try:
        x1, y1, x2, y2 = (float(c) for c in cells[2:6])
    except ValueError:
        raise AvaFormatError(f"{where}: box {cells[2:6]} is not four numbers") from None
    return (x1, y1, x2, y2)


def _action(text: str, where: str, empty: int | None = None) -> int:
    if text == "" and empty is not None:
        return empty
    try:
        return int(text)
    except ValueError:
        raise AvaFormatError(f"{where}: action_id {text!r} is not an integer") from None


def read_ava_ground_truth(path: str | os.PathLike) -> tuple[list[AvaBox], set[Keyframe]]:
    """The boxes of a ground-truth file, in file order, and every keyframe it names (those
    with boxes and those of 2-column rows, which have none: a detection there is a false
    positive). Rows have 2, 7 or 8 columns; the 8th is kept as the person id string."""
    boxes: list[AvaBox] = []
    keyframes: set[Keyframe] = set()
    for where, cells in _rows(path):
        if len(cells) not in (2, 7, 8):
            raise AvaFormatError(f"{where}: {len(cells)} columns; ground truth has 2, 7 or 8 "
                                 "(video_id,timestamp[,x1,y1,x2,y2,action_id[,person_id]])")
        keyframe = (cells[0], _timestamp(cells[1], where))
        keyframes.add(keyframe)
        if len(cells) == 2:
            continue
        person = cells[7] if len(cells) == 8 else None
        boxes.append(AvaBox(keyframe[0], keyframe[1], _box(cells, where), _action(cells[6], where), person))
    return boxes, keyframes


def read_ava_detections(path: str | os.PathLike) -> list[AvaDetection]:
    """The detections of a file, in file order: 8 columns (the score last) or 7 (no score:
    1.0, as the official script reads it); an empty action_id reads as :data:`NO_ACTION`."""
    detections: list[AvaDetection] = []
    for where, cells in _rows(path):
        if len(cells) not in (7, 8):
            raise AvaFormatError(f"{where}: {len(cells)} columns; detections have 8 "
                                 "(video_id,timestamp,x1,y1,x2,y2,action_id,score)")
        score = 1.0
        if len(cells) == 8:
            try:
                score = float(cells[7])
            except ValueError:
                raise AvaFormatError(f"{where}: score {cells[7]!r} is not a number") from None
            if math.isnan(score):
                raise AvaFormatError(f"{where}: score is NaN")
        detections.append(AvaDetection(cells[0], _timestamp(cells[1], where), _box(cells, where),
                                       _action(cells[6], where, empty=NO_ACTION), score))
    return detections


def read_excluded_timestamps(path: str | os.PathLike) -> set[Keyframe]:
    """The keyframes of an excluded-timestamps file (``video_id,timestamp`` rows)."""
    excluded: set[Keyframe] = set()
    for where, cells in _rows(path):
        if len(cells) != 2:
            raise AvaFormatError(f"{where}: {len(cells)} columns; excluded timestamps have 2 "
                                 "(video_id,timestamp)")
        excluded.add((cells[0], _timestamp(cells[1], where)))
    return excluded


_BLOCK = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r'(?:^|\s)name\s*:\s*"([^"]*)"')
_ID = re.compile(r"(?:^|\s)(?:label_)?id\s*:\s*(-?\d+)")
_TYPE = re.compile(r"(?:^|\s)label_type\s*:\s*([A-Z_]+)")


def read_action_list(path: str | os.PathLike) -> dict[int, str]:
    """class id -> name, in file order, from a class list (``item { name: "..." id: N }``)
    or a label map (``label { name: "..." label_id: N label_type: ... }``)."""
    path = Path(path)
    if not path.is_file():
        raise AvaFormatError(f"file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    classes: dict[int, str] = {}
    for block in _BLOCK.finditer(text):
        name, class_id = _NAME.search(block.group(1)), _ID.search(block.group(1))
        if name is None or class_id is None:
            line = text.count("\n", 0, block.start()) + 1
            raise AvaFormatError(f"{path}:{line}: an entry without a quoted name and an id")
        number = int(class_id.group(1))
        if number in classes:
            raise AvaFormatError(f"{path}: class id {number} appears twice")
        classes[number] = name.group(1)
    if not classes:
        raise AvaFormatError(f"{path}: no class entries")
    return classes


def box_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """[N, M] IoU of (x1, y1, x2, y2) boxes [N, 4] with [M, 4], no +1 on the areas."""
    boxes, others = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(others, np.float64).reshape(-1, 4)
    width = np.clip(np.minimum(boxes[:, None, 2], others[None, :, 2])
                    - np.maximum(boxes[:, None, 0], others[None, :, 0]), 0, None)
    height = np.clip(np.minimum(boxes[:, None, 3], others[None, :, 3])
                     - np.maximum(boxes[:, None, 1], others[None, :, 1]), 0, None)
    inter = width * height
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_area = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area[:, None] + other_area[None, :] - inter)


def read_label_types(path: str | os.PathLike) -> dict[int, str]:
    """class id -> its ``label_type`` (PERSON_MOVEMENT, OBJECT_MANIPULATION, PERSON_INTERACTION)
    of a v2.2 label map; empty for a class list without them (v2.1's ``item`` blocks)."""
    text = Path(path).read_text(encoding="utf-8-sig")
    types = {}
    for block in _BLOCK.finditer(text):
        class_id, kind = _ID.search(block.group(1)), _TYPE.search(block.group(1))
        if class_id is not None and kind is not None:
            types[int(class_id.group(1))] = kind.group(1)
    return types


# --------------------------------------------------------------------------- writing


def _box_cells(box: Box) -> list[str]:
    return [f"{v:.3f}" for v in box]  # 3 decimals, as the official files write boxes


def write_ava_detections(path: str | os.PathLike, detections: Iterable[AvaDetection]) -> None:
    """Write detections atomically in the official format the evaluation script reads:
    ``video_id,timestamp,x1,y1,x2,y2,action_id,score``, timestamps with 4 digits, boxes
    with 3 decimals, the score in full (its shortest exact repr, so that no ranking changes);
    a :data:`NO_ACTION` detection is written with an empty action_id."""
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        for d in detections:
            action = "" if d.action_id == NO_ACTION else str(d.action_id)
            writer.writerow([d.video_id, f"{d.timestamp:04d}", *_box_cells(d.box), action,
                             repr(float(d.score))])


def write_ava_ground_truth(path: str | os.PathLike, boxes: Iterable[AvaBox],
                           keyframes: Iterable[Keyframe] = ()) -> None:
    """Write ground truth atomically: the boxes in the order given (the person id as the
    string it is; a 7-column row when it is None), then a 2-column row for each keyframe of
    ``keyframes`` that has no box (sorted), so that every keyframe survives."""
    boxes = list(boxes)
    with_boxes = {b.keyframe for b in boxes}
    empty = sorted(set(keyframes) - with_boxes)
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        for b in boxes:
            row = [b.video_id, f"{b.timestamp:04d}", *_box_cells(b.box), str(b.action_id)]
            writer.writerow(row if b.person_id is None else [*row, b.person_id])
        for video_id, timestamp in empty:
            writer.writerow([video_id, f"{timestamp:04d}"])


def write_excluded_timestamps(path: str | os.PathLike, keyframes: Iterable[Keyframe]) -> None:
    """Write an excluded-timestamps file atomically: ``video_id,timestamp`` rows, sorted,
    timestamps with 4 digits (as AVA's ``ava_{train,val}_excluded_timestamps_v2.x.csv``)."""
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        for video_id, timestamp in sorted(set(keyframes)):
            writer.writerow([video_id, f"{timestamp:04d}"])


def write_action_list(path: str | os.PathLike, classes: Mapping[int, str],
                      label_types: Mapping[int, str] | None = None) -> None:
    """Write a class list atomically, in the order of ``classes`` (id -> name): ``item { name
    id }`` blocks, as the ActivityNet list of v2.1, or, given ``label_types`` (id -> e.g.
    PERSON_MOVEMENT), ``label { name label_id label_type }`` blocks, as the v2.2 lists."""
    blocks = []
    for class_id, name in classes.items():
        if label_types is None:
            blocks.append(f'item {{\n  name: "{name}"\n  id: {class_id}\n}}\n')
        else:
            blocks.append(f'label {{\n  name: "{name}"\n  label_id: {class_id}\n'
                          f'  label_type: {label_types[class_id]}\n}}\n')
    with atomic_output(path) as tmp:
        tmp.write_text("".join(blocks), encoding="utf-8")


# --------------------------------------------------------------------------- timing


def store_start_second(movie_start_s: float) -> float:
    """The movie second the store's frame 0 shows, for a source file whose t = 0 is movie
    second ``movie_start_s``: 900, or the file's start when that is later."""
    return max(float(AVA_FIRST_SECOND), float(movie_start_s))


def keyframe_frame(timestamp: int, fps: float = AVA_STORE_FPS, start_s: float = AVA_FIRST_SECOND) -> int:
    """The store frame of the keyframe at second ``timestamp``: round((timestamp - start_s) x fps).

    The store decodes each movie to a constant ``fps`` (30) from ``start_s`` (900 s): its
    frame k is the picture shown at time start_s + k / fps, whatever the movie's native rate
    (a constant-rate resampler shows, at each output time, the source frame on screen then).
    AVA's timestamps are seconds of the movie's own clock, so the keyframe at second s is
    store frame (s - 900) x 30 for a 23.976, 25 or 30 fps movie alike. Counting native
    frames instead (s x 23.976 for a film) lands on a different moment once the store is at
    30 fps: the mistake that makes PySlowFast's mAP collapse on re-extracted frames.
    """
    return round((timestamp - start_s) * fps)


def frame_time(frame: int, fps: float = AVA_STORE_FPS, start_s: float = AVA_FIRST_SECOND) -> float:
    """The movie time (s) that store frame ``frame`` shows: start_s + frame / fps."""
    return start_s + frame / fps
