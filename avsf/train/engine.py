"""The training loop every stage trains with: Kinetics pretraining here, fine-tuning and
self-supervised pretraining as additions.

One epoch, on every rank at once (torch.distributed, one rank per device)::

    EpochSampler (this rank's keys) ──DataLoader workers──> batch ──to device, normalise──>
        model(inputs, drop_audio, negative_audio)  (through DDP: every gradient all-reduced)
        ──> task loss (+ sync weight x AV-sync loss) ──> finite on every rank? ──> SGD step
    every val_every epochs: one centre clip per val video ──> top-1 / top-5 / loss
    every checkpoint_every epochs (rank 0): checkpoint_epoch_NNNNN.pyth, last.pyth
    after the last epoch: precise BN ──> final validation ──> final.pyth

Randomness is a function of (seed, epoch, step): the sampler's per-item seeds, DropPathway's
draw (shared by all ranks), the dropout seed per rank. So a run resumed from any checkpoint,
in a new process, computes what the uninterrupted run would have, bit for bit on CPU.

A stop request (preemption: ``should_stop``) is agreed on by all ranks at the next step
boundary; rank 0 then checkpoints the exact position (epoch and step) and the loop returns
``preempted``. A non-finite loss on any rank stops every rank before the weights change,
with :class:`TrainingDiverged` naming the epoch and step; the last checkpoint stays as it was.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from avsf.data.clip_dataset import ClipDataset, collate_clips, normalize_video
from avsf.models import ModelConfig, build_model, to_channels_last
from avsf.models.config import AudioPathwayConfig
from avsf.models.serialize import config_to_dict
from avsf.models.sync import sync_loss, sync_valid
from avsf.train import checkpoint as ckpt
from avsf.train.precise_bn import update_bn_stats
from avsf.train.recipe import LRSchedule, build_optimizer, hard_negative_fraction, set_lr
from avsf.train.sampler import EpochSampler

log = logging.getLogger("avsf.train")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class TooManyLoadFailures(RuntimeError):
    """More than the allowed fraction of training samples failed to load."""


class RanksDiverged(RuntimeError):
    """The ranks' weights differ: their gradients were not all-reduced alike."""


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
    seed: int = 0
    workers: int = 2
    persistent_workers: bool = False
    log_every: int = 10
    device: str = "cpu"
    precision: str = "fp32"  # or bf16 (autocast, CUDA)
    channels_last: bool = False
    compile: bool = False
    fingerprint: str = ""  # of everything the result depends on: a checkpoint with another is not resumed
    cfg_text: str = ""  # the run's settings as YAML, for the checkpoints' ``cfg``
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
    load_failures: list[dict[str, str]] = field(default_factory=list)
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


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """How many of ``labels`` (those >= 0) are among the top k of ``logits``, for each k."""
    keep = labels >= 0
    logits, labels = logits[keep], labels[keep]
    k = min(max(ks), logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hits = top == labels[:, None]
    return [int(hits[:, : min(kk, k)].any(dim=1).sum()) for kk in ks]


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
                 init_state: dict[str, torch.Tensor] | None = None):
        self.cfg, self.s = model_cfg, settings
        self.train_set, self.val_set = train_set, val_set
        self.out_dir = Path(out_dir)
        self.rank, self.world_size = world()
        self.logger: TrainLogger = NullLogger()
        self.should_stop = should_stop
        self.device = torch.device(settings.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        self.channels_last = settings.channels_last and self.cuda
        torch.manual_seed(_seed(settings.seed, 0, 0, 3))  # the same initial weights on every rank
        self.model = build_model(model_cfg).to(self.device)
        if init_state is not None:
            self.model.load_state_dict(init_state)
        if self.channels_last:
            to_channels_last(self.model)
        self.optimizer = build_optimizer(self.model, settings.schedule(0.0), settings.momentum, settings.weight_decay,
                                         settings.bn_weight_decay, settings.nesterov)
        self.uses_sync = (model_cfg.sync is not None and model_cfg.arch == "avslowfast" and settings.sync_weight > 0)
        if self.uses_sync and not train_set.sync_negatives:
            raise ValueError("the model trains AV-sync (sync weight > 0): the train set needs sync_negatives")
        self.sampler = EpochSampler(len(train_set), settings.batch_size, settings.seed, self.rank, self.world_size)
        self.steps_per_epoch = self.sampler.batches_per_epoch
        self.start_epoch, self.start_step, self.global_step = 0, 0, 0
        self.history: list[dict[str, float]] = []
        self.failures: list[dict[str, str]] = []
        self.resumed_from: dict[str, int] | None = None
        self._partial: dict[str, list[float]] | None = None  # a stopped epoch's sums so far
        self.network = self._wrap()

    def _wrap(self) -> nn.Module:
        network: nn.Module = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            # Only the paper's DropPathway (the whole audio pathway skipped) or AV fusion
            # without sync heads leave parameters out of an iteration's graph.
            unused = self.cfg.arch == "avslowfast" and self.cfg.drop_pathway > 0 and (
                self.cfg.drop_pathway_mode == "pathway" or not self.uses_sync)
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
            },
        }

    def resume(self, path: str | Path) -> bool:
        """Continue from the checkpoint at ``path`` when it was written by this same run
        (same fingerprint); returns whether it did."""
        path = Path(path)
        if not path.is_file():
            return False
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
        ckpt.set_rng_states(record["rng"])
        self.resumed_from = {"epoch": self.start_epoch, "step": self.start_step}
        log.info("train: resuming %s at epoch %d step %d", path, self.start_epoch, self.start_step)
        return True

    def _save(self, next_epoch: int, next_step: int) -> Path | None:
        if self.rank != 0:
            return None
        if next_step == 0:
            path = self.out_dir / ckpt.epoch_checkpoint_name(next_epoch)
        else:  # mid-epoch (preempted): a resumption point only
            path = self.out_dir / f"checkpoint_epoch_{next_epoch:05d}_step_{next_step:06d}.pyth"
        ckpt.save_checkpoint(path, self.state(next_epoch, next_step))
        ckpt.link_last(self.out_dir, path)
        for stale in self.out_dir.glob("checkpoint_epoch_*_step_*.pyth"):
            if stale != path:
                stale.unlink()
        ckpt.prune_checkpoints(self.out_dir, self.s.keep_checkpoints)
        return path

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
                self._save(epoch, stopped_at)
                return self._result(epoch, started, preempted=True)
            if self.val_set is not None and ((epoch + 1) % self.s.val_every == 0 or epoch + 1 == self.s.epochs):
                row.update({f"val_{k}": v for k, v in self.validate().items()})
            self.history.append(row)
            self.logger.log_epoch(epoch, self.global_step, row)
            log.info("train: epoch %d/%d: %s", epoch + 1, self.s.epochs,
                     ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
            if stopped_at is not None or (epoch + 1) % self.s.checkpoint_every == 0 or epoch + 1 == self.s.epochs:
                self._save(epoch + 1, 0)
            if stopped_at is not None:  # the stop came on the epoch's last step
                return self._result(epoch + 1, started, preempted=True)
        result = self._result(self.s.epochs, started)
        result.precise_bn_batches = self._precise_bn()
        if self.val_set is not None:
            result.final = self.validate()
        if self.rank == 0:
            final = self.state(self.s.epochs, 0)
            final["avsf"]["final"] = result.final
            ckpt.save_checkpoint(self.out_dir / ckpt.FINAL, final)
        result.seconds = time.monotonic() - started
        return result

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
        # loss, sync loss, top-1, top-5, labelled clips, clips, samples asked for, failed;
        # and the per-step log's running window: loss, sync loss, batches.
        sums, window = np.zeros(8), np.zeros(3)
        if first_step and self._partial is not None and self.rank == 0:
            sums, window = np.array(self._partial["sums"]), np.array(self._partial["window"])
        self._partial = None
        failures: list[dict[str, str]] = []
        wait = 0.0
        epoch_started = tick = time.monotonic()
        bar = tqdm(total=self.steps_per_epoch, initial=first_step, desc=f"epoch {epoch + 1}/{s.epochs}",
                   unit="step", disable=not (s.progress and self.rank == 0), leave=False)
        step, stopped = first_step, False
        for batch in loader:
            wait += time.monotonic() - tick
            failures += batch["load_failures"]
            lr = s.schedule(epoch + step / self.steps_per_epoch)
            set_lr(self.optimizer, lr)
            torch.manual_seed(_seed(s.seed, epoch, step, 2, self.rank))  # dropout, per rank
            loss, sync, logits, labels = self._forward(batch, epoch, step)
            flags = _all_sum([float(not torch.isfinite(loss).item()), float(self.should_stop())], self.device)
            if flags[0]:
                raise TrainingDiverged(f"loss is {loss.item()} at epoch {epoch + 1} step {step + 1} (on "
                                       f"{int(flags[0])} of {self.world_size} ranks); the last checkpoint "
                                       f"({self.out_dir / ckpt.LAST}) is kept")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            step += 1
            self.global_step += 1
            value = float(loss.detach())
            sync_value = float(sync.detach()) if sync is not None else 0.0
            sums += [value * len(labels), sync_value * len(labels), *topk_correct(logits.detach().float(), labels),
                     int((labels >= 0).sum()), len(labels), len(batch["index"]), len(batch["load_failures"])]
            window += [value - s.sync_weight * sync_value, sync_value, 1]
            if self.global_step % s.log_every == 0:
                self.logger.log_step(self.global_step, {"loss": window[0] / window[2], "sync_loss": window[1] / window[2],
                                                        "lr": lr, "epoch": epoch + step / self.steps_per_epoch})
                window[:] = 0
            seconds = max(time.monotonic() - epoch_started, 1e-9)
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.3g}",
                            clips_s=f"{(step - first_step) * len(labels) * self.world_size / seconds:.1f}")
            bar.update(1)
            if flags[1]:
                stopped = True
                break
            tick = time.monotonic()
        bar.close()
        self.failures += _gather(failures)
        totals = _all_sum([*sums, wait], self.device)
        if stopped and step < self.steps_per_epoch:  # resumed later: keep what the epoch summed so far
            self._partial = {"sums": totals[:8], "window": [float(w) for w in window]}
            return {}, step
        loss_sum, sync_sum, top1, top5, labelled, clips, requested, failed, wait = totals
        if requested and failed / requested > s.max_failed_fraction:
            raise TooManyLoadFailures(
                f"epoch {epoch + 1}: {int(failed)} of {int(requested)} training samples failed to load "
                f"(more than train.max_failed_fraction = {s.max_failed_fraction}); see the train ledger")
        seconds = time.monotonic() - epoch_started
        spread = self._weight_spread()
        if spread:
            raise RanksDiverged(f"epoch {epoch + 1}: the ranks' weights differ (checksums spread {spread:.3g})")
        row = {
            "epoch": epoch + 1,
            "loss": (loss_sum - s.sync_weight * sync_sum) / max(clips, 1),
            "sync_loss": sync_sum / max(clips, 1),
            "top1": top1 / max(labelled, 1),
            "top5": top5 / max(labelled, 1),
            "lr": s.schedule(epoch + 1),
            "hard_negative_fraction": hard,
            "epoch_seconds": seconds,
            "clips_per_s": (step - first_step) * s.batch_size * self.world_size / seconds if seconds > 0 else 0.0,
            "data_wait_fraction": wait / self.world_size / seconds if seconds > 0 else 0.0,
            "load_failures": failed,
            "ranks": self.world_size,
            "rank_weight_spread": spread,  # 0: every rank holds the same weights
        }
        return row, (step if stopped else None)

    def _weight_spread(self) -> float:
        """Max minus min over ranks of a checksum of the weights: 0 when every rank holds
        the same model, as synchronous SGD must."""
        if self.world_size == 1:
            return 0.0
        total = sum(float(p.detach().double().abs().sum()) + float(p.detach().double().sum())
                    for p in self.model.parameters())
        sums = _gather([total])
        return max(sums) - min(sums)

    def _forward(self, batch: dict[str, Any], epoch: int, step: int):
        """(total loss, sync loss or None, logits, labels) of one training batch."""
        cfg = self.cfg
        inputs = model_inputs(cfg, batch, self.device, self.channels_last)
        labels = batch["label"].to(self.device, non_blocking=True)
        drop = drop_audio_draw(self.s.seed, epoch, step, cfg.drop_pathway) if cfg.arch == "avslowfast" else False
        with self._autocast():
            if self.uses_sync:
                negative = batch["audio_negative"].to(self.device, non_blocking=True)
                logits, levels = self.network(inputs, drop_audio=drop, negative_audio=negative)
                valid = sync_valid(inputs[cfg.audio_index], negative, batch["audible"].to(self.device),
                                   batch["negative_audible"].to(self.device))
                sync = sync_loss(levels, valid, margin=cfg.sync.margin).float()
            else:
                logits = self.network(inputs, drop_audio=drop) if cfg.arch == "avslowfast" else self.network(inputs)
                sync = None
            task = F.cross_entropy(logits.float(), labels, ignore_index=-1)
        loss = task if sync is None else task + self.s.sync_weight * sync
        return loss, sync, logits, labels

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss, top-1 and top-5 over the val set's items (one view each), across ranks."""
        assert self.val_set is not None
        sampler = EpochSampler(len(self.val_set), self.s.batch_size, self.s.seed, self.rank, self.world_size,
                               shuffle=False)
        self.model.eval()
        sums = np.zeros(4)  # loss, top-1, top-5, labelled
        failed = 0
        for batch in self._loader(self.val_set, sampler, self.s.batch_size, persistent=False):
            failed += len(batch["load_failures"])
            inputs = model_inputs(self.cfg, batch, self.device, self.channels_last)
            labels = batch["label"].to(self.device)
            with self._autocast():
                logits = self.model(inputs).float()
            keep = labels >= 0
            loss = F.cross_entropy(logits[keep], labels[keep], reduction="sum") if keep.any() else logits.sum() * 0
            sums += [float(loss), *topk_correct(logits, labels), int(keep.sum())]
        loss, top1, top5, labelled, failed = _all_sum([*sums, failed], self.device)
        self.model.train()
        n = max(labelled, 1)
        return {"loss": loss / n, "top1": top1 / n, "top5": top5 / n, "videos": labelled, "load_failures": failed}

    def _precise_bn(self) -> int:
        if self.s.precise_bn_batches <= 0:
            return 0
        sampler = EpochSampler(len(self.train_set), self.s.batch_size, _seed(self.s.seed, 4), self.rank,
                               self.world_size)
        loader = self._loader(self.train_set, sampler, self.s.batch_size, persistent=False)

        def forward(batch):
            inputs = model_inputs(self.cfg, batch, self.device, self.channels_last)
            with self._autocast():
                if self.cfg.arch == "avslowfast":
                    self.model(inputs, drop_audio=False)  # as at test time: audio fused
                else:
                    self.model(inputs)

        def batches():  # as many passes over the train set as the batches need, each reshuffled
            for extra in range(10**6):
                sampler.set_epoch(self.s.epochs + extra, 0, self._hard_fraction(self.s.epochs))
                yield from loader

        used = update_bn_stats(self.model, batches(), forward, self.s.precise_bn_batches)
        log.info("train: precise BN over %d batches of %d", used, self.s.batch_size)
        return used
