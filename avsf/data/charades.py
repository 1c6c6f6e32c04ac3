"""Charades v1 annotation files, and the label source that gives clips multi-hot targets.

The files are the dataset's own (Charades v1, April 2017 release)::

    Charades_v1_{train,test}.csv   id,subject,scene,quality,relevance,verified,script,objects,
                                   descriptions,actions,length      (CRLF lines; quoted fields with commas)
    Charades_v1_classes.txt        c000 Holding some clothes ... c156  (LF lines)

``actions`` is ``c092 11.90 21.20;c147 0.00 12.60`` (class, start s, end s) and may be empty;
``quality`` and ``relevance`` may be empty (None here). Actions are kept as written, even the
few whose end is before their start (``00SL4``: ``c071 18.00 10.00``): such an action
overlaps no clip, so it is never a clip's target, but it is still one of its video's labels
(the official classification ground truth is the set of classes in ``actions``).

Each video is stored whole, as one store entry whose ``youtube_id`` is the Charades id;
:class:`CharadesLabels` gives each clip the classes active during its time span.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from avsf.data.clip_dataset import Sample
from avsf.data.kinetics import ManifestError
from avsf.data.store import StoreEntry
from avsf.io.atomic import atomic_output

CHARADES_COLUMNS = ("id", "subject", "scene", "quality", "relevance", "verified", "script", "objects",
                    "descriptions", "actions", "length")
_ACTION = re.compile(r"c(\d+) (\d+(?:\.\d*)?) (\d+(?:\.\d*)?)")
_CLASS_LINE = re.compile(r"c(\d+) (.+)")


@dataclass(frozen=True)
class CharadesAction:
    """One labelled interval of a video: class ``class_index`` from ``start`` to ``end`` seconds."""

    class_index: int
    start: float
    end: float


@dataclass(frozen=True)
class CharadesVideo:
    """One row of a Charades CSV; text fields as written (``objects`` is ``a;b;c``,
    ``descriptions`` several ``;``-joined sentences, ``verified`` Yes/No)."""

    id: str
    subject: str
    scene: str
    quality: int | None
    relevance: int | None
    verified: str
    script: str
    objects: str
    descriptions: str
    actions: tuple[CharadesAction, ...]
    length: float


def parse_actions(value: str) -> tuple[CharadesAction, ...]:
    """``c092 11.90 21.20;c147 0.00 12.60`` -> actions; "" -> ()."""
    actions = []
    for part in value.split(";") if value.strip() else ():
        match = _ACTION.fullmatch(part.strip())
        if not match:
            raise ValueError(f"action {part!r} is not 'cNNN start end'")
        actions.append(CharadesAction(int(match[1]), float(match[2]), float(match[3])))
    return tuple(actions)


def format_actions(actions: Iterable[CharadesAction]) -> str:
    return ";".join(f"c{a.class_index:03d} {a.start:.2f} {a.end:.2f}" for a in actions)


def read_charades(path: str | os.PathLike) -> list[CharadesVideo]:
    """Read Charades_v1_{train,test}.csv; a broken row raises ManifestError naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"annotation file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != CHARADES_COLUMNS:
            raise ManifestError(f"{path}: columns {','.join(reader.fieldnames or [])}; "
                                f"expected {','.join(CHARADES_COLUMNS)}")
        videos = []
        for row in reader:
            def field(name: str, parse: Any) -> Any:
                value = row.get(name)
                try:
                    if value is None:
                        raise ValueError("missing (short row)")
                    return parse(value)
                except ValueError as exc:
                    raise ManifestError(f"{path}:{reader.line_num}: {name} {value!r}: {exc}") from None

            videos.append(CharadesVideo(
                id=field("id", _text), subject=row["subject"], scene=row["scene"],
                quality=field("quality", _optional_int), relevance=field("relevance", _optional_int),
                verified=row["verified"], script=row["script"], objects=row["objects"],
                descriptions=row["descriptions"], actions=field("actions", parse_actions),
                length=field("length", float)))
    return videos


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("empty")
    return value


