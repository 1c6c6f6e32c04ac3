"""Hierarchical audio-visual synchronisation (AVSlowFast Sec. 3.5): heads and loss.

At each level (res3, res4, pool5) visual features (all visual pathways, pooled over T, H, W)
and audio features (pooled over time and frequency) are projected to ``dim`` and
L2-normalised. A contrastive loss pulls in-sync pairs together and pushes out-of-sync pairs
at least ``margin`` apart; clips whose audio is near-silent carry no synchronisation signal
and are masked out.

Out-of-sync audio comes from another clip (easy) or from the same video shifted by at least
0.5 s (hard, made by the data loader); :func:`hard_negative_fraction` is the paper's
curriculum and :func:`easy_negatives` makes easy ones inside a batch.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LOGMEL_MEAN, LOGMEL_STD = -7.03, 4.66  # Kinetics statistics of log(mel power + 1e-8)
SILENCE_LOG_POWER = math.log(1e-6)


class SyncProjection(nn.Module):
    def __init__(self, visual_dim: int, audio_dim: int, dim: int):
        super().__init__()
        self.visual = nn.Linear(visual_dim, dim)
        self.audio = nn.Linear(audio_dim, dim)

    def forward(self, visual: Sequence[torch.Tensor], audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.cat([x.flatten(2).mean(dim=2) for x in visual], dim=1)
        a = audio.flatten(2).mean(dim=2)
        return F.normalize(self.visual(v), dim=1), F.normalize(self.audio(a), dim=1)


def sync_loss(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], in_sync: torch.Tensor,
              audible: torch.Tensor | None = None, margin: float = 0.5) -> torch.Tensor:
    """Mean over levels of the contrastive loss over audible pairs::

        in sync:      d^2                    d = |v - a| (unit vectors, so 0 <= d <= 2)
        out of sync:  max(0, margin - d)^2

    Zero (still differentiable) when no pair is audible; a constant zero when there are no
    levels (``forward_with_sync`` under DropPathway).
    """
    if not pairs:
        return torch.zeros((), device=in_sync.device)
    mask = torch.ones_like(in_sync, dtype=torch.bool) if audible is None else audible.bool()
    weight = mask.float() / mask.sum().clamp(min=1)
    losses = []
    for v, a in pairs:
        d = (v - a).norm(dim=1)
        per_pair = torch.where(in_sync.bool(), d.pow(2), (margin - d).clamp(min=0).pow(2))
        losses.append((per_pair * weight).sum())
    return torch.stack(losses).mean()


def audible(logmel: torch.Tensor, silence_log_power: float = SILENCE_LOG_POWER,
            mean: float = LOGMEL_MEAN, std: float = LOGMEL_STD) -> torch.Tensor:
    """[N] bool: the clip's mean log-mel power (undoing the normalisation) is above
    ``silence_log_power``. Digital silence (log 1e-8) and near-silence are False.

    ``mean`` and ``std`` must be those the log-mel was normalised with (a store's own stats
    when the dataset used them); the defaults are the authors' Kinetics constants."""
    log_power = logmel.flatten(1).mean(dim=1) * std + mean
    return log_power > silence_log_power


def hard_negative_fraction(progress: float) -> float:
    """The curriculum: easy negatives only for the first half of training, then 1/4 hard."""
    return 0.0 if progress < 0.5 else 0.25


def easy_negatives(audio: torch.Tensor, fraction: float, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the audio of about ``fraction`` of the clips with another clip's audio.

    Returns (audio, in_sync). A replaced clip takes its neighbour's audio in a random
    cyclic order of the batch, so it never keeps its own.
    """
    n = audio.shape[0]
    if n < 2:
        return audio, torch.ones(n, dtype=torch.bool, device=audio.device)
    order = torch.randperm(n, generator=generator)
    donor = torch.empty_like(order)
    donor[order] = order.roll(1)
    swap = torch.rand(n, generator=generator) < fraction
    source = torch.where(swap, donor, torch.arange(n)).to(audio.device)
    return audio[source], ~swap.to(audio.device)
