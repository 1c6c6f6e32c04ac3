"""RoIAlign: against a slow sample-by-sample reference, closed forms, and torchvision if present."""

from __future__ import annotations

import math

import pytest
import torch

from avsf.models.roi_align import RoIAlign, roi_align


def bilinear(fmap: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """One bilinear sample of [C, H, W], zero outside [-1, H] x [-1, W] (Detectron's rule)."""
    _, h, w = fmap.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return torch.zeros(fmap.shape[0], dtype=fmap.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * fmap[:, y0, x0] + (1 - ly) * lx * fmap[:, y0, x1]
            + ly * (1 - lx) * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1])


def reference_roi_align(features, rois, size, scale, sampling_ratio, aligned):
    """The definition, one bin and one sample at a time."""
    out = torch.zeros(len(rois), features.shape[1], size, size, dtype=features.dtype)
    offset = 0.5 if aligned else 0.0
    for r, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        x1, y1, x2, y2 = (v * scale - offset for v in (x1, y1, x2, y2))
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bw, bh = rw / size, rh / size
        gy = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rh / size), 0)
        gx = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rw / size), 0)
        count = max(gy * gx, 1)
        for i in range(size):
            for j in range(size):
                acc = torch.zeros(features.shape[1], dtype=features.dtype)
                for iy in range(gy):
                    for ix in range(gx):
                        y = y1 + i * bh + (iy + 0.5) * bh / gy
                        x = x1 + j * bw + (ix + 0.5) * bw / gx
                        acc += bilinear(features[int(b)], y, x)
                out[r, :, i, j] = acc / count
    return out


def random_rois(n_images: int, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """Boxes of every kind: inside, crossing the border, tiny, degenerate, outside."""
    xy = torch.rand(count, 2, generator=generator) * size * 1.4 - 0.2 * size
    wh = torch.rand(count, 2, generator=generator) * size * 0.8
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[0] = torch.tensor([2.0, 3.0, 2.0, 3.0])  # zero area
    boxes[1] = torch.tensor([size + 5.0, size + 5.0, size + 9.0, size + 9.0])  # outside
    boxes[2] = torch.tensor([0.0, 0.0, float(size), float(size)])  # whole image
    batch = torch.randint(0, n_images, (count, 1), generator=generator).float()
    return torch.cat([batch, boxes], dim=1)


@pytest.mark.parametrize("sampling_ratio", [0, 1, 2])
@pytest.mark.parametrize("aligned", [True, False])
def test_matches_sample_by_sample_reference(sampling_ratio, aligned):
    g = torch.Generator().manual_seed(sampling_ratio + 10 * aligned)
    features = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)
    rois = random_rois(2, 40, 12, g)
    ours = roi_align(features, rois, 3, 0.25, sampling_ratio, aligned)
    ref = reference_roi_align(features, rois, 3, 0.25, sampling_ratio, aligned)
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)
    assert ours[1].abs().max() == 0  # a box outside the map pools nothing


def test_constant_map_gives_the_constant():
    features = torch.full((1, 2, 8, 8), 3.5)
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 7.0], [0, 0.0, 0.0, 8.0, 8.0], [0, 2.2, 3.1, 2.9, 4.0]])
    out = roi_align(features, rois, 4, 1.0, 0, True)
    torch.testing.assert_close(out, torch.full_like(out, 3.5))


def test_linear_ramp_gives_bin_centres_exactly():
    """Bilinear sampling of a linear map is exact, and a bin's samples are symmetric about its
    centre, so each output is the ramp at the bin centre (aligned: minus half a pixel)."""
    h, w, a, b, c = 16, 20, 0.7, -1.3, 2.0
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    features = (a * xs + b * ys + c)[None, None]
    x1, y1, x2, y2, size = 3.0, 2.5, 15.0, 13.5, 4
    out = roi_align(features, torch.tensor([[0, x1, y1, x2, y2]]), size, 1.0, 2, True)[0, 0]
    centres_x = x1 - 0.5 + (torch.arange(size, dtype=torch.float64) + 0.5) * (x2 - x1) / size
    centres_y = y1 - 0.5 + (torch.arange(size, dtype=torch.float64) + 0.5) * (y2 - y1) / size
    expected = a * centres_x[None, :] + b * centres_y[:, None] + c
    torch.testing.assert_close(out, expected.to(out.dtype), atol=1e-12, rtol=0)


def test_module_gradients_and_meta_shapes():
    features = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 1.0, 20.0, 18.0], [1, 4.0, 0.0, 9.0, 30.0]], dtype=torch.float64)
    layer = RoIAlign(3, 0.25, sampling_ratio=2)
    assert torch.autograd.gradcheck(lambda f: layer(f, rois), (features,))
    meta = layer(torch.empty(2, 5, 8, 8, device="meta"), torch.empty(4, 5, device="meta"))
    assert meta.shape == (4, 5, 3, 3)
    with pytest.raises(ValueError, match=r"\[K, 5\]"):
        layer(features, rois[:, 1:])


def test_matches_torchvision_when_available():
    ops = pytest.importorskip("torchvision.ops")
    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 4, 14, 12, generator=g)
    rois = random_rois(2, 50, 20, g)
    for ratio in (0, 2):
        expected = ops.roi_align(features, rois, 7, 0.25, ratio, aligned=True)
        torch.testing.assert_close(roi_align(features, rois, 7, 0.25, ratio, True), expected,
                                   atol=1e-5, rtol=0)
