"""Frozen batch normalisation: fine-tuning with BN statistics and affine fixed (AVSlowFast
A.5 freezes BN for EPIC-Kitchens: small batches of long videos would give poor statistics).

    BatchNorm{1,2,3}d (weight, bias, running_mean, running_var)
        ──freeze_batch_norm──> FrozenBatchNorm: y = x * scale + shift, per channel, with
        scale = weight / sqrt(running_var + eps), shift = bias - running_mean * scale

The frozen module keeps BN's state_dict keys (so checkpoints load either way, and a frozen
model's checkpoint loads into an ordinary network for testing), has no trainable parameters,
and computes exactly what the original BN computes in eval mode, in train mode too.
"""

from __future__ import annotations

import torch
from torch import nn

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class FrozenBatchNorm(nn.Module):
    """BatchNorm as a fixed per-channel affine: weight, bias and the running statistics are
    buffers, read-only to the optimiser."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        channels = bn.num_features
        self.eps = bn.eps
        with torch.no_grad():
            weight = bn.weight.detach().clone() if bn.affine else torch.ones(channels)
            bias = bn.bias.detach().clone() if bn.affine else torch.zeros(channels)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(shape).to(x.dtype) + shift.view(shape).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def freeze_batch_norm(model: nn.Module) -> int:
    """Replace every BatchNorm in ``model`` by a :class:`FrozenBatchNorm` in place; returns
    how many were replaced."""
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, _BATCH_NORMS):
            setattr(model, name, FrozenBatchNorm(child).to(child.running_mean.device))
            count += 1
        else:
            count += freeze_batch_norm(child)
    return count
