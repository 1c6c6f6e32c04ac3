"""UCF101 and HMDB51 split files, as the datasets publish them, and a label source over them.

UCF101 (``ucfTrainTestlist/``; CRLF line ends)::

    classInd.txt        1 ApplyEyeMakeup               1-based class ids, 101 lines
    trainlist01.txt     ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1     1-based label
    testlist01.txt      ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi       no label

A row's class is its folder's. The file name repeats it, not always in the same case (the
folder ``HandstandPushups`` holds ``v_HandStandPushups_g01_c01.avi``): the file name's
class must equal the folder's up to case, and the folder's spelling is the one looked up
in ``classInd.txt``. ``gXX`` is the group (the clips of one group come from one long
video; the three splits hold groups 1-7, 8-14, 15-21 out for testing).

HMDB51 (``testTrainMulti_7030_splits/``): one file per class and split,
``<class>_test_split<k>.txt``, a line per video of the class::

    April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1        1 = train, 2 = test, 0 = unused

(the real files end each line with a space). The class list is the sorted (code point
order) class names of the directory's files, which for HMDB51's lower-case names is the
alphabetical order of the usual class index (``brush_hair`` = 0 ... ``wave`` = 50).

A video is identified by its file name without ``.avi`` (``v_ApplyEyeMakeup_g08_c01``):
the store lists it as a :class:`~avsf.data.store.StoreEntry` whose ``youtube_id`` is that
id, and :class:`SplitLabels` turns a split's videos into a dataset's samples.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from avsf.data.clip_dataset import Sample
from avsf.data.kinetics import ManifestError
from avsf.data.store import StoreEntry
from avsf.io.atomic import atomic_output

UCF_LINE_END = "\r\n"  # the published UCF101 files' line ends, kept by the writers
HMDB_TAGS = {0: "unused", 1: "train", 2: "test"}
HMDB_SPLITS = (1, 2, 3)
_UCF_FILE = re.compile(r"v_(?P<cls>[A-Za-z0-9]+)_g(?P<group>\d+)_c(?P<clip>\d+)\.avi")
_HMDB_FILE = re.compile(r"(?P<cls>.+)_test_split(?P<split>\d+)\.txt")


@dataclass(frozen=True)
class UcfVideo:
    """One row of a UCF101 split: ``path`` as the list writes it (``Class/v_Class_gXX_cYY.avi``),
    ``video_id`` the file name without ``.avi``, ``label`` the 0-based class index."""

    path: str
    video_id: str
    label: int
    group: int


@dataclass(frozen=True)
class HmdbVideo:
    """One video of an HMDB51 split: ``path`` is ``<class>/<video>.avi`` (the layout of the
    extracted archives), ``video_id`` the file name without ``.avi``, ``label`` the 0-based
    index of its class in :func:`hmdb_classes`."""

    path: str
    video_id: str
    label: int


def _lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, line without its end and surrounding spaces) for every non-blank
    line; CRLF, LF and a byte-order mark all read the same."""
    if not path.is_file():
        raise ManifestError(f"split file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


# --------------------------------------------------------------------------- UCF101


def read_ucf_classes(path: str | os.PathLike) -> list[str]:
    """``classInd.txt`` -> class names, name i having id i + 1. The ids must run 1, 2, ...
    in order (anything else would silently renumber the labels)."""
    path = Path(path)
    classes: list[str] = []
    for n, line in _lines(path):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise ManifestError(f"{path}:{n}: expected '<id> <ClassName>', got {line!r}")
        if int(fields[0]) != len(classes) + 1:
            raise ManifestError(f"{path}:{n}: class id {fields[0]}, expected {len(classes) + 1} "
                                "(ids run 1, 2, ... in order)")
        classes.append(fields[1])
    if not classes:
        raise ManifestError(f"{path}: no classes")
    return classes


def read_ucf_split(path: str | os.PathLike, classes: Sequence[str]) -> list[UcfVideo]:
    """A ``trainlist0k.txt`` (rows with a 1-based label, which must agree with the row's
    folder) or ``testlist0k.txt`` (rows without); ``classes`` from :func:`read_ucf_classes`.
    A row that names an unknown class, a file not of the ``v_<Class>_gXX_cYY.avi`` form,
    or a label other than its folder's raises :class:`ManifestError` naming its line."""
    path = Path(path)
    index = {name: i for i, name in enumerate(classes)}
    folded = {name.casefold(): i for i, name in enumerate(classes)}
    videos = []
    for n, line in _lines(path):
        where = f"{path}:{n}"
        fields = line.split()
        if len(fields) not in (1, 2):
            raise ManifestError(f"{where}: expected 'Class/v_Class_gXX_cYY.avi [label]', got {line!r}")
        video = fields[0].replace("\\", "/")
        folder, _, name = video.rpartition("/")
        match = _UCF_FILE.fullmatch(name)
        if not folder or "/" in folder or match is None:
            raise ManifestError(f"{where}: {video!r} is not 'Class/v_Class_gXX_cYY.avi'")
        if match["cls"].casefold() != folder.casefold():
            raise ManifestError(f"{where}: file {name!r} names class {match['cls']!r}, its folder {folder!r}")
        label = index.get(folder, folded.get(folder.casefold()))
        if label is None:
            raise ManifestError(f"{where}: class {folder!r} is not in the class list")
        if len(fields) == 2:
            if not fields[1].isdigit() or int(fields[1]) != label + 1:
                raise ManifestError(f"{where}: label {fields[1]!r}, but folder {folder!r} is class "
                                    f"{label + 1} ({classes[label]})")
        videos.append(UcfVideo(video, name[: -len(".avi")], label, int(match["group"])))
    return videos


def write_ucf_classes(path: str | os.PathLike, classes: Sequence[str]) -> None:
    """``classInd.txt`` as published: ``<id> <name>`` from id 1, CRLF line ends."""
    _write_text(path, [f"{i} {name}" for i, name in enumerate(classes, 1)], UCF_LINE_END)


def write_ucf_split(path: str | os.PathLike, videos: Iterable[UcfVideo], with_labels: bool) -> None:
    """A trainlist (``with_labels``: each row's 1-based label) or a testlist (paths only),
    CRLF line ends, as published."""
    rows = [f"{v.path} {v.label + 1}" if with_labels else v.path for v in videos]
    _write_text(path, rows, UCF_LINE_END)


def ucf_video(class_name: str, group: int, clip: int, label: int, file_class: str | None = None) -> UcfVideo:
    """The row of clip ``clip`` of group ``group`` of a class, named as UCF101 names it
    (``file_class``: the file name's spelling of the class, where it differs in case)."""
    video_id = f"v_{file_class or class_name}_g{group:02d}_c{clip:02d}"
    return UcfVideo(f"{class_name}/{video_id}.avi", video_id, label, group)


# --------------------------------------------------------------------------- HMDB51


def _hmdb_files(split_dir: Path) -> dict[tuple[str, int], Path]:
    if not split_dir.is_dir():
        raise ManifestError(f"split directory not found: {split_dir}")
    files = {}
    for p in split_dir.iterdir():
        match = _HMDB_FILE.fullmatch(p.name)
        if match and p.is_file():
            files[match["cls"], int(match["split"])] = p
    return files


def hmdb_classes(split_dir: str | os.PathLike) -> list[str]:
    """The classes of an HMDB51 split directory: the distinct ``<class>`` of its
    ``<class>_test_split<k>.txt`` files, sorted (class i is the i-th name)."""
    classes = sorted({cls for cls, _ in _hmdb_files(Path(split_dir))})
    if not classes:
        raise ManifestError(f"{split_dir}: no <class>_test_split<k>.txt files")
    return classes


def read_hmdb_splits(split_dir: str | os.PathLike, split: int) -> tuple[list[HmdbVideo], list[HmdbVideo]]:
    """Split ``split`` (1, 2 or 3) of an HMDB51 split directory: (train, test) videos,
    class by class in :func:`hmdb_classes` order, each in its file's order; videos tagged 0
    are in neither. Every class must have its file for this split (a missing one would
    drop a class silently), and every line must be ``<video>.avi <0|1|2>``."""
    if split not in HMDB_SPLITS:
        raise ManifestError(f"HMDB51 has splits 1, 2 and 3, not {split!r}")
    split_dir = Path(split_dir)
    files = _hmdb_files(split_dir)
    classes = hmdb_classes(split_dir)
    missing = [cls for cls in classes if (cls, split) not in files]
    if missing:
        raise ManifestError(f"{split_dir}: no split {split} file for class(es) {', '.join(missing)}")
    train, test = [], []
    for label, cls in enumerate(classes):
        path = files[cls, split]
        for n, line in _lines(path):
            fields = line.split()
            if len(fields) != 2 or not fields[0].endswith(".avi") or fields[1] not in ("0", "1", "2"):
                raise ManifestError(f"{path}:{n}: expected '<video>.avi <0|1|2>', got {line!r}")
            video = HmdbVideo(f"{cls}/{fields[0]}", fields[0][: -len(".avi")], label)
            if fields[1] == "1":
                train.append(video)
            elif fields[1] == "2":
                test.append(video)
    return train, test


def write_hmdb_split(split_dir: str | os.PathLike, split: int, classes: Sequence[str],
                     train: Iterable[HmdbVideo], test: Iterable[HmdbVideo],
                     unused: Iterable[HmdbVideo] = ()) -> list[Path]:
    """Split ``split``'s files, one ``<class>_test_split<split>.txt`` per class of ``classes``
    (a video's class is ``classes[video.label]``), lines ``<video>.avi <tag> `` with the
    real files' trailing space; returns the files written."""
    if split not in HMDB_SPLITS:
        raise ValueError(f"HMDB51 has splits 1, 2 and 3, not {split!r}")
    rows: dict[int, list[str]] = {label: [] for label in range(len(classes))}
    for tag, videos in ((1, train), (2, test), (0, unused)):
        for v in videos:
            rows[v.label].append(f"{v.video_id}.avi {tag} ")
    paths = []
    for label, cls in enumerate(classes):
        path = Path(split_dir) / f"{cls}_test_split{split}.txt"
        _write_text(path, rows[label], "\n")
        paths.append(path)
    return paths


def _write_text(path: str | os.PathLike, rows: Sequence[str], line_end: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes("".join(row + line_end for row in rows).encode("utf-8"))


# --------------------------------------------------------------------------- label source


class SplitLabels:
    """A :class:`~avsf.data.clip_dataset.LabelSource` for one side of a split: the stored
    videos the split lists (``StoreEntry.youtube_id`` = the video id) are its samples, each
    its whole length and labelled with its class index; stored videos the split does not
    list are not samples. After :meth:`samples`, ``missing`` holds the ids of the split's
    videos that are not stored (sorted), for the caller to report."""

    def __init__(self, videos_by_id: dict[str, int]):
        self.videos_by_id = dict(videos_by_id)
        self.missing: list[str] = []

    @classmethod
    def of(cls, videos: Iterable[UcfVideo | HmdbVideo]) -> "SplitLabels":
        """From a split's rows (:func:`read_ucf_split`, one side of :func:`read_hmdb_splits`)."""
        return cls({v.video_id: v.label for v in videos})

    def samples(self, entries: Sequence[StoreEntry]) -> list[Sample]:
        stored = {e.youtube_id for e in entries}
        self.missing = sorted(set(self.videos_by_id) - stored)
        return [Sample(e, 0, e.num_frames, {"label": self.videos_by_id[e.youtube_id]})
                for e in entries if e.youtube_id in self.videos_by_id]

    def target(self, sample: Sample, start_frame: int, stop_frame: int) -> dict[str, Any]:  # noqa: ARG002
        return sample.target

    def blank(self) -> dict[str, Any]:
        return {"label": -1}


# --------------------------------------------------------------------------- both


@dataclass(frozen=True)
class TransferSplits:
    """A transfer dataset's classes and its official splits: split k -> (train, test)."""

    classes: list[str]
    splits: dict[int, tuple[list[UcfVideo | HmdbVideo], list[UcfVideo | HmdbVideo]]]

    def videos(self) -> list[UcfVideo | HmdbVideo]:
        """Every video some split names, once each, in the order first named."""
        seen: dict[str, UcfVideo | HmdbVideo] = {}
        for train, test in self.splits.values():
            for v in (*train, *test):
                seen.setdefault(v.video_id, v)
        return list(seen.values())


def read_transfer_splits(kind: str, annotations: str | os.PathLike, splits: Sequence[int] = (1, 2, 3)) -> TransferSplits:
    """``kind`` "ucf101": ``classInd.txt``, ``trainlist0k.txt`` and ``testlist0k.txt`` in
    ``annotations``; "hmdb51": the ``<class>_test_split<k>.txt`` directory ``annotations``."""
    root = Path(annotations)
    if kind == "ucf101":
        classes = read_ucf_classes(root / "classInd.txt")
        return TransferSplits(classes, {k: (read_ucf_split(root / f"trainlist0{k}.txt", classes),
                                            read_ucf_split(root / f"testlist0{k}.txt", classes)) for k in splits})
    if kind == "hmdb51":
        return TransferSplits(hmdb_classes(root), {k: read_hmdb_splits(root, k) for k in splits})
    raise ValueError(f"transfer datasets are ucf101 and hmdb51, not {kind!r}")
