"""Stage ``decode``: downloaded clips in, the HDF5 frame store, a ledger and metrics out.

    data/<dataset>/clips/clips.csv ──split into shards of decode.clips_per_shard──>
        run_shards(decode_shard): per clip decode_clip (JPEG frames at fps, 16 kHz audio)
        ──> data/<dataset>/store/frames/shard-NNNNN.h5 (a temporary name, renamed when whole)
    ──merge shard metas──> index.csv, classes.json, ledger (download's rows + ours), metrics,
        and last inventory.csv (what DVC tracks of the store: pipeline/inventory.py)

Resumable: each shard records a fingerprint of what it was built from (settings, clip
files as their download records name them), and a rerun keeps every shard whose fingerprint
still matches, so a killed run
redoes only the shards it had not finished (pipeline/shards.py, shared with ``spectrogram``).
Each shard also records the fingerprint of its audio alone (the clips, fps and sample rate:
not short_side or jpeg_quality), which ``spectrogram`` builds on, so a change to the frames
only rebuilds no log-mel shard.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from avsf.data.decode import DECODER_VERSION, DecodeSettings, decode_clip
from avsf.data.kinetics import (
    CLASS_LIST_NAME,
    CLIP_INDEX_NAME,
    ClipRecord,
    ManifestError,
    class_names,
    read_clip_index,
    read_clip_record,
)
from avsf.data.ledger import Failure, count_by_reason
from avsf.data.store import (
    CLASSES_NAME,
    INDEX_NAME,
    StoreEntry,
    fingerprint,
    open_shard,
    read_meta,
    shard_name,
    write_index,
)
from avsf.io.atomic import write_json
from avsf.io.media import MediaError
from pipeline.launch import StageFailed, job_progress, run_shards, stage_launch
from pipeline.datasets import stage_dataset
from pipeline.layout import Layout
from pipeline.inventory import write_shard_inventory
from pipeline.notes import count_notes
from pipeline.params import Params
from pipeline.shards import carry_ledger, chunks, prepare_out_dir

log = logging.getLogger("avsf.decode")

STAGE = "decode"


@dataclass(frozen=True)
class DecodeShard:
    """One job's work: decode ``clips`` into the shard file at ``path``."""

    index: int
    path: str
    clips: tuple[ClipRecord, ...]
    clips_dir: str
    settings: DecodeSettings
    fingerprint: str
    audio_fingerprint: str


def decode_shard(shard: DecodeShard) -> dict[str, Any]:
    """One job: decode every clip of the shard into one HDF5 file; returns the shard's meta."""
    started = time.monotonic()
    clips, failures = [], []
    with open_shard(shard.path) as writer:
        for record in job_progress(shard.clips, f"decode shard {shard.index}"):
            source = Path(shard.clips_dir) / record.path
            try:
                if not source.is_file():
                    raise MediaError("missing_clip", str(source))
                clip = decode_clip(source, shard.settings)
                writer.add_clip(record.clip_id, clip.store_attrs(), frames=clip.frames, audio=clip.audio)
            except MediaError as exc:
                failures.append({"id": record.clip_id, "reason": exc.reason, "detail": exc.detail})
                continue
            except Exception as exc:  # noqa: BLE001 - one bad clip never stops the shard
                failures.append({"id": record.clip_id, "reason": "unexpected_error",
                                 "detail": f"{type(exc).__name__}: {exc}"})
                continue
            clips.append({"clip_id": record.clip_id, "num_frames": len(clip.frames), "fps": clip.fps,
                          "duration": clip.duration, "has_audio": clip.has_audio, "notes": clip.notes})
        meta = {"stage": STAGE, "fingerprint": shard.fingerprint, "audio_fingerprint": shard.audio_fingerprint,
                "settings": asdict(shard.settings), "clips": clips,
                "failures": failures, "seconds": time.monotonic() - started}
        writer.set_meta(meta)
    return meta


