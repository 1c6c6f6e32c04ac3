"""EPIC-Kitchens-55 annotation files, as the dataset distributes them, and the paper's validation split.

The files are the dataset's own (epic-kitchens/epic-kitchens-55-annotations)::

    EPIC_train_action_labels.csv     uid,participant_id,video_id,narration,start_timestamp,stop_timestamp,
                                     start_frame,stop_frame,verb,verb_class,noun,noun_class,all_nouns,
                                     all_noun_classes (28,472 segments; all_nouns a Python list literal)
    EPIC_test_s{1,2}_timestamps.csv  uid,participant_id,video_id,start_timestamp,stop_timestamp,start_frame,
                                     stop_frame (S1: seen kitchens, S2: unseen; no labels)
    EPIC_{verb,noun}_classes.csv     verb_id,class_key,verbs / noun_id,class_key,nouns (CRLF lines, the
                                     last one too; 125 verbs, 352 nouns)
    EPIC_many_shot_{verbs,nouns}.csv verb_class,verb / noun_class,noun (the class keys)
    EPIC_many_shot_actions.csv       action_class,noun,noun_class,verb,verb_class (action_class "(v, n)")
    EPIC_video_info.csv              video,resolution,duration,fps (duration with 6 decimals)

Segments are keyed by ``uid``, an integer unique over train and both test sets; they read as
avsf.data.epic's :class:`EpicNarration` with ``narration_id`` = the uid as text (no narration
timestamp), so :class:`avsf.data.epic.EpicSegments` makes them samples unchanged. Timestamps
are ``HH:MM:SS.ss``; frame numbers count frames resampled at 60 fps (the dataset's extracted
frames), so samples are cut from the seconds. A train row's ``all_nouns`` and
``all_noun_classes`` may differ in length (232 rows do): both are kept as they are.

Reading is strict: a wrong header, a broken field or a repeated uid raises
:class:`ManifestError` naming file, line and field. The writers lay the files out as the
real ones, byte for byte. A row's fields are parsed and checked by avsf.data.epic's reader, and
the CSV plumbing is its too (shared, not copied).

Many-shot classes (the leaderboard's precision and recall are averaged over them): a verb or
noun class is many-shot when it has more than 100 training segments, an action when its verb
and its noun are many-shot and it occurs in training at least once (the annotations' README);
:func:`many_shot_classes` states that rule once, and reproduces the three real files from
EPIC_train_action_labels.csv.
"""

from __future__ import annotations

import ast
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

from avsf.data.epic import (
    EpicNarration,
    EpicVideoInfo,
    _open_csv,
    _str_list,
    _text,
    _Where,
    _write_csv,
    format_timestamp,
)
from avsf.data.epic import _narration as epic_row
from avsf.data.kinetics import ManifestError

TRAIN_LABELS = "EPIC_train_action_labels.csv"
TEST_TIMESTAMPS = {"s1": "EPIC_test_s1_timestamps.csv", "s2": "EPIC_test_s2_timestamps.csv"}  # seen, unseen
CLASS_FILES = {"verb": "EPIC_verb_classes.csv", "noun": "EPIC_noun_classes.csv"}
MANY_SHOT_FILES = {"verb": "EPIC_many_shot_verbs.csv", "noun": "EPIC_many_shot_nouns.csv",
                   "action": "EPIC_many_shot_actions.csv"}
VIDEO_INFO = "EPIC_video_info.csv"

LABEL_COLUMNS = ("uid", "participant_id", "video_id", "narration", "start_timestamp", "stop_timestamp",
                 "start_frame", "stop_frame", "verb", "verb_class", "noun", "noun_class", "all_nouns",
                 "all_noun_classes")
TIMESTAMP_COLUMNS = ("uid", "participant_id", "video_id", "start_timestamp", "stop_timestamp", "start_frame",
                     "stop_frame")
CLASS_COLUMNS = {"verb": ("verb_id", "class_key", "verbs"), "noun": ("noun_id", "class_key", "nouns")}
MANY_SHOT_COLUMNS = {"verb": ("verb_class", "verb"), "noun": ("noun_class", "noun"),
                     "action": ("action_class", "noun", "noun_class", "verb", "verb_class")}
