"""Lateral connections: Fast->Slow (SlowFast) and Audio->visual (AVSlowFast)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avsf.models.blocks import batch_norm, conv_nd


class FuseFastToSlow(nn.Module):
    """Time-strided convolution from Fast into Slow, concatenated on channels::

        fast [N, bC, aT, H, W] -> conv_f2s (k x 1 x 1, stride a) -> BN -> ReLU -> [N, 2bC, T, H, W]
        slow [N, C, T, H, W] ---------------------------------------------- concat -> [N, C+2bC, ...]
    """

    def __init__(self, fast_channels: int, channel_ratio: int, kernel: int, alpha: int):
        super().__init__()
        self.conv_f2s = conv_nd(fast_channels, fast_channels * channel_ratio, (kernel, 1, 1), (alpha, 1, 1))
        self.bn = batch_norm(fast_channels * channel_ratio, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        return torch.cat([slow, self.relu(self.bn(self.conv_f2s(fast)))], dim=1)


class AudioToVisual(nn.Module):
    """The Audio->visual lateral (authors' code): audio features brought to a visual
    pathway's time length and channels::

        audio [N, Ca, Ta, F] -> mean over F -> conv1 (k, stride 1, Ca -> inner) -BN-ReLU->
            conv2 (k, stride s, inner -> Cv) -BN-ReLU-> [N, Cv, Tv, 1, 1]      (s ~ Ta / Tv)

    The result broadcasts over H and W. When Ta / Tv is not a power of two (small test
    inputs) an adaptive average pool makes the time lengths agree.
    """

    def __init__(self, audio_channels: int, visual_channels: int, time_ratio: float, kernel: int = 5,
                 inner: int = 64):
        super().__init__()
        self.stride = 2 ** round(math.log2(time_ratio)) if time_ratio >= 1 else 1
        self.conv1 = nn.Conv1d(audio_channels, inner, kernel, 1, kernel // 2, bias=False)
        self.bn1 = batch_norm(inner, 1)
        self.conv2 = nn.Conv1d(inner, visual_channels, kernel, self.stride, kernel // 2, bias=False)
        self.bn2 = batch_norm(visual_channels, 1)

    def forward(self, audio: torch.Tensor, frames: int) -> torch.Tensor:
        a = audio.mean(dim=3)
        a = F.relu(self.bn1(self.conv1(a)))
        a = F.relu(self.bn2(self.conv2(a)))
        if a.shape[2] != frames:
            a = F.adaptive_avg_pool1d(a, frames)
        return a[..., None, None]


def _weighted(delta: torch.Tensor, weight: float) -> torch.Tensor:
    """``delta`` scaled by ``weight``; 0 under DropPathway's fusion mode keeps the lateral in
    the autograd graph (zero gradients, so DDP needs no find_unused_parameters)."""
    return delta if weight == 1.0 else delta * weight


class AudioFuse(nn.Module):
    """A->FS or A->F: ``visual + weight * lateral``, the lateral (``a2v``'s output, computed
    by the caller so the sync heads can share it) broadcast over H and W."""

    def __init__(self, audio_channels: int, visual_channels: int, time_ratio: float, kernel: int = 5,
                 inner: int = 64):
        super().__init__()
        self.a2v = AudioToVisual(audio_channels, visual_channels, time_ratio, kernel, inner)

    def forward(self, visual: torch.Tensor, lateral: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        return visual + _weighted(lateral, weight)


class AudioVisualNonlocal(nn.Module):
    """Audiovisual Non-local (AVSlowFast Sec. 3.4, Fig. 2 right), on the non-local block's
    pattern with audio as the query::

        audio -> a2v (the lateral, to Tv steps, C' = C/2 channels) -----> theta [N, C', Tv]
        visual x [N, C, T, H, W] -> max pool 1x2x2 -> conv_phi -> phi  [N, C', T H' W']
                                                   -> conv_g   -> g    [N, C', T H' W']
        w = softmax over T H' W' of theta . phi / sqrt(C')   (where the audio says to look)
        z = sum w g  [N, C', Tv] -> conv_out -> BN (zero gamma) -> + x (broadcast over H, W)

    Every audio time step attends over every visual location (T, H and W); the attended
    visual feature is added back at that time step. It starts as the identity.
    """

    def __init__(self, audio_channels: int, visual_channels: int, time_ratio: float, kernel: int = 5,
                 inner: int = 64, pool: tuple[int, int, int] = (1, 2, 2)):
        super().__init__()
        dim = visual_channels // 2
        self.a2v = AudioToVisual(audio_channels, dim, time_ratio, kernel, inner)
        self.pool = nn.MaxPool3d(pool, pool) if any(p > 1 for p in pool) else nn.Identity()
        self.conv_phi = nn.Conv3d(visual_channels, dim, 1)
        self.conv_g = nn.Conv3d(visual_channels, dim, 1)
        self.conv_out = nn.Conv3d(dim, visual_channels, 1)
        self.bn = batch_norm(visual_channels, 3)
        self.bn.zero_init_gamma = True

    def forward(self, visual: torch.Tensor, lateral: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        theta = lateral.flatten(2)  # [N, C', Tv]
        pooled = self.pool(visual)
        phi, g = self.conv_phi(pooled).flatten(2), self.conv_g(pooled).flatten(2)  # [N, C', P]
        weights = (torch.einsum("nct,ncp->ntp", theta, phi) * theta.shape[1] ** -0.5).softmax(dim=2)
        attended = torch.einsum("ntp,ncp->nct", weights, g)[..., None, None]  # [N, C', Tv, 1, 1]
        return visual + _weighted(self.bn(self.conv_out(attended)), weight)
