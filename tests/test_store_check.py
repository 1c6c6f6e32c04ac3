"""pipeline.store_check in-process: the settings a store records (its shards' meta, or the
clips' attributes of a shard from before meta recorded them), a store whose shards
disagree or lack clips, and the params checked against it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest

from avsf.data.store import INDEX_NAME, META_ATTR, read_index
from pipeline.launch import StageFailed
from pipeline.params import ParamsError
from pipeline.store_check import check_store, read_store
from train_factory import train_params


@pytest.fixture
def store(train_store, tmp_path) -> Path:
    shutil.copytree(train_store, tmp_path / "store")
    return tmp_path / "store"


def read(store: Path):
    return read_store(store / "frames", store / "logmel", read_index(store / "frames" / INDEX_NAME))


def edit_meta(path: Path, change) -> None:
    with h5py.File(path, "a") as f:
        meta = json.loads(f.attrs[META_ATTR])
        change(meta)
        f.attrs[META_ATTR] = json.dumps(meta)


LOGMEL = {"sample_rate": 16000, "n_fft": 512, "win_length": 512, "hop_length": 256, "n_mels": 80, "f_min": 0.0,
          "f_max": 8000.0, "log_offset": 1e-8, "mel_norm": None, "center": True}


def test_the_store_records_the_settings_it_was_made_with(store):
    record = read(store)
    assert record.decode == {"fps": 30.0, "short_side": 40, "jpeg_quality": 90, "sample_rate": 16000}
    assert record.spectrogram == LOGMEL and record.stats["split"] == "train"


def test_shards_from_before_meta_recorded_settings_are_read_from_their_clips(store):
    for shard in sorted(store.glob("*/shard-*.h5")):
        edit_meta(shard, lambda meta: meta.pop("settings"))
    record = read(store)
    # the JPEG quality is in no clip attribute: unknown, so unchecked
    assert record.decode == {"fps": 30.0, "short_side": 40, "jpeg_quality": None, "sample_rate": 16000}
    assert record.spectrogram == LOGMEL
    assert record.data_record(jpeg_quality=75)["decode"]["jpeg_quality"] == 75


def test_a_store_whose_shards_disagree_is_refused(store):
    edit_meta(store / "frames/shard-00001.h5", lambda meta: meta["settings"].update(short_side=56))
    with pytest.raises(StageFailed, match=r"the store .*frames mixes settings \(short_side 40 in shard-00000.h5, 56 in "
                                          r"shard-00001.h5\): a rebuild was stopped midway"):
        read(store)


def test_a_shard_without_a_clip_of_the_index_is_refused(store):
    with h5py.File(store / "logmel/shard-00000.h5", "a") as f:
        del f[next(iter(f))]
    with pytest.raises(StageFailed, match=r"logmel/shard-00000.h5 lacks 1 of its 7 clip\(s\) in the index"):
        read(store)


def test_an_unreadable_shard_is_refused(store):
    (store / "frames/shard-00000.h5").write_bytes(b"not HDF5")
    with pytest.raises(StageFailed, match=r"cannot read .*frames/shard-00000.h5 \(holds 7 clip\(s\) of the index"):
        read(store)


def test_params_are_checked_key_by_key_against_the_store(store, tmp_path):
    record = read(store)
    _, params = train_params(tmp_path, {"model.arch": "avslowfast"})
    split = ("datasets.kinetics.train_split", "train")
    check_store(params, record, store / "frames", store / "logmel", split)  # the params the store was made with
    for key, value in (("decode.fps", 25.0), ("decode.short_side", 56), ("decode.jpeg_quality", 75),
                       ("decode.sample_rate", 22050), ("spectrogram.hop_length", 200), ("spectrogram.n_fft", 1024),
                       ("spectrogram.f_max", 7000.0), ("spectrogram.log_offset", 1e-6), ("spectrogram.center", False),
                       ("spectrogram.mel_norm", "slaney")):
        _, other = train_params(tmp_path, {"model.arch": "avslowfast", key: value})
        with pytest.raises(ParamsError, match=rf"^{key}: {value!r} in params, but the store "):
            check_store(other, record, store / "frames", store / "logmel", split)
    with pytest.raises(ParamsError, match=r"^datasets.kinetics.train_split: 'val' in params, but the store "):
        check_store(params, record, store / "frames", store / "logmel", ("datasets.kinetics.train_split", "val"))
