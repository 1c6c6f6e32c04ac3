"""Stage ``download``: Kinetics manifests in, trimmed clips, a clip index, a ledger and metrics out.

    manifests ──read──> segments ──group by youtube_id, shard──> run_shards(download_shard)
        each job: `workers` threads, one YouTube id at a time (fetch once, trim every segment)
    ──merge──> <out_dir>/<clip_id>.mp4 + .json (its record), <out_dir>/clips.csv,
               <out_dir>/classes.json (every label of the manifests), ledger CSV, metrics JSON
"""

from __future__ import annotations

import logging
import math
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
from avsf.data.kinetics import (
    CLASS_LIST_NAME,
    CLIP_INDEX_NAME,
    ClipRecord,
    ManifestError,
    Segment,
    class_names,
    read_manifest,
    write_clip_index,
)
from avsf.data.ledger import Failure, count_by_reason, write_ledger
from avsf.io.atomic import remove_stale_temporaries, write_json
from pipeline.launch import StageFailed, job_progress, run_shards
from pipeline.notes import count_notes
from pipeline.params import MANIFEST_NAMES, TRANSFER_DATASETS, TRANSFER_STORE_SPLIT, DownloadParams, Params

log = logging.getLogger("avsf.download")

STAGE = "download"
EPIC_VIDEO_INFO = "EPIC_100_video_info.csv"  # beside the annotation files: each video's duration and fps


@dataclass(frozen=True)
class DownloadShard:
    """One job's work: the segments of some YouTube ids (all segments of an id share a shard)."""

    index: int
    segments: tuple[Segment, ...]
    params: DownloadParams


def download_shard(shard: DownloadShard) -> list[ClipOutcome]:
    """One job: ``params.workers`` threads, each making the clips of one YouTube id at a time."""
    p = shard.params
    source = open_source(p.source, fetch_settings(p))
    settings = ClipSettings(Path(p.out_dir), Path(p.raw_cache), p.keep_raw, trim_settings(p))
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
    """Split into at most ``shards`` non-empty lists, every YouTube id wholly in one of them
    (chosen by a stable hash, so a rerun gives each id the same shard)."""
    buckets: list[list[Segment]] = [[] for _ in range(shards)]
    for s in segments:
        buckets[zlib.crc32(s.youtube_id.encode()) % shards].append(s)
    return [b for b in buckets if b]


def run_download(params: Params) -> None:
    """Fetch the raw videos named by Kinetics-format manifests and trim each annotated segment.

    Reads download.manifests; fetches from download.source (a directory or file:// URL of
    <youtube_id>.<ext> files, an http(s) URL prefix, or 'youtube' with the avsf[youtube] extra);
    cuts each segment into <youtube_id>_<start:06d>_<end:06d>.mp4 in download.out_dir (video
    re-encoded at download.crf; audio copied as it is, or re-encoded to AAC at
    download.audio_bitrate_k where mp4 cannot hold it or download.audio is aac), each with
    its record <clip_id>.json; writes clips.csv (the clips, with their durations and notes)
    and classes.json (every label of the manifests) there, the failures to download.ledger
    and counts to download.metrics. Clips already present, valid and made with the same
    settings are kept; a killed run resumes. Exits 1 only when no clip at all could be made.
    """
    p = params.download
    started = time.monotonic()
    out_dir, raw_cache = Path(p.out_dir), Path(p.raw_cache)
    try:
        open_source(p.source, fetch_settings(p))  # fail now, once, rather than in every job
    except SourceUnavailable as exc:
        raise StageFailed(f"download.source: {exc}") from None

    if p.format == "kinetics":
        segments, failures, total_rows, classes = read_manifests(p.manifests)
    else:
        offset = params.ava.movie_start_s if p.format == "ava" and params.ava is not None else 0.0
        segments, failures, total_rows, classes = read_video_manifests(p.format, p.manifests, offset), [], 0, []
        total_rows = len(segments)
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = remove_stale_temporaries(out_dir) + remove_stale_temporaries(raw_cache)
    if stale:
        log.info("download: removed %d temporaries left by an interrupted run", stale)

    shards = [DownloadShard(i, tuple(group), p) for i, group in enumerate(shard_segments(segments, p.shards))]
    outcomes = [o for result in run_shards(STAGE, download_shard, shards, params.launch) for o in result]

    order = {s.clip_id: i for i, s in enumerate(segments)}
    outcomes.sort(key=lambda o: order[o.segment.clip_id])
    present = [o for o in outcomes if o.status != "failed"]
    failures += [Failure(o.segment.clip_id, STAGE, o.reason, o.detail)
                 for o in outcomes if o.status == "failed"]
    write_clip_index(out_dir / CLIP_INDEX_NAME, [
        ClipRecord.for_segment(o.segment, clip_path(out_dir, o.segment).name, o.duration, o.notes)
        for o in present])
    # Class i is the same name whatever failed: the classes come from the manifests' rows.
    write_json(out_dir / CLASS_LIST_NAME, classes)
    write_ledger(p.ledger, failures)

    seconds = time.monotonic() - started
    metrics = summarize(outcomes, failures, total_rows, seconds)
    write_json(p.metrics, metrics)
    failed_text = ", ".join(f"{r} {n}" for r, n in metrics["failed_by_reason"].items() if n) or "none"
    notes_text = ", ".join(f"{n} {note}" for note, n in metrics["notes"].items()) or "none"
    log.info("download: %d rows: %d downloaded, %d already present, %d failed (%s) in %.1f s, "
             "%.2f clips/s; %d cut short; notes: %s; ledger %s", total_rows, metrics["downloaded"],
             metrics["skipped_existing"], metrics["failed"], failed_text, seconds, metrics["clips_per_s"],
             metrics["cut_short"], notes_text, p.ledger)
    if total_rows and not present:
        raise StageFailed(f"download: none of {total_rows} manifest rows gave a clip; see {p.ledger}")