VIDEO_INFO_COLUMNS = ("video", "resolution", "duration", "fps")

MANY_SHOT_MORE_THAN = 100  # training segments a many-shot verb or noun class has more than

# The paper's validation split ("the train/val split in [6]", Baradel et al., ECCV 2018), as
# facebookresearch/video-long-term-feature-banks implements it (lib/datasets/epic.py,
# TRAIN_PERSON_INDICES = range(1, 26)): the rows of EPIC_train_action_labels.csv of
# participants P01-P25 train, those of P26-P31 validate (23,191 and 5,281 segments, its
# configs' TRAIN.DATASET_SIZE and TEST.DATASET_SIZE).
VALIDATION_PARTICIPANTS = tuple(f"P{i:02d}" for i in range(26, 32))

Kind = Literal["verb", "noun"]


# --------------------------------------------------------------------------- segments


def read_epic55_narrations(path: str | os.PathLike) -> list[EpicNarration]:
    """EPIC_train_action_labels.csv (labelled) or EPIC_test_s{1,2}_timestamps.csv (no labels:
    -1 / "" / () in the label fields), told apart by the header; ``narration_id`` is the uid."""
    path = Path(path)
    with _open_csv(path) as (reader, columns):
        if tuple(columns) not in (LABEL_COLUMNS, TIMESTAMP_COLUMNS):
            raise ManifestError(f"{path}: columns {','.join(columns)}; an EPIC-Kitchens-55 file has "
                                f"{','.join(LABEL_COLUMNS)} (train labels) or {','.join(TIMESTAMP_COLUMNS)} "
                                f"(test timestamps)")
        labelled = tuple(columns) == LABEL_COLUMNS
        field = _Where(path, reader)
        narrations: list[EpicNarration] = []
        lines: dict[str, int] = {}
        for row in reader:
            narration = _narration(row, labelled, field)
            if narration.narration_id in lines:
                raise field.error("uid", row["uid"], f"repeats the uid of line {lines[narration.narration_id]}")
            lines[narration.narration_id] = reader.line_num
            narrations.append(narration)
        return narrations


def _uid(value: str) -> str:
    uid = int(value)
    if uid < 0:
        raise ValueError("negative")
    return str(uid)


def _narration(row: dict[str, str | None], labelled: bool, field: _Where) -> EpicNarration:
    """A row as EPIC-100's reader parses one (the same fields and checks), its uid the id."""
    return epic_row({**row, "narration_id": field(row, "uid", _uid)}, labelled, field)


def write_epic55_narrations(path: str | os.PathLike, narrations: Sequence[EpicNarration],
                            labels: bool | None = None) -> None:
    """Write narrations in the layout of EPIC_train_action_labels.csv (``labels`` True: each
    must carry labels) or of a test timestamps file (False: labels are left out); None: the
    former when every narration carries labels and there is at least one, the latter when none
    does (a mix raises ValueError). Each ``narration_id`` must be an integer uid; rows are
    written in the order given (the real files: by uid)."""
    labelled = [n.labelled for n in narrations]
    if labels is None:
        if any(labelled) and not all(labelled):
            raise ValueError("some narrations carry labels and some do not; a file has labels or not")
        labels = any(labelled)
    elif labels and not all(labelled):
        raise ValueError("a narration without labels cannot be written to a train labels file")
    columns = LABEL_COLUMNS if labels else TIMESTAMP_COLUMNS
    rows = []
    for n in narrations:
        if not n.narration_id.isdigit():
            raise ValueError(f"narration id {n.narration_id!r} is not an EPIC-55 uid (an integer)")
        times = [format_timestamp(n.start_s), format_timestamp(n.stop_s), n.start_frame, n.stop_frame]
        if columns is LABEL_COLUMNS:
            rows.append([n.narration_id, n.participant_id, n.video_id, n.narration, *times, n.verb, n.verb_class,
                         n.noun, n.noun_class, str(list(n.all_nouns)), str(list(n.all_noun_classes))])
        else:
            rows.append([n.narration_id, n.participant_id, n.video_id, *times])
    _write_csv(path, columns, rows)


