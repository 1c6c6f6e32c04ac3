"""Heads: clip classification, EPIC-Kitchens verb + noun, AVA RoI detection.

All take the list of final pathway features (res5); a ``None`` entry (audio dropped by
DropPathway's pathway mode) contributes zeros. Heads return logits in training and in
eval: the activation (``HeadConfig.activation``: softmax / sigmoid) belongs to losses and
evaluation code. With PySlowFast's test-time pooling (``test_pool``) the eval logits are
those of the window-averaged activation, so applying the activation gives PySlowFast's
output.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avsf.models.roi_align import RoIAlign

Features = Sequence[torch.Tensor | None]


def global_pool(xs: Features, dims: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """Average every pathway over all but (N, C) and concatenate: [N, sum(dims)]; a ``None``
    pathway gives zeros of ``like``'s batch size, dtype and device."""
    pooled = [like.new_zeros(like.shape[0], d) if x is None else x.flatten(2).mean(dim=2)
              for x, d in zip(xs, dims)]
    return torch.cat(pooled, dim=1)


def window_pool(xs: Features, dims: Sequence[int], like: torch.Tensor, window: int) -> torch.Tensor:
    """PySlowFast's test-time pooling: every visual (5-D) pathway averaged over T x k x k
    windows at stride 1 (k clipped to the feature map), audio (4-D) pooled globally and
    repeated at every window; concatenated: [N, P, sum(dims)] for P window positions."""
    visual = next(x for x in xs if x is not None and x.dim() == 5)
    kh, kw = min(window, visual.shape[3]), min(window, visual.shape[4])
    out = []
    for x, d in zip(xs, dims):
        if x is not None and x.dim() == 5:
            out.append(F.avg_pool3d(x, (x.shape[2], kh, kw), stride=1).flatten(2).transpose(1, 2))
        else:
            flat = global_pool([x], [d], like)[:, None, :]
            positions = (visual.shape[3] - kh + 1) * (visual.shape[4] - kw + 1)
            out.append(flat.expand(-1, positions, -1))
    return torch.cat(out, dim=2)


def average_activation(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """[N, P, K] logits of P windows -> [N, K] logits whose activation is the mean of the
    windows' activations (softmax: log of the mean probabilities; sigmoid: logit of the
    mean; none: the mean logits), computed in log space for stability."""
    log_p = math.log(logits.shape[1])
    if activation == "softmax":
        return torch.logsumexp(F.log_softmax(logits, dim=2), dim=1) - log_p
    if activation == "sigmoid":
        return torch.logsumexp(F.logsigmoid(logits), dim=1) - torch.logsumexp(F.logsigmoid(-logits), dim=1)
    return logits.mean(dim=1)


def _reference(xs: Features) -> torch.Tensor:
    return next(x for x in xs if x is not None)


class _PooledHead(nn.Module):
    """Pooling shared by the clip heads: global, or windows at test time (``test_pool``)."""

    def __init__(self, dims: Sequence[int], dropout: float, activation: str, test_pool: int | None):
        super().__init__()
        self.dims = list(dims)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.activation, self.test_pool = activation, test_pool

    def pooled(self, xs: Features) -> torch.Tensor:
        """[N, C] (global pool) or [N, P, C] (test-time windows, eval mode only)."""
        like = _reference(xs)
        if self.training or self.test_pool is None:
            return self.dropout(global_pool(xs, self.dims, like))
        return self.dropout(window_pool(xs, self.dims, like, self.test_pool))

    def project(self, projection: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        logits = projection(x)
        return average_activation(logits, self.activation) if logits.dim() == 3 else logits


class ClassificationHead(_PooledHead):
    """pool per pathway -> concat -> dropout -> projection: logits [N, classes]."""

    def __init__(self, dims: Sequence[int], num_classes: int, dropout: float, activation: str = "softmax",
                 test_pool: int | None = None):
        super().__init__(dims, dropout, activation, test_pool)
        self.projection = nn.Linear(sum(dims), num_classes)

    def forward(self, xs: Features) -> torch.Tensor:
        return self.project(self.projection, self.pooled(xs))


class EpicHead(_PooledHead):
    """EPIC-Kitchens: shared pooled features, one projection for verbs and one for nouns."""

    def __init__(self, dims: Sequence[int], verb_classes: int, noun_classes: int, dropout: float,
                 activation: str = "softmax", test_pool: int | None = None):
        super().__init__(dims, dropout, activation, test_pool)
        self.projection_verb = nn.Linear(sum(dims), verb_classes)
        self.projection_noun = nn.Linear(sum(dims), noun_classes)

    def forward(self, xs: Features) -> dict[str, torch.Tensor]:
        x = self.pooled(xs)
        return {"verb": self.project(self.projection_verb, x), "noun": self.project(self.projection_noun, x)}


class DetectionHead(nn.Module):
    """AVA (SlowFast Sec. 5): per visual pathway, temporal average pool -> RoIAlign 7x7 on
    res5 (stride 16) -> spatial max pool; concat (+ globally pooled audio) -> dropout ->
    projection: logits [K, classes] (per-class sigmoid in the loss / evaluation). ``boxes``
    are [K, 5]: batch index, x1, y1, x2, y2 in input pixels."""

    def __init__(self, visual_dims: Sequence[int], audio_dim: int, num_classes: int, dropout: float,
                 spatial_scale: float, roi_size: int = 7, sampling_ratio: int = 0):
        super().__init__()
        self.visual_dims, self.audio_dim = list(visual_dims), audio_dim
        self.roi = RoIAlign(roi_size, spatial_scale, sampling_ratio, aligned=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(sum(visual_dims) + audio_dim, num_classes)

    def forward(self, xs: Features, boxes: torch.Tensor) -> torch.Tensor:
        visual = xs[: len(self.visual_dims)]
        feats = [self.roi(x.mean(dim=2), boxes).amax(dim=(2, 3)) for x in visual]
        if self.audio_dim:
            audio = global_pool(xs[len(self.visual_dims):], [self.audio_dim], visual[0])
            feats.append(audio[boxes[:, 0].long()])
        return self.projection(self.dropout(torch.cat(feats, dim=1)))
