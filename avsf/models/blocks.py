"""Residual building blocks, for 3D video (Conv3d) and 2D spectrograms (Conv2d).

Attribute names follow PySlowFast (branch1, branch1_bn, branch2.a/a_bn/b/b_bn/c/c_bn,
conv_theta/conv_phi/conv_g/conv_out/bn) so its checkpoints map onto ours one to one.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

BN_EPS = 1e-5
BN_MOMENTUM = 0.1

Kernel = Sequence[int]


def conv_nd(cin: int, cout: int, kernel: Kernel, stride: Kernel | None = None,
            dilation: Kernel | None = None, bias: bool = False) -> nn.Module:
    """A Conv2d or Conv3d (by ``len(kernel)``) with 'same' padding for odd kernels."""
    ndim = len(kernel)
    stride = tuple(stride or (1,) * ndim)
    dilation = tuple(dilation or (1,) * ndim)
    padding = tuple(d * (k // 2) for k, d in zip(kernel, dilation))
    conv = {2: nn.Conv2d, 3: nn.Conv3d}[ndim]
    return conv(cin, cout, tuple(kernel), stride, padding, dilation, bias=bias)


def batch_norm(channels: int, ndim: int) -> nn.Module:
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[ndim]
    return norm(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class SummedConv(nn.Module):
    """Parallel convs over the same input whose outputs are summed; the audio stem's
    [time k x 1, frequency 1 x k] filters (AVSlowFast Table 1), before its one BN and ReLU::

        x --+-- time (k x 1) --+
            +-- freq (1 x k) --+-- sum
    """

    def __init__(self, cin: int, cout: int, k: int, stride: Kernel = (1, 1)):
        super().__init__()
        self.time = conv_nd(cin, cout, (k, 1), stride)
        self.freq = conv_nd(cin, cout, (1, k), stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.time(x) + self.freq(x)


class FactorisedConv(nn.Module):
    """The factorised centre conv of the audio res2/res3 bottlenecks (authors' code): a time
    and a frequency conv, each with its own BN and ReLU, summed::

        x --+-- time (k x 1) -BN-ReLU--+
            +-- freq (1 x k) -BN-ReLU--+-- sum

    (Summing before one BN and ReLU would make it a plus-shaped k x k conv.)
    """

    def __init__(self, cin: int, cout: int, k: int, stride: Kernel = (1, 1)):
        super().__init__()
        self.time, self.time_bn = conv_nd(cin, cout, (k, 1), stride), batch_norm(cout, 2)
        self.freq, self.freq_bn = conv_nd(cin, cout, (1, k), stride), batch_norm(cout, 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.time_bn(self.time(x))) + self.relu(self.freq_bn(self.freq(x)))


class BottleneckTransform(nn.Module):
    """x -> a (1x1, temporal kernel kt) -BN-ReLU-> b (3x3, strided) -BN-ReLU-> c (1x1) -BN.

    ``b`` may be a :class:`FactorisedConv` (factorised audio stages), which normalises and
    rectifies its own branches (``b_norm=False``: no shared BN / ReLU after it). The final
    BN starts at zero gamma, so each residual block starts as the identity.
    """

    def __init__(self, a: nn.Module, b: nn.Module, c: nn.Module, inner: int, out: int, ndim: int,
                 b_norm: bool = True):
        super().__init__()
        self.a, self.a_bn, self.a_relu = a, batch_norm(inner, ndim), nn.ReLU(inplace=True)
        self.b = b
        self.b_bn = batch_norm(inner, ndim) if b_norm else nn.Identity()
        self.b_relu = nn.ReLU(inplace=True) if b_norm else nn.Identity()
        self.c, self.c_bn = c, batch_norm(out, ndim)
        self.c_bn.zero_init_gamma = True  # read by init_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.b_relu(self.b_bn(self.b(x)))
        return self.c_bn(self.c(x))


class ResBlock(nn.Module):
    """relu(branch2(x) + branch1(x)); branch1 is a strided 1x1 projection when the shape
    changes, else the identity."""

    def __init__(self, cin: int, out: int, branch2: nn.Module, stride: Kernel):
        super().__init__()
        ndim = len(stride)
        if cin != out or any(s != 1 for s in stride):
            self.branch1 = conv_nd(cin, out, (1,) * ndim, stride)
            self.branch1_bn = batch_norm(out, ndim)
        else:
            self.branch1 = None
        self.branch2 = branch2
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1 is None else self.branch1_bn(self.branch1(x))
        return self.relu(self.branch2(x) + shortcut)


def video_block(cin: int, inner: int, out: int, temporal_kernel: int, spatial_stride: int,
                dilation: int = 1) -> ResBlock:
    """A 3D bottleneck block: a = kt x 1 x 1, b = 1 x 3 x 3 (stride, dilation), c = 1 x 1 x 1."""
    s = (1, spatial_stride, spatial_stride)
    transform = BottleneckTransform(
        conv_nd(cin, inner, (temporal_kernel, 1, 1)),
        conv_nd(inner, inner, (1, 3, 3), s, (1, dilation, dilation)),
        conv_nd(inner, out, (1, 1, 1)),
        inner, out, ndim=3,
    )
    return ResBlock(cin, out, transform, s)


def audio_block(cin: int, inner: int, out: int, stride: int, factorised: bool) -> ResBlock:
    """A 2D bottleneck block over (time, frequency); b is 3x3 or factorised [3x1, 1x3]."""
    s = (stride, stride)
    b = FactorisedConv(inner, inner, 3, s) if factorised else conv_nd(inner, inner, (3, 3), s)
    transform = BottleneckTransform(
        conv_nd(cin, inner, (1, 1)), b, conv_nd(inner, out, (1, 1)), inner, out, ndim=2,
        b_norm=not factorised,
    )
    return ResBlock(cin, out, transform, s)


class Nonlocal(nn.Module):
    """Non-local block (Wang et al.), dot-product form as in PySlowFast's NL configs::

        x -> theta --------------------+
        x -> pool -> phi --> theta.phi / N -> (.) g -> out -> BN -> + x
        x -> pool -> g ----------------------^

    ``pool`` is a max pool before phi and g: PySlowFast's default 1x2x2.
    """

    def __init__(self, dim: int, pool: Kernel = (1, 2, 2), instantiation: str = "dot_product"):
        super().__init__()
        inner = dim // 2
        self.instantiation = instantiation
        self.conv_theta = nn.Conv3d(dim, inner, 1)
        self.conv_phi = nn.Conv3d(dim, inner, 1)
        self.conv_g = nn.Conv3d(dim, inner, 1)
        self.conv_out = nn.Conv3d(inner, dim, 1)
        self.bn = batch_norm(dim, 3)
        self.bn.zero_init_gamma = True
        self.pool = nn.MaxPool3d(tuple(pool), tuple(pool)) if any(p > 1 for p in pool) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, h, w = x.shape
        theta = self.conv_theta(x).flatten(2)  # [N, C', THW]
        pooled = x if self.pool is None else self.pool(x)
        phi = self.conv_phi(pooled).flatten(2)  # [N, C', THW']
        g = self.conv_g(pooled).flatten(2)
        affinity = torch.einsum("nct,ncp->ntp", theta, phi)
        if self.instantiation == "softmax":
            affinity = (affinity * theta.shape[1] ** -0.5).softmax(dim=2)
        else:
            affinity = affinity / affinity.shape[2]
        y = torch.einsum("ntp,ncp->nct", affinity, g).reshape(n, -1, t, h, w)
        return x + self.bn(self.conv_out(y))


def init_weights(model: nn.Module, fc_std: float = 0.01) -> None:
    """He (fan-out) init for convs, N(0, fc_std) for linears, BN gamma 1 (0 where a block's
    last BN asks for it), biases 0; as in PySlowFast."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.constant_(m.weight, 0.0 if getattr(m, "zero_init_gamma", False) else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=fc_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
