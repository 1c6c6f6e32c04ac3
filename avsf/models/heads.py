"""Heads: clip classification, EPIC-Kitchens verb + noun, AVA RoI detection.

All take the list of final pathway features (res5); a ``None`` entry (audio dropped by
DropPathway) contributes zeros. The output activation (softmax / sigmoid) is applied only
in eval mode: training losses take logits.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from avsf.models.roi_align import RoIAlign

Features = Sequence[torch.Tensor | None]


def global_pool(xs: Features, dims: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """Average every pathway over all but (N, C) and concatenate: [N, sum(dims)]; a ``None``
    pathway gives zeros of ``like``'s batch size, dtype and device."""
    pooled = [like.new_zeros(like.shape[0], d) if x is None else x.flatten(2).mean(dim=2)
              for x, d in zip(xs, dims)]
    return torch.cat(pooled, dim=1)


def activation(name: str) -> nn.Module:
    return {"softmax": nn.Softmax(dim=1), "sigmoid": nn.Sigmoid(), "none": nn.Identity()}[name]


def _reference(xs: Features) -> torch.Tensor:
    return next(x for x in xs if x is not None)


class ClassificationHead(nn.Module):
    """global average pool per pathway -> concat -> dropout -> projection (-> act in eval)."""

    def __init__(self, dims: Sequence[int], num_classes: int, dropout: float, act: str = "softmax"):
        super().__init__()
        self.dims = list(dims)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(sum(dims), num_classes)
        self.act = activation(act)

    def forward(self, xs: Features) -> torch.Tensor:
        x = self.projection(self.dropout(global_pool(xs, self.dims, _reference(xs))))
        return x if self.training else self.act(x)


class EpicHead(nn.Module):
    """EPIC-Kitchens: shared pooled features, one projection for verbs and one for nouns."""

    def __init__(self, dims: Sequence[int], verb_classes: int, noun_classes: int, dropout: float,
                 act: str = "softmax"):
        super().__init__()
        self.dims = list(dims)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection_verb = nn.Linear(sum(dims), verb_classes)
        self.projection_noun = nn.Linear(sum(dims), noun_classes)
        self.act = activation(act)

    def forward(self, xs: Features) -> dict[str, torch.Tensor]:
        x = self.dropout(global_pool(xs, self.dims, _reference(xs)))
        out = {"verb": self.projection_verb(x), "noun": self.projection_noun(x)}
        return out if self.training else {k: self.act(v) for k, v in out.items()}


class DetectionHead(nn.Module):
    """AVA (SlowFast Sec. 5): per visual pathway, temporal average pool -> RoIAlign 7x7 on
    res5 (stride 16) -> spatial max pool; concat (+ globally pooled audio) -> dropout ->
    projection (-> sigmoid in eval). ``boxes`` are [K, 5]: batch index, x1, y1, x2, y2 in
    input pixels."""

    def __init__(self, visual_dims: Sequence[int], audio_dim: int, num_classes: int, dropout: float,
                 spatial_scale: float, roi_size: int = 7, sampling_ratio: int = 0, act: str = "sigmoid"):
        super().__init__()
        self.visual_dims, self.audio_dim = list(visual_dims), audio_dim
        self.roi = RoIAlign(roi_size, spatial_scale, sampling_ratio, aligned=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(sum(visual_dims) + audio_dim, num_classes)
        self.act = activation(act)

    def forward(self, xs: Features, boxes: torch.Tensor) -> torch.Tensor:
        visual = xs[: len(self.visual_dims)]
        feats = [self.roi(x.mean(dim=2), boxes).amax(dim=(2, 3)) for x in visual]
        if self.audio_dim:
            audio = global_pool(xs[len(self.visual_dims):], [self.audio_dim], visual[0])
            feats.append(audio[boxes[:, 0].long()])
        x = self.projection(self.dropout(torch.cat(feats, dim=1)))
        return x if self.training else self.act(x)
