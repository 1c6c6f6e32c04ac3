"""Stage ``spectrogram``: the frame store's audio in, the HDF5 log-mel store and its statistics out.

    data/<dataset>/store/frames/index.csv ──one job per frame shard──> run_shards(spectrogram_shard):
        per clip: int16 audio ──log_mel──> float16 [time, n_mels]
        ──> data/<dataset>/store/logmel/shard-NNNNN.h5 (same name as the frame shard)
        + sums over the stats split's values
    ──merge──> stats.json (mean, std), ledger (decode's rows + ours), metrics

A clip whose audio stream is digital silence (a muted upload: zeros, log(1e-8) everywhere)
is stored and marked ``silent``, but left out of the statistics, where its constant values
would drag the mean down and blow the std up. With ``spectrogram.fixed_stats`` stats.json
holds those instead of the measured mean and std (which it keeps as ``measured``), so the
dataset normalises with them (the authors' features: their Kinetics -7.03 and 4.66).

Resumable like ``decode``: a shard whose fingerprint (the code's LOGMEL_VERSION, settings,
its frame shard's audio, the stats split's clips, launch.cpu_isa) matches is kept: a change
to decode.jpeg_quality or decode.short_side rebuilds the frames and no log-mel shard.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import h5py
import numpy as np

from avsf.data.ledger import Failure, count_by_reason
from avsf.data.logmel import LOGMEL_VERSION, LogMelSettings, clip_log_mel
from avsf.data.store import AUDIO, INDEX_NAME, STATS_NAME, fingerprint, open_shard, read_index, read_meta
from avsf.io.atomic import write_json
from pipeline.launch import StageFailed, job_progress, run_shards, set_job_threads, stage_launch
from pipeline.datasets import stage_dataset
from pipeline.layout import Layout
from pipeline.inventory import write_shard_inventory
from pipeline.params import Params
from pipeline.shards import carry_ledger, prepare_out_dir

log = logging.getLogger("avsf.spectrogram")

STAGE = "spectrogram"


@dataclass(frozen=True)
class SpectrogramShard:
    """One job's work: the clips of one frame shard; ``stats_clips`` feed the statistics."""

    index: int
    frames_path: str
    path: str
    clips: tuple[str, ...]
    stats_clips: frozenset[str]
    settings: LogMelSettings
    fingerprint: str


def spectrogram_shard(shard: SpectrogramShard) -> dict[str, Any]:
    """One job: log-mel of every clip of a frame shard into the matching log-mel shard."""
    started = time.monotonic()
    set_job_threads(1)  # small STFTs clip by clip; the shards run side by side
    settings = shard.settings
    clips, failures = [], []
    total, total_sq, count = 0.0, 0.0, 0
    with h5py.File(shard.frames_path, "r") as frames, open_shard(shard.path) as writer:
        for clip_id in job_progress(shard.clips, f"spectrogram shard {shard.index}"):
            group = frames[clip_id]
            if AUDIO in group and int(group.attrs["sample_rate"]) != settings.sample_rate:
                failures.append({"id": clip_id, "reason": "sample_rate_mismatch",
                                 "detail": f"{group.attrs['sample_rate']} Hz, expected {settings.sample_rate}"})
                continue
            clip = clip_log_mel(group[AUDIO][...] if AUDIO in group else None, settings)
            writer.add_clip(clip_id, clip.store_attrs(), logmel=clip.values)
            clips.append({"clip_id": clip_id, "has_audio": clip.has_audio, "silent": clip.silent,
                          "frames": 0 if clip.values is None else len(clip.values), "audio_seconds": clip.seconds})
            if clip.has_audio and not clip.silent and clip_id in shard.stats_clips:
                exact = clip.values.astype(np.float64)  # statistics of the values the dataset will read
                total += float(exact.sum())
                total_sq += float(np.square(exact).sum())
                count += exact.size
        meta = {"stage": STAGE, "fingerprint": shard.fingerprint, "settings": settings.store_attrs(), "clips": clips,
                "failures": failures, "stats": {"sum": total, "sum_sq": total_sq, "count": count},
                "seconds": time.monotonic() - started}
        writer.set_meta(meta)
    return meta


