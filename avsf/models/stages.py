"""Stems (s1) and residual stages (s2..s5) over several pathways at once.

Each stage holds one module per pathway, named ``pathway{i}_stem`` / ``pathway{i}_res{j}``
/ ``pathway{i}_nonlocal{j}`` as in PySlowFast. A pathway's input may be ``None`` (the audio
pathway under DropPathway's "pathway" mode); it is passed through without computing anything.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from avsf.models.blocks import Nonlocal, SummedConv, audio_block, batch_norm, conv_nd, video_block
from avsf.models.config import AudioPathwayConfig, PathwayConfig, VisualPathwayConfig

Features = list[torch.Tensor | None]


class VideoStem(nn.Module):
    """conv (kt x 7 x 7, spatial stride 2) -> BN -> ReLU -> max pool (1 x 3 x 3, stride 2)."""

    def __init__(self, cin: int, cout: int, temporal_kernel: int):
        super().__init__()
        self.conv = conv_nd(cin, cout, (temporal_kernel, 7, 7), (1, 2, 2))
        self.bn = batch_norm(cout, 3)
        self.relu = nn.ReLU(inplace=True)
        self.pool_layer = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_layer(self.relu(self.bn(self.conv(x))))


class AudioStem(nn.Module):
    """[time k x 1 + frequency 1 x k] summed -> BN -> ReLU; no pooling, so the spectrogram
    keeps full time and frequency resolution into res2."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = SummedConv(cin, cout, kernel)
        self.bn = batch_norm(cout, 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def build_stem(cfg: PathwayConfig) -> nn.Module:
    if isinstance(cfg, AudioPathwayConfig):
        return AudioStem(cfg.in_channels, cfg.width, cfg.stem_kernel)
    return VideoStem(cfg.in_channels, cfg.width, cfg.stem_temporal_kernel)


def build_stage_blocks(cfg: PathwayConfig, stage: int, cin: int) -> list[nn.Module]:
    """The residual blocks of res``stage`` (2..5) of one pathway; the first one strides."""
    inner, out = cfg.stage_channels(stage)
    i = stage - 2
    blocks = []
    for j in range(cfg.depths[i]):
        block_in = cin if j == 0 else out
        if isinstance(cfg, AudioPathwayConfig):
            stride = cfg.strides[i] if j == 0 else 1
            blocks.append(audio_block(block_in, inner, out, stride, cfg.factorised[i]))
        else:
            stride = cfg.spatial_strides[i] if j == 0 else 1
            blocks.append(video_block(block_in, inner, out, cfg.temporal_kernel(stage, j), stride,
                                      cfg.spatial_dilations[i]))
    return blocks


class PathwayStem(nn.Module):
    """s1: one stem per pathway."""

    def __init__(self, pathways: Sequence[PathwayConfig]):
        super().__init__()
        for i, cfg in enumerate(pathways):
            self.add_module(f"pathway{i}_stem", build_stem(cfg))

    def forward(self, xs: Features) -> Features:
        return [None if x is None else getattr(self, f"pathway{i}_stem")(x) for i, x in enumerate(xs)]


class ResStage(nn.Module):
    """s2..s5: for each pathway, its blocks in order, each optionally followed by a
    non-local block (visual pathways only)."""

    def __init__(self, pathways: Sequence[PathwayConfig], stage: int, dims_in: Sequence[int]):
        super().__init__()
        self.layers: list[list[str]] = []
        for i, (cfg, cin) in enumerate(zip(pathways, dims_in)):
            names = []
            nonlocal_at = cfg.nonlocal_blocks[stage - 2] if isinstance(cfg, VisualPathwayConfig) else ()
            for j, block in enumerate(build_stage_blocks(cfg, stage, cin)):
                names.append(f"pathway{i}_res{j}")
                self.add_module(names[-1], block)
                if j in nonlocal_at:
                    names.append(f"pathway{i}_nonlocal{j}")
                    self.add_module(names[-1], Nonlocal(cfg.stage_channels(stage)[1], cfg.nonlocal_pool))
            self.layers.append(names)

    def forward(self, xs: Features) -> Features:
        out: Features = []
        for names, x in zip(self.layers, xs):
            if x is not None:
                for name in names:
                    x = getattr(self, name)(x)
            out.append(x)
        return out
