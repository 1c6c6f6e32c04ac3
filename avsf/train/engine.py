"""The training loop every stage trains with: Kinetics pretraining here, fine-tuning and
self-supervised pretraining as additions.

One epoch, on every rank at once (torch.distributed, one rank per device)::

    EpochSampler (this rank's keys) ──DataLoader workers──> batch ──to device, normalise──>
        model(inputs, drop_audio, negative_audio[, boxes])  (through DDP: every gradient all-reduced)
        ──> task loss (+ sync weight x AV-sync loss) ──> backward ──> loss and gradients
        finite on every rank? ──> SGD step
    every val_every epochs: one centre clip per val video ──> top-1 / top-5 / loss
    every checkpoint_every epochs (rank 0): checkpoint_epoch_NNNNN.pyth, last.pyth
    after the last epoch: precise BN ──> final validation ──> final.pyth

Randomness is a function of (seed, epoch, step): the sampler's per-item seeds, DropPathway's
draw (shared by all ranks), the dropout seed per rank. So a run resumed from any checkpoint,
in a new process, computes what the uninterrupted run would have, bit for bit on CPU.

A stop request (preemption: ``should_stop``) is agreed on by all ranks at the next step
boundary (or before precise BN, after the last epoch); rank 0 then checkpoints the exact
position (epoch and step) and the loop returns ``preempted``. A non-finite loss or gradient
on any rank stops every rank before the weights change, with :class:`TrainingDiverged`
naming the epoch and step; the last checkpoint stays as it was. A run that is no longer
the owner of ``out_dir`` (``owns_run``, asked on rank 0: another run of the stage took the
directory over) writes nothing more and stops every rank at the next step with
:class:`RunSuperseded`.

The per-step curves are the global batch's: each step's task and sync losses are
all-reduced (weighted by the samples and sync pairs each rank's mean is over) in the one
collective that also carries the stop flags.
"""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from avsf.data.clip_dataset import ClipDataset, collate_clips, normalize_video
from avsf.models import ModelConfig, build_model, to_channels_last
from avsf.models.config import AudioPathwayConfig
from avsf.models.freeze import freeze_batch_norm
from avsf.models.serialize import config_to_dict
from avsf.models.sync import sync_loss, sync_valid
from avsf.train import checkpoint as ckpt
from avsf.train.precise_bn import update_bn_stats
from avsf.train.recipe import LRSchedule, build_optimizer, hard_negative_fraction, set_lr
from avsf.train.sampler import EpochSampler
from avsf.train.tasks import Classification, Task

log = logging.getLogger("avsf.train")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class TooManyLoadFailures(RuntimeError):
    """More than the allowed fraction of training samples failed to load."""


class RanksDiverged(RuntimeError):
    """The ranks' weights differ: their gradients were not all-reduced alike."""


class RunSuperseded(RuntimeError):
    """Another run took the output directory over: this one is not its owner any more."""


@dataclass(frozen=True)
class TrainSettings:
    """Everything the loop needs besides the model and the data (``pipeline.train`` builds it
    from params.yaml). ``batch_size`` is per rank; ``schedule`` is already at the global batch."""

    epochs: int
    batch_size: int
    schedule: LRSchedule
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    bn_weight_decay: float = 0.0
    sync_weight: float = 1.0
    hard_negatives_from: float = 0.5  # fraction of training after which hard negatives are mixed in
    hard_negative_fraction: float = 0.25
    precise_bn_batches: int = 200
    val_every: int = 1
    checkpoint_every: int = 1
    keep_checkpoints: int = 0  # 0: keep every epoch checkpoint
    max_failed_fraction: float = 0.01
    drop_last: bool = True  # an epoch's last incomplete batch dropped (PySlowFast) | filled by wrapping around
    seed: int = 0
    workers: int = 2
    persistent_workers: bool = False
    log_every: int = 10
    device: str = "cpu"
    precision: str = "fp32"  # or bf16 (autocast, CUDA)
    channels_last: bool = False
    compile: bool = False
    freeze_bn: bool = False  # BN statistics and affine fixed (fine-tuning, EPIC's recipe); no precise BN then
    fingerprint: str = ""  # of everything the result depends on: a checkpoint with another is not resumed
    cfg_text: str = ""  # the run's settings as YAML, for the checkpoints' ``cfg``
    data_record: dict = field(default_factory=dict)  # how the inputs were made (checkpoints' ``data``)
    progress: bool = True


