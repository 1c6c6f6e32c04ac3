"""Frozen backbones for the linear probe (AVSlowFast A.8: the pretrained network fixed, BN
included, only the last fc trained).

Turning ``requires_grad`` off is not enough for BN: a BN layer in train mode normalises
with the batch's statistics and updates its running ones. :class:`FrozenBatchNorm` replaces
it by the fixed affine map BN computes in eval mode, in train mode too::

    scale = weight / sqrt(running_var + eps),  shift = bias - running_mean * scale
    y = x * scale + shift                     (per channel, any of 2-D to 5-D input)

It runs BN's own eval-mode kernel (so its output is the replaced layer's, bit for bit) and
never updates the statistics. One exception: a channel whose running variance is exactly 0
(it never varied: a dead channel upstream) gets variance 1, not BN's gain of 1/sqrt(eps), about
316. On the data its statistics came from that channel's input is its mean, so its output is
its bias either way; fine-tuned on other data (EPIC from Kinetics, A.5) the x316 gain blew the logits up to NaN
within a few steps wherever a small model had a dead channel. It keeps BN's ``state_dict`` keys (``weight``, ``bias``,
``running_mean``, ``running_var``, ``num_batches_tracked``), as buffers, so the same
checkpoints load into frozen and unfrozen models, and has no parameters, so the optimizer
never sees them (nor does precise BN, which looks for BatchNorm layers).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class FrozenBatchNorm(nn.Module):
    """BatchNorm{1,2,3}d's eval-mode output from fixed buffers, in train mode too."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    @classmethod
    def from_batch_norm(cls, bn: nn.modules.batchnorm._BatchNorm) -> "FrozenBatchNorm":
        """A copy of ``bn``'s statistics and affine parameters (1 and 0 where it has none)."""
        if bn.running_mean is None:
            raise ValueError("a BatchNorm without running statistics (track_running_stats=False) cannot be frozen")
        frozen = cls(bn.num_features, bn.eps)
        with torch.no_grad():
            if bn.affine:
                frozen.weight.copy_(bn.weight)
                frozen.bias.copy_(bn.bias)
            frozen.running_mean.copy_(bn.running_mean)
            dead = bn.running_var == 0  # see the module's docstring
            frozen.running_var.copy_(torch.where(dead, torch.ones_like(bn.running_var), bn.running_var))
            frozen.num_batches_tracked.copy_(bn.num_batches_tracked)
        return frozen.to(device=bn.running_mean.device, dtype=bn.running_mean.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BN's own eval-mode kernel: bit for bit the output of the layer it replaces
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def freeze_batch_norm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm{1,2,3}d in ``model`` (in place) by its :class:`FrozenBatchNorm`;
    returns ``model``. ``model.train()`` no longer changes what those layers compute."""
    for name, child in list(model.named_children()):
        if isinstance(child, _BATCH_NORMS):
            setattr(model, name, FrozenBatchNorm.from_batch_norm(child))
        else:
            freeze_batch_norm(child)
    return model


def freeze_backbone(model: nn.Module, trainable: Sequence[str]) -> list[str]:
    """The linear probe's model: every BN frozen (:func:`freeze_batch_norm`) and
    ``requires_grad`` off for every parameter whose name starts with none of ``trainable``
    (module paths such as ``"head.projection"``; a prefix matches whole name components).
    Returns the names of the parameters left trainable; raises when none are."""
    prefixes = tuple(trainable)
    freeze_batch_norm(model)
    left = []
    for name, p in model.named_parameters():
        keep = any(name == t or name.startswith(t + ".") for t in prefixes)
        p.requires_grad_(keep)
        if keep:
            left.append(name)
    if not left:
        raise ValueError(f"no parameter of the model starts with any of {list(prefixes)}")
    return left
