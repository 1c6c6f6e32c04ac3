"""What a training task adds to the loop: its targets, its loss on the head's logits, and
the counts its metrics are made of (summed over batches and ranks, then divided once).

The loop (avsf.train.engine) is the same for every dataset; EPIC-Kitchens (verb and noun),
Charades (multi-label) and AVA (boxes) each add a task beside :class:`Classification`.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch
import torch.nn.functional as F


class Task(Protocol):
    metrics: tuple[str, ...]  # names of what :meth:`summarise` returns

    def targets(self, batch: dict[str, Any], device: torch.device) -> Any: ...

    def loss(self, logits: Any, targets: Any, reduction: str = "mean") -> torch.Tensor: ...

    def counts(self, logits: Any, targets: Any) -> list[float]:
        """Sums over the batch, the last being how many samples the metrics cover."""
        ...

    def summarise(self, counts: Sequence[float]) -> dict[str, float]: ...


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """How many of ``labels`` (those >= 0) are among the top k of ``logits``, for each k."""
    keep = labels >= 0
    logits, labels = logits[keep], labels[keep]
    k = min(max(ks), logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hits = top == labels[:, None]
    return [int(hits[:, : min(kk, k)].any(dim=1).sum()) for kk in ks]


class Classification:
    """One label per clip (Kinetics): softmax cross-entropy on the logits, top-1 and top-5.
    Samples labelled -1 (unlabelled, or a test item that failed to load) are left out."""

    metrics = ("top1", "top5")

    def targets(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        return batch["label"].to(device, non_blocking=True)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if reduction == "sum" and not (targets >= 0).any():
            return logits.float().sum() * 0
        return F.cross_entropy(logits.float(), targets, ignore_index=-1, reduction=reduction)

    def counts(self, logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
        return [*topk_correct(logits.detach().float(), targets), int((targets >= 0).sum())]

    def summarise(self, counts: Sequence[float]) -> dict[str, float]:
        n = max(counts[-1], 1)
        return {"top1": counts[0] / n, "top5": counts[1] / n}


class Rotation:
    """The rotation pretext (AVSlowFast A.8): which of 0, 90, 180, 270 degrees the clip was
    turned by (``batch["rotation"]``, 0..3 quarter turns; see :mod:`avsf.data.rotation`),
    a 4-way softmax cross-entropy on the head's logits [N, 4], and its top-1."""

    metrics = ("rotation_top1",)

    def targets(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        return batch["rotation"].to(device, dtype=torch.long, non_blocking=True)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets, reduction=reduction)

    def counts(self, logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
        hits = int((logits.detach().argmax(dim=1) == targets).sum())
        return [hits, int(targets.numel())]

    def summarise(self, counts: Sequence[float]) -> dict[str, float]:
        return {"rotation_top1": counts[0] / max(counts[-1], 1)}