def split_by_participants(narrations: Iterable[EpicNarration],
                          validation: Iterable[str] = VALIDATION_PARTICIPANTS,
                          ) -> tuple[list[EpicNarration], list[EpicNarration]]:
    """(train, validation): the narrations of the ``validation`` participants apart from the
    others, each in the order given. The default is the paper's split (see
    VALIDATION_PARTICIPANTS): on the real train labels, 23,191 and 5,281 segments."""
    held_out = set(validation)
    train, val = [], []
    for n in narrations:
        (val if n.participant_id in held_out else train).append(n)
    return train, val


# --------------------------------------------------------------------------- classes


@dataclass(frozen=True)
class Epic55Class:
    """A row of EPIC_{verb,noun}_classes.csv: the class id, its key and every word it gathers
    (the key among them)."""

    id: int
    key: str
    instances: tuple[str, ...]


def read_epic55_class_table(path: str | os.PathLike, kind: Kind) -> list[Epic55Class]:
    """EPIC_{verb,noun}_classes.csv as rows, class i the i-th (ids must be 0..K-1)."""
    path = Path(path)
    id_column, key_column, instances_column = CLASS_COLUMNS[kind]
    with _open_csv(path, CLASS_COLUMNS[kind]) as (reader, _):
        field = _Where(path, reader)
        rows = [Epic55Class(field(row, id_column, int), field(row, key_column, _text),
                            field(row, instances_column, _str_list)) for row in reader]
    rows.sort(key=lambda c: c.id)
    if [c.id for c in rows] != list(range(len(rows))):
        raise ManifestError(f"{path}: class ids are not 0..{len(rows) - 1} (each once)")
    return rows


def read_epic55_classes(path: str | os.PathLike, kind: Kind) -> list[str]:
    """The class keys of EPIC_{verb,noun}_classes.csv: class i the i-th."""
    return [c.key for c in read_epic55_class_table(path, kind)]


def write_epic55_classes(path: str | os.PathLike, kind: Kind, names: Sequence[str],
                         instances: Sequence[Sequence[str]] | None = None) -> None:
    """Write a class file as the real ones are laid out (CRLF lines, the last one too); a
    class's instances default to its key alone."""
    instances = [list(i) for i in instances] if instances is not None else [[name] for name in names]
    if len(instances) != len(names):
        raise ValueError("names and instances differ in length")
    rows = [[i, name, str(inst)] for i, (name, inst) in enumerate(zip(names, instances))]
    _write_csv(path, CLASS_COLUMNS[kind], rows, line_end="\r\n")


# --------------------------------------------------------------------------- many-shot classes


def read_many_shot_classes(path: str | os.PathLike, kind: Kind) -> list[int]:
    """EPIC_many_shot_{verbs,nouns}.csv: the class ids, in the file's order."""
    path = Path(path)
    id_column = MANY_SHOT_COLUMNS[kind][0]
    with _open_csv(path, MANY_SHOT_COLUMNS[kind]) as (reader, _):
        field = _Where(path, reader)
        ids = []
        for row in reader:
            field(row, kind, _text)
            ids.append(field(row, id_column, _class_id))
    if len(set(ids)) != len(ids):
        raise ManifestError(f"{path}: a class is listed twice")
    return ids


def read_many_shot_actions(path: str | os.PathLike) -> list[tuple[int, int]]:
    """EPIC_many_shot_actions.csv: the (verb class, noun class) pairs, in the file's order;
    ``action_class`` must agree with the ``verb_class`` and ``noun_class`` columns."""
    path = Path(path)
    with _open_csv(path, MANY_SHOT_COLUMNS["action"]) as (reader, _):
        field = _Where(path, reader)
        pairs = []
        for row in reader:
            pair = field(row, "action_class", _pair)
            columns = (field(row, "verb_class", _class_id), field(row, "noun_class", _class_id))
            if pair != columns:
                raise field.error("action_class", row["action_class"],
                                  f"disagrees with verb_class, noun_class {columns[0]}, {columns[1]}")
            field(row, "verb", _text), field(row, "noun", _text)
            pairs.append(pair)
    if len(set(pairs)) != len(pairs):
        raise ManifestError(f"{path}: an action is listed twice")
    return pairs