class TrainLogger(Protocol):
    """Where rank 0 reports (DVCLive in the pipeline)."""

    def log_step(self, step: int, values: dict[str, float]) -> None: ...

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None: ...


class NullLogger:
    def log_step(self, step: int, values: dict[str, float]) -> None:
        pass

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        pass


@dataclass
class TrainResult:
    epochs_done: int
    global_step: int
    preempted: bool = False
    final: dict[str, float] = field(default_factory=dict)  # final validation, after precise BN
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    load_failures: list[dict[str, str]] = field(default_factory=list)  # one per failed load, phase included
    resumed_from: dict[str, int] | None = None
    precise_bn_batches: int = 0
    seconds: float = 0.0


# --------------------------------------------------------------------------- helpers


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([p % 2**32 for p in parts]).generate_state(1, np.uint32)[0])


def drop_audio_draw(seed: int, epoch: int, step: int, p: float) -> bool:
    """DropPathway's one draw for this iteration: the same on every rank."""
    return p > 0 and np.random.default_rng(_seed(seed, epoch, step, 1)).random() < p


def model_inputs(cfg: ModelConfig, batch: dict[str, Any], device: torch.device, channels_last: bool
                 ) -> list[torch.Tensor]:
    """The batch's tensors in the model's pathway order: frames normalised on the device."""
    inputs = []
    for p in cfg.pathways:
        if isinstance(p, AudioPathwayConfig):
            x = batch["audio"].to(device, non_blocking=True)
        else:
            x = normalize_video(batch[p.name].to(device, non_blocking=True))
        inputs.append(to_channels_last(x) if channels_last else x)
    return inputs


