"""RoIAlign (He et al., Mask R-CNN) in plain torch, matching ``torchvision.ops.roi_align``.

Each output bin averages a grid of bilinear samples. Bilinear weights and the grid average
are both separable in y and x, so for each RoI the whole operation is two small matrices::

    out[r, c] = Ay[r] @ features[batch[r], c] @ Ax[r].T      Ay: [ph, H], Ax: [pw, W]

where ``Ay[r, i, h]`` is the mean, over bin i's samples, of the bilinear weight that sample
gives row h (zero for samples that fall outside the map, as torchvision does). This is exact,
differentiable in ``features``, and runs on any device, meta included.
"""

from __future__ import annotations

import torch
from torch import nn


def _axis_weights(start: torch.Tensor, length: torch.Tensor, bins: int, size: int,
                  sampling_ratio: int) -> torch.Tensor:
    """[R, bins, size]: averaged bilinear weights along one axis for every RoI."""
    bin_size = length / bins
    if sampling_ratio > 0:
        grid = torch.full_like(length, sampling_ratio)
    else:  # adaptive: about one sample per feature cell, as torchvision's ceil(roi / bins)
        grid = torch.ceil(length / bins).clamp(min=0)
    if start.device.type == "meta":  # shapes only: a RoI inside the map needs at most this
        g_max = -(-size // bins) + 1
    else:
        g_max = max(int(grid.max().item()) if grid.numel() else 0, 1)
    steps = torch.arange(g_max, dtype=start.dtype, device=start.device)
    bin_index = torch.arange(bins, dtype=start.dtype, device=start.device)
    safe_grid = grid.clamp(min=1)[:, None, None]
    # sample coordinates [R, bins, g_max]
    pos = (start[:, None, None] + bin_index[None, :, None] * bin_size[:, None, None]
           + (steps[None, None, :] + 0.5) * bin_size[:, None, None] / safe_grid)
    used = (steps[None, None, :] < grid[:, None, None]) & (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.floor().clamp(max=size - 1)
    pos = torch.where(low >= size - 1, low, pos)
    frac = pos - low
    high = (low + 1).clamp(max=size - 1)
    cells = torch.arange(size, dtype=start.dtype, device=start.device)
    weights = ((1 - frac)[..., None] * (cells == low[..., None])
               + frac[..., None] * (cells == high[..., None]))  # [R, bins, g_max, size]
    weights = weights * used[..., None]
    return weights.sum(dim=2) / safe_grid


def roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 0, aligned: bool = True) -> torch.Tensor:
    """Pool ``rois`` ([K, 5]: batch index, x1, y1, x2, y2 in input coordinates) from
    ``features`` [N, C, H, W] into [K, C, ph, pw].

    ``aligned=True`` shifts boxes by half a pixel so that pixel centres line up (Detectron2);
    ``sampling_ratio <= 0`` takes ceil(roi size / output size) samples per bin and axis.
    """
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    n, c, h, w = features.shape
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be [K, 5] (batch index, x1, y1, x2, y2), got {tuple(rois.shape)}")
    geometry_dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    rois = rois.to(geometry_dtype)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, i] * spatial_scale - offset for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # legacy behaviour: boxes at least one cell
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    ay = _axis_weights(y1, roi_h, ph, h, sampling_ratio).to(features.dtype)
    ax = _axis_weights(x1, roi_w, pw, w, sampling_ratio).to(features.dtype)
    per_roi = features[rois[:, 0].long()]  # [K, C, H, W]
    return torch.einsum("kih,kchw,kjw->kcij", ay, per_roi, ax)


class RoIAlign(nn.Module):
    def __init__(self, output_size: int, spatial_scale: float, sampling_ratio: int = 0, aligned: bool = True):
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale
        self.sampling_ratio, self.aligned = sampling_ratio, aligned

    def forward(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return roi_align(features, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