def _class_id(value: str) -> int:
    class_id = int(value)
    if class_id < 0:
        raise ValueError("negative")
    return class_id


def _pair(value: str) -> tuple[int, int]:
    pair = ast.literal_eval(value)
    if (not isinstance(pair, tuple) or len(pair) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in pair)):
        raise ValueError("not a (verb class, noun class) pair")
    return pair


def write_many_shot_classes(path: str | os.PathLike, kind: Kind, ids: Sequence[int], names: Sequence[str]) -> None:
    """Write EPIC_many_shot_{verbs,nouns}.csv: ``ids`` in order, each with its class key
    (``names``: every class's key, class i the i-th)."""
    _write_csv(path, MANY_SHOT_COLUMNS[kind], [[i, names[i]] for i in ids])


def write_many_shot_actions(path: str | os.PathLike, pairs: Sequence[tuple[int, int]], verb_names: Sequence[str],
                            noun_names: Sequence[str]) -> None:
    """Write EPIC_many_shot_actions.csv: ``pairs`` (verb class, noun class) in order."""
    _write_csv(path, MANY_SHOT_COLUMNS["action"],
               [[str((v, n)), noun_names[n], n, verb_names[v], v] for v, n in pairs])


@dataclass(frozen=True)
class ManyShot:
    """The many-shot verb and noun classes and (verb, noun) actions, most training segments
    first (ties: lower class id, lower pair first)."""

    verbs: tuple[int, ...]
    nouns: tuple[int, ...]
    actions: tuple[tuple[int, int], ...]


def many_shot_classes(narrations: Iterable[EpicNarration], more_than: int = MANY_SHOT_MORE_THAN) -> ManyShot:
    """The many-shot classes of labelled training ``narrations``: a verb or noun class with
    more than ``more_than`` segments (the dataset's rule: 100), an action whose verb and noun
    are both many-shot and which occurs at least once. On EPIC_train_action_labels.csv this
    gives the classes of the three EPIC_many_shot_*.csv files (26 verbs, 71 nouns, 819
    actions; their files list them in another order)."""
    labelled = [n for n in narrations if n.labelled]
    verbs = Counter(n.verb_class for n in labelled)
    nouns = Counter(n.noun_class for n in labelled)
    actions = Counter((n.verb_class, n.noun_class) for n in labelled)

    def ranked(counts: Counter, keep) -> tuple:
        return tuple(c for c, k in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if keep(c, k))

    many_verbs = ranked(verbs, lambda c, k: k > more_than)
    many_nouns = ranked(nouns, lambda c, k: k > more_than)
    verb_set, noun_set = set(many_verbs), set(many_nouns)
    return ManyShot(many_verbs, many_nouns, ranked(actions, lambda c, k: c[0] in verb_set and c[1] in noun_set))


# --------------------------------------------------------------------------- video info


def read_epic55_video_info(path: str | os.PathLike) -> dict[str, EpicVideoInfo]:
    """EPIC_video_info.csv, by video id (432 videos: 59.94 fps but for 4 at 47.95, 4 at 29.97
    and one at 90)."""
    path = Path(path)
    infos: dict[str, EpicVideoInfo] = {}
    with _open_csv(path, VIDEO_INFO_COLUMNS) as (reader, _):
        field = _Where(path, reader)
        for row in reader:
            info = EpicVideoInfo(field(row, "video", _text), field(row, "duration", float), field(row, "fps", float),
                                 field(row, "resolution", _resolution))
            if not (info.duration > 0 and info.fps > 0):
                raise field.error("duration/fps", (row["duration"], row["fps"]), "not positive")
            if info.video_id in infos:
                raise field.error("video", info.video_id, "listed twice")
            infos[info.video_id] = info
    return infos


def _resolution(value: str) -> str:
    width, _, height = value.partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise ValueError("not WIDTHxHEIGHT")
    return value


def write_epic55_video_info(path: str | os.PathLike, infos: Iterable[EpicVideoInfo]) -> None:
    """Write EPIC_video_info.csv: durations with 6 decimals, frame rates as Python writes them."""
    _write_csv(path, VIDEO_INFO_COLUMNS,
               [[i.video_id, i.resolution, f"{i.duration:.6f}", repr(float(i.fps))] for i in infos])
