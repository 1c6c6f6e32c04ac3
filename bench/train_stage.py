"""End-to-end training through the real stage `train` (store -> DataLoader workers -> device
-> step, as ``python stages/train.py`` runs it), against the same model and loop fed one
synthetic batch from device memory, in the same run.

    python bench/train_stage.py                        # CUDA: AVSlowFast R50 8x8 at 224, batch 32,
                                                       #   2 epochs of 100 steps
    python bench/train_stage.py --device cpu --tiny    # smoke: the tiny model at 32, batch 4, 2 x 3 steps

In a temporary folder, where every params path keeps its default:

1. a few generated videos (bench/store_common.py's picture and sound), laid out as the
   download stage leaves them, go through the decode and spectrogram stages' own code (in
   this process), frames at short side 256;
2. each stored clip is listed many times in the store's index, as HDF5 hard links (no byte
   copied), so that an epoch is ``--steps-per-epoch`` batches long, as a Kinetics epoch is
   thousands: an epoch of a few clips would be one batch, each with the loader's start-up;
3. the synthetic run: the stage's own Trainer (pipeline.train.TrainJob, same params) whose
   loader gives one collated batch of the store's clips, already on the device, every step;
4. ``python stages/train.py --set ...`` (launch.cluster local: a submitit job, as users run it).

Both rates are the engine's own epoch figure (steps x batch / the epoch's seconds, data
waits included) of the last epoch (the first warms up: workers, cuDNN's autotuning). The
figure is stage / synthetic (goal >= 0.95; on CUDA also >= 300 clips/s). Writes
reports/bench/train_stage.json, or train_stage_smoke.json off CUDA or with --tiny.
Every params key it sets is in :func:`stage_overrides`, every output it reads in
:func:`stage_outputs`.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import h5py
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by path (tests)

from bench_report import REPO, bench_device, bench_path, report  # noqa: E402  (puts the repository on sys.path)
from store_common import bench_clip  # noqa: E402

from avsf.data.clip_dataset import collate_clips  # noqa: E402
from avsf.data.kinetics import CLASS_LIST_NAME, CLIP_INDEX_NAME, ClipRecord, write_clip_index  # noqa: E402
from avsf.data.store import INDEX_NAME, read_index, write_index  # noqa: E402
from avsf.io.atomic import write_json  # noqa: E402

GOAL_RATIO, GOAL_CLIPS_PER_S = 0.95, 300.0
CLASSES = ("bench a", "bench b", "bench c", "bench d")  # one generated video each


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="the tiny model at a 32 crop (smoke test)")
    ap.add_argument("--batch", type=int, default=None, help="default 32 (4 with --tiny)")
    ap.add_argument("--epochs", type=int, default=2, help="the last one is timed")
    ap.add_argument("--steps-per-epoch", type=int, default=None, help="default 100 (3 with --tiny)")
    ap.add_argument("--synthetic-steps", type=int, default=None,
                    help="steps per epoch of the synthetic run (default 40; 3 with --tiny)")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: cores - 1)")
    ap.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it (default: a temporary one)")
    return ap.parse_args(argv)


def stage_overrides(cuda: bool, tiny: bool, batch: int, epochs: int, workers: int, classes: int,
                    cluster: str = "local") -> list[str]:
    """Every params key the bench sets (``--set`` of the stages), in one place; output paths
    keep their defaults, relative to the bench's folder (:func:`stage_outputs` reads them)."""
    short, crop = (40, 32) if tiny else (256, 224)
    cores = os.cpu_count() or 1
    values = {
        "launch.cluster": cluster,
        "launch.resources.gpus_per_node": 1 if cuda else 0,
        "launch.resources.cpus_per_task": cores,
        "launch.resources.timeout_min": 20,
        "decode.short_side": short,
        "decode.clips_per_shard": 2,
        "model.arch": "avslowfast",  # the recipe's model: sync heads, DropPathway 0.8 of the fusion
        "model.depth": 50,
        "model.frames": 8,
        "model.stride": 8,
        "model.tiny": tiny,
        "model.num_classes": classes,
        "dataset.train_scale": [short, short * 5 // 4],
        "dataset.train_crop": crop,  # (no validation: the store has no val split)
        "dataset.spec_frames": 128,
        "train.device": "cuda" if cuda else "cpu",
        "train.epochs": epochs,
        "train.batch_size": batch,
        "train.reference_batch": batch,
        "train.base_lr": 0.01,
        "train.warmup_epochs": 0.0,
        "train.workers": workers,
        "train.persistent_workers": True,
        "train.precise_bn_batches": 0,
        "train.val_every": epochs,
        "train.checkpoint_every": epochs,
        "train.log_every": 10,
    }
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def stage_outputs(params) -> dict[str, Path]:
    """Where the stages read and write, from params' layout (relative to the bench's folder):
    the pretraining dataset's clips and stores, and the run summary of stage train without
    --member (the model section as the bench sets it)."""
    from pipeline.datasets import pretraining_dataset
    from pipeline.layout import Layout
    from pipeline.runs import kinetics_run

    layout, name = Layout.of(params.layout), pretraining_dataset(params).name
    return {"clips": layout.clips(name), "frames": layout.frames(name), "logmel": layout.logmel(name),
            "train_summary": kinetics_run(params, None).paths.summary}


def write_clips(clips_dir: Path, tiny: bool) -> None:
    """One generated video per class, as the download stage leaves them (clips.csv)."""
    clips_dir.mkdir(parents=True, exist_ok=True)
    seconds, size = (2.5, (54, 40)) if tiny else (4.0, (340, 256))
    template = bench_clip(clips_dir / "template.mp4", seconds=seconds, size=size)
    records = []
    for k, label in enumerate(CLASSES):
        clip_id = f"bench{k:07d}_000000_{math.ceil(seconds):06d}"
        shutil.copyfile(template, clips_dir / f"{clip_id}.mp4")
        records.append(ClipRecord(clip_id, label, f"bench{k:07d}", 0, math.ceil(seconds), "train", f"{clip_id}.mp4",
                                  seconds))
    template.unlink()
    write_clip_index(clips_dir / CLIP_INDEX_NAME, records)
    write_json(clips_dir / CLASS_LIST_NAME, list(CLASSES))


def repeat_store(frames_dir: Path, logmel_dir: Path, times: int) -> int:
    """List every stored clip ``times`` times: copies named ``<clip id>-rNNNN``, hard links in
    their shards (frames and log-mel) to the clip's group. Returns the entries now listed."""
    entries = read_index(frames_dir / INDEX_NAME)
    copies = []
    for shard in sorted({e.shard for e in entries}):
        with h5py.File(frames_dir / shard, "a") as frames, h5py.File(logmel_dir / shard, "a") as logmel:
            for entry in (e for e in entries if e.shard == shard):
                for k in range(1, times):
                    copy = f"{entry.clip_id}-r{k:04d}"
                    frames[copy], logmel[copy] = frames[entry.clip_id], logmel[entry.clip_id]
                    copies.append(replace(entry, clip_id=copy))
    write_index(frames_dir / INDEX_NAME, [*entries, *copies])
    return len(entries) + len(copies)


def build_store(root: Path, args, cuda: bool) -> None:
    from pipeline.decode import run_decode
    from pipeline.params import load_params
    from pipeline.spectrogram import run_spectrogram

    params = load_params(REPO / "params.yaml", stage_overrides(cuda, args.tiny, args.batch, args.epochs,
                                                               args.workers, len(CLASSES), cluster="debug"))
    paths = stage_outputs(params)
    write_clips(root / paths["clips"], args.tiny)
    run_decode(params)
    run_spectrogram(params)
    times = math.ceil(args.steps_per_epoch * args.batch / len(CLASSES))
    listed = repeat_store(root / paths["frames"], root / paths["logmel"], times)
    print(f"store: {len(CLASSES)} clips decoded at short side {params.decode.short_side}, listed {listed} times",
          flush=True)


class _NoStop:
    @staticmethod
    def requested() -> bool:
        return False


def synthetic_rate(args, cuda: bool, overrides: list[str]) -> tuple[float, dict]:
    """The last epoch's clips/s of the stage's Trainer fed one batch, already on the device."""
    from pipeline.params import load_params
    from pipeline.train import TrainJob

    from pipeline.runs import kinetics_run

    trainer = TrainJob(kinetics_run(load_params(REPO / "params.yaml", overrides), None), "synthetic")._trainer(
        0, 1, 0, _NoStop())
    torch.manual_seed(0)
    batch = collate_clips([trainer.train_set[i] for i in range(args.batch)])
    batch = {k: v.to(trainer.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    trainer._loader = lambda *a, **k: [batch] * args.synthetic_steps  # noqa: SLF001
    trainer.out_dir, trainer.s = Path("synthetic"), replace(trainer.s, progress=False)
    result = trainer.run()
    last = result.history[-1]
    del trainer, batch
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return last["clips_per_s"], last


def stage_rate(overrides: list[str], timeout: float) -> tuple[float, dict]:
    """Run stages/train.py and return its last epoch's clips/s and row."""
    from pipeline.params import load_params

    started = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO / "stages" / "train.py"), "--params", str(REPO / "params.yaml"),
                           *[a for o in overrides for a in ("--set", o)]], capture_output=True, text=True,
                          timeout=timeout)
    Path("stage.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"stages/train.py exited {done.returncode}:\n{done.stderr[-3000:]}")
    metrics = json.loads(stage_outputs(load_params(REPO / "params.yaml", overrides))["train_summary"].read_text())
    last = metrics["last_epoch"]
    print(f"stage train: {metrics['steps']} steps in {time.monotonic() - started:.1f} s", flush=True)
    return last["clips_per_s"], last


def main(argv=None) -> int:
    args = parse_args(argv)
    device = bench_device(args.device)
    if device is None:
        return 2
    cuda = device.type == "cuda"
    smoke = not cuda or args.tiny
    args.batch = args.batch or (4 if args.tiny else 32)
    args.steps_per_epoch = args.steps_per_epoch or (3 if args.tiny else 100)
    args.synthetic_steps = args.synthetic_steps or (3 if args.tiny else 40)
    args.workers = args.workers if args.workers is not None else max(1, (os.cpu_count() or 2) - 1)
    out = bench_path("train_stage_smoke" if smoke else "train_stage").resolve()  # (before the chdir below)
    command = " ".join(["python", "bench/train_stage.py", *(sys.argv[1:] if argv is None else argv)])
    overrides = stage_overrides(cuda, args.tiny, args.batch, args.epochs, args.workers, len(CLASSES))
    common = dict(command=command, smoke=smoke, device=torch.cuda.get_device_name(device) if cuda else "cpu",
                  model="AVSlowFast R50 8x8" + (" (tiny)" if args.tiny else ""), batch=args.batch,
                  epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, synthetic_steps=args.synthetic_steps,
                  workers=args.workers, overrides=overrides)
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        os.chdir(root)  # every params path is relative: the bench's files stay in its folder
        try:
            build_store(root, args, cuda)
            synthetic, synthetic_row = synthetic_rate(args, cuda, overrides)
            print(f"synthetic: {synthetic:.2f} clips/s", flush=True)
            report(out, "train_stage_over_synthetic", None, "ratio", GOAL_RATIO, goal_met=None,
                   synthetic_clips_per_s=round(synthetic, 2), stage_clips_per_s=None, **common)
            stage, stage_row = stage_rate(overrides, timeout=600)
        finally:
            os.chdir(cwd)
    ratio = stage / synthetic
    full = cuda and not args.tiny
    report(out, "train_stage_over_synthetic", ratio, "ratio", GOAL_RATIO,
           goal_met=(ratio >= GOAL_RATIO and stage >= GOAL_CLIPS_PER_S) if full else None,
           stage_clips_per_s=round(stage, 2), synthetic_clips_per_s=round(synthetic, 2),
           goal_clips_per_s=GOAL_CLIPS_PER_S if full else None,
           stage_data_wait_fraction=round(stage_row.get("data_wait_fraction", 0.0), 4),
           stage_epoch_seconds=round(stage_row["epoch_seconds"], 2),
           synthetic_epoch_seconds=round(synthetic_row["epoch_seconds"], 2), **common)
    print(f"stage {stage:.2f} clips/s, synthetic {synthetic:.2f} clips/s, ratio {ratio:.3f} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
