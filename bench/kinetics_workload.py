"""A Kinetics-400-shaped workload for rehearsing the data stages at scale (not part of `dvc repro`).

    python bench/kinetics_workload.py OUT --clips 32000 [--template .../kinetics-400_val.csv]

Writes, under OUT:

    annotations/kinetics-400_train.csv, kinetics-400_val.csv   the real manifest format
        (label,youtube_id,time_start,time_end,split,is_cc), 400 classes, about 7.7% of the
        rows in val as in Kinetics-400 (20k of 260k); val rows are the template's own rows
        (its names, ids, is_cc) taken class by class, train rows its class names with ids drawn
        from YouTube's alphabet
    videos/<youtube_id>.mp4    one hard link (a symlink where links fail) per present row to
        one of a handful of short, small real videos written once with PyAV (H.264, with AAC
        at 44.1 or 48 kHz, mono or stereo, or without audio; 25, 29.97 or 30 fps; 64x48 and
        96x72), so 32,000 rows cost a few directory entries, not gigabytes
    bases/                     those videos, and one truncated (corrupt) copy
    workload.json              the counts: rows, by split, missing sources, corrupt, without audio

Failures as a real crawl meets them: ``--missing`` of the rows (7% by default) have no
source file, ``--corrupt`` rows (by default one per 4,000, at least 3) link to the truncated
file, and ``--no-audio`` of the present rows (10%) link to a video without an audio stream.
Segments are ``--clip-seconds`` long (2 s; Kinetics' are 10 s) starting at 0 or 1 s of a
source one second longer: the per-clip work is that of a short clip, everything else (rows,
files, shards, classes, ids) has Kinetics' shape. Deterministic in ``--seed``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import bench_report  # noqa: F401  (puts the repository on sys.path)
from bench_report import REPO

from avsf.io.atomic import atomic_output, write_json  # noqa: E402
from avsf.io.media import write_video  # noqa: E402

TEMPLATE = REPO.parent / "shared" / "reference-annotations" / "kinetics" / "kinetics-400_val.csv"
COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split", "is_cc")
VAL_FRACTION = 20_000 / 260_000  # Kinetics-400: about 240k train and 20k val clips
YOUTUBE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class BaseVideo:
    """One of the few real videos every row's source links to."""

    name: str
    size: tuple[int, int]  # width, height
    fps: float
    sample_rate: int | None  # None: no audio stream
    channels: int = 1


BASES = (
    BaseVideo("a64_30_mono44", (64, 48), 30.0, 44100, 1),
    BaseVideo("a96_25_stereo48", (96, 72), 25.0, 48000, 2),
    BaseVideo("a96_2997_stereo44", (96, 72), 29.97, 44100, 2),
    BaseVideo("a64_25_mono48", (64, 48), 25.0, 48000, 1),
    BaseVideo("n64_30", (64, 48), 30.0, None),
    BaseVideo("n96_25", (96, 72), 25.0, None),
)
CORRUPT = "corrupt"


def write_base(path: Path, base: BaseVideo, seconds: float, seed: int) -> None:
    """Smooth moving gradients and a disc with a little noise (x264 and JPEG then cost what
    they cost on footage), a tone with noise for audio."""
    width, height = base.size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for k in range(round(seconds * base.fps)):
        image = np.empty((height, width, 3), np.float32)
        image[..., 0] = 128 + 100 * np.sin(xx / 9 + k / 7)
        image[..., 1] = 128 + 90 * np.cos(yy / 7 - k / 9)
        image[..., 2] = 100 + 0.8 * (xx + yy)
        disc = (xx - (3 * k) % width) ** 2 + (yy - height / 2) ** 2 < (height / 5) ** 2
        image[disc] = (240, 40, 90)
        image += rng.normal(0, 4, image.shape)
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    audio = None
    if base.sample_rate is not None:
        t = np.arange(round(seconds * base.sample_rate)) / base.sample_rate
        wave = 0.2 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.02 * rng.normal(size=t.size)
        audio = np.repeat(wave[None].astype(np.float32), base.channels, axis=0)
    with atomic_output(path) as tmp:
        write_video(tmp, frames, base.fps, audio=audio, sample_rate=base.sample_rate or 48000, crf=23)