def run_decode(params: Params, dataset: str | None = None) -> None:
    """Decode a dataset's downloaded clips into its HDF5 frame store.

    Reads data/<dataset>/clips/clips.csv and its clips; resamples frames to decode.fps (AVA:
    30), resizes them to decode.short_side and stores them as JPEGs (decode.jpeg_quality),
    with the audio resampled to decode.sample_rate mono, in shards of decode.clips_per_shard
    clips (one job each) under data/<dataset>/store/frames, plus index.csv and classes.json
    (the download stage's class list, from the manifests: class i is the same whatever
    failed). Writes the failure ledger (download's rows, then decode's) to
    data/<dataset>/ledger/decode.csv and counts to reports/<dataset>/metrics/decode.json, and
    last inventory.csv (what DVC tracks of the store).
    Shards already built from the same inputs are kept, so a killed run resumes. Exits 1
    only when no clip at all could be decoded.
    """
    ds = stage_dataset(params, dataset)
    layout = Layout.of(params.layout)
    p = ds.decode_settings(params.decode)
    ledger, metrics_path = layout.ledger(ds.name, STAGE), layout.metrics(ds.name, STAGE)
    started = time.monotonic()
    clips_dir = layout.clips(ds.name)
    try:
        records = read_clip_index(clips_dir / CLIP_INDEX_NAME)
    except (OSError, ManifestError) as exc:
        raise StageFailed(f"decode: cannot read the clip index: {exc}") from None
    settings = DecodeSettings(fps=p.fps, short_side=p.short_side, jpeg_quality=p.jpeg_quality,
                              sample_rate=p.sample_rate)
    out_dir = layout.frames(ds.name)
    shards, missing = [], 0
    for i, chunk in enumerate(chunks(records, p.clips_per_shard)):
        identities = [_clip_identity(clips_dir, r) for r in chunk]
        missing += sum(identity[2] is None for identity in identities)
        shards.append(DecodeShard(
            i, str(out_dir / shard_name(i)), tuple(chunk), str(clips_dir), settings,
            fingerprint(STAGE, DECODER_VERSION, asdict(settings), identities),
            # the audio is resampled and cut to the frames' span: fps and sample rate, not the pixels
            fingerprint(STAGE, "audio", DECODER_VERSION, settings.fps, settings.sample_rate, identities)))
    if missing:  # DVC tracks the clips by their inventory: one deleted by hand is noticed here
        log.warning("decode: %d clips of %s are not in %s (deleted by hand?): each becomes a missing_clip row "
                    "of the ledger; `dvc repro -f -s download@%s decode@%s` makes them again and stores them",
                    missing, CLIP_INDEX_NAME, clips_dir, ds.name, ds.name)
    todo = prepare_out_dir(STAGE, out_dir, shards)
    run_shards(STAGE, decode_shard, todo, stage_launch(params.launch, ds.name))
    metas = [read_meta(s.path) for s in shards]

    by_id = {r.clip_id: r for r in records}
    entries = [
        StoreEntry(c["clip_id"], by_id[c["clip_id"]].label or "", by_id[c["clip_id"]].split,
                   by_id[c["clip_id"]].youtube_id, Path(s.path).name, c["num_frames"], c["fps"],
                   c["duration"], c["has_audio"])
        for s, meta in zip(shards, metas) for c in meta["clips"]
    ]
    write_index(out_dir / INDEX_NAME, entries)
    write_json(out_dir / CLASSES_NAME, class_list(clips_dir, records))
    failures = [Failure(f["id"], STAGE, f["reason"], f["detail"]) for meta in metas for f in meta["failures"]]
    upstream = carry_ledger(layout.ledger(ds.name, "download"), failures, ledger)

    metas_clips = [c for meta in metas for c in meta["clips"]]
    seconds = time.monotonic() - started
    job_seconds = sum(meta["seconds"] for meta in metas)
    hours = sum(c["duration"] for c in metas_clips) / 3600
    metrics = {
        "clips": len(entries),
        "frames": sum(e.num_frames for e in entries),
        "hours": hours,
        "without_audio": sum(not e.has_audio for e in entries),
        "failed": len(failures),
        "failed_by_reason": count_by_reason(failures),
        "upstream_failures": upstream,
        "notes": count_notes(c.get("notes", {}) for c in metas_clips),
        "shards": len(shards),
        "shards_reused": len(shards) - len(todo),
        "store_bytes": sum(Path(s.path).stat().st_size for s in shards),
        # Rates per job (one process, one core's worth of decoding) over the jobs' own time.
        "source_seconds_per_s": hours * 3600 / job_seconds if job_seconds else 0.0,
        "clips_per_s": len(metas_clips) / job_seconds if job_seconds else 0.0,
        "wall_s": seconds,
    }
    write_json(metrics_path, metrics)
    failed_text = ", ".join(f"{r} {n}" for r, n in metrics["failed_by_reason"].items()) or "none"
    log.info("decode: %d clips: %d stored (%d without audio), %d failed (%s); %d frames, %.3f h; "
             "%d shards (%d reused) in %.1f s, %.1f source-s/s per job; ledger %s",
             len(records), len(entries), metrics["without_audio"], len(failures), failed_text,
             metrics["frames"], hours, len(shards), metrics["shards_reused"], seconds,
             metrics["source_seconds_per_s"], ledger)
    if records and not entries:
        raise StageFailed(f"decode: none of {len(records)} clips could be decoded; see {ledger}")
    write_shard_inventory(out_dir, [s.path for s in shards], metas)  # last: the store is complete


def class_list(clips_dir: Path, records: list[ClipRecord]) -> list[str]:
    """The download stage's class list (every label of its manifests); a label of the clip
    index that it lacks is added at the end, so the listed classes keep their indices."""
    path = clips_dir / CLASS_LIST_NAME
    try:
        classes = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("decode: no class list %s; the classes are the labels of the clips present, "
                    "so a class whose clips all failed shifts the later ones", path)
        return class_names(records)
    extra = [name for name in class_names(records) if name not in set(classes)]
    if extra:
        log.warning("decode: %d labels of the clip index are not in %s; added at the end: %s",
                    len(extra), path, ", ".join(extra))
    return [*classes, *extra]


def _clip_identity(clips_dir: Path, record: ClipRecord) -> list[Any]:
    """What a clip's decoded content depends on, known without reading the clip (a rerun at
    Kinetics scale would read every clip to plan its shards): its id and path, the file's
    size, and what the download stage's record beside it (``<clip_id>.json``) says made it
    (its fingerprint and the bytes' digest). So ``dvc checkout``, ``cp`` or ``rsync`` without
    ``-t`` keep the shards, and a clip made again rebuilds its own. A clip without a record
    (not made by the download stage) falls back to its size and mtime."""
    path = clips_dir / record.path
    try:
        stat = path.stat()
    except OSError:
        return [record.clip_id, record.path, None, None]
    made = read_clip_record(path)
    if made is not None and made.get("fingerprint"):
        return [record.clip_id, record.path, stat.st_size, made["fingerprint"], made.get("sha256")]
    return [record.clip_id, record.path, stat.st_size, stat.st_mtime_ns]
