"""The HDF5 clip store: frame shards from `decode`, log-mel shards from `spectrogram`.

Layout (the README's "Store format" section is the reference for other tools)::

    <frames_dir>/shard-00000.h5     one group per clip, named by clip id:
        /<clip_id>/frames            vlen uint8 [num_frames], one JPEG per frame
        /<clip_id>/audio             int16 [samples], mono PCM (absent without audio)
        /<clip_id>.attrs             fps, duration, has_audio, source_fps, height, width,
                                     num_frames, sample_rate, notes (JSON)
    <frames_dir>/index.csv          one row per stored clip (INDEX_COLUMNS)
    <frames_dir>/classes.json       label names; class i is the i-th
    <logmel_dir>/shard-00000.h5     same shard names and groups:
        /<clip_id>/logmel            float16 [time, n_mels] (absent without audio)
        /<clip_id>.attrs             has_audio, silent (digital silence), sample_rate, hop_length, ...
    <logmel_dir>/stats.json         mean and std of the training split's log-mel values

Frames and log-mels live in two files per shard because two DVC stages write them: each
stage owns its outputs. Every shard also carries a JSON ``meta`` attribute at its root
(fingerprint of its inputs, failures, notes, counts), so a rerun can keep shards that are
already complete and the stage's summary can be rebuilt from the shards alone.

Datasets are stored contiguous (not chunked): a clip's frames or log-mel rows are read as
one contiguous range and subsampled in memory.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

from avsf.io.atomic import atomic_output
from avsf.io.digest import digest

STORE_VERSION = 1
INDEX_NAME = "index.csv"
CLASSES_NAME = "classes.json"
STATS_NAME = "stats.json"
META_ATTR = "meta"
FRAMES, AUDIO, LOGMEL = "frames", "audio", "logmel"
JPEG_DTYPE = h5py.vlen_dtype(np.uint8)
PCM_SCALE = 32767  # the audio datasets' int16 samples <-> float [-1, 1]


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


# --------------------------------------------------------------------------- writing


class ShardWriter:
    """Adds clip groups to an open shard file; see :func:`open_shard`."""

    def __init__(self, file: h5py.File):
        self.file = file

    def add_clip(
        self,
        clip_id: str,
        attrs: dict[str, Any],
        frames: Sequence[bytes] | None = None,
        **arrays: np.ndarray | None,
    ) -> None:
        """One group named ``clip_id``: ``frames`` as vlen JPEGs, other arrays as they are
        (None skips a dataset), ``attrs`` as HDF5 attributes (dicts become JSON strings).
        A clip that cannot be written leaves no group behind."""
        group = self.file.create_group(clip_id)
        try:
            if frames is not None:
                jpegs = np.empty(len(frames), dtype=object)
                for i, data in enumerate(frames):
                    jpegs[i] = np.frombuffer(data, dtype=np.uint8)
                # write_direct takes the object array as it is: assignment would turn frames of
                # equal byte length (a still picture) into a 2-D array that does not fit.
                group.create_dataset(FRAMES, shape=(len(frames),), dtype=JPEG_DTYPE).write_direct(jpegs)
            for name, array in arrays.items():
                if array is not None:
                    group.create_dataset(name, data=array)
            for key, value in attrs.items():
                group.attrs[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        except BaseException:
            del self.file[clip_id]
            raise

    def set_meta(self, meta: dict[str, Any]) -> None:
        self.file.attrs[META_ATTR] = json.dumps(meta, sort_keys=True)


@contextmanager
def open_shard(path: str | os.PathLike) -> Iterator[ShardWriter]:
    """Write a shard under a temporary name; it appears at ``path`` only once complete."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as file:
        yield ShardWriter(file)


def read_meta(path: str | os.PathLike) -> dict[str, Any] | None:
    """A shard's root ``meta``, or None when the file is missing, unreadable or has none."""
    try:
        with h5py.File(path, "r") as file:
            raw = file.attrs.get(META_ATTR)
    except (OSError, ValueError):
        return None
    return json.loads(raw) if raw is not None else None


def fingerprint(*parts: Any) -> str:
    """A short digest of JSON-able ``parts``: what a shard was built from."""
    return digest(STORE_VERSION, *parts)


# --------------------------------------------------------------------------- hashing


def clip_hash(group: h5py.Group) -> str:
    """Digest of a clip group's content (attributes and datasets, not file layout), so two
    stores can be compared clip by clip."""
    digest = hashlib.sha256()
    for key in sorted(group.attrs):
        digest.update(f"{key}={_plain(group.attrs[key])!r};".encode())
    for name in sorted(group):
        dataset = group[name]
        digest.update(f"{name}:{dataset.dtype}:{dataset.shape};".encode())
        if dataset.dtype == JPEG_DTYPE:
            for item in dataset[...]:
                digest.update(len(item).to_bytes(8, "little"))
                digest.update(item.tobytes())
        else:
            digest.update(np.ascontiguousarray(dataset[...]).tobytes())
    return digest.hexdigest()


def store_hashes(directory: str | os.PathLike) -> dict[str, str]:
    """clip id -> :func:`clip_hash` for every clip in every shard under ``directory``."""
    hashes = {}
    for path in sorted(Path(directory).glob("shard-*.h5")):
        with h5py.File(path, "r") as file:
            for clip_id in file:
                hashes[clip_id] = clip_hash(file[clip_id])
    return hashes


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


