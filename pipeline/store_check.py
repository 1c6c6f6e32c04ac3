"""The store a run trains on, read and checked against the params it trains with, before
any job starts.

    index.csv ──every shard it names──> present? readable? every indexed clip in it?
        shard meta ``settings`` (or its first clip's attributes) ──> one set of settings
    store's settings  vs  decode, spectrogram, model.mel_bins  ──> ParamsError naming the key

``decode`` and ``spectrogram`` record their settings in every shard's ``meta``
(``settings``); a shard written before they did is read from the attributes of its first
clip, which hold the same values (the JPEG quality aside, which then goes unchecked). The
run's checkpoints then describe the store as it is (:meth:`StoreRecord.data_record`), which
``avsf.predict`` follows to read new videos.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from avsf.data.store import META_ATTR, STATS_NAME, StoreEntry
from pipeline.launch import StageFailed
from pipeline.params import Params, ParamsError

DECODE_KEYS = ("fps", "short_side", "jpeg_quality", "sample_rate")
LOGMEL_KEYS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max", "log_offset", "mel_norm",
               "center")


@dataclass(frozen=True)
class StoreRecord:
    """What the store was made with: the decode settings (``jpeg_quality`` None when its
    shards do not record it), the log-mel settings (``f_max`` resolved) and ``stats.json``;
    the last two None for a run without audio."""

    decode: dict[str, Any]
    spectrogram: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None

    def data_record(self, jpeg_quality: int) -> dict[str, Any]:
        """The store's part of a checkpoint's ``data`` record (``pipeline.train.data_record``);
        ``jpeg_quality`` where the store does not say."""
        record: dict[str, Any] = {"decode": {**self.decode, "jpeg_quality": self.decode["jpeg_quality"] or jpeg_quality}}
        if self.spectrogram is not None and self.stats is not None:
            record["spectrogram"] = {k: v for k, v in self.spectrogram.items() if k != "sample_rate"}
            record["audio_stats"] = {"mean": float(self.stats["mean"]), "std": float(self.stats["std"])}
        return record


def read_store(frames_dir: Path, logmel_dir: Path | None, entries: list[StoreEntry]) -> StoreRecord:
    """Read the settings of every shard ``entries`` (the index) names, in the frame store and,
    when ``logmel_dir`` is given, the log-mel store. A shard that is missing or unreadable,
    lacks clips of the index, or was made with other settings than the rest stops the stage
    (:class:`StageFailed`: the store must be rebuilt)."""
    by_shard: dict[str, list[StoreEntry]] = {}
    for e in entries:
        by_shard.setdefault(e.shard, []).append(e)
    decode = _one_setting(frames_dir, by_shard, _frames_settings)
    if logmel_dir is None:
        return StoreRecord(decode)
    spectrogram = _one_setting(logmel_dir, by_shard, _logmel_settings)
    try:
        stats = json.loads((logmel_dir / STATS_NAME).read_text())
        stats["mean"], stats["std"] = float(stats["mean"]), float(stats["std"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StageFailed(f"train: cannot read the log-mel statistics {logmel_dir / STATS_NAME}: {exc}; rebuild "
                          "the store (stage spectrogram)") from None
    return StoreRecord(decode, spectrogram, stats)


def check_store(params: Params, store: StoreRecord, frames_dir: Path, logmel_dir: Path | None,
                stats_split: tuple[str, str] | None = None) -> None:
    """Refuse (:class:`ParamsError`, one line naming the key, the params' and the store's
    value) params whose decode or log-mel settings are not the store's; ``params.decode``:
    the dataset's own (AVA's 30 fps). ``stats_split``: (the key that sets it, the split the
    statistics should be measured on)."""
    d, s = params.decode, params.spectrogram
    for key in DECODE_KEYS:
        stored = store.decode[key]
        if stored is not None and not _same(getattr(d, key), stored):
            raise _mismatch(f"decode.{key}", getattr(d, key), stored, frames_dir)
    if store.spectrogram is None or store.stats is None:
        return
    wanted = {"sample_rate": d.sample_rate, "n_fft": s.n_fft, "win_length": s.win_length, "hop_length": s.hop_length,
              "n_mels": s.n_mels, "f_min": s.f_min, "f_max": s.f_max if s.f_max is not None else d.sample_rate / 2,
              "log_offset": s.log_offset, "mel_norm": s.mel_norm, "center": s.center}
    for key in LOGMEL_KEYS:
        if key not in ("mel_norm",) and store.spectrogram.get(key) is None:  # a shard from before the store recorded it
            continue
        if not _same(wanted[key], store.spectrogram[key]):
            name = "decode.sample_rate" if key == "sample_rate" else f"spectrogram.{key}"
            raise _mismatch(name, wanted[key], store.spectrogram[key], logmel_dir)
    if params.model.mel_bins != store.spectrogram["n_mels"]:
        raise _mismatch("model.mel_bins", params.model.mel_bins, store.spectrogram["n_mels"], logmel_dir)
    if stats_split is not None and store.stats.get("split", stats_split[1]) != stats_split[1]:
        raise _mismatch(stats_split[0], stats_split[1], store.stats["split"], logmel_dir)


def _mismatch(key: str, wanted: Any, stored: Any, directory: Path | None) -> ParamsError:
    return ParamsError(f"{key}: {wanted!r} in params, but the store {directory} was made with {stored!r} (set "
                       f"{key}={stored!r} to train on this store, or rebuild the store with these params)")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def _one_setting(directory: Path, by_shard: dict[str, list[StoreEntry]], read) -> dict[str, Any]:
    """The settings every shard of ``directory`` agrees on (``read(path, file, entries)``)."""
    first: tuple[str, dict[str, Any]] | None = None
    for name in sorted(by_shard):
        path = directory / name
        clips = by_shard[name]
        where = f"{path} (holds {len(clips)} clip(s) of the index, e.g. {clips[0].clip_id})"
        if not path.is_file():
            raise StageFailed(f"train: the store lacks {where}; rebuild the store (dvc repro) or restore the file")
        try:
            with h5py.File(path, "r") as file:
                missing = [e.clip_id for e in clips if e.clip_id not in file]
                settings = None if missing else read(file, clips)
        except (OSError, ValueError, KeyError) as exc:
            raise StageFailed(f"train: cannot read {where}: {type(exc).__name__}: {exc}; rebuild the store") from None
        if missing:
            raise StageFailed(f"train: {path} lacks {len(missing)} of its {len(clips)} clip(s) in the index (e.g. "
                              f"{missing[0]}); rebuild the store")
        if first is None:
            first = (name, settings)
        elif settings != first[1]:
            key = next(k for k in settings if settings[k] != first[1].get(k))
            raise StageFailed(f"train: the store {directory} mixes settings ({key} {first[1].get(key)!r} in "
                              f"{first[0]}, {settings[key]!r} in {name}): a rebuild was stopped midway; finish it")
    if first is None:
        raise StageFailed(f"train: the store {directory} has no shard in its index")
    return first[1]


def _frames_settings(file: h5py.File, clips: list[StoreEntry]) -> dict[str, Any]:
    recorded = _meta_settings(file)
    if recorded is not None:
        return {k: recorded[k] for k in DECODE_KEYS}
    attrs = file[clips[0].clip_id].attrs  # a shard from before meta recorded its settings
    return {"fps": float(attrs["fps"]), "short_side": int(min(attrs["height"], attrs["width"])),
            "jpeg_quality": None, "sample_rate": int(attrs["sample_rate"])}


def _logmel_settings(file: h5py.File, clips: list[StoreEntry]) -> dict[str, Any]:
    recorded = _meta_settings(file)
    attrs = recorded if recorded is not None else file[clips[0].clip_id].attrs
    kinds = {"sample_rate": int, "n_fft": int, "win_length": int, "hop_length": int, "n_mels": int, "mel_norm": str,
             "center": bool}
    settings = {k: kinds.get(k, float)(attrs[k]) if k in attrs else None for k in LOGMEL_KEYS}
    if settings["mel_norm"] == "none":  # (how the attribute writes the params' null)
        settings["mel_norm"] = None
    return settings


def _meta_settings(file: h5py.File) -> dict[str, Any] | None:
    raw = file.attrs.get(META_ATTR)
    return None if raw is None else json.loads(raw).get("settings")

