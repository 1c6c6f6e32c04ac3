"""Stage ``download@<dataset>``: a dataset's annotations in, clips, a clip index, a ledger and metrics out.

    datasets.<d>.annotations ──copy──> data/<d>/annotations/ (what every later stage reads)
    ──Dataset.download_plan──> segments (Kinetics: one per manifest row; the others: each
        annotated video whole) ──group by video id, shard──> run_shards(download_shard)
        each job: `workers` threads, one video at a time (fetch once, trim every segment)
    ──merge──> data/<d>/clips/<clip_id>.mp4 + .json (its record), clips.csv, classes.json
               (every label of the manifests), the ledger, the metrics, and last inventory.csv
               (what DVC tracks of the folder: pipeline/inventory.py)
"""

from __future__ import annotations

import logging
import shutil
import time
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from avsf.data.download import (
    REASONS,
    ClipOutcome,
    ClipSettings,
    FetchSettings,
    SourceUnavailable,
    TrimSettings,
    clip_path,
    download_video_clips,
    open_source,
)
from avsf.data.kinetics import CLASS_LIST_NAME, CLIP_INDEX_NAME, ClipRecord, Segment, read_clip_record, write_clip_index
from avsf.data.ledger import Failure, count_by_reason, write_ledger
from avsf.io.atomic import atomic_output, remove_stale_temporaries, write_json
from pipeline.datasets.base import Dataset
from pipeline.launch import StageFailed, job_progress, run_shards, stage_launch
from pipeline.datasets import stage_dataset
from pipeline.layout import Layout
from pipeline.inventory import remove_inventory, write_inventory
from pipeline.notes import count_notes
from pipeline.params import DownloadParams, Params

log = logging.getLogger("avsf.download")

STAGE = "download"


@dataclass(frozen=True)
class DownloadShard:
    """One job's work: the segments of some videos (all segments of a video share a shard)."""

    index: int
    segments: tuple[Segment, ...]
    params: DownloadParams
    source: str
    out_dir: str
    raw_cache: str


def download_shard(shard: DownloadShard) -> list[ClipOutcome]:
    """One job: ``params.workers`` threads, each making the clips of one video at a time."""
    p = shard.params
    source = open_source(shard.source, fetch_settings(p))
    settings = ClipSettings(Path(shard.out_dir), Path(shard.raw_cache), p.keep_raw, trim_settings(p))
    by_video: dict[str, list[Segment]] = {}
    for s in shard.segments:
        by_video.setdefault(s.youtube_id, []).append(s)
    outcomes: list[ClipOutcome] = []
    bar = job_progress(None, f"download shard {shard.index}", total=len(shard.segments))
    with bar, ThreadPoolExecutor(max_workers=p.workers) as pool:
        futures = [pool.submit(download_video_clips, youtube_id, segments, source, settings)
                   for youtube_id, segments in by_video.items()]
        for future in as_completed(futures):
            done = future.result()
            outcomes.extend(done)
            bar.update(len(done))
    return outcomes


def fetch_settings(p: DownloadParams) -> FetchSettings:
    return FetchSettings(retries=p.retries, backoff_s=p.backoff_s, timeout_s=p.timeout_s)


def trim_settings(p: DownloadParams) -> TrimSettings:
    """The params that change a clip: each clip records their fingerprint, and a clip made
    with other values is made again."""
    return TrimSettings(crf=p.crf, min_fraction=p.min_segment_fraction, audio=p.audio,
                        audio_bitrate=p.audio_bitrate_k * 1000)


def shard_segments(segments: list[Segment], shards: int) -> list[list[Segment]]:
    """Split into at most ``shards`` non-empty lists, every video wholly in one of them
    (chosen by a stable hash, so a rerun gives each video the same shard)."""
    buckets: list[list[Segment]] = [[] for _ in range(shards)]
    for s in segments:
        buckets[zlib.crc32(s.youtube_id.encode()) % shards].append(s)
    return [b for b in buckets if b]


def copy_annotations(ds: Dataset) -> list[Path]:
    """Copy the annotation files the dataset reads from ``datasets.<d>.annotations`` into
    data/<d>/annotations (the stages after download read the copies: a change of the files
    then reruns what depends on them, and nothing else); files no longer read are removed."""
    source = Path(ds.section.annotations)
    files = ds.annotation_files(source)
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise StageFailed(f"datasets.{ds.name}.annotations: {missing[0]} is missing")
    ds.files.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in files}
    for old in ds.files.iterdir():
        if old.name not in wanted:
            old.unlink()
    for path in files:
        with atomic_output(ds.files / path.name) as tmp:
            shutil.copyfile(path, tmp)
    return [ds.files / p.name for p in files]