def _all_sum(values, device: torch.device) -> list[float]:
    """Element-wise sums over ranks, as Python floats (checkpoints hold no numpy scalars)."""
    if world()[1] == 1:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _gather(items: list[Any]) -> list[Any]:
    if world()[1] == 1:
        return items
    out: list[list[Any]] = [None] * world()[1]  # type: ignore[list-item]
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """Trains ``model_cfg`` on ``train_set``, validating on ``val_set`` (test mode, one clip
    and one crop per video), checkpointing into ``out_dir``; see the module docstring."""

    def __init__(self, model_cfg: ModelConfig, settings: TrainSettings, train_set: ClipDataset,
                 val_set: ClipDataset | None, out_dir: str | Path, should_stop: Callable[[], bool] = lambda: False,
                 init_state: dict[str, torch.Tensor] | None = None, task: Task | None = None,
                 owns_run: Callable[[], bool] = lambda: True):
        self.cfg, self.s = model_cfg, settings
        self.task = task or Classification()
        self.train_set, self.val_set = train_set, val_set
        self.out_dir = Path(out_dir)
        self.rank, self.world_size = world()
        self.logger: TrainLogger = NullLogger()
        self.should_stop = should_stop
        self.owns_run = owns_run  # asked on rank 0 before every step and every write
        self.device = torch.device(settings.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        self.channels_last = settings.channels_last
        torch.manual_seed(_seed(settings.seed, 0, 0, 3))  # the same initial weights on every rank
        self.model = build_model(model_cfg).to(self.device)
        if init_state is not None:
            self.model.load_state_dict(init_state)
        if settings.freeze_bn:
            freeze_batch_norm(self.model)
        if self.channels_last:
            to_channels_last(self.model)
        self.optimizer = build_optimizer(self.model, settings.schedule(0.0), settings.momentum, settings.weight_decay,
                                         settings.bn_weight_decay, settings.nesterov)
        self.uses_sync = model_cfg.has_sync and settings.sync_weight > 0
        if self.uses_sync and not train_set.sync_negatives:
            raise ValueError("the model trains AV-sync (sync weight > 0): the train set needs sync_negatives")
        self.sampler = EpochSampler(len(train_set), settings.batch_size, settings.seed, self.rank, self.world_size,
                                    drop_last=settings.drop_last)
        self.steps_per_epoch = self.sampler.batches_per_epoch
        self.start_epoch, self.start_step, self.global_step = 0, 0, 0
        self.history: list[dict[str, float]] = []
        self.failures: list[dict[str, str]] = []
        self.resumed_from: dict[str, int] | None = None
        self._partial: dict[str, Any] | None = None  # a stopped epoch's sums so far
        self._window = [0.0, 0.0, 0.0]  # the per-step curve's running sums: loss, sync loss, steps
        self.network = self._wrap()

    def _wrap(self) -> nn.Module:
        network: nn.Module = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            # Every parameter takes part in every iteration only in the authors' setting:
            # AVSlowFast with its sync task trained, audio at pool5 and DropPathway of the
            # fusion. Elsewhere some can be left out (sync heads not trained, the audio
            # pathway under the paper's DropPathway, audio laterals or res5 nothing reads),
            # and DDP must not wait for their gradients.
            fused = self.cfg.audio_fusion
            every = self.uses_sync and fused is not None and fused.pool5 and (
                self.cfg.drop_pathway == 0 or self.cfg.drop_pathway_mode == "fusion")
            unused = self.cfg.arch == "avslowfast" and not every
            network = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.cuda else None,
                                              find_unused_parameters=unused)
        if self.s.compile:
            network = torch.compile(network)
        return network

    # ------------------------------------------------------------------ state

    def state(self, next_epoch: int, next_step: int) -> dict[str, Any]:
        return {
            "epoch": next_epoch - 1,  # PySlowFast: the last completed epoch
            "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "cfg": self.s.cfg_text,
            "model_config": config_to_dict(self.cfg),
            "data": self.s.data_record,
            "avsf": {
                "version": ckpt.CHECKPOINT_VERSION,
                "fingerprint": self.s.fingerprint,
                "next_epoch": next_epoch,
                "next_step": next_step,
                "global_step": self.global_step,
                "world_size": self.world_size,
                "schedule": asdict(self.s.schedule),
                "hard_negative_fraction": self._hard_fraction(next_epoch),
                "rng": ckpt.rng_states(),
                "history": list(self.history),
                "load_failures": list(self.failures),
                "partial_epoch": self._partial,
                "step_window": list(self._window),
            },
        }

    def resume(self, path: str | Path | None) -> bool:
        """Continue from the checkpoint at ``path`` (checkpoint.resume_point's) when it was
        written by this same run (same fingerprint); returns whether it did. Rank 0 then
        finishes what a job killed inside its last checkpoint's write left undone in the
        run's folder (last.pyth's link, the other mid-epoch points, the pruning)."""
        if path is None or not Path(path).is_file():
            return False
        path = Path(path)
        state = ckpt.load_training_checkpoint(path)
        record = state["avsf"]
        if record["fingerprint"] != self.s.fingerprint:
            log.info("train: %s is from other settings (fingerprint %s, now %s): starting afresh",
                     path, record["fingerprint"], self.s.fingerprint)
            return False
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.start_epoch, self.start_step = record["next_epoch"], record["next_step"]
        self.global_step = record["global_step"]
        self.history = list(record["history"])
        self.failures = list(record["load_failures"])
        self._partial = record["partial_epoch"]
        self._window = list(record["step_window"])
        ckpt.set_rng_states(record["rng"])
        self.resumed_from = {"epoch": self.start_epoch, "step": self.start_step}
        log.info("train: resuming %s at epoch %d step %d", path, self.start_epoch, self.start_step)
        if self.rank == 0 and self.owns_run() and path.parent.resolve() == self.out_dir.resolve():
            # (_save's tail, which a kill may have cut short: even a run with no step left ends
            # with the folder an uninterrupted run leaves)
            self._make_last(path)
        return True

    def _save(self, next_epoch: int, next_step: int) -> Path | None:
        if self.rank != 0:
            return None
        if not self.owns_run():  # the next step stops every rank (RunSuperseded)
            log.warning("train: this run does not own %s any more (another run took it over, or the run was ended): "
                        "not writing its checkpoint", self.out_dir)
            return None
        if next_step == 0:
            path = self.out_dir / ckpt.epoch_checkpoint_name(next_epoch)
        else:  # mid-epoch (preempted): a resumption point only
            path = self.out_dir / ckpt.step_checkpoint_name(next_epoch, next_step)
        ckpt.save_checkpoint(path, self.state(next_epoch, next_step))
        self._make_last(path)
        return path

    def _make_last(self, path: Path) -> None:
        """``path`` becomes the point to resume from: last.pyth links it, every other mid-epoch
        point goes, and epoch checkpoints beyond train.keep_checkpoints are pruned."""
        if path.name != ckpt.LAST:
            ckpt.link_last(self.out_dir, path)
        for stale in self.out_dir.glob("checkpoint_epoch_*_step_*.pyth"):
            if ckpt.STEP_NAME.fullmatch(stale.name) and not os.path.samefile(stale, path):
                stale.unlink()
        ckpt.prune_checkpoints(self.out_dir, self.s.keep_checkpoints)

    # ------------------------------------------------------------------ the loop

    def _hard_fraction(self, epoch: int) -> float:
        return hard_negative_fraction(epoch / self.s.epochs, self.s.hard_negatives_from, self.s.hard_negative_fraction)

    def _loader(self, dataset, sampler, batch_size: int, persistent: bool) -> DataLoader:
        workers = self.s.workers
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                          persistent_workers=persistent and workers > 0, pin_memory=self.cuda,
                          collate_fn=collate_clips)

    def _autocast(self):
        if self.s.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def run(self, logger: TrainLogger | None = None) -> TrainResult:
        """Train from where :meth:`resume` left off to the end (or to a stop request);
        ``logger`` (rank 0's) gets the curves."""
        if logger is not None and self.rank == 0:
            self.logger = logger
        started = time.monotonic()
        loader = self._loader(self.train_set, self.sampler, self.s.batch_size, self.s.persistent_workers)
        for epoch in range(self.start_epoch, self.s.epochs):
            first_step = self.start_step if epoch == self.start_epoch else 0
            row, stopped_at = self._train_epoch(loader, epoch, first_step)
            if stopped_at is not None and stopped_at < self.steps_per_epoch:
                self._log_saved(self._save(epoch, stopped_at), epoch, stopped_at)
                return self._result(epoch, started, preempted=True)
            if self.val_set is not None and ((epoch + 1) % self.s.val_every == 0 or epoch + 1 == self.s.epochs):
                row.update({f"val_{k}": v for k, v in self.validate().items()})
            self.history.append(row)
            self.logger.log_epoch(epoch, self.global_step, row)
            log.info("train: epoch %d/%d: %s", epoch + 1, self.s.epochs,
                     ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
            if stopped_at is not None or (epoch + 1) % self.s.checkpoint_every == 0 or epoch + 1 == self.s.epochs:
                saved = self._save(epoch + 1, 0)
            if stopped_at is not None:  # the stop came on the epoch's last step
                self._log_saved(saved, epoch + 1, 0)
                return self._result(epoch + 1, started, preempted=True)
        if _all_sum([float(self.should_stop())], self.device)[0]:  # signalled after the last step
            return self._result(self.s.epochs, started, preempted=True)
        result = self._result(self.s.epochs, started)
        result.precise_bn_batches = self._precise_bn()
        if self.val_set is not None:
            result.final = self.validate()
        result.load_failures = list(self.failures)  # precise BN's and the final validation's too
        if self.rank == 0 and self.owns_run():
            final = self.state(self.s.epochs, 0)
            final["avsf"]["final"] = result.final
            ckpt.save_checkpoint(self.out_dir / ckpt.FINAL, final)
        result.seconds = time.monotonic() - started
        return result

    @staticmethod
    def _log_saved(path: Path | None, next_epoch: int, next_step: int) -> None:
        if path is not None:
            log.info("train: stopped on request: %s holds the position to resume from, epoch %d step %d", path,
                     next_epoch, next_step)

    def _result(self, epochs_done: int, started: float, preempted: bool = False) -> TrainResult:
        return TrainResult(epochs_done, self.global_step, preempted, history=list(self.history),
                           load_failures=list(self.failures), resumed_from=self.resumed_from,
                           seconds=time.monotonic() - started)

    def _train_epoch(self, loader: DataLoader, epoch: int, first_step: int) -> tuple[dict[str, float], int | None]:
        """One epoch from ``first_step``: (the epoch's row, None), or (the row so far, the
        step it stopped after) when the ranks agreed to stop."""
        s = self.s
        hard = self._hard_fraction(epoch)
        self.sampler.set_epoch(epoch, first_step, hard)
        self.network.train()
        # Sums over the epoch (the part done before a resume included, on rank 0 only):
        # loss, sync loss, clips, samples asked for, failed loads, then the task's counts;
        # and the steps DropPathway dropped (the same on every rank).
        sums, dropped = np.zeros(5 + len(self.task.metrics) + 1), 0
        if first_step and self._partial is not None:
            sums = np.array(self._partial["sums"]) if self.rank == 0 else sums
            dropped = self._partial["dropped"]
        self._partial = None
        failures: list[dict[str, str]] = []
        wait = 0.0
        epoch_started = tick = time.monotonic()
        bar = tqdm(total=self.steps_per_epoch, initial=first_step, desc=f"epoch {epoch + 1}/{s.epochs}",
                   unit="step", disable=not (s.progress and self.rank == 0), leave=False)
        step, stopped = first_step, False
        for batch in loader:
            wait += time.monotonic() - tick
            failures += [{**f, "phase": "train"} for f in batch["load_failures"]]
            lr = s.schedule(epoch + step / self.steps_per_epoch)
            set_lr(self.optimizer, lr)
            torch.manual_seed(_seed(s.seed, epoch, step, 2, self.rank))  # dropout, per rank
            drop = self._drop(epoch, step)
            loss, sync, logits, targets, sync_pairs = self._forward(batch, drop)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            value = float(loss.detach())
            sync_value = float(sync.detach()) if sync is not None else 0.0
            task_value = value - s.sync_weight * sync_value
            counts = self.task.counts(logits, targets)  # the last: the samples the task's loss is a mean over
            finite = math.isfinite(value) and self._gradients_finite()
            superseded = self.rank == 0 and not self.owns_run()
            flags = _all_sum([float(not finite), float(self.should_stop()), float(superseded),
                              task_value * counts[-1], counts[-1], sync_value * sync_pairs, sync_pairs], self.device)
            if flags[0]:
                raise TrainingDiverged(f"non-finite loss or gradients at epoch {epoch + 1} step {step + 1} (on "
                                       f"{int(flags[0])} of {self.world_size} ranks; this rank's loss {value}); "
                                       f"the weights were not updated and the last checkpoint "
                                       f"({self.out_dir / ckpt.LAST}) is kept")
            if flags[2]:
                raise RunSuperseded(f"this run does not own {self.out_dir} any more: stopped at epoch {epoch + 1} "
                                    f"step {step + 1} without writing anything more")
            self.optimizer.step()
            step += 1
            self.global_step += 1
            n = len(batch["index"])
            sums += [value * n, sync_value * n, n, n, batch["failed_samples"], *counts]
            dropped += drop
            if self.world_size > 1:  # the global batch's means (one rank's would be its share alone)
                task_value, sync_value = flags[3] / max(flags[4], 1), flags[5] / max(flags[6], 1)
            self._log_step(lr, task_value, sync_value, epoch + step / self.steps_per_epoch)
            seconds = max(time.monotonic() - epoch_started, 1e-9)
            bar.set_postfix(loss=f"{task_value + s.sync_weight * sync_value:.3f}", lr=f"{lr:.3g}",
                            clips_s=f"{(step - first_step) * n * self.world_size / seconds:.1f}")
            bar.update(1)
            if flags[1]:
                stopped = True
                break
            tick = time.monotonic()
        bar.close()
        self.failures += _gather(failures)
        drops = _gather([dropped])  # DropPathway is drawn alike on every rank, or the run is wrong
        if max(drops) != min(drops):
            raise RanksDiverged(f"epoch {epoch + 1}: the ranks dropped the audio on {drops} steps")
        totals = _all_sum([*sums, wait], self.device)
        if stopped and step < self.steps_per_epoch:  # resumed later: keep what the epoch summed so far
            self._partial = {"sums": totals[:-1], "dropped": dropped}
            return {}, step
        loss_sum, sync_sum, clips, requested, failed = totals[:5]
        wait = totals[-1]
        if requested and failed / requested > s.max_failed_fraction:
            raise TooManyLoadFailures(
                f"epoch {epoch + 1}: {int(failed)} of {int(requested)} training samples failed to load, each "
                f"replaced by another (more than train.max_failed_fraction = {s.max_failed_fraction}); see the "
                f"train ledger")
        seconds = time.monotonic() - epoch_started
        spread = self._weight_spread()
        if spread:
            raise RanksDiverged(f"epoch {epoch + 1}: the ranks' weights differ (checksums spread {spread:.3g})")
        row = {
            "epoch": epoch + 1,
            "loss": (loss_sum - s.sync_weight * sync_sum) / max(clips, 1),
            "sync_loss": sync_sum / max(clips, 1),
            **self.task.summarise(totals[5:-1]),
            "lr": s.schedule(epoch + 1),
            "hard_negative_fraction": hard,
            "audio_dropped": dropped / self.steps_per_epoch,  # share of steps DropPathway dropped
            "epoch_seconds": seconds,
            "clips_per_s": (step - first_step) * s.batch_size * self.world_size / seconds if seconds > 0 else 0.0,
            "data_wait_fraction": wait / self.world_size / seconds if seconds > 0 else 0.0,
            "load_failures": failed,  # samples that did not load (their replacements' failures not counted again)
            "ranks": self.world_size,
            "rank_weight_spread": spread,  # 0: every rank holds the same weights
        }
        return row, (step if stopped else None)

    def _drop(self, epoch: int, step: int) -> bool:
        return self.cfg.arch == "avslowfast" and drop_audio_draw(self.s.seed, epoch, step, self.cfg.drop_pathway)

    def _gradients_finite(self) -> bool:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return not grads or bool(torch.isfinite(torch.stack([g.detach().float().abs().sum() for g in grads]).sum()))

    def _log_step(self, lr: float, loss: float, sync: float, epoch: float) -> None:
        """The per-step curves: running means over ``log_every`` steps (across epochs)."""
        w = self._window
        w[0], w[1], w[2] = w[0] + loss, w[1] + sync, w[2] + 1
        if self.global_step % self.s.log_every == 0:
            self.logger.log_step(self.global_step, {"loss": w[0] / w[2], "sync_loss": w[1] / w[2], "lr": lr,
                                                    "epoch": epoch})
            self._window = [0.0, 0.0, 0.0]

    def _weight_spread(self) -> float:
        """Max minus min over ranks of a checksum of the weights: 0 when every rank holds
        the same model, as synchronous SGD must."""
        if self.world_size == 1:
            return 0.0
        total = sum(float(p.detach().double().abs().sum()) + float(p.detach().double().sum())
                    for p in self.model.parameters())
        sums = _gather([total])
        return max(sums) - min(sums)

    def _forward(self, batch: dict[str, Any], drop: bool):
        """(total loss, sync loss or None, logits, targets, the sync pairs the sync loss is a
        mean over) of one training batch."""
        cfg = self.cfg
        inputs = model_inputs(cfg, batch, self.device, self.channels_last)
        targets = self.task.targets(batch, self.device)
        head = self._head_inputs(batch)
        with self._autocast():
            if self.uses_sync:
                negative = batch["audio_negative"].to(self.device, non_blocking=True)
                logits, levels = self.network(inputs, drop_audio=drop, negative_audio=negative, **head)
                valid = sync_valid(inputs[cfg.audio_index], negative, batch["audible"].to(self.device),
                                   batch["negative_audible"].to(self.device))
                sync = sync_loss(levels, valid, margin=cfg.sync.margin).float()
                pairs = float(valid.sum())
            else:
                logits = (self.network(inputs, drop_audio=drop, **head) if cfg.arch == "avslowfast"
                          else self.network(inputs, **head))
                sync, pairs = None, 0.0
            task = self.task.loss(logits, targets)
        loss = task if sync is None else task + self.s.sync_weight * sync
        return loss, sync, logits, targets, pairs

    def _head_inputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """What the head takes besides the features: ``boxes`` [K, 5] for a task with boxes
        (AVA's detection head); nothing for the others."""
        boxes = getattr(self.task, "boxes", None)
        return {} if boxes is None else {"boxes": boxes(batch, self.device)}

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss and the task's metrics over the val set's items (one view each), across
        ranks; its failed loads join :attr:`failures` (phase ``val``)."""
        assert self.val_set is not None
        sampler = EpochSampler(len(self.val_set), self.s.batch_size, self.s.seed, self.rank, self.world_size,
                               shuffle=False)
        self.model.eval()
        sums = np.zeros(2 + len(self.task.metrics) + 1)  # loss, failed loads, the task's counts
        failures: list[dict[str, str]] = []
        for batch in self._loader(self.val_set, sampler, self.s.batch_size, persistent=False):
            failures += [{**f, "phase": "val"} for f in batch["load_failures"]]
            inputs = model_inputs(self.cfg, batch, self.device, self.channels_last)
            targets = self.task.targets(batch, self.device)
            with self._autocast():
                logits = self.model(inputs, **self._head_inputs(batch))
            sums += [float(self.task.loss(logits, targets, reduction="sum")), len(batch["load_failures"]),
                     *self.task.counts(logits, targets)]
        self.failures += _gather(failures)
        totals = _all_sum(sums, self.device)
        self.model.train()
        covered = totals[-1]
        return {"loss": totals[0] / max(covered, 1), **self.task.summarise(totals[2:]), "videos": covered,
                "load_failures": totals[1]}

    def _precise_bn(self) -> int:
        if self.s.precise_bn_batches <= 0 or self.s.freeze_bn:
            return 0
        sampler = EpochSampler(len(self.train_set), self.s.batch_size, _seed(self.s.seed, 4), self.rank,
                               self.world_size, drop_last=self.s.drop_last)
        loader = self._loader(self.train_set, sampler, self.s.batch_size, persistent=False)

        failures: list[dict[str, str]] = []

        def forward(batch):
            failures.extend({**f, "phase": "precise_bn"} for f in batch["load_failures"])
            inputs = model_inputs(self.cfg, batch, self.device, self.channels_last)
            head = self._head_inputs(batch)
            with self._autocast():
                if self.cfg.arch == "avslowfast":
                    self.model(inputs, drop_audio=False, **head)  # as at test time: audio fused
                else:
                    self.model(inputs, **head)

        def batches():  # as many passes over the train set as the batches need, each reshuffled
            for extra in range(10**6):
                sampler.set_epoch(self.s.epochs + extra, 0, self._hard_fraction(self.s.epochs))
                yield from loader

        used = update_bn_stats(self.model, batches(), forward, self.s.precise_bn_batches)
        self.failures += _gather(failures)
        log.info("train: precise BN over %d batches of %d", used, self.s.batch_size)
        return used