def read_manifests(paths: list[str]) -> tuple[list[Segment], list[Failure], int, list[str]]:
    """Segments of every manifest, each clip id once; unusable and repeated rows become
    failures. Also the total of rows and the class list: every label a row names, unusable
    rows included, so that no class drops out (and shifts the later ones) because its rows
    are bad."""
    segments, failures, seen, total, invalid = [], [], set(), 0, []
    for path in paths:
        try:
            manifest = read_manifest(path)
        except ManifestError as exc:
            raise StageFailed(f"download.manifests: {exc}") from None
        total += manifest.total_rows
        invalid += manifest.invalid
        failures += [Failure(bad.where, STAGE, "bad_manifest_row", bad.detail) for bad in manifest.invalid]
        for s in manifest.segments:
            if s.clip_id in seen:
                failures.append(Failure(s.clip_id, STAGE, "bad_manifest_row", f"repeated in {path}"))
                continue
            seen.add(s.clip_id)
            segments.append(s)
    return segments, failures, total, class_names([*segments, *invalid])


def read_video_manifests(kind: str, paths: list[str], movie_start_s: float = 0.0) -> list[Segment]:
    """EPIC-Kitchens or Charades annotation files -> one unlabelled segment per video, the
    whole video (from 0 to its duration rounded up to a whole second; the trim cuts it at the
    video's real end), in the split the file is for (``EPIC_100_train.csv`` -> train).
    UCF101's or HMDB51's split files (which give no durations) -> every video they name, to
    its end, in store split ``videos``. AVA's ground-truth files -> each movie from second 900
    (:func:`_ava_segments`). The labels stay in the annotation files, which the label sources
    read at training time."""
    if kind in TRANSFER_DATASETS:
        from avsf.data.ucf_hmdb import read_transfer_splits

        root = Path(paths[0]).parent if kind == "ucf101" else Path(paths[0])
        try:
            videos = read_transfer_splits(kind, root).videos()
        except (OSError, ManifestError) as exc:
            raise StageFailed(f"download.manifests: {exc}") from None
        return [Segment(v.video_id, 0.0, math.inf, TRANSFER_STORE_SPLIT) for v in videos]
    if kind == "ava":
        return _ava_segments(paths, movie_start_s)
    segments: dict[str, Segment] = {}
    for path in paths:
        split = _split_of(Path(path), kind)
        try:
            durations = _video_durations(kind, Path(path))
        except (OSError, ManifestError) as exc:
            raise StageFailed(f"download.manifests: {exc}") from None
        for video_id, duration in durations.items():
            segments.setdefault(video_id, Segment(video_id, 0.0, float(math.ceil(duration)), split))
    return list(segments.values())


def _ava_segments(paths: list[str], movie_start_s: float) -> list[Segment]:
    """One segment per movie of AVA's ground-truth files: from movie second 900 (or the file's
    start, if later) to 2 s past its last keyframe (1800 for AVA's 1798), in the times of a
    source file whose t = 0 is movie second ``movie_start_s``. The store's frame 0 is then
    movie second max(900, movie_start_s), and keyframe s its frame (s - that) x 30."""
    from avsf.data.ava import AVA_LAST_SECOND, AvaFormatError, read_ava_ground_truth, store_start_second
    from pipeline.datasets import AVA_CLIP_MARGIN_S

    last: dict[str, tuple[int, str]] = {}
    for path in paths:
        split = _split_of(Path(path), "ava")
        try:
            _, keyframes = read_ava_ground_truth(path)
        except (OSError, AvaFormatError) as exc:
            raise StageFailed(f"download.manifests: {exc}") from None
        for video_id, timestamp in sorted(keyframes):
            last[video_id] = (max(timestamp, last.get(video_id, (0, split))[0]), split)
    start = store_start_second(movie_start_s) - movie_start_s
    return [Segment(video_id, start, min(float(AVA_LAST_SECOND), ts + AVA_CLIP_MARGIN_S) - movie_start_s, split)
            for video_id, (ts, split) in last.items()]


def _split_of(path: Path, kind: str) -> str:
    """The split an annotation file is for, from its name (``ava_val_v2.2.csv`` -> val)."""
    prefix, _, suffix = MANIFEST_NAMES[kind].partition("{split}")
    if not (path.name.startswith(prefix) and path.name.endswith(suffix)) or len(path.name) <= len(prefix + suffix):
        raise StageFailed(f"download.manifests: {path.name} is not named {MANIFEST_NAMES[kind]}")
    return path.name[len(prefix) : len(path.name) - len(suffix)]


def _video_durations(kind: str, path: Path) -> dict[str, float]:
    """Video id -> duration in seconds of every video an annotation file names."""
    if kind == "charades":
        from avsf.data.charades import read_charades

        return {v.id: v.length for v in read_charades(path)}
    from avsf.data.epic import read_epic_annotations, read_epic_video_info

    info_path = path.with_name(EPIC_VIDEO_INFO)
    info = read_epic_video_info(info_path) if info_path.is_file() else {}
    durations: dict[str, float] = {}
    for n in read_epic_annotations(path):
        # Without the video info, the last annotated second (+1) bounds the video.
        known = info[n.video_id].duration if n.video_id in info else n.stop_s + 1.0
        durations[n.video_id] = max(durations.get(n.video_id, 0.0), known)
    return durations


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
