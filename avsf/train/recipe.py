"""The papers' optimisation recipe: SGD with momentum, no weight decay on BN, a linearly
scaled learning rate, linear warm-up, then half-period cosine or step decay.

The learning rate is a function of the fractional epoch ``e`` (epoch + step / steps), set
before every step as PySlowFast does::

    lr(e) = warmup_start + (lr_s(W) - warmup_start) * e / W        for e < W (warm-up epochs)
    lr_s(e) = end + (base - end) * (1 + cos(pi * e / E)) / 2        cosine (AVSlowFast A.4)
    lr_s(e) = base * gamma ** (number of steps <= e)                step decay (EPIC, AVA, ...)

``base`` and ``warmup_start`` are given for ``reference_batch`` clips and scaled linearly
with the global batch (Goyal et al.): 1.6 at 1024 is 0.1 at 64. With
``warmup_start_absolute`` the warm-up starts at ``warmup_start_lr`` itself, whatever the
batch (AVSlowFast A.8's "warm-up from 0.001", an LR, not a share of the reference one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class LRSchedule:
    base_lr: float = 1.6
    reference_batch: int = 1024
    global_batch: int = 1024
    epochs: float = 196
    policy: Literal["cosine", "steps"] = "cosine"
    warmup_epochs: float = 34.0
    warmup_start_lr: float = 0.16  # at reference_batch (PySlowFast: 0.01 at batch 64)
    warmup_start_absolute: bool = False  # warmup_start_lr is the LR itself, not scaled with the batch
    cosine_end_lr: float = 0.0
    steps: tuple[float, ...] = ()  # epochs at which the step policy multiplies by gamma
    gamma: float = 0.1

    @property
    def scale(self) -> float:
        return self.global_batch / self.reference_batch

    def scheduled(self, epoch: float) -> float:
        """The decay policy alone (no warm-up), at the global batch."""
        base = self.base_lr * self.scale
        if self.policy == "cosine":
            end = self.cosine_end_lr * self.scale
            return end + (base - end) * (1 + math.cos(math.pi * min(epoch, self.epochs) / self.epochs)) / 2
        return base * self.gamma ** sum(epoch >= s for s in self.steps)

    def __call__(self, epoch: float) -> float:
        if epoch < self.warmup_epochs:
            start = self.warmup_start_lr * (1.0 if self.warmup_start_absolute else self.scale)
            target = self.scheduled(self.warmup_epochs)
            return start + (target - start) * epoch / self.warmup_epochs
        return self.scheduled(epoch)


def is_norm_parameter(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm))


def parameter_groups(model: nn.Module, weight_decay: float, bn_weight_decay: float = 0.0) -> list[dict]:
    """Two groups: BN (and other norm) weights and biases get ``bn_weight_decay`` (0 in the
    papers' recipe), every other parameter ``weight_decay``."""
    norm, other = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                (norm if is_norm_parameter(module) else other).append(p)
    groups = [{"params": other, "weight_decay": weight_decay, "name": "weights"}]
    if norm:
        groups.append({"params": norm, "weight_decay": bn_weight_decay, "name": "norm"})
    return groups


def build_optimizer(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4,
                    bn_weight_decay: float = 0.0, nesterov: bool = False) -> torch.optim.SGD:
    """Synchronous SGD (the all-reduce is DDP's) with the groups of :func:`parameter_groups`."""
    return torch.optim.SGD(parameter_groups(model, weight_decay, bn_weight_decay), lr=lr, momentum=momentum,
                           nesterov=nesterov and momentum > 0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def hard_negative_fraction(progress: float, start: float = 0.5, fraction: float = 0.25) -> float:
    """The AV-sync curriculum: easy negatives only until ``start`` of training, then
    ``fraction`` hard ones (AVSlowFast Sec. 3.5: 1/4 hard, 3/4 easy after half)."""
    return 0.0 if progress < start else fraction


def steps_to_epochs(steps: Sequence[float], total: float) -> tuple[float, ...]:
    """Step epochs given as fractions of training (0 < s < 1) or as epochs."""
    return tuple(s * total if 0 < s < 1 else float(s) for s in steps)
