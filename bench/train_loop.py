"""End-to-end training throughput: store -> DataLoader workers -> device -> training step,
against the same training loop fed one synthetic batch from memory, in the same run.

    python bench/train_loop.py                        # CUDA: AVSlowFast R50 8x8, 224, batch 32
    python bench/train_loop.py --device cpu --tiny    # this machine: the tiny model, 112 crop

Both runs use :class:`avsf.train.engine.Trainer` as stage ``train`` does (LR schedule, the
DropPathway draw, loss, the all-ranks finiteness checks, the SGD step), the Audio pathway
always on (DropPathway off, no sync heads: the worst case, as ``bench/train_step.py``), bf16
autocast and channels_last_3d on CUDA. The loop run reads real training clips (32 Fast
frames of a 64-frame span from a short side of 256, scale jitter, random 224 crop, flip, a
128-row log-mel window) through ``--workers`` DataLoader workers; the synthetic run feeds
one batch of such clips, collated once and already on the device, every step. Steps are timed after ``--warmup`` steps. The figure is
the ratio of the two rates (goal >= 0.95: the loader never limits), with both rates; on
CUDA also clips/s against 300. Writes reports/bench/train_loop.json (CUDA, the full model)
or train_loop_cpu_tiny.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by path (tests)

from bench_report import REPO, report  # noqa: E402  (puts the repository on sys.path)
from store_common import bench_clip, build_store  # noqa: E402

from avsf.data.clip_dataset import ClipDataset, ClipSampling, collate_clips  # noqa: E402
from avsf.data.decode import DecodeSettings  # noqa: E402
from avsf.models import HeadConfig, model_config  # noqa: E402
from avsf.train.engine import Trainer, TrainSettings  # noqa: E402
from avsf.train.recipe import LRSchedule  # noqa: E402

GOAL_RATIO, GOAL_CLIPS_PER_S = 0.95, 300.0


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="the tiny model at a 112 crop (CPU figure)")
    ap.add_argument("--batch", type=int, default=None, help="per device; default 32 (8 with --tiny)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: cores - 1)")
    ap.add_argument("--out", default=None)
    return ap.parse_args(argv)


class SyntheticTrainer(Trainer):
    """The same loop fed one collated batch, already on the device, every step: what the
    training step alone can do (``bench/train_step.py``'s figure, through the engine)."""

    def __init__(self, *args, batch: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch = batch

    def _loader(self, dataset, sampler, batch_size, persistent):
        return [self.batch] * self.steps_per_epoch


class StepClock:
    """A TrainLogger that keeps when each step ended."""

    def __init__(self, device: torch.device):
        self.device, self.times = device, []

    def log_step(self, step: int, values: dict) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.times.append(time.perf_counter())

    def log_epoch(self, epoch: int, step: int, values: dict) -> None:
        pass

    def clips_per_s(self, warmup: int, batch: int) -> float:
        timed = self.times[warmup:]
        return (len(timed) - 1) * batch / (timed[-1] - timed[0])


def measure(trainer: Trainer, warmup: int) -> float:
    clock = StepClock(trainer.device)
    trainer.run(clock)
    return clock.clips_per_s(warmup, trainer.s.batch_size)


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run on the GPU machine, or --device cpu --tiny for this machine's figure")
        return None
    cuda = device.type == "cuda"
    batch = args.batch or (8 if args.tiny else 32)
    workers = args.workers if args.workers is not None else max(1, (os.cpu_count() or 2) - 1)
    crop, short = (112, 128) if args.tiny else (224, 256)
    sampling = ClipSampling(num_frames=8, stride=8, alpha=4, train_scale=(short, short * 5 // 4), train_crop=crop,
                            spec_frames=128)
    cfg = model_config("avslowfast", 50, 8, 8, tiny=args.tiny, sync=False, drop_pathway=0.0,
                       head=HeadConfig(num_classes=400))
    steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = bench_clip(REPO / "data" / "bench" / "bench_clip.mp4")
        frames, logmel = build_store(clip, root / "store", DecodeSettings(short_side=short), copies=batch)
        loop_set = ClipDataset(frames, logmel, "train", "train", sampling, max_load_attempts=1)
        loop_set.samples *= steps  # one epoch of `steps` batches, each clip read once per batch
        schedule = LRSchedule(base_lr=0.01, reference_batch=batch, global_batch=batch, epochs=1, warmup_epochs=0)
        settings = TrainSettings(epochs=1, batch_size=batch, schedule=schedule, precise_bn_batches=0,
                                 workers=workers, persistent_workers=True, log_every=1, device=str(device),
                                 precision="bf16" if cuda else "fp32", channels_last=cuda, progress=False,
                                 checkpoint_every=1)
        loop = measure(Trainer(cfg, settings, loop_set, None, root / "loop"), args.warmup)
        fixed = collate_clips([loop_set[i] for i in range(batch)])
        fixed = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in fixed.items()}
        synthetic = measure(SyntheticTrainer(cfg, replace(settings, workers=0), loop_set, None, root / "synthetic",
                                             batch=fixed), args.warmup)
    ratio = loop / synthetic
    name = "train_loop" if cuda and not args.tiny else f"train_loop_{device.type}{'_tiny' if args.tiny else ''}"
    out = Path(args.out) if args.out else REPO / "reports" / "bench" / f"{name}.json"
    full = cuda and not args.tiny
    data = report(out, "train_loop_over_synthetic", ratio, "ratio", GOAL_RATIO,
                  goal_met=(ratio >= GOAL_RATIO and loop >= GOAL_CLIPS_PER_S) if full else None,
                  loop_clips_per_s=round(loop, 2), synthetic_clips_per_s=round(synthetic, 2),
                  goal_clips_per_s=GOAL_CLIPS_PER_S if full else None, model=cfg.name, batch=batch, crop=crop,
                  workers=workers, device=(torch.cuda.get_device_name(device) if cuda else str(device)),
                  timed_steps=args.steps)
    print(f"loop {loop:.2f} clips/s, synthetic {synthetic:.2f} clips/s, ratio {ratio:.3f} -> {out}")
    return data


if __name__ == "__main__":
    raise SystemExit(0 if main() is not None else 2)
