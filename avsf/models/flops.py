"""Multiply-adds and parameter counts, the papers' "GFLOPs" and "#params".

``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add of convs,
matmuls and linears (not BN, ReLU or pooling, which the papers do not count either); we
halve it. On the meta device nothing is computed, so R101 16x8 counts in about a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from avsf.models.config import ModelConfig
from avsf.models.network import VideoNet, build_model, example_inputs


@dataclass(frozen=True)
class ModelCost:
    macs: int  # multiply-adds for one view (batch 1)
    params: int  # parameters used at inference (training-only sync heads excluded)
    macs_by_module: dict[str, int]
    sync_lateral_params: int = 0  # training-only laterals of the sync heads (not their projections)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6

    @property
    def mparams_with_sync_laterals(self) -> float:
        """Parameters as the authors' code holds them outside its sync (AVS) projections: it
        builds the pool5 sync level's laterals (``s5_fuse``) as part of the network."""
        return (self.params + self.sync_lateral_params) / 1e6


def inference_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("sync."))


def sync_lateral_params(model: torch.nn.Module) -> int:
    """Parameters of the sync heads' own laterals (``sync.<level>.fuse`` / ``.a2v``)."""
    return sum(p.numel() for name, p in model.named_parameters()
               if name.startswith("sync.") and name.split(".")[2] in ("fuse", "a2v"))


def count_cost(cfg: ModelConfig, crop: int | tuple[int, int], device: str = "meta", model: VideoNet | None = None,
               boxes: torch.Tensor | None = None) -> ModelCost:
    """Multiply-adds of one eval-mode forward of a batch-1 view at ``crop`` x ``crop`` (or
    ``crop`` = (H, W)); a detection head gets one box unless ``boxes`` are given."""
    if model is None:
        model = build_model(cfg, device)
    model.eval()
    inputs = example_inputs(cfg, crop, batch=1, device=device)
    if boxes is None and cfg.head.kind == "ava":
        boxes = torch.tensor([[0.0, 0.0, 0.0, 64.0, 64.0]], device=device)  # [batch index, x1, y1, x2, y2]
    counter = FlopCounterMode(display=False, depth=2)
    with torch.no_grad(), counter:
        model(inputs, boxes=boxes)
    by_module = {name: sum(ops.values()) // 2 for name, ops in counter.get_flop_counts().items()
                 if name != "Global"}
    return ModelCost(counter.get_total_flops() // 2, inference_params(model), by_module,
                     sync_lateral_params(model))