def _optional_int(value: str) -> int | None:
    return int(value) if value.strip() else None


def write_charades(path: str | os.PathLike, videos: Iterable[CharadesVideo]) -> None:
    """Write videos in the layout of Charades_v1_train.csv (CRLF, lengths with 2 decimals), atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(CHARADES_COLUMNS)
    for v in videos:
        writer.writerow([v.id, v.subject, v.scene, "" if v.quality is None else v.quality,
                         "" if v.relevance is None else v.relevance, v.verified, v.script, v.objects,
                         v.descriptions, format_actions(v.actions), f"{v.length:.2f}"])
    with atomic_output(path) as tmp:
        tmp.write_bytes(text.getvalue().encode("utf-8"))


def read_charades_classes(path: str | os.PathLike) -> list[str]:
    """Charades_v1_classes.txt: the class names, class i named on the line ``c<i>``."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"class file not found: {path}")
    names = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        match = _CLASS_LINE.fullmatch(line.strip())
        if not match or int(match[1]) != len(names):
            raise ManifestError(f"{path}:{number}: {line!r} is not 'c{len(names):03d} <name>'")
        names.append(match[2])
    return names


def write_charades_classes(path: str | os.PathLike, names: Sequence[str]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes("".join(f"c{i:03d} {name}\n" for i, name in enumerate(names)).encode("utf-8"))


def video_labels(video: CharadesVideo) -> set[int]:
    """The video-level ground truth: every class among its actions (empty without actions)."""
    return {a.class_index for a in video.actions}


class CharadesLabels:
    """Charades classification as a label source: one sample per stored video, its whole
    length; a clip's target is ``labels``, float32 multi-hot [num_classes] of the actions
    whose ``[start, end]`` overlaps the clip's ``[start_frame / fps, stop_frame / fps)`` by a
    positive amount, and ``video``, the video's position in ``videos``. Videos that are not
    stored go to ``missing`` (their ids: the evaluation still counts their positives)."""

    def __init__(self, videos: Sequence[CharadesVideo], num_classes: int):
        self.videos = list(videos)
        self.num_classes = num_classes
        self.missing: list[str] = []
        for v in self.videos:
            for a in v.actions:
                if not 0 <= a.class_index < num_classes:
                    raise ValueError(f"video {v.id}: class c{a.class_index:03d} is not one of {num_classes}")

    def samples(self, entries: Sequence[StoreEntry]) -> list[Sample]:
        stored: dict[str, StoreEntry] = {}
        for entry in entries:
            stored.setdefault(entry.youtube_id, entry)  # one entry per video: the first
        samples, self.missing = [], []
        for position, video in enumerate(self.videos):
            entry = stored.get(video.id)
            if entry is None:
                self.missing.append(video.id)
            else:
                samples.append(Sample(entry, 0, entry.num_frames, {"video": position}))
        return samples

    def video(self, sample: Sample) -> CharadesVideo:
        return self.videos[sample.target["video"]]

    def ground_truth(self) -> dict[str, set[int]]:
        """Video id -> its classes, for every video (stored or not)."""
        return {v.id: video_labels(v) for v in self.videos}

    def target(self, sample: Sample, start_frame: int, stop_frame: int) -> dict[str, Any]:
        fps = sample.entry.fps
        t0, t1 = start_frame / fps, stop_frame / fps
        labels = torch.zeros(self.num_classes, dtype=torch.float32)
        for a in self.video(sample).actions:
            if min(a.end, t1) - max(a.start, t0) > 0:
                labels[a.class_index] = 1.0
        return {"labels": labels, "video": sample.target["video"]}

    def blank(self) -> dict[str, Any]:
        return {"labels": torch.zeros(self.num_classes, dtype=torch.float32), "video": -1}
