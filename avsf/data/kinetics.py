"""Kinetics-format manifests and the clip index the download stage derives from them.

A manifest is the datasets' own CSV, one annotated segment of a YouTube video a row::

    label,youtube_id,time_start,time_end,split,is_cc      (train / val; labels with spaces quoted)
    youtube_id,time_start,time_end,split                  (test: no labels)

Each segment becomes one clip file named as the official Kinetics crawler names it,
``<youtube_id>_<start:06d>_<end:06d>.mp4`` (a fractional time keeps its fraction). The clip
index (``clips.csv``) lists the clips that exist, with their labels, lengths and notes, for
the stages that follow; the class list (``classes.json``) beside it names every class of the
manifests, whether or not any of its clips could be made.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from avsf.io.atomic import atomic_output

REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end")
CLIP_INDEX_NAME = "clips.csv"  # in the download stage's out_dir
CLIP_RECORD_SUFFIX = ".json"  # <clip_id>.json beside each clip: what made it, its digest, duration, notes
CLASS_LIST_NAME = "classes.json"  # beside it: a JSON list, class i the i-th name
CLIP_INDEX_COLUMNS = ("clip_id", "label", "youtube_id", "time_start", "time_end", "split", "path",
                      "duration", "notes")
_OLD_CLIP_INDEX_COLUMNS = CLIP_INDEX_COLUMNS[:7]  # before duration and notes
# Real YouTube ids are 11 of these; the id also names files, so nothing path-like may pass.
_YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]+")


class ManifestError(ValueError):
    """A manifest that cannot be read at all (missing file, missing columns)."""


def clip_id(youtube_id: str, time_start: float, time_end: float) -> str:
    """``abc_000417_000427``: the official crawler's name, whole seconds zero-padded to 6 digits.
    A fractional time keeps its fraction (to the microsecond), ``abc_000001.5_000003.25``, so
    that rows differing only in a fraction name different clips."""
    return f"{youtube_id}_{_id_seconds(time_start)}_{_id_seconds(time_end)}"


def _id_seconds(value: float) -> str:
    if math.isinf(value):  # a whole video to its end (a dataset whose lists give no durations)
        return "end"
    whole = int(value)
    fraction = f"{value - whole:.6f}"[1:].rstrip("0").rstrip(".")  # ".5", or "" for whole seconds
    if fraction.startswith("."):
        return f"{whole:06d}{fraction}"
    return f"{round(value):06d}"  # within a microsecond of a whole second


def format_seconds(value: float) -> str:
    """417.0 -> '417', 4.5 -> '4.5': times written back as the manifests write them."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class Segment:
    """One manifest row: an annotated segment of a YouTube video, in seconds."""

    youtube_id: str
    time_start: float
    time_end: float
    split: str = ""
    label: str | None = None  # None in test manifests, which carry no labels

    @property
    def clip_id(self) -> str:
        return clip_id(self.youtube_id, self.time_start, self.time_end)


@dataclass(frozen=True)
class InvalidRow:
    """A manifest row that names no usable segment; ``where`` is ``path:line``. ``label``: the
    class it names, if any (a class whose rows are all unusable is still a class)."""

    where: str
    detail: str
    label: str | None = None


@dataclass(frozen=True)
class Manifest:
    segments: list[Segment]
    invalid: list[InvalidRow]

    @property
    def total_rows(self) -> int:
        return len(self.segments) + len(self.invalid)


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Parse a Kinetics CSV. Rows that are not usable go to ``invalid`` instead of raising;
    only a missing file or missing required columns raise :class:`ManifestError`."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    segments, invalid = [], []
    # utf-8-sig: a byte-order mark (spreadsheets save one) must not hide the first column's name.
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ManifestError(
                f"{path}: missing column(s) {', '.join(missing)}; a Kinetics manifest has "
                "label,youtube_id,time_start,time_end,split[,is_cc] (test: no label)"
            )
        has_label = "label" in columns
        for record in reader:
            where = f"{path}:{reader.line_num}"
            try:
                segments.append(_segment(record, has_label))
            except ValueError as exc:
                label = (record.get("label") or "").strip() if has_label else ""
                invalid.append(InvalidRow(where, str(exc), label or None))
    return Manifest(segments, invalid)