def run_download(params: Params, dataset: str | None = None) -> None:
    """Fetch the raw videos a dataset's annotations name and trim them into clips.

    Copies the dataset's annotation files (datasets.<d>.annotations) into
    data/<d>/annotations; fetches each video from datasets.<d>.source (a directory or
    file:// URL of <id>.<ext> files, an http(s) URL prefix, or 'youtube' with the
    avsf[youtube] extra); cuts each segment (Kinetics: a manifest row; the others: the whole
    video) into <youtube_id>_<start:06d>_<end:06d>.mp4 in data/<d>/clips (video re-encoded
    at download.crf; audio copied as it is, or re-encoded to AAC at download.audio_bitrate_k
    where mp4 cannot hold it or download.audio is aac), each with its record
    <clip_id>.json; writes clips.csv (the clips, with their durations and notes) and
    classes.json (every label of the manifests) there, the failures to
    data/<d>/ledger/download.csv and counts to reports/<d>/metrics/download.json, and last
    inventory.csv (what DVC tracks of data/<d>/clips). Clips already present, valid and made
    with the same settings (and, from a local source, from the raw video there now) are kept;
    a killed run resumes. Exits 1 only when no clip at all could be made.
    """
    ds = stage_dataset(params, dataset)
    layout = Layout.of(params.layout)
    p = params.download
    started = time.monotonic()
    out_dir, raw_cache = layout.clips(ds.name), layout.raw_cache(ds.name)
    ledger = layout.ledger(ds.name, STAGE)
    try:
        open_source(ds.section.source, fetch_settings(p))  # fail now, once, rather than in every job
    except SourceUnavailable as exc:
        raise StageFailed(f"datasets.{ds.name}.source: {exc}") from None
    copy_annotations(ds)
    plan = ds.download_plan()
    segments, failures = plan.segments, list(plan.failures)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_inventory(out_dir)
    stale = remove_stale_temporaries(out_dir) + remove_stale_temporaries(raw_cache)
    if stale:
        log.info("download: removed %d temporaries left by an interrupted run", stale)

    shards = [DownloadShard(i, tuple(group), p, ds.section.source, str(out_dir), str(raw_cache))
              for i, group in enumerate(shard_segments(segments, p.shards))]
    outcomes = [o for result in run_shards(STAGE, download_shard, shards, stage_launch(params.launch, ds.name))
                for o in result]

    order = {s.clip_id: i for i, s in enumerate(segments)}
    outcomes.sort(key=lambda o: order[o.segment.clip_id])
    present = [o for o in outcomes if o.status != "failed"]
    failures += [Failure(o.segment.clip_id, STAGE, o.reason, o.detail)
                 for o in outcomes if o.status == "failed"]
    write_clip_index(out_dir / CLIP_INDEX_NAME, [
        ClipRecord.for_segment(o.segment, clip_path(out_dir, o.segment).name, o.duration, o.notes)
        for o in present])
    # Class i is the same name whatever failed: the classes come from the manifests' rows.
    write_json(out_dir / CLASS_LIST_NAME, plan.classes)
    write_ledger(ledger, failures)

    seconds = time.monotonic() - started
    total_rows = plan.total_rows
    metrics = summarize(outcomes, failures, total_rows, seconds)
    write_json(layout.metrics(ds.name, STAGE), metrics)
    failed_text = ", ".join(f"{r} {n}" for r, n in metrics["failed_by_reason"].items() if n) or "none"
    notes_text = ", ".join(f"{n} {note}" for note, n in metrics["notes"].items()) or "none"
    log.info("download: %d rows: %d downloaded, %d already present, %d failed (%s) in %.1f s, "
             "%.2f clips/s; %d cut short; notes: %s; ledger %s", total_rows, metrics["downloaded"],
             metrics["skipped_existing"], metrics["failed"], failed_text, seconds, metrics["clips_per_s"],
             metrics["cut_short"], notes_text, ledger)
    if total_rows and not present:
        raise StageFailed(f"download: none of {total_rows} manifest rows gave a clip; see {ledger}")
    write_inventory(out_dir, _clip_digest)  # last: the folder is complete


def _clip_digest(path: Path) -> str | None:
    """A clip's sha256 as its record holds it (the record itself is hashed in the inventory)."""
    if path.suffix != ".mp4":
        return None
    record = read_clip_record(path)
    return f"sha256:{record['sha256']}" if record and record.get("sha256") else None


def summarize(outcomes: list[ClipOutcome], failures: list[Failure], total_rows: int, seconds: float) -> dict:
    """The stage's metrics; ``failed`` counts every ledger row, so
    downloaded + skipped_existing + failed == total_rows. ``notes``: how many clips carry
    each note; ``cut_short``: clips shorter than their segment."""
    by_reason = {reason: 0 for reason in REASONS} | count_by_reason(failures)
    downloaded = sum(o.status == "downloaded" for o in outcomes)
    present = [o for o in outcomes if o.status != "failed"]
    return {
        "notes": count_notes(o.notes for o in present),
        "cut_short": sum("cut_short_s" in o.notes for o in present),
        "clip_seconds": round(sum(o.duration or 0.0 for o in present), 3),
        "downloaded": downloaded,
        "skipped_existing": sum(o.status == "skipped_existing" for o in outcomes),
        "failed": len(failures),
        "failed_by_reason": by_reason,
        "total_rows": total_rows,
        "seconds": round(seconds, 3),
        "clips_per_s": round(downloaded / seconds, 3) if seconds > 0 else 0.0,
    }