def template_rows(path: Path) -> dict[str, list[dict[str, str]]]:
    """The template's rows by class, in file order."""
    by_class: dict[str, list[dict[str, str]]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_class[row["label"]].append(row)
    return dict(sorted(by_class.items()))


def plan_rows(by_class: dict[str, list[dict[str, str]]], clips: int, clip_seconds: int,
              rng: random.Random) -> list[dict[str, object]]:
    """``clips`` manifest rows: val rows are the template's (round robin over its classes),
    train rows its classes with fresh ids; both with segments that fit the short sources."""
    classes = list(by_class)
    n_val = max(len(classes), round(clips * VAL_FRACTION)) if clips >= 2 * len(classes) else clips // 10
    rows: list[dict[str, object]] = []
    taken: set[str] = set()
    for i in range(n_val):
        label = classes[i % len(classes)]
        source = by_class[label][i // len(classes) % len(by_class[label])]
        youtube_id = source["youtube_id"]
        if youtube_id in taken:  # a class with fewer template rows than asked for: a fresh id
            youtube_id = fresh_id(rng, taken)
        taken.add(youtube_id)
        rows.append({"label": label, "youtube_id": youtube_id, "split": "val", "is_cc": source["is_cc"]})
    for i in range(clips - n_val):
        label = classes[i % len(classes)]
        rows.append({"label": label, "youtube_id": fresh_id(rng, taken), "split": "train",
                     "is_cc": int(rng.random() < 0.1)})
    for row in rows:
        start = rng.randint(0, 1)
        row.update(time_start=start, time_end=start + clip_seconds)
    return rows


def fresh_id(rng: random.Random, taken: set[str]) -> str:
    while True:
        youtube_id = "".join(rng.choice(YOUTUBE_ALPHABET) for _ in range(11))
        if youtube_id not in taken and not youtube_id.startswith("-"):
            taken.add(youtube_id)
            return youtube_id


def link(target: Path, path: Path) -> str:
    """A hard link, or a symlink where hard links fail (another filesystem)."""
    try:
        os.link(target, path)
        return "hard"
    except OSError:
        path.symlink_to(target.resolve())
        return "symbolic"


def write_workload(out: Path, clips: int, template: Path = TEMPLATE, seed: int = 0, clip_seconds: int = 2,
                   missing: float = 0.07, corrupt: int | None = None, no_audio: float = 0.1) -> dict[str, object]:
    """Write the workload (see the module docstring) and return its counts (workload.json)."""
    rng = random.Random(seed)
    rows = plan_rows(template_rows(template), clips, clip_seconds, rng)
    bases_dir, videos, annotations = out / "bases", out / "videos", out / "annotations"
    for d in (bases_dir, videos, annotations):
        d.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, base in enumerate(BASES):
        paths[base.name] = bases_dir / f"{base.name}.mp4"
        if not paths[base.name].is_file():
            write_base(paths[base.name], base, clip_seconds + 1.0, seed + i)
    paths[CORRUPT] = bases_dir / f"{CORRUPT}.mp4"
    if not paths[CORRUPT].is_file():
        data = paths[BASES[0].name].read_bytes()
        with atomic_output(paths[CORRUPT]) as tmp:
            tmp.write_bytes(data[: len(data) * 2 // 5])  # cut mid-file, its index at the end lost
    with_audio = [b.name for b in BASES if b.sample_rate is not None]
    without_audio = [b.name for b in BASES if b.sample_rate is None]
    corrupt = max(3, clips // 4000) if corrupt is None else corrupt

    order = list(range(len(rows)))
    rng.shuffle(order)
    n_missing = round(missing * len(rows))
    missing_rows, corrupt_rows = set(order[:n_missing]), set(order[n_missing : n_missing + corrupt])
    for old in videos.iterdir():  # a rerun with other settings starts from an empty directory
        old.unlink()
    counts = {"rows": len(rows), "missing_sources": 0, "corrupt": 0, "without_audio": 0, "links": {}}
    for i, row in enumerate(rows):
        if i in missing_rows:
            counts["missing_sources"] += 1
            continue
        if i in corrupt_rows:
            base, counts["corrupt"] = CORRUPT, counts["corrupt"] + 1
        elif rng.random() < no_audio:
            base, counts["without_audio"] = rng.choice(without_audio), counts["without_audio"] + 1
        else:
            base = rng.choice(with_audio)
        kind = link(paths[base], videos / f"{row['youtube_id']}.mp4")
        counts["links"][kind] = counts["links"].get(kind, 0) + 1
    for split in ("train", "val"):
        with atomic_output(annotations / f"kinetics-400_{split}.csv") as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(r for r in rows if r["split"] == split)
    counts.update(by_split={s: sum(r["split"] == s for r in rows) for s in ("train", "val")},
                  classes=len({r["label"] for r in rows}), clip_seconds=clip_seconds, seed=seed,
                  template=str(template), bases={b.name: {"size": list(b.size), "fps": b.fps,
                                                          "sample_rate": b.sample_rate} for b in BASES})
    write_json(out / "workload.json", counts)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write the workload to")
    parser.add_argument("--clips", type=int, required=True, help="manifest rows (train + val)")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="a Kinetics-400 manifest to take names from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip-seconds", type=int, default=2)
    parser.add_argument("--missing", type=float, default=0.07, help="fraction of rows without a source")
    parser.add_argument("--corrupt", type=int, default=None, help="rows whose source is corrupt (default N/4000, >= 3)")
    parser.add_argument("--no-audio", type=float, default=0.1, help="fraction of present rows without audio")
    args = parser.parse_args()
    counts = write_workload(args.out, args.clips, args.template, args.seed, args.clip_seconds, args.missing,
                            args.corrupt, args.no_audio)
    print(json.dumps({k: v for k, v in counts.items() if k != "bases"}))


if __name__ == "__main__":
    main()
