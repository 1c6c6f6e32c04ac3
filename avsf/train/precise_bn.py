"""Precise BN (Wu & Johnson; PySlowFast's ``calculate_and_update_precise_bn``): before the
final evaluation, replace every BN layer's running statistics, an exponential average over
the last few hundred iterations of a changing network, by their plain average over
``batches`` training batches of the final network::

    mean = average of the batch means,  var = average of the batch variances

With several ranks each rank measures on its own batches and the averages are all-reduced,
so every rank (and the checkpoint) holds the same statistics.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn


@torch.no_grad()
def update_bn_stats(model: nn.Module, batches: Iterable, forward: Callable[[object], None], limit: int) -> int:
    """Run ``forward(batch)`` in train mode on up to ``limit`` batches and set every BN's
    running mean and variance to their averages over those batches; returns the number
    of batches used (0 leaves the statistics alone)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or limit <= 0:
        return 0
    momenta = [m.momentum for m in norms]
    sums_mean = [torch.zeros_like(m.running_mean) for m in norms]
    sums_var = [torch.zeros_like(m.running_var) for m in norms]
    was_training = model.training
    model.train()
    for m in norms:
        m.momentum = 1.0  # running stats become exactly this batch's; we average them ourselves
    used = 0
    try:
        for batch in batches:
            if used == limit:
                break
            forward(batch)
            for m, total_mean, total_var in zip(norms, sums_mean, sums_var):
                total_mean += m.running_mean
                total_var += m.running_var
            used += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    if used == 0:
        return 0
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    for m, total_mean, total_var in zip(norms, sums_mean, sums_var):
        if world > 1:
            dist.all_reduce(total_mean)
            dist.all_reduce(total_var)
        m.running_mean.copy_(total_mean / (used * world))
        m.running_var.copy_(total_var / (used * world))
    return used
