"""Stage ``train``: the store in, checkpoints, curves, a metrics summary and a ledger out.

    params ──checks, the store against them (pipeline.store_check)──> one submitit job of
    nodes x tasks_per_node tasks (run_job), the run's claim on train.out_dir with it
        each task: one torch.distributed rank (gloo on CPU, NCCL on GPU) on its own device
            ClipDataset(train split) ──Trainer (avsf.train.engine)──> checkpoints in train.out_dir
            rank 0: DVCLive curves (train.live_dir), train.metrics, train.ledger
        SIGTERM, SIGUSR1, SIGUSR2 (preemption, SLURM's pre-timeout signal): every rank stops at
        the next step, rank 0 checkpoints that position, the job is requeued and resumes
        from it (TrainJob.checkpoint)

Which run (pipeline.runs.training_run): ``--member m`` on Kinetics (train@m), ``--dataset d
--member m`` fine-tuned (finetune@d-m), ``--pretext s`` (pretrain@s); where it writes:
pipeline.layout (checkpoints, summary.json and ledger.csv in ``data/<d>/train/<m>``; curves
and the summary DVC reads in ``reports/<d>/train/<m>``).

A run depends on its settings and its store; their fingerprint is in every checkpoint.
A rerun resumes from ``last.pyth`` (or a newer checkpoint that a kill left unlinked:
checkpoint.resume_point) when the fingerprint matches (a killed stage, a requeued job), and
starts afresh when it does not (``dvc exp run -S train.epochs=...``); a finished
run (``final.pyth`` with the same fingerprint) is not trained again. A job that is not its
run's owner (pipeline.launch.RunClaim: a requeue that outlived its run, a duplicate, a late
start) touches nothing in train.out_dir and exits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Mapping, TypeVar

import submitit
import torch
import torch.distributed as dist
import yaml

from avsf.data.clip_dataset import ClipDataset, ClipSampling
from avsf.data.ledger import Failure, count_by_reason, read_ledger, write_ledger
from avsf.data.store import CLASSES_NAME, INDEX_NAME, STATS_NAME, read_index, read_meta
from avsf.io.atomic import remove_stale_temporaries, write_json
from avsf.io.digest import file_digest, tree_digest
from avsf.io.machine import machine_description
from avsf.models import ModelConfig
from avsf.models.config import WITH_FAST
from avsf.models.checkpoint import load_pyslowfast_checkpoint, read_checkpoint, trained_temporal_sampling
from avsf.models.flops import inference_params
from avsf.train import checkpoint as ckpt
from avsf.train.engine import RunSuperseded, Trainer, TrainResult, TrainSettings
from avsf.train.recipe import LRSchedule, steps_to_epochs
from avsf.train.sampler import EpochSampler
from pipeline.cli import configure_logging
from pipeline.launch import Requeue, RunClaim, StageFailed, job_env, run_job, set_job_threads, slurm_job_state
from pipeline.layout import RUN_SUMMARY, Layout
from pipeline.live import LiveLogger, rebuild_summary
from pipeline.models import config_from_params
from pipeline.params import DatasetParams, ModelParams, Params, ParamsError
from pipeline.runs import TrainRun, target_runs, training_run
from pipeline.store_check import StoreRecord, check_store, read_store

log = logging.getLogger("avsf.train")
T = TypeVar("T")

STAGE = "train"
# The code that computes a trained run's result (the network, the loader, the dataset's labels,
# heads and losses, the loop, the job around them): its digest enters the run's fingerprint, so
# that a change of it, for which DVC reruns the stage, also retrains instead of reusing the old
# code's final.pyth or last.pyth. Orchestration (runs, recipes, params, launch) is left out, as is
# the demo world's renderer: what they decide is in the resolved params and the store the
# fingerprint holds. dvc.yaml's train@/finetune@/pretrain@ deps include these (a test).
TRAIN_CODE = ("pipeline/train.py", "pipeline/models.py", "pipeline/datasets", "avsf/train", "avsf/models", "avsf/data",
              "avsf/io")
NOT_TRAIN_CODE = ("avsf/data/demo",)
REPO = Path(__file__).resolve().parents[1]
# Params that change how a run is watched, stored or tested later, not what it computes.
NOT_IN_FINGERPRINT = {
    "train": {"workers", "persistent_workers", "log_every", "checkpoint_every", "keep_checkpoints", "signal_delay_s",
              "max_requeues", "device", "precision", "init_checkpoint"},  # (the last three enter resolved, and as the file's digest)
    "dataset": {"max_open_shards", "test_clips", "test_crops"},  # validation takes one centre view
}


def clip_sampling(d: DatasetParams, m: ModelParams, weights: Mapping | None = None) -> ClipSampling:
    """How the dataset cuts clips for the params' model: T x tau, and alpha_F when the model
    has a Fast pathway (1 otherwise: Slow frames only). ``dataset.temporal_sampling: auto``
    follows ``weights`` (the checkpoint a run starts from, or the one evaluated): PySlowFast's
    picks for an official checkpoint, the picks one of ours was trained on, strided without."""
    alpha_f, _ = m.ratios()
    alpha = alpha_f if m.arch in WITH_FAST else 1
    temporal = d.temporal_sampling
    if temporal == "auto":
        temporal = trained_temporal_sampling(weights) if weights is not None else "strided"
    return ClipSampling(num_frames=m.frames, stride=m.stride, alpha=alpha, train_scale=tuple(d.train_scale),
                        train_crop=d.train_crop, flip=d.flip, test_scale=d.test_scale, test_crop=d.test_crop,
                        test_clips=d.test_clips, test_crops=d.test_crops, spec_frames=d.spec_frames,
                        hard_negative_min_shift_s=d.hard_negative_min_shift_s, temporal_sampling=temporal)


def data_record(run: TrainRun, classes: list[str] | dict[str, list[str]], store: StoreRecord,
                sampling: ClipSampling | None = None) -> dict[str, Any]:
    """How the run's inputs were made, saved in every checkpoint (``data``): what it takes to
    decode, sample and normalise a new video exactly as the store and the test views did
    (``avsf.predict``), and the class names the outputs mean. The decode and log-mel
    settings and the log-mel statistics are the store's own (:mod:`pipeline.store_check`);
    ``sampling``: the run's, its temporal sampling resolved (default: the params' without
    initial weights)."""
    p = run.params
    return {"classes": list(classes), **store.data_record(p.decode.jpeg_quality),
            "sampling": asdict(sampling or clip_sampling(p.dataset, p.model))}


def train_store(run: TrainRun) -> StoreRecord:
    """The store the run trains on, read and checked against its params (exit 2 on a mismatch)."""
    frames_dir, logmel_dir = store_dirs(run)
    logmel = logmel_dir if config_from_params(run.params.model).audio is not None else None
    try:
        entries = read_index(frames_dir / INDEX_NAME)
    except (OSError, ValueError) as exc:
        raise StageFailed(f"train: cannot read the frame store {frames_dir}: {exc}") from None
    store = read_store(frames_dir, logmel, entries)
    ds = run.dataset
    params = run.params.model_copy(update={"decode": ds.decode_settings(run.params.decode)})
    check_store(params, store, frames_dir, logmel, (f"datasets.{ds.name}.train_split", ds.stats_split))
    return store


def store_identity(frames_dir: Path, logmel_dir: Path | None) -> str:
    """A digest of the store a run trains on: its index, classes, statistics and shard
    fingerprints (each shard's fingerprint covers its own inputs and settings)."""
    digest = hashlib.sha256()
    for path in (frames_dir / INDEX_NAME, frames_dir / CLASSES_NAME, *([logmel_dir / STATS_NAME] if logmel_dir else [])):
        digest.update(path.read_bytes())
    for directory in (frames_dir, logmel_dir):
        if directory is not None:
            for shard in sorted(directory.glob("shard-*.h5")):
                digest.update(f"{shard.name}:{(read_meta(shard) or {}).get('fingerprint')};".encode())
    return digest.hexdigest()[:16]


def train_dataset(run: TrainRun, sampling: ClipSampling, sync_negatives: bool = False) -> ClipDataset:
    """The run's training samples (its dataset's train split in the store)."""
    frames, logmel_dir = store_dirs(run)
    uses_audio = config_from_params(run.params.model).audio is not None
    return ClipDataset(frames, logmel_dir if uses_audio else None, run.dataset.store_split(run.train_split), "train",
                       sampling, sync_negatives=sync_negatives, labels=run.dataset.label_source(run.train_split),
                       max_open_shards=run.params.dataset.max_open_shards,
                       rotation=run.params.train.objective == "rotation")


def with_length(run: TrainRun, train_clips: int) -> TrainRun:
    """The run with its length in epochs for ``train_clips`` training samples (a length in
    iterations, the papers' unit off Kinetics, becomes epochs here)."""
    train = run.params.train.length(train_clips)
    return replace(run, params=run.params.model_copy(update={"train": train}))


def recipe_line(run: TrainRun, train_clips: int) -> str:
    """The effective recipe, as a training stage's first log line: batch (global, per rank),
    the learning rate after linear scaling, warm-up, length in iterations and epochs."""
    t = run.params.train
    ranks = run.params.launch.world_size(STAGE)
    scale = t.batch_size / t.reference_batch
    steps_per_epoch = EpochSampler(max(1, train_clips), t.batch_size // ranks, world_size=ranks,
                                   drop_last=t.drop_last).batches_per_epoch
    warmup_start = t.warmup_start_lr * (1.0 if t.warmup_start_absolute else scale)
    length = (f"{t.iterations} iterations at {t.reference_batch} (the recipe's unit) = " if t.iterations else "")
    source = f"recipe {run.recipe.name}" if run.recipe else "params (no recipe)"
    return (f"train: {run.stage}{f' ({run.target})' if run.target else ''}, {source}: global batch {t.batch_size} "
            f"({t.batch_size // ranks} per rank x {ranks}), lr {t.base_lr * scale:.4g} ({t.base_lr:g} at "
            f"{t.reference_batch}, scaled x{scale:.4g}) {t.lr_policy}"
            f"{f' steps at {t.lr_steps}' if t.lr_policy == 'steps' else ''}, warm-up {t.warmup_epochs:.3g} epochs from "
            f"{warmup_start:.3g}, {length}{t.epochs} epochs of {train_clips} clips = {t.epochs * steps_per_epoch} "
            f"iterations at {t.batch_size}, weight decay {t.weight_decay:g}, from "
            f"{t.init_checkpoint or 'scratch'}{_start_warning(run)}")


def _start_warning(run: TrainRun) -> str:
    """Where the run starts otherwise than its recipe says (a 16x8 or NL Kinetics recipe from
    its shorter or NL-free counterpart's weights: SlowFast Sec. 4)."""
    r, t = run.recipe, run.params.train
    if r is None or r.starts_from is None or t.init_checkpoint:
        return ""
    return f" (NOT as recipe {r.name}: it starts from {r.starts_from}'s weights; set train.init_checkpoint)"


def check_recipe_store(run: TrainRun, store: StoreRecord) -> None:
    """A recipe is made for its dataset at full size: refuse a store decoded too small for it
    (64-pixel frames under 224 crops; the classes are checked for every run)."""
    r, d = run.recipe, run.params.dataset
    if r is None:
        return
    frames_dir = store_dirs(run)[0]
    short_side = store.decode.get("short_side")
    smallest = min(d.train_scale)
    if short_side is not None and short_side < smallest:
        raise ParamsError(f"{run.key('dataset.train_scale')}: recipe {r.name} samples frames at a short side of "
                          f"{d.train_scale} for {d.train_crop}-pixel crops, but the store {frames_dir} was decoded at "
                          f"{short_side} (decode.short_side): decode at {smallest} or more, or train without the recipe")


def store_dirs(run: TrainRun) -> tuple[Path, Path]:
    """(frame store, log-mel store) of the run's dataset."""
    layout = Layout.of(run.params.layout)
    return layout.frames(run.dataset.name), layout.logmel(run.dataset.name)


def resolve_device(params: Params, stage: str = STAGE) -> tuple[str, str]:
    """(device type, precision) of ``stage``'s job, from params alone (the submitting machine
    may have no GPU): CUDA when train.device says so, or when it is auto and the stage's
    jobs ask for GPUs; bf16 autocast on CUDA and fp32 on the CPU unless train.precision says
    otherwise."""
    t = params.train
    cuda = t.device == "cuda" or (t.device == "auto" and params.launch.resources_for(stage).gpus_per_node > 0)
    precision = t.precision if t.precision != "auto" else ("bf16" if cuda else "fp32")
    return ("cuda" if cuda else "cpu"), precision


def run_fingerprint(run: TrainRun, store: str) -> str:
    """What the run's result depends on: the model, the sampling, the recipe, the splits,
    the ranks, the device and precision (on the CPU, the math libraries' pinned instruction
    set), the initial weights, the store, the dataset's annotations (and which of EPIC's
    targets the model learns), and the code (TRAIN_CODE)."""
    p, t = run.params, run.params.train
    init = file_digest(t.init_checkpoint) if t.init_checkpoint else None
    parts = {
        "model": p.model.model_dump(), "dataset": p.dataset.model_dump(exclude=NOT_IN_FINGERPRINT["dataset"]),
        "train": t.model_dump(exclude=NOT_IN_FINGERPRINT["train"]), "splits": [run.train_split, run.val_split],
        "ranks": p.launch.world_size(STAGE), "device": resolve_device(p), "init_checkpoint": init, "store": store,
        "cpu_isa": p.launch.cpu_isa if resolve_device(p)[0] == "cpu" else None,  # (the float results follow it)
        "annotations": {"dataset": run.dataset.name, "target": run.target, "files": run.dataset.digest()},
        "code": tree_digest(TRAIN_CODE, REPO, exclude=NOT_TRAIN_CODE),
    }
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_train(params: Params, dataset: str | None = None, member: str | None = None,
              pretext: str | None = None, recipe: str | None = None) -> None:
    """Train a model (the papers' recipe; see the train section of params.yaml) on a dataset's
    store: ``--member m`` on Kinetics, ``--dataset d --member m`` fine-tuned from m's Kinetics
    run with datasets.d's changes, ``--pretext s`` self-supervised on Kinetics without labels.
    Validates on the dataset's test split every train.val_every epochs (one centre clip).

    Runs as one job of launch nodes x tasks_per_node tasks (one torch.distributed rank each,
    gloo on CPU, NCCL on GPU; per-stage settings under launch.stage_resources.train and
    launch.stage_slurm.train). Writes PySlowFast-format checkpoints (checkpoint_epoch_NNNNN.pyth,
    last.pyth, and final.pyth after precise BN), summary.json and ledger.csv (samples that
    failed to load) to data/<dataset>/train/<name>, and DVCLive curves and the summary to
    reports/<dataset>/train/<name>. A killed or preempted run resumes exactly from its last
    checkpoint; a rerun while its job still runs re-attaches to it; Ctrl-C cancels the job.
    """
    run = training_run(params, dataset, member, pretext, recipe)
    ds, t = run.dataset, run.params.train
    frames_dir = store_dirs(run)[0]
    try:
        classes = json.loads((frames_dir / CLASSES_NAME).read_text())
        entries = read_index(frames_dir / INDEX_NAME)
    except (OSError, ValueError) as exc:
        raise StageFailed(f"train: cannot read the frame store {frames_dir}: {exc}") from None
    m = run.params.model
    if ds.class_names() is None and t.objective == "labels" and m.head == "classification" \
            and m.num_classes != len(classes):
        if run.recipe is not None:  # a params error: the recipe does not fit this store
            raise ParamsError(f"{run.key('model.num_classes')}: recipe {run.recipe.name} is for {m.num_classes} "
                              f"classes ({run.recipe.runs_on}), the store {frames_dir} has {len(classes)}: point "
                              f"datasets.{ds.name} at the real dataset, or train without the recipe")
        raise StageFailed(f"train: {run.key('model.num_classes')} is {m.num_classes} but the store has "
                          f"{len(classes)} classes ({frames_dir / CLASSES_NAME}); set model.num_classes={len(classes)}")
    store_split = ds.store_split(run.train_split)
    if not any(e.split == store_split for e in entries):
        raise StageFailed(f"train: the store has no clip in split {store_split!r}")
    if t.init_checkpoint and not Path(t.init_checkpoint).is_file():
        hint = f" (stage train@{member}, the member's Kinetics run, writes it)" if run.replace_head else ""
        raise StageFailed(f"train: {run.key('train.init_checkpoint')}: no such file: {t.init_checkpoint}{hint}")
    if run.recipe is not None:
        check_recipe_store(run, read_store(frames_dir, None, entries))
    store = train_store(run)
    runs = target_runs(run)
    if runs == [run]:
        _train_one(run, store)
        return
    # EPIC's separate verb and noun models, one after the other, each in <out_dir>/<target>
    summaries, ledgers = {}, []
    for target_run in runs:
        summaries[target_run.target] = _train_one(target_run, store)
        ledgers += read_ledger_rows(target_run.paths.ledger)
    write_json(run.paths.summary, summaries)
    write_ledger(run.paths.ledger, ledgers)


def read_ledger_rows(path: Path) -> list[Failure]:
    return read_ledger(path) if path.is_file() else []


def _train_one(run: TrainRun, store: StoreRecord | None = None) -> dict[str, Any]:
    frames_dir, logmel_dir = store_dirs(run)
    uses_audio = config_from_params(run.params.model).audio is not None
    store = store or train_store(run)
    train_clips = len(train_dataset(run, clip_sampling(run.params.dataset, run.params.model)))
    run = with_length(run, train_clips)
    log.info(recipe_line(run, train_clips))
    fingerprint = run_fingerprint(run, store_identity(frames_dir, logmel_dir if uses_audio else None))
    final = run.paths.out_dir / ckpt.FINAL
    if _fingerprint_of(final) == fingerprint and (run.paths.out_dir / RUN_SUMMARY).is_file():
        # (DVC reran the stage for a change that is not this run's, e.g. another run's recipe:
        # no job is submitted to find that out)
        log.info("train: %s is already this run's result: nothing to train", final)
        removed = remove_stale_temporaries(run.paths.out_dir)  # of a write that was killed, as the job would
        if removed:
            log.info("train: removed %d temporary file(s) of a killed write from %s", removed, run.paths.out_dir)
        return TrainJob(run, fingerprint, store)._finished()
    last = ckpt.resume_point(run.paths.out_dir)
    if last is not None:
        resumes = _fingerprint_of(last) == fingerprint
        log.info("train: %s %s", last, "is this run's: it resumes from there" if resumes else
                 "was written with other settings or code: the run starts afresh")
    started = time.monotonic()
    t = run.params.train
    attach = Path(run.params.launch.log_dir) / STAGE / "running.json"
    summary = run_job(STAGE, TrainJob(run, fingerprint, store), run.params.launch, attach, fingerprint,
                      Requeue(t.signal_delay_s, t.max_requeues), with_claim=True)
    if summary.get("superseded"):  # another run of the stage, started meanwhile, owns the outputs
        raise StageFailed(f"train: another run of the stage took {run.paths.out_dir} over while this one's job ran "
                          f"(the owner now: {summary['superseded']}, {attach}); this run stopped and wrote nothing")
    final = summary.get("final", {})
    shown = ", ".join(f"{k} {v:.3f}" for k, v in final.items() if k.endswith(("top1", "top5", "precision"))) or "-"
    log.info("train: %s%s, %d epochs (%d steps) on %d rank(s): val %s; %d failed loads of %d clips; "
             "%.1f s in this stage; checkpoints in %s", summary["model"], f" ({run.target})" if run.target else "",
             summary["epochs"], summary["steps"], summary["ranks"], shown, summary["load_failures"],
             summary["failed_clips"], time.monotonic() - started, run.paths.out_dir)
    return summary


class TrainJob(submitit.helpers.Checkpointable):
    """The job's function: every task runs it as one rank, given its run's claim on the
    outputs (None: in-process, the owner). On a stop signal (SIGTERM, SIGUSR1, SIGUSR2:
    preemption, SLURM's pre-timeout signal) the ranks stop together at the next step, rank 0
    saves that exact position, and the job is requeued (by submitit, or by SLURM itself
    when it is already ending the job), which resumes from it. A job that is not its run's
    owner writes nothing and returns ``{"superseded": <who owns the run now>}``."""

    def __init__(self, run: TrainRun, fingerprint: str, store: StoreRecord | None = None):
        self.run, self.fingerprint = run, fingerprint
        self.store = store  # None: read (and checked) by the job

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # Called by submitit's signal handler, once the loop has written the checkpoint;
        # the requeued job gets the same arguments (the run's claim).
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def __call__(self, claim: RunClaim | None = None) -> dict[str, Any]:
        stop = _StopOnSignal()  # first: a signal during the set-up stops the first step
        configure_logging()  # the job is a fresh process: its log lines go to the job's log
        run, p = self.run, self.run.params
        device_type = resolve_device(p)[0]
        rank, world_size, local_rank = _init_distributed(p.launch.world_size(STAGE), device_type)
        if device_type == "cuda" and torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or max(1, (os.cpu_count() or 1) // world_size)
        set_job_threads(cpus, reserved=p.train.workers)  # the loader's workers need cores too
        owns_run = claim.held if claim is not None else (lambda: True)
        try:
            out_dir = run.paths.out_dir
            if not _rank0_says(owns_run() if rank == 0 else True):
                return _superseded(claim, out_dir)
            if rank == 0:
                removed = remove_stale_temporaries(out_dir)  # of a write that was killed; never checkpoints
                if removed:
                    log.info("train: removed %d temporary file(s) of a killed write from %s", removed, out_dir)
            final = out_dir / ckpt.FINAL
            if _fingerprint_of(final) == self.fingerprint and (out_dir / RUN_SUMMARY).is_file():
                # (DVC removes the run's summary and DVCLive's before it reruns the stage: they
                # are written again from the copy beside final.pyth and from the curves)
                log.info("train: %s is already this run's result: nothing to train", final)
                return self._finished() if rank == 0 else {}
            trainer = self._trainer(rank, world_size, local_rank, stop, owns_run)
            resumed = trainer.resume(_from_rank0(ckpt.resume_point(out_dir) if rank == 0 else None))
            if dist.is_initialized():  # every rank has read the checkpoint before rank 0 may clear it
                dist.barrier()
            # Rank 0 writes only while it owns the run; otherwise the first step stops every rank.
            if not resumed and rank == 0 and owns_run():
                _clear_checkpoints(out_dir)
            logger = None
            if rank == 0 and owns_run():
                logger = LiveLogger(run.paths.live_dir, (trainer.global_step, trainer.start_epoch) if resumed else None,
                                    prefix=run.live_prefix, machine=machine_description(trainer.device))
            try:
                result = trainer.run(logger)
            except RunSuperseded:
                return _superseded(claim, out_dir)
            except Exception:
                if rank == 0 and owns_run():  # what failed to load so far, for the error's "see the train ledger"
                    write_ledger(run.paths.ledger, ledger_rows(trainer.failures))
                raise
            if result.preempted:
                stop.requeue()  # rank 0 hands over to submitit (or SLURM), the job is requeued, it exits
                return {"preempted": True}
            if rank != 0:
                return {}
            logger.close()
            if not owns_run():
                return _superseded(claim, out_dir)
            return self._write_outputs(trainer, result)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()

    def _trainer(self, rank: int, world_size: int, local_rank: int, stop: "_StopOnSignal",
                 owns_run=lambda: True) -> Trainer:
        run, p, t = self.run, self.run.params, self.run.params.train
        ds = run.dataset
        device_type, precision = resolve_device(p)
        cuda = device_type == "cuda"
        if cuda and not torch.cuda.is_available():
            raise RuntimeError("train: the run is on CUDA (train.device, launch gpus_per_node) but this job sees no GPU")
        device = f"cuda:{local_rank}" if cuda else "cpu"
        if cuda:
            torch.cuda.set_device(local_rank)
        cfg = config_from_params(p.model, head=ds.head(p.model, run.target, t.objective))
        init = read_checkpoint(t.init_checkpoint) if t.init_checkpoint else None
        sampling = clip_sampling(p.dataset, p.model, weights=init)
        frames, logmel_dir = store_dirs(run)
        logmel = logmel_dir if cfg.audio is not None else None
        shards = p.dataset.max_open_shards
        rotation = t.objective == "rotation"
        train_set = train_dataset(run, sampling, sync_negatives=cfg.has_sync and t.sync_weight > 0)
        val_set = ClipDataset(frames, logmel, ds.store_split(run.val_split), "test", ds.validation_sampling(sampling),
                              labels=ds.label_source(run.val_split), max_open_shards=shards, rotation=rotation)
        global_batch = t.batch_size
        schedule = LRSchedule(base_lr=t.base_lr, reference_batch=t.reference_batch, global_batch=global_batch,
                              epochs=t.epochs, policy=t.lr_policy, warmup_epochs=t.warmup_epochs,
                              warmup_start_lr=t.warmup_start_lr, warmup_start_absolute=t.warmup_start_absolute,
                              cosine_end_lr=t.cosine_end_lr,
                              steps=steps_to_epochs(t.lr_steps, t.epochs), gamma=t.lr_gamma)
        settings = TrainSettings(
            epochs=t.epochs, batch_size=global_batch // world_size, schedule=schedule, momentum=t.momentum,
            nesterov=t.nesterov, weight_decay=t.weight_decay, bn_weight_decay=t.bn_weight_decay,
            sync_weight=t.sync_weight, hard_negatives_from=t.hard_negatives_from,
            hard_negative_fraction=t.hard_negative_fraction, precise_bn_batches=t.precise_bn_batches,
            val_every=t.val_every, checkpoint_every=t.checkpoint_every, keep_checkpoints=t.keep_checkpoints,
            max_failed_fraction=t.max_failed_fraction, drop_last=t.drop_last, seed=t.seed, workers=t.workers,
            persistent_workers=t.persistent_workers, log_every=t.log_every, device=device, precision=precision,
            channels_last=True,  # channels_last_3d: 2x faster on the CPU too (the Fast stem)
            compile=t.compile, freeze_bn=t.freeze_bn, fingerprint=self.fingerprint,
            cfg_text=yaml.safe_dump({"model": p.model.model_dump(), "dataset": p.dataset.model_dump(),
                                     "train": t.model_dump()}, sort_keys=False),
            data_record={**data_record(run, ds.class_names() or train_set.classes, self.store or train_store(run),
                                       sampling),
                         **ds.record(), "target": run.target, "objective": t.objective},
        )
        init_state = None
        if init is not None:
            # A fine-tuning dataset's head is always new: its classes are not Kinetics'
            init_state = _initial_weights(cfg, init, t.init_checkpoint, t.seed, replace_head=run.replace_head)
        return Trainer(cfg, settings, train_set, val_set if len(val_set) else None, str(run.paths.out_dir),
                       should_stop=stop.requested, init_state=init_state, task=ds.task(run.target, t.objective),
                       owns_run=owns_run)

    def _write_outputs(self, trainer: Trainer, result: TrainResult) -> dict[str, Any]:
        run, t = self.run, self.run.params.train
        failures = ledger_rows(result.load_failures)
        last = result.history[-1] if result.history else {}
        vals = [row["val_top1"] for row in result.history if "val_top1" in row]
        summary = {
            "model": trainer.cfg.name,
            "params_m": round(inference_params(trainer.model) / 1e6, 3),
            "epochs": result.epochs_done,
            "steps": result.global_step,
            "ranks": trainer.world_size,
            "batch_size": t.batch_size,
            "final": result.final,
            "best_val_top1": max(vals) if vals else None,
            "last_epoch": last,
            "clips_per_s": sum(r["clips_per_s"] for r in result.history) / max(len(result.history), 1),
            "load_failures": len(result.load_failures),  # every failed load, a clip failing each epoch included
            "failed_clips": len(failures),
            "failed_by_reason": count_by_reason(failures),
            "precise_bn_batches": result.precise_bn_batches,
            "resumed_from": result.resumed_from,
            "fingerprint": self.fingerprint,
            "machine": machine_description(trainer.device),  # (a string: `dvc metrics diff` leaves it out)
        }
        write_ledger(run.paths.ledger, failures)
        write_json(run.paths.out_dir / RUN_SUMMARY, summary)
        if run.target is None:  # (EPIC's separate models: run_train writes both models' summary)
            write_json(run.paths.summary, summary)
        return summary

    def _finished(self) -> dict[str, Any]:
        """A finished run's summary, rewritten from its copy beside final.pyth, and DVCLive's
        summary from its curves."""
        run = self.run
        summary = json.loads((run.paths.out_dir / RUN_SUMMARY).read_text())
        if run.target is None:
            write_json(run.paths.summary, summary)
        rebuild_summary(run.paths.live_dir, summary.get("machine"))
        return summary


def _init_distributed(expected: int, device_type: str) -> tuple[int, int, int]:
    """(rank, world size, local rank) from submitit's environment; the process group is
    set up (env://; NCCL for a CUDA run, gloo on the CPU) when the job has several tasks."""
    tasks, rank, local_rank = job_env()
    if tasks != expected:
        raise RuntimeError(f"train: the job has {tasks} tasks but params ask for {expected} ranks")
    if tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", init_method="env://")
    return rank, tasks, local_rank


def _rank0_says(value: bool) -> bool:
    """Rank 0's ``value`` on every rank, so that all of them go on or stop together."""
    return bool(_from_rank0(value))


def _from_rank0(value: T) -> T:
    """Rank 0's ``value`` on every rank (e.g. the one checkpoint every rank resumes from)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _superseded(claim: RunClaim | None, out_dir: Path) -> dict[str, Any]:
    """What a job that is not (any more) its run's owner returns, having written nothing."""
    holder = (claim.holder() if claim is not None else None) or {}
    owner = (f"job {holder['job_id']}" if holder.get("job_id") else "a run being submitted") if holder else \
        "none, its run is over"
    log.warning("train: this job is not the owner of %s (its run's claim: %s; the owner now: %s): it leaves the "
                "outputs alone and exits", out_dir, claim.token if claim else "-", owner)
    return {"superseded": owner}


# What stops a run at the next step, with its position saved and the job requeued: SLURM's
# pre-timeout signal (submitit asks for USR2), a preemption's or a requeue's SIGTERM, USR1.
STOP_SIGNALS = ("TERM", "USR1", "USR2")


class _StopOnSignal:
    """Turns a stop signal (STOP_SIGNALS, and submitit's preemption signal) into a stop
    request the loop sees at its next step boundary; :meth:`requeue` then hands over to
    submitit's own handler (checkpoint, requeue, exit), unless SLURM is already ending the
    job (a requeue, a preemption, scancel: what SIGTERM usually means there), which then
    requeues it or not as it decided. Installed only inside a submitit job."""

    def __init__(self):
        name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
        self.signum = getattr(signal, f"SIG{name}", signal.SIGUSR2)
        self._submitit = signal.getsignal(self.signum)
        self._requested: str | None = None
        if callable(self._submitit):
            for signum in {self.signum, *(getattr(signal, f"SIG{n}") for n in STOP_SIGNALS)}:
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self._requested = signal.Signals(signum).name
        log.warning("train: stop signal received (%s): checkpointing at the next step", self._requested)

    def requested(self) -> bool:
        return self._requested is not None

    def requeue(self) -> None:
        if not callable(self._submitit):
            return
        slurm_job = os.environ.get("SLURM_JOB_ID") if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" else None
        state = slurm_job_state(slurm_job) if slurm_job else None
        if state is not None and state != "RUNNING":
            # A requeue of our own would fail (already requeued) or undo a scancel.
            log.warning("train: SLURM is ending job %s (%s, after %s): it requeues the job or not, as it decided",
                        slurm_job, state, self._requested)
            if job_env()[1] == 0:
                sys.exit(-1)  # no result: the stage waits for the requeued job (or learns of the cancel)
            return
        self._submitit(self.signum, None)


def ledger_rows(failures: list[dict[str, str]]) -> list[Failure]:
    """One ledger row per sample that failed to load (the first time, with its phase)."""
    rows: dict[str, Failure] = {}
    for f in failures:
        rows.setdefault(f["id"], Failure(f["id"], STAGE, f["reason"], f"{f.get('phase', 'train')}: {f['detail']}"))
    return list(rows.values())


def _fingerprint_of(path: Path) -> str | None:
    record = ckpt.read_record(path)
    return record["fingerprint"] if record else None


def _clear_checkpoints(out_dir: Path) -> None:
    """Remove the checkpoints of another run's settings before this run writes its own."""
    for old in [*out_dir.glob("checkpoint_epoch_*.pyth"), out_dir / ckpt.LAST, out_dir / ckpt.FINAL]:
        old.unlink(missing_ok=True)


def _initial_weights(cfg: ModelConfig, checkpoint: Mapping, path: str, seed: int, replace_head: bool = False
                     ) -> dict[str, torch.Tensor]:
    """The weights of ``checkpoint`` (PySlowFast's or ours, as read from ``path``) mapped onto a fresh ``cfg``
    model (its new tensors initialised from ``seed``: a rerun starts from the same weights);
    with ``replace_head`` the checkpoint's head is left out whatever its shape."""
    from avsf.models import build_model

    torch.manual_seed(seed)
    model = build_model(cfg)
    report = load_pyslowfast_checkpoint(model, checkpoint, skip_prefixes=("head.",) if replace_head else None)
    log.info("train: initial weights from %s: %s", path, report.summary())
    return model.state_dict()
