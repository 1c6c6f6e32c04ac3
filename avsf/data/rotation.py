"""The rotation pretext (AVSlowFast A.8, after Gidaris et al.): a clip turned by 0, 90, 180
or 270 degrees, the model asked which (a 4-way softmax).

Every frame of the clip turns the same way, in the image plane (H, W); crops are square,
so the turned clip keeps its shape and batches as before. The turn of an item is drawn
from its own seed and index, apart from the item's other random choices, so adding the
pretext changes nothing else an item holds.
"""

from __future__ import annotations

import numpy as np
import torch

ROTATIONS = 4  # quarter turns: 0, 90, 180, 270 degrees
_ROTATION_STREAM = 0x5240  # keeps this draw apart from any other keyed on (seed, index)


def rotate_clip(frames: torch.Tensor, quarter_turns: int) -> torch.Tensor:
    """[C, T, H, W] (any dtype; uint8 from the dataset) turned ``quarter_turns`` x 90 degrees
    counter-clockwise in (H, W), as :func:`torch.rot90` turns it; H must equal W."""
    if frames.dim() != 4:
        raise ValueError(f"frames must be [C, T, H, W], got shape {tuple(frames.shape)}")
    if frames.shape[-1] != frames.shape[-2]:
        raise ValueError(f"rotation needs square frames, got H x W = {frames.shape[-2]} x {frames.shape[-1]}")
    return torch.rot90(frames, int(quarter_turns) % ROTATIONS, dims=(-2, -1)).contiguous()


def rotation_of(seed: int, index: int) -> int:
    """The quarter turns (0..3) of item ``index`` drawn with ``seed``: the same every time,
    uniform over the four, independent of the item's other draws."""
    return int(np.random.default_rng([_ROTATION_STREAM, int(seed) % 2**63, int(index)]).integers(ROTATIONS))
