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
    """Audio features reshaped to a visual pathway's time length and channels::

        audio [N, Ca, Ta, F] -> mean over F -> conv1 (k, stride s1) -BN-ReLU->
            conv2 (k, stride s2, Ca -> Cv) -BN-ReLU-> [N, Cv, Tv, 1, 1]   (s1 * s2 ~ Ta / Tv)

    The result broadcasts over H and W. When Ta / Tv is not a power of two (small test
    inputs) an adaptive average pool makes the time lengths agree.
    """

    def __init__(self, audio_channels: int, visual_channels: int, time_ratio: float, kernel: int = 5):
        super().__init__()
        total = 2 ** round(math.log2(time_ratio)) if time_ratio >= 1 else 1
        first = 2 ** math.ceil(math.log2(total) / 2)
        self.strides = (first, total // first)
        self.conv1 = nn.Conv1d(audio_channels, audio_channels, kernel, self.strides[0], kernel // 2, bias=False)
        self.bn1 = batch_norm(audio_channels, 1)
        self.conv2 = nn.Conv1d(audio_channels, visual_channels, kernel, self.strides[1], kernel // 2, bias=False)
        self.bn2 = batch_norm(visual_channels, 1)

    def forward(self, audio: torch.Tensor, frames: int) -> torch.Tensor:
        a = audio.mean(dim=3)
        a = F.relu(self.bn1(self.conv1(a)))
        a = F.relu(self.bn2(self.conv2(a)))
        if a.shape[2] != frames:
            a = F.adaptive_avg_pool1d(a, frames)
        return a[..., None, None]


class AudioFuse(nn.Module):
    """A->FS or A->F: ``visual + AudioToVisual(audio)``, broadcast over H and W."""

    def __init__(self, audio_channels: int, visual_channels: int, time_ratio: float, kernel: int = 5):
        super().__init__()
        self.a2v = AudioToVisual(audio_channels, visual_channels, time_ratio, kernel)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return visual + self.a2v(audio, visual.shape[2])


class AudioVisualNonlocal(nn.Module):
    """Audio as the query of a non-local block over visual locations (AVSlowFast Fig. 2 right)::

        audio -> AudioToVisual -> q [N, C, T]            (one query per visual time step)
        visual x [N, C, T, H, W] -> keys = values [N, C, THW]
        w = softmax over THW of (q . x) / sqrt(C)         (where audio says to look)
        z = sum_THW w x  [N, C, T] -> conv_out -> BN (zero gamma) -> + x (broadcast over H, W)

    Keys and values are the visual features themselves, so the block costs about as much as
    A->FS (the paper: 39.9 vs 39.8 GFLOPs).
    """

    def __init__(self, audio_channels: int, visual_channels: int, time_ratio: float, kernel: int = 5):
        super().__init__()
        self.a2v = AudioToVisual(audio_channels, visual_channels, time_ratio, kernel)
        self.conv_out = nn.Conv3d(visual_channels, visual_channels, 1, bias=False)
        self.bn = batch_norm(visual_channels, 3)
        self.bn.zero_init_gamma = True

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        n, c, t, _, _ = visual.shape
        query = self.a2v(audio, t).flatten(2)  # [N, C, T]
        keys = visual.flatten(2)  # [N, C, THW]
        weights = (torch.einsum("nct,ncp->ntp", query, keys) * c ** -0.5).softmax(dim=2)
        attended = torch.einsum("ntp,ncp->nct", weights, keys)
        return visual + self.bn(self.conv_out(attended[..., None, None]))
