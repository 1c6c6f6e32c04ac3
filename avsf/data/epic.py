"""EPIC-Kitchens-100 annotation files, and the label source that makes their segments samples.

The files are the dataset's own (epic-kitchens/epic-kitchens-100-annotations)::

    EPIC_100_{train,validation}.csv   narration_id,participant_id,video_id,narration_timestamp,
                                      start_timestamp,stop_timestamp,start_frame,stop_frame,
                                      narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes
    EPIC_100_test_timestamps.csv      the first 8 of those columns (no labels)
    EPIC_100_video_info.csv           video_id,duration,fps,resolution (native fps varies per video)
    EPIC_100_{verb,noun}_classes.csv  id,key,instances,category (CRLF lines, no final line end)
    EPIC_100_tail_{verbs,nouns}.csv,  one column under a header (verb / noun / participant_id)
    EPIC_100_unseen_participant_ids_*.csv

Timestamps are ``HH:MM:SS.ss`` (start/stop, 2 decimals) and ``HH:MM:SS.sss`` (narration, 3
decimals, empty on a few rows); frame numbers are 1-based at the video's native rate, so
samples are cut from the seconds, at the store's rate. The curated files are read strictly:
a broken row raises :class:`ManifestError` naming file, line and field. The writers produce
the same layouts byte for byte, so a demo world's files read back as the real ones do.

Each long video is stored whole, as one store entry whose ``youtube_id`` is the EPIC
``video_id``; :class:`EpicSegments` maps each narration onto the frames of its video.
"""

from __future__ import annotations

import ast
import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from avsf.data.clip_dataset import Sample
from avsf.data.kinetics import ManifestError
from avsf.data.store import StoreEntry
from avsf.io.atomic import atomic_output

ANNOTATION_COLUMNS = ("narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
                      "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
                      "noun_class", "all_nouns", "all_noun_classes")
TIMESTAMP_COLUMNS = ANNOTATION_COLUMNS[:8]  # EPIC_100_test_timestamps.csv: no labels
VIDEO_INFO_COLUMNS = ("video_id", "duration", "fps", "resolution")
CLASS_COLUMNS = ("id", "key", "instances", "category")
_REQUIRED = ("narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp", "start_frame",
             "stop_frame")
_TIMESTAMP = re.compile(r"(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)")


# --------------------------------------------------------------------------- timestamps


def parse_timestamp(value: str) -> float:
    """``HH:MM:SS.ss`` (or ``.sss``, or no fraction) -> seconds."""
    match = _TIMESTAMP.fullmatch(value.strip())
    if not match:
        raise ManifestError(f"timestamp {value!r} is not HH:MM:SS.ss")
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def format_timestamp(seconds: float, decimals: int = 2) -> str:
    """Seconds -> ``HH:MM:SS.ss`` with ``decimals`` digits of fraction, as the files write them."""
    scale = 10**decimals
    units = round(seconds * scale)
    hours, units = divmod(units, 3600 * scale)
    minutes, units = divmod(units, 60 * scale)
    whole, fraction = divmod(units, scale)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}.{fraction:0{decimals}d}"


# --------------------------------------------------------------------------- narrations


@dataclass(frozen=True)
class EpicNarration:
    """One annotated segment. Frames are the file's (1-based, at the native rate); the labels
    are -1 / "" / () in a file without them (the test timestamps)."""

    narration_id: str
    participant_id: str
    video_id: str
    start_s: float
    stop_s: float
    start_frame: int
    stop_frame: int
    narration: str = ""
    verb: str = ""
    verb_class: int = -1
    noun: str = ""
    noun_class: int = -1
    all_nouns: tuple[str, ...] = ()
    all_noun_classes: tuple[int, ...] = ()
    narration_s: float | None = None  # when the narration was spoken; empty on some rows

    @property
    def labelled(self) -> bool:
        return self.verb_class >= 0 and self.noun_class >= 0


def read_epic_annotations(path: str | os.PathLike) -> list[EpicNarration]:
    """Read EPIC_100_{train,validation}.csv, or a test-timestamps file without label columns."""
    path = Path(path)
    with _open_csv(path) as (reader, columns):
        missing = [c for c in _REQUIRED if c not in columns]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}; an EPIC-Kitchens-100 "
                                f"annotation file has {','.join(ANNOTATION_COLUMNS)}")
        labelled = all(c in columns for c in ANNOTATION_COLUMNS[8:])
        return [_narration(row, labelled, _Where(path, reader)) for row in reader]


class _Where:
    """Parses one field of the current row, raising ManifestError with file, line and field."""

    def __init__(self, path: Path, reader: csv.DictReader):
        self.path, self.reader = path, reader

    def error(self, field: str, value: Any, reason: str) -> ManifestError:
        return ManifestError(f"{self.path}:{self.reader.line_num}: {field} {value!r}: {reason}")

    def __call__(self, row: dict[str, str | None], field: str, parse: Any) -> Any:
        value = row.get(field)
        if value is None:
            raise self.error(field, value, "missing (short row)")
        try:
            return parse(value)
        except (ValueError, SyntaxError, TypeError) as exc:
            raise self.error(field, value, str(exc) or type(exc).__name__) from None


