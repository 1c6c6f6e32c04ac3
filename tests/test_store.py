"""The HDF5 store: writing shards atomically, reading clips back, hashing, the index."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from avsf.data.store import (
    INDEX_NAME,
    StoreEntry,
    StoreReader,
    clip_hash,
    open_shard,
    read_index,
    read_meta,
    store_hashes,
    write_index,
)

ATTRS = {"fps": 30.0, "duration": 0.1, "has_audio": True, "source_fps": 25.0, "height": 2, "width": 3}
JPEGS = [b"\xff\xd8one", b"\xff\xd8frame two", b"\xff\xd8three!"]


def write_store(directory, clip_ids=("a", "b"), jpegs=JPEGS, audio=np.arange(8, dtype=np.int16)):
    directory.mkdir(parents=True, exist_ok=True)
    with open_shard(directory / "shard-00000.h5") as shard:
        for clip_id in clip_ids:
            shard.add_clip(clip_id, {**ATTRS, "notes": {"rotation": 90.0}}, frames=jpegs, audio=audio)
        shard.set_meta({"fingerprint": "f1", "clips": list(clip_ids)})
    entries = [StoreEntry(c, "x", "train", c, "shard-00000.h5", len(jpegs), 30.0, 0.1, True) for c in clip_ids]
    write_index(directory / INDEX_NAME, entries)
    return entries


def test_clip_round_trips_with_its_attributes(tmp_path):
    entries = write_store(tmp_path / "frames")
    reader = StoreReader(tmp_path / "frames")
    assert reader.entries == entries == read_index(tmp_path / "frames" / INDEX_NAME)
    frames = reader.frames(entries[0], 0, 3)
    assert [f.tobytes() for f in frames] == JPEGS
    assert [f.tobytes() for f in reader.frames(entries[0], 1, 99)] == JPEGS[1:]  # clamped
    assert reader.audio(entries[0]).tolist() == list(range(8))
    attrs = reader.attrs(entries[0])
    assert {k: attrs[k] for k in ATTRS} == ATTRS
    assert attrs["notes"] == '{"rotation": 90.0}'
    assert read_meta(tmp_path / "frames" / "shard-00000.h5") == {"fingerprint": "f1", "clips": ["a", "b"]}


def test_datasets_are_contiguous_so_ranges_read_in_one_go(tmp_path):
    write_store(tmp_path / "frames")
    with h5py.File(tmp_path / "frames" / "shard-00000.h5", "r") as f:
        assert f["a/frames"].chunks is None and f["a/audio"].chunks is None
        assert f["a/frames"].dtype == h5py.vlen_dtype(np.uint8)


def test_a_failed_write_leaves_no_shard_and_no_temporary(tmp_path):
    path = tmp_path / "shard-00000.h5"
    with pytest.raises(RuntimeError):
        with open_shard(path) as shard:
            shard.add_clip("a", ATTRS, frames=JPEGS)
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    assert read_meta(path) is None


def test_clip_hash_sees_content_not_files(tmp_path):
    write_store(tmp_path / "one")
    write_store(tmp_path / "two", clip_ids=("b", "a"))  # other order, other file
    write_store(tmp_path / "three", jpegs=[*JPEGS[:2], b"\xff\xd8thrEE!"])
    one, two, three = (store_hashes(tmp_path / n) for n in ("one", "two", "three"))
    assert one == two
    assert one.keys() == three.keys() and one["a"] != three["a"]
    with h5py.File(tmp_path / "one" / "shard-00000.h5", "a") as f:
        f["b"].attrs["fps"] = 29.0
        assert clip_hash(f["b"]) != one["b"]


def test_store_without_audio_has_no_audio_dataset(tmp_path):
    entries = write_store(tmp_path / "frames", audio=None)
    assert StoreReader(tmp_path / "frames").audio(entries[0]) is None


def _read_in_child(reader: StoreReader, entry: StoreEntry, queue) -> None:
    frames = reader.frames(entry, 0, 3)
    queue.put((os.getpid(), reader._pid, [f.tobytes() for f in frames], reader.open_shards()))


def test_a_forked_worker_opens_its_own_handle(tmp_path):
    entries = write_store(tmp_path / "frames")
    reader = StoreReader(tmp_path / "frames")
    reader.frames(entries[0], 0, 1)  # the parent has a handle open before forking
    [parent_handle] = reader._handles[tmp_path / "frames"].values()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(reader, entries[1], queue))
    child.start()
    pid, reader_pid, frames, handles = queue.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert reader_pid == pid != os.getpid()  # the child re-opened under its own pid
    assert frames == JPEGS and handles == 1
    assert parent_handle.id.valid and [f.tobytes() for f in reader.frames(entries[1], 0, 3)] == JPEGS


def test_frames_of_equal_byte_length_are_stored(tmp_path):
    """A still picture (cover art, a black screen) or a one-frame clip: every JPEG has the
    same length, which h5py took for a 2-D array."""
    still = [b"\xff\xd8same!"] * 4
    for jpegs in (still, still[:1]):
        path = tmp_path / f"shard-{len(jpegs)}.h5"
        with open_shard(path) as shard:
            shard.add_clip("still", ATTRS, frames=jpegs)
        with h5py.File(path, "r") as f:
            assert [x.tobytes() for x in f["still/frames"][...]] == jpegs


def test_a_clip_that_cannot_be_written_leaves_no_group_and_the_shard_goes_on(tmp_path):
    path = tmp_path / "shard-00000.h5"
    with open_shard(path) as shard:
        with pytest.raises(TypeError):
            shard.add_clip("bad", {**ATTRS, "notes": None}, frames=JPEGS)  # HDF5 has no None
        shard.add_clip("good", ATTRS, frames=JPEGS)
    with h5py.File(path, "r") as f:
        assert list(f) == ["good"]


READ_MANY = """
import resource, sys
from avsf.data.store import StoreReader
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))
reader = StoreReader(sys.argv[1], **{kwargs})
for _ in range(2):
    for entry in reader.entries:
        assert reader.frames(entry, 0, 3)[2].tobytes() == b"\\xff\\xd8three!"
print(reader.open_shards())
"""


@pytest.mark.parametrize("kwargs, opened", [({}, 64), ({"max_open_shards": 8}, 8)])
def test_the_reader_holds_a_bounded_number_of_shards_open(tmp_path, kwargs, opened):
    """More shards than the process may open files (a Kinetics-scale store holds thousands):
    the least recently read are closed."""
    directory = tmp_path / "frames"
    directory.mkdir()
    entries = []
    for i in range(120):
        name = f"shard-{i:05d}.h5"
        with open_shard(directory / name) as shard:
            shard.add_clip(f"c{i}", ATTRS, frames=JPEGS)
        entries.append(StoreEntry(f"c{i}", "x", "train", f"c{i}", name, 3, 30.0, 0.1, True))
    write_index(directory / INDEX_NAME, entries)
    script = READ_MANY.replace("{limit}", "100").replace("{kwargs}", repr(kwargs))
    result = subprocess.run([sys.executable, "-c", script, str(directory)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout) == opened
