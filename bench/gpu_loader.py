"""The loader feeding a GPU: AVSlowFast 8x8 training clips per second arriving on the device.

    python bench/gpu_loader.py                         # CUDA, 16 workers, both decode modes
    python bench/gpu_loader.py --device cpu --tiny     # smoke test on a CPU machine

A DataLoader over a store of copies of the benchmark clip (bench/store_common.py, short
side 256) makes batches of 32 training clips (Slow 8 + Fast 32 frames, 224 crops, log-mel
128 x 80), moves them to the device (pinned memory, non-blocking) and normalises them
there, in two ways:

    worker   workers decode the JPEGs (simplejpeg), crop and resize; uint8 frames travel
    device   workers only read bytes; nvJPEG (torchvision.io.decode_jpeg on CUDA) decodes
             a whole batch at once and the GPU crops and resizes (DeviceFrameDecoder)

Goal: >= 300 clips/s sustained and at least our training step's rate in the same run
(train_step.json of the same $AVSF_BENCH_RUN, when there is one), so the loader never
limits training. Writes reports/bench/gpu_loader.json on CUDA, gpu_loader_smoke.json
otherwise (bench_report.bench_path). On the GPU machine, scripts/gpu-check.sh runs it with
the wheels it lacks (scripts/gpu-wheels.sh).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from bench_report import bench_path, report, same_run_report
from store_common import bench_clip, build_store

from avsf.data.clip_dataset import ClipDataset, ClipSampling, DeviceFrameDecoder, collate_clips, normalize_video
from avsf.data.decode import DecodeSettings

GOAL = 300.0


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="small clips, crops and batches (smoke test)")
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--batch", type=int, default=None, help="default 32 (4 with --tiny)")
    ap.add_argument("--batches", type=int, default=None, help="timed batches per mode (default 40; 3 with --tiny)")
    ap.add_argument("--modes", default="worker,device", help="comma list of worker, device")
    ap.add_argument("--copies", type=int, default=64, help="clips in the store")
    ap.add_argument("--out", type=Path, default=None)
    return ap.parse_args(argv)


def measure(dataset: ClipDataset, decoder: DeviceFrameDecoder | None, args, device: torch.device) -> dict:
    warmup, clips, started = 3, 0, None
    # One epoch as long as the run: a DataLoader gives each batch to one worker, so epochs of
    # a few batches (64 clips are 2 batches of 32) would keep all but a few workers idle.
    sampler = RandomSampler(dataset, num_samples=(warmup + args.batches) * args.batch)
    loader = DataLoader(dataset, batch_size=args.batch, sampler=sampler, num_workers=args.workers,
                        pin_memory=device.type == "cuda", prefetch_factor=4 if args.workers > 0 else None,
                        collate_fn=collate_clips, drop_last=True)
    batches = iter(loader)
    for step in range(warmup + args.batches):
        if step == warmup:
            _sync(device)
            started = time.perf_counter()
        batch = next(batches)
        moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        if decoder is not None:
            moved = decoder(moved)
        video = normalize_video(moved["fast"]), normalize_video(moved["slow"])
        assert video[0].shape[2] == dataset.sampling.alpha * dataset.sampling.num_frames
        if step >= warmup:
            clips += len(moved["label"])
    _sync(device)
    seconds = time.perf_counter() - started
    return {"clips_per_s": round(clips / seconds, 2), "clips": clips, "seconds": round(seconds, 3)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device if args.device != "cuda" or torch.cuda.is_available() else "cpu")
    smoke = device.type != "cuda"
    args.batch = args.batch or (4 if args.tiny else 32)
    args.batches = args.batches or (3 if args.tiny else 40)
    if args.tiny:
        sampling = ClipSampling(num_frames=4, stride=8, alpha=4, train_scale=(64, 80), train_crop=56, spec_frames=64)
        decode = DecodeSettings(short_side=64)
        copies, clip_seconds = min(args.copies, 8), 3.0
    else:
        sampling = ClipSampling(num_frames=8, stride=8, alpha=4, train_scale=(256, 320), train_crop=224,
                                spec_frames=128)
        decode, copies, clip_seconds = DecodeSettings(short_side=256), args.copies, 10.0
    modes = [m for m in args.modes.split(",") if m]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = bench_clip(Path(tmp) / "bench.mp4", seconds=clip_seconds)
        frames_dir, logmel_dir = build_store(clip, Path(tmp) / "store", decode, copies=copies)
        for mode in modes:
            dataset = ClipDataset(frames_dir, logmel_dir, "train", "train", sampling, sync_negatives=True,
                                  hard_negative_fraction=0.25, decode_on=mode)
            decoder = DeviceFrameDecoder(sampling, sampling.train_crop, device) if mode == "device" else None
            results[mode] = measure(dataset, decoder, args, device)
            print(f"{mode}: {results[mode]['clips_per_s']} clips/s into {device}")
    best = max(results, key=lambda m: results[m]["clips_per_s"])
    value = results[best]["clips_per_s"]
    step = same_run_report("train_step_smoke" if smoke else "train_step")  # our step's best, this run
    step_rate = step.get("clips_per_s") if step else None
    met = None if smoke else value >= GOAL and (step_rate is None or value >= step_rate)
    report(
        args.out or bench_path("gpu_loader_smoke" if smoke else "gpu_loader"),
        f"loader_8x8_clips_per_s_into_{device.type}" + ("_smoke" if smoke else ""), value, "clips/s", GOAL,
        goal_met=met, step_clips_per_s=step_rate, smoke=smoke, device=str(device),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        workers=args.workers, batch=args.batch, best_mode=best, modes=results, tiny=args.tiny,
        torch=torch.__version__,
    )
    print(f"best: {best}, {value} clips/s" + (f" (our step: {step_rate} clips/s)" if step_rate else ""))

if __name__ == "__main__":
    main()