def _int_list(value: str) -> tuple[int, ...]:
    items = ast.literal_eval(value)
    if not isinstance(items, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise ValueError("not a list of integers")
    return tuple(items)


def _str_list(value: str) -> tuple[str, ...]:
    items = ast.literal_eval(value)
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError("not a list of strings")
    return tuple(items)


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("empty")
    return value


def _narration(row: dict[str, str | None], labelled: bool, field: _Where) -> EpicNarration:
    start_s, stop_s = field(row, "start_timestamp", parse_timestamp), field(row, "stop_timestamp", parse_timestamp)
    if stop_s <= start_s:
        raise field.error("stop_timestamp", row["stop_timestamp"],
                          f"not after start_timestamp {row['start_timestamp']}")
    start_frame, stop_frame = field(row, "start_frame", int), field(row, "stop_frame", int)
    if stop_frame <= start_frame:
        raise field.error("stop_frame", stop_frame, f"not after start_frame {start_frame}")
    spoken = row.get("narration_timestamp") or ""
    narration = EpicNarration(
        narration_id=field(row, "narration_id", _text), participant_id=field(row, "participant_id", _text),
        video_id=field(row, "video_id", _text), start_s=start_s, stop_s=stop_s, start_frame=start_frame,
        stop_frame=stop_frame,
        narration_s=field(row, "narration_timestamp", parse_timestamp) if spoken.strip() else None)
    if not labelled:
        return narration
    labels = dict(narration=field(row, "narration", str), verb=field(row, "verb", str),
                  verb_class=field(row, "verb_class", int), noun=field(row, "noun", str),
                  noun_class=field(row, "noun_class", int), all_nouns=field(row, "all_nouns", _str_list),
                  all_noun_classes=field(row, "all_noun_classes", _int_list))
    for name in ("verb_class", "noun_class"):
        if labels[name] < 0:
            raise field.error(name, labels[name], "a class index is not negative")
    return EpicNarration(**{**narration.__dict__, **labels})


def write_epic_annotations(path: str | os.PathLike, narrations: Sequence[EpicNarration]) -> None:
    """Write narrations in the layout of EPIC_100_validation.csv, or of the test timestamps
    file when none carries labels (a mix cannot be written: a file has labels or not)."""
    labelled = [n.labelled for n in narrations]
    if any(labelled) and not all(labelled):
        raise ValueError("some narrations carry labels and some do not; a file has labels or not")
    columns = ANNOTATION_COLUMNS if all(labelled) else TIMESTAMP_COLUMNS
    rows = []
    for n in narrations:
        row = [n.narration_id, n.participant_id, n.video_id,
               "" if n.narration_s is None else format_timestamp(n.narration_s, 3),
               format_timestamp(n.start_s), format_timestamp(n.stop_s), n.start_frame, n.stop_frame]
        if columns is ANNOTATION_COLUMNS:
            row += [n.narration, n.verb, n.verb_class, n.noun, n.noun_class, str(list(n.all_nouns)),
                    str(list(n.all_noun_classes))]
        rows.append(row)
    _write_csv(path, columns, rows)


# --------------------------------------------------------------------------- video info, classes, id lists


@dataclass(frozen=True)
class EpicVideoInfo:
    """A video's native duration (s), frame rate and ``WxH`` resolution."""

    video_id: str
    duration: float
    fps: float
    resolution: str


def read_epic_video_info(path: str | os.PathLike) -> dict[str, EpicVideoInfo]:
    """EPIC_100_video_info.csv, by video id."""
    path = Path(path)
    infos: dict[str, EpicVideoInfo] = {}
    with _open_csv(path, VIDEO_INFO_COLUMNS) as (reader, _):
        field = _Where(path, reader)
        for row in reader:
            info = EpicVideoInfo(field(row, "video_id", _text), field(row, "duration", float),
                                 field(row, "fps", float), field(row, "resolution", str))
            if not (info.duration > 0 and info.fps > 0):
                raise field.error("duration/fps", (info.duration, info.fps), "not positive")
            infos[info.video_id] = info
    return infos


def write_epic_video_info(path: str | os.PathLike, infos: Iterable[EpicVideoInfo]) -> None:
    _write_csv(path, VIDEO_INFO_COLUMNS,
               [[i.video_id, repr(float(i.duration)), repr(float(i.fps)), i.resolution] for i in infos])


def read_epic_classes(path: str | os.PathLike) -> list[str]:
    """EPIC_100_{verb,noun}_classes.csv: the class keys, class i the i-th (ids must be 0..K-1)."""
    path = Path(path)
    with _open_csv(path, CLASS_COLUMNS) as (reader, _):
        field = _Where(path, reader)
        keyed = [(field(row, "id", int), field(row, "key", _text)) for row in reader]
    keyed.sort()
    ids = [i for i, _ in keyed]
    if ids != list(range(len(ids))):
        raise ManifestError(f"{path}: class ids are not 0..{len(ids) - 1} (each once)")
    return [key for _, key in keyed]


def write_epic_classes(path: str | os.PathLike, names: Sequence[str], categories: Sequence[str] | None = None,
                       instances: Sequence[Sequence[str]] | None = None) -> None:
    """Write a class file as the real ones are laid out (CRLF lines, no line end after the
    last); a class's instances default to its key alone, its category to ""."""
    categories = list(categories) if categories is not None else [""] * len(names)
    instances = [list(i) for i in instances] if instances is not None else [[name] for name in names]
    if not len(categories) == len(instances) == len(names):
        raise ValueError("names, categories and instances differ in length")
    rows = [[i, name, str(inst), cat] for i, (name, inst, cat) in enumerate(zip(names, instances, categories))]
    _write_csv(path, CLASS_COLUMNS, rows, line_end="\r\n", final_line_end=False)


def read_id_list(path: str | os.PathLike) -> list[str]:
    """A one-column file (tail verbs / nouns, unseen participants): the values under its header."""
    path = Path(path)
    with _open_csv(path) as (reader, columns):
        if len(columns) != 1:
            raise ManifestError(f"{path}: expected one column, found {columns}")
        return [value for row in reader if (value := (row[columns[0]] or "").strip())]


def write_id_list(path: str | os.PathLike, header: str, values: Iterable[Any]) -> None:
    _write_csv(path, (header,), [[v] for v in values])


# --------------------------------------------------------------------------- csv plumbing


class _open_csv:
    """``with _open_csv(path, expected) as (reader, columns)``: a DictReader over ``path``;
    a missing file, or a header other than ``expected`` (when given), raises ManifestError."""

    def __init__(self, path: Path, expected: Sequence[str] | None = None):
        self.path, self.expected = path, expected

    def __enter__(self) -> tuple[csv.DictReader, list[str]]:
        if not self.path.is_file():
            raise ManifestError(f"annotation file not found: {self.path}")
        self.file = self.path.open(newline="", encoding="utf-8-sig")
        reader = csv.DictReader(self.file)
        columns = list(reader.fieldnames or [])
        if self.expected is not None and tuple(columns) != tuple(self.expected):
            self.file.close()
            raise ManifestError(f"{self.path}: columns {','.join(columns)}; expected {','.join(self.expected)}")
        return reader, columns

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Sequence[Any]],
               line_end: str = "\n", final_line_end: bool = True) -> None:
    """Write a CSV atomically, quoting only where needed (as pandas wrote the real files)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=line_end)
    writer.writerow(columns)
    writer.writerows(rows)
    content = text.getvalue()
    if not final_line_end:
        content = content[: -len(line_end)]
    with atomic_output(path) as tmp:
        tmp.write_bytes(content.encode("utf-8"))


# --------------------------------------------------------------------------- label source


class EpicSegments:
    """EPIC-Kitchens-100 action recognition as a label source: one sample per narration, the
    frames ``[round(start_s * fps), round(stop_s * fps))`` of its stored video (clamped to the
    video, at least one frame), target ``{"verb", "noun", "segment"}`` where ``segment`` is the
    narration's position in ``narrations``.

    A narration whose video is not stored, or which starts at or past the stored video's end
    (a video cut short), makes no sample: its id goes to ``missing`` (the evaluation counts
    it as a miss). ``narration(sample)`` gives a sample's narration back.
    """

    def __init__(self, narrations: Sequence[EpicNarration]):
        self.narrations = list(narrations)
        self.missing: list[str] = []

    def samples(self, entries: Sequence[StoreEntry]) -> list[Sample]:
        videos: dict[str, StoreEntry] = {}
        for entry in entries:
            videos.setdefault(entry.youtube_id, entry)  # one entry per video: the first
        samples, self.missing = [], []
        for position, n in enumerate(self.narrations):
            entry = videos.get(n.video_id)
            start = round(n.start_s * entry.fps) if entry else 0
            if entry is None or start >= entry.num_frames:
                self.missing.append(n.narration_id)
                continue
            start = max(start, 0)
            stop = min(max(round(n.stop_s * entry.fps), start + 1), entry.num_frames)
            samples.append(Sample(entry, start, stop, {"verb": n.verb_class, "noun": n.noun_class,
                                                       "segment": position}))
        return samples

    def narration(self, sample: Sample) -> EpicNarration:
        return self.narrations[sample.target["segment"]]

    def target(self, sample: Sample, start_frame: int, stop_frame: int) -> dict[str, Any]:  # noqa: ARG002
        return sample.target

    def blank(self) -> dict[str, Any]:
        return {"verb": -1, "noun": -1, "segment": -1}