def _segment(record: dict[str, str | None], has_label: bool) -> Segment:
    youtube_id = (record.get("youtube_id") or "").strip()
    if not _YOUTUBE_ID.fullmatch(youtube_id):
        raise ValueError(f"youtube_id {youtube_id!r} is not an id of letters, digits, '-' and '_'")
    try:
        start = float(record.get("time_start") or "")
        end = float(record.get("time_end") or "")
    except ValueError:
        raise ValueError(
            f"time_start/time_end {record.get('time_start')!r}/{record.get('time_end')!r} are not numbers"
        ) from None
    if not 0 <= start < end:
        raise ValueError(f"segment [{start}, {end}] is not 0 <= time_start < time_end")
    label = (record.get("label") or "").strip() if has_label else None
    if has_label and not label:
        raise ValueError("empty label")
    return Segment(youtube_id, start, end, (record.get("split") or "").strip(), label)


def class_names(items: Iterable[Segment | InvalidRow | ClipRecord]) -> list[str]:
    """The sorted distinct labels of segments, unusable rows or clip records: index i of this
    list is class i."""
    return sorted({s.label for s in items if s.label})


# --------------------------------------------------------------------------- clip index


@dataclass(frozen=True)
class ClipRecord:
    """One clip present on disk; ``path`` is relative to the clip directory. ``time_start`` and
    ``time_end`` are the manifest's segment; ``duration`` is how long the clip is (shorter
    when the video ends or breaks off inside the segment; None when not known) and ``notes``
    what the download stage noted about it."""

    clip_id: str
    label: str | None
    youtube_id: str
    time_start: float
    time_end: float
    split: str
    path: str
    duration: float | None = None
    notes: dict[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def for_segment(cls, segment: Segment, path: str, duration: float | None = None,
                    notes: dict[str, Any] | None = None) -> "ClipRecord":
        return cls(segment.clip_id, segment.label, segment.youtube_id, segment.time_start,
                   segment.time_end, segment.split, path, duration, dict(notes or {}))


def clip_record_path(clip: str | os.PathLike) -> Path:
    """The download stage's record of a clip, beside it: ``<clip_id>.json``."""
    return Path(clip).with_suffix(CLIP_RECORD_SUFFIX)


def read_clip_record(clip: str | os.PathLike) -> dict[str, Any] | None:
    """The record of the clip at ``clip`` (``fingerprint``, ``source``: the raw video it was cut
    from, ``sha256``, ``duration``, ``notes``, ``settings``), or None when there is none or it
    does not read as one."""
    try:
        record = json.loads(clip_record_path(clip).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_clip_index(path: str | os.PathLike, records: Iterable[ClipRecord]) -> None:
    """Write ``clips.csv`` atomically."""
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CLIP_INDEX_COLUMNS)
        for r in records:
            writer.writerow([r.clip_id, r.label or "", r.youtube_id, format_seconds(r.time_start),
                             format_seconds(r.time_end), r.split, r.path,
                             "" if r.duration is None else format_seconds(round(r.duration, 6)),
                             json.dumps(r.notes, sort_keys=True) if r.notes else ""])


def read_clip_index(path: str | os.PathLike) -> list[ClipRecord]:
    """Read ``clips.csv`` (also one written before it had ``duration`` and ``notes``); an empty
    label reads back as None (test clips), an empty duration as None."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) not in (CLIP_INDEX_COLUMNS, _OLD_CLIP_INDEX_COLUMNS):
            raise ManifestError(f"{path}: expected columns {','.join(CLIP_INDEX_COLUMNS)}")
        return [
            ClipRecord(row["clip_id"], row["label"] or None, row["youtube_id"],
                       float(row["time_start"]), float(row["time_end"]), row["split"], row["path"],
                       float(row["duration"]) if row.get("duration") else None,
                       json.loads(row["notes"]) if row.get("notes") else {})
            for row in reader
        ]