def run_spectrogram(params: Params, dataset: str | None = None) -> None:
    """Compute log-mel spectrograms of a dataset's decoded audio into its HDF5 log-mel store.

    Reads the frame store (data/<dataset>/store/frames); writes one log-mel shard per frame
    shard under data/<dataset>/store/logmel: float16 [time, spectrogram.n_mels], log(mel
    power + log_offset) of an STFT with n_fft, win_length and hop_length at
    decode.sample_rate (the AVSlowFast paper's 16 kHz, 32 ms window, 16 ms hop, 80 HTK mel
    bins by default). Measures the mean and std of the values on the dataset's train split
    and writes them to stats.json beside the shards (the dataset normalises at load time),
    or spectrogram.fixed_stats instead; clips of digital silence (a muted track) are marked
    silent and left out of them. spectrogram.mel_norm and center choose the filterbank's
    normalisation and the framing (slaney and false: the authors' librosa features).
    Ledger: decode's rows, then ours; inventory.csv last (what DVC tracks of the store).
    """
    ds = stage_dataset(params, dataset)
    layout = Layout.of(params.layout)
    p = params.spectrogram
    stats_split = ds.stats_split
    ledger, metrics_path = layout.ledger(ds.name, STAGE), layout.metrics(ds.name, STAGE)
    started = time.monotonic()
    frames_dir = layout.frames(ds.name)
    try:
        entries = read_index(frames_dir / INDEX_NAME)
    except (OSError, ValueError) as exc:
        raise StageFailed(f"spectrogram: cannot read the frame store's index: {exc}") from None
    settings = LogMelSettings(sample_rate=ds.decode_settings(params.decode).sample_rate, n_fft=p.n_fft, win_length=p.win_length,
                              hop_length=p.hop_length, n_mels=p.n_mels, f_min=p.f_min, f_max=p.f_max,
                              log_offset=p.log_offset, mel_norm=p.mel_norm, center=p.center)
    by_shard: dict[str, list[str]] = defaultdict(list)
    for e in entries:
        by_shard[e.shard].append(e.clip_id)
    stats_ids = {e.clip_id for e in entries if e.split == stats_split}
    out_dir = layout.logmel(ds.name)
    shards = []
    for i, (name, clip_ids) in enumerate(sorted(by_shard.items())):
        frames_path = frames_dir / name
        # the frame shard's audio (a store from before decode recorded it: the shard's own)
        frames_meta = read_meta(frames_path) or {}
        source = frames_meta.get("audio_fingerprint", frames_meta.get("fingerprint"))
        stats_clips = frozenset(c for c in clip_ids if c in stats_ids)
        shards.append(SpectrogramShard(
            i, str(frames_path), str(out_dir / name), tuple(clip_ids), stats_clips, settings,
            fingerprint(STAGE, LOGMEL_VERSION, asdict(settings), source, clip_ids, sorted(stats_clips),
                        params.launch.cpu_isa),  # (MKL's branch changes the values: README "What holds across machines")
        ))
    todo = prepare_out_dir(STAGE, out_dir, shards)
    run_shards(STAGE, spectrogram_shard, todo, stage_launch(params.launch, ds.name))
    metas = [read_meta(s.path) for s in shards]

    total = sum(m["stats"]["sum"] for m in metas)
    total_sq = sum(m["stats"]["sum_sq"] for m in metas)
    count = sum(m["stats"]["count"] for m in metas)
    if count:
        mean = total / count
        std = math.sqrt(max(total_sq / count - mean * mean, 0.0))
    else:
        log.warning("spectrogram: no clip with sound in split %r; stats are mean 0, std 1", stats_split)
        mean, std = 0.0, 1.0
    stats_clip_count = sum(1 for m in metas for c in m["clips"]
                           if c["has_audio"] and not c["silent"] and c["clip_id"] in stats_ids)
    stats = {"mean": mean, "std": std, "split": stats_split, "clips": stats_clip_count, "values": count,
             "log_offset": p.log_offset}
    if p.fixed_stats is not None:  # what the dataset normalises with; the measured ones kept beside
        stats.update(mean=p.fixed_stats[0], std=p.fixed_stats[1], measured={"mean": mean, "std": std})
    write_json(out_dir / STATS_NAME, stats)

    failures = [Failure(f["id"], STAGE, f["reason"], f["detail"]) for m in metas for f in m["failures"]]
    upstream = carry_ledger(layout.ledger(ds.name, "decode"), failures, ledger)
    clips = [c for m in metas for c in m["clips"]]
    job_seconds = sum(m["seconds"] for m in metas)
    audio_seconds = sum(c["audio_seconds"] for c in clips)
    seconds = time.monotonic() - started
    metrics = {
        "clips": len(clips),
        "with_audio": sum(c["has_audio"] for c in clips),
        "without_audio": sum(not c["has_audio"] for c in clips),
        "silent": sum(c["silent"] for c in clips),
        "logmel_frames": sum(c["frames"] for c in clips),
        "failed": len(failures),
        "failed_by_reason": count_by_reason(failures),
        "upstream_failures": upstream,
        "mean": mean,
        "std": std,
        "stats_clips": stats_clip_count,
        "shards": len(shards),
        "shards_reused": len(shards) - len(todo),
        "audio_seconds_per_s": audio_seconds / job_seconds if job_seconds else 0.0,
        "wall_s": seconds,
    }
    write_json(metrics_path, metrics)
    log.info("spectrogram: %d clips (%d with audio, %d of them digital silence), %d failed; mean %.3f std %.3f "
             "over %d %s clips%s; %d shards (%d reused) in %.1f s; ledger %s", len(clips), metrics["with_audio"],
             metrics["silent"], len(failures), mean, std, stats_clip_count, stats_split,
             "" if p.fixed_stats is None else f" (normalised with the fixed {stats['mean']}, {stats['std']})",
             len(shards), metrics["shards_reused"], seconds, ledger)
    if entries and not clips:
        raise StageFailed(f"spectrogram: none of {len(entries)} clips could be processed; see {ledger}")
    write_shard_inventory(out_dir, [s.path for s in shards], metas)  # last: the store is complete