# --------------------------------------------------------------------------- index


@dataclass(frozen=True)
class StoreEntry:
    """One stored clip, as the store's index lists it."""

    clip_id: str
    label: str  # "" for unlabelled (test) clips
    split: str
    youtube_id: str
    shard: str  # file name inside the store directory
    num_frames: int
    fps: float
    duration: float
    has_audio: bool


INDEX_COLUMNS = tuple(f.name for f in fields(StoreEntry))


def write_index(path: str | os.PathLike, entries: Sequence[StoreEntry]) -> None:
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, INDEX_COLUMNS)
        writer.writeheader()
        for entry in entries:
            row = asdict(entry)
            row["has_audio"] = int(entry.has_audio)
            writer.writerow(row)


def read_index(path: str | os.PathLike) -> list[StoreEntry]:
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != INDEX_COLUMNS:
            raise ValueError(f"{path}: not a store index (expected columns {','.join(INDEX_COLUMNS)})")
        return [
            StoreEntry(r["clip_id"], r["label"], r["split"], r["youtube_id"], r["shard"],
                       int(r["num_frames"]), float(r["fps"]), float(r["duration"]), r["has_audio"] == "1")
            for r in reader
        ]


# --------------------------------------------------------------------------- reading


class StoreReader:
    """Reads clips from a frame store and, optionally, the log-mel store beside it.

    HDF5 handles are opened lazily by the process that reads, and reopened after a fork, so
    every DataLoader worker has its own (HDF5 handles must not cross a fork). At most
    ``max_open_shards`` stay open per store, the least recently read closed first: a
    Kinetics-scale store has thousands of shards, more than a process may hold files. Every
    read is one contiguous range of a dataset.
    """

    def __init__(self, frames_dir: str | os.PathLike, logmel_dir: str | os.PathLike | None = None,
                 max_open_shards: int = 64):
        if max_open_shards < 1:
            raise ValueError(f"max_open_shards must be at least 1 (got {max_open_shards})")
        self.frames_dir = Path(frames_dir)
        self.logmel_dir = Path(logmel_dir) if logmel_dir is not None else None
        self.entries = read_index(self.frames_dir / INDEX_NAME)
        self.max_open_shards = max_open_shards
        self._handles: dict[Path, OrderedDict[str, h5py.File]] = {}  # per store directory, oldest first
        self._inherited: dict[Path, OrderedDict[str, h5py.File]] = {}
        self._pid = os.getpid()

    def classes(self) -> list[str]:
        return json.loads((self.frames_dir / CLASSES_NAME).read_text())

    def stats(self) -> dict[str, float]:
        """The log-mel store's normalisation statistics (mean, std)."""
        return json.loads((self._logmel_dir() / STATS_NAME).read_text())

    def frames(self, entry: StoreEntry, start: int, stop: int) -> np.ndarray:
        """JPEG frames ``start:stop`` (clamped to the clip) as an object array of uint8 arrays."""
        dataset = self._group(self.frames_dir, entry)[FRAMES]
        return dataset[max(0, start) : min(stop, dataset.shape[0])]

    def audio(self, entry: StoreEntry) -> np.ndarray | None:
        group = self._group(self.frames_dir, entry)
        return group[AUDIO][...] if AUDIO in group else None

    def logmel_length(self, entry: StoreEntry) -> int:
        group = self._group(self._logmel_dir(), entry)
        return group[LOGMEL].shape[0] if LOGMEL in group else 0

    def logmel(self, entry: StoreEntry, start: int, stop: int) -> np.ndarray | None:
        """Log-mel rows ``start:stop`` (clamped) as float16 [time, n_mels]; None without audio."""
        group = self._group(self._logmel_dir(), entry)
        if LOGMEL not in group:
            return None
        dataset = group[LOGMEL]
        return dataset[max(0, start) : min(stop, dataset.shape[0])]

    def attrs(self, entry: StoreEntry, store: str = FRAMES) -> dict[str, Any]:
        directory = self.frames_dir if store == FRAMES else self._logmel_dir()
        return {k: _plain(v) for k, v in self._group(directory, entry).attrs.items()}

    def open_shards(self) -> int:
        """How many shard files this process holds open (both stores)."""
        return sum(len(handles) for handles in self._handles.values()) if self._pid == os.getpid() else 0

    def close(self) -> None:
        if self._pid == os.getpid():
            for handles in self._handles.values():
                for handle in handles.values():
                    handle.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"], state["_inherited"] = {}, {}
        return state

    def _logmel_dir(self) -> Path:
        if self.logmel_dir is None:
            raise ValueError("no log-mel store given")
        return self.logmel_dir

    def _group(self, directory: Path, entry: StoreEntry) -> h5py.Group:
        if self._pid != os.getpid():
            # A forked child: keep the parent's handles referenced but unused (closing them
            # here would touch HDF5 state shared with the parent) and open its own.
            self._inherited, self._handles, self._pid = self._handles, {}, os.getpid()
        handles = self._handles.setdefault(directory, OrderedDict())
        handle = handles.get(entry.shard)
        if handle is None:
            while len(handles) >= self.max_open_shards:
                handles.popitem(last=False)[1].close()
            handle = handles[entry.shard] = h5py.File(directory / entry.shard, "r")
        else:
            handles.move_to_end(entry.shard)
        return handle[entry.clip_id]
