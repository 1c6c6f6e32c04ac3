"""What a training task adds to the loop: its targets, its loss on the head's logits, and
the counts its metrics are made of (summed over batches and ranks, then divided once).

The loop (avsf.train.engine) is the same for every dataset; EPIC-Kitchens (verb and noun),
Charades (multi-label) and AVA (boxes) each add a task beside :class:`Classification`. A
task whose head needs more than the features has a method for it: ``boxes(batch, device)``
(:class:`Detection`) gives the detection head its boxes, in training, validation and
precise BN alike.
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
    Samples labelled -1 (unlabelled, or a test item that failed to load) are left out.
    ``key``: the batch entry holding the labels ("verb" or "noun" trains a separate EPIC
    verb or noun model)."""

    metrics = ("top1", "top5")

    def __init__(self, key: str = "label"):
        self.key = key

    def targets(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        return batch[self.key].to(device, non_blocking=True)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if reduction == "sum" and not (targets >= 0).any():
            return logits.float().sum() * 0
        return F.cross_entropy(logits.float(), targets, ignore_index=-1, reduction=reduction)

    def counts(self, logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
        return [*topk_correct(logits.detach().float(), targets), int((targets >= 0).sum())]

    def summarise(self, counts: Sequence[float]) -> dict[str, float]:
        n = max(counts[-1], 1)
        return {"top1": counts[0] / n, "top5": counts[1] / n}


class VerbNoun:
    """EPIC-Kitchens with one model for both (the EpicHead's logits ``{"verb": [N, V],
    "noun": [N, Nn]}``): loss 0.5 * (CE of the verbs + CE of the nouns); verb and noun
    top-1 / top-5 and action top-1 (the argmax verb and the argmax noun both right; the
    official action ranking is applied at evaluation, avsf.evaluate.epic). A sample is left
    out of everything unless both its verb and its noun are labelled (>= 0): every EPIC
    segment has both, a blank test item neither."""

    metrics = ("verb_top1", "verb_top5", "noun_top1", "noun_top5", "action_top1")

    def targets(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        return self.labelled({"verb": batch["verb"].to(device, non_blocking=True),
                              "noun": batch["noun"].to(device, non_blocking=True)})

    @staticmethod
    def labelled(targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``targets`` with -1 for both labels wherever either is -1."""
        both = (targets["verb"] >= 0) & (targets["noun"] >= 0)
        return {name: torch.where(both, targets[name], torch.full_like(targets[name], -1)) for name in ("verb", "noun")}

    def loss(self, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
             reduction: str = "mean") -> torch.Tensor:
        targets = self.labelled(targets)
        if not (targets["verb"] >= 0).any():  # nothing labelled: zero, still attached to the graph
            return (logits["verb"].float().sum() + logits["noun"].float().sum()) * 0
        return 0.5 * sum(F.cross_entropy(logits[name].float(), targets[name], ignore_index=-1, reduction=reduction)
                         for name in ("verb", "noun"))

    def counts(self, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> list[float]:
        targets = self.labelled(targets)
        verb, noun = logits["verb"].detach().float(), logits["noun"].detach().float()
        keep = targets["verb"] >= 0
        action = (verb.argmax(dim=1) == targets["verb"]) & (noun.argmax(dim=1) == targets["noun"]) & keep
        return [*topk_correct(verb, targets["verb"]), *topk_correct(noun, targets["noun"]), int(action.sum()),
                int(keep.sum())]

    def summarise(self, counts: Sequence[float]) -> dict[str, float]:
        n = max(counts[-1], 1)
        return {name: value / n for name, value in zip(self.metrics, counts)}


class MultiLabel:
    """Charades: several labels per clip, a multi-hot float target [N, C] from
    ``batch["labels"]``; loss: per-class sigmoid cross-entropy (BCE with logits), the mean
    over classes and samples ("sum": the per-sample means summed, so that sum / samples is
    the mean); metric: ``top1_precision``, the share of samples whose top-scoring class is a
    positive (mAP over whole videos is computed at evaluation, avsf.evaluate.charades).

    Left out of everything: a sample whose ``loaded`` is False (a test item that failed to
    load, if the batch says) or whose labels hold a negative value (-1 marks "no target").
    A sample with an all-zero row (a video without actions) is kept: all its classes are
    negatives, and it counts as a top-1 miss."""

    metrics = ("top1_precision",)

    def targets(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        labels = batch["labels"].to(device, non_blocking=True).float()
        keep = (labels >= 0).all(dim=1)
        if "loaded" in batch:
            keep &= torch.as_tensor(batch["loaded"], dtype=torch.bool).to(device)
        return {"labels": labels, "keep": keep}

    def loss(self, logits: torch.Tensor, targets: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
        keep = targets["keep"]
        if not keep.any():
            return logits.float().sum() * 0
        per_sample = F.binary_cross_entropy_with_logits(logits.float()[keep], targets["labels"][keep],
                                                        reduction="none").mean(dim=1)
        return per_sample.mean() if reduction == "mean" else per_sample.sum()

    def counts(self, logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> list[float]:
        keep = targets["keep"]
        top = logits.detach().float()[keep].argmax(dim=1)
        hits = targets["labels"][keep].gather(1, top[:, None]).squeeze(1) > 0
        return [int(hits.sum()), int(keep.sum())]

    def summarise(self, counts: Sequence[float]) -> dict[str, float]:
        return {"top1_precision": counts[0] / max(counts[1], 1)}


class Detection:
    """AVA: one multi-hot target per person box (SlowFast Sec. 5). A batch of
    :func:`~avsf.data.clip_dataset.collate_clips` holds ``boxes`` [K, 5] (batch index, x1,
    y1, x2, y2 in input pixels: :meth:`boxes` hands them to the detection head) and
    ``box_labels`` [K, C]. Loss: per-class sigmoid cross-entropy, the mean over classes and
    boxes ("sum": the per-box means summed); a batch without boxes gives zero, still
    attached to the graph. Metric: ``top1_precision``, the share of boxes whose top-scoring
    class is a positive (a box without positives, such as an unmatched test detection, is a
    miss; the frame-mAP is computed at evaluation, avsf.evaluate.ava); the counts cover boxes."""

    metrics = ("top1_precision",)

    def boxes(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        return batch["boxes"].to(device, non_blocking=True)

    def targets(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        return batch["box_labels"].to(device, non_blocking=True).float()

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if not len(targets):
            return logits.float().sum() * 0
        per_box = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none").mean(dim=1)
        return per_box.mean() if reduction == "mean" else per_box.sum()

    def counts(self, logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
        top = logits.detach().float().argmax(dim=1)
        hits = targets.gather(1, top[:, None]) > 0
        return [int(hits.sum()), len(targets)]

    def summarise(self, counts: Sequence[float]) -> dict[str, float]:
        return {"top1_precision": counts[0] / max(counts[1], 1)}


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


class SyncOnly:
    """No labels and no pretext head: AV-synchronisation alone (AVSlowFast's self-supervised
    "AVS" setting, A.8). The loop adds the sync loss; this task adds zero, still attached
    to the head's logits so that every parameter takes part in the step (DDP's reduction)."""

    metrics: tuple[str, ...] = ()

    def targets(self, batch: dict[str, Any], device: torch.device) -> None:  # noqa: ARG002
        return None

    def loss(self, logits: torch.Tensor, targets: None, reduction: str = "mean") -> torch.Tensor:  # noqa: ARG002
        return logits.float().sum() * 0

    def counts(self, logits: torch.Tensor, targets: None) -> list[float]:  # noqa: ARG002
        return [int(logits.shape[0])]

    def summarise(self, counts: Sequence[float]) -> dict[str, float]:  # noqa: ARG002
        return {}
