"""The papers' multi-view test: every video seen as ``test_clips`` uniform clips x
``test_crops`` crops, its prediction pooled over those views::

    ClipDataset (test mode; item i = view i % views of video i // views)
        ──DataLoader, in order──> batch ──model (eval, no grad)──> logits ──per view──>
        ViewScores.add(video, logits, loaded) ──pool──> scores [videos, classes]

Pooling (``pool``) is each dataset's own: ``softmax_mean`` (Kinetics: the mean softmax),
``logit_mean`` (EPIC-Kitchens: the official scoring wants logits, so the views' logits are
averaged) and ``sigmoid_max`` (Charades: per-class sigmoid scores max-pooled over a video's
clips). A head with several outputs (EPIC's verb and noun) gives one result per output.

A view that failed to load comes back from the dataset as a blank item (``loaded`` False)
with its failure in ``load_failures``: it is left out of its video's mean and of ``views``
(which counts the views that loaded), and reported in ``failures``; a video none of whose views loaded keeps zero scores and ``views`` 0 (the metrics
count it as missing, as the official rule counts a video with no prediction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from avsf.data.clip_dataset import ClipDataset, collate_clips
from avsf.models import ModelConfig
from avsf.train.engine import model_inputs


@dataclass
class ViewResult:
    """Per-video predictions of a multi-view test, in the dataset's video order."""

    scores: np.ndarray  # [videos, classes] float64: pooled over the views that loaded (zeros where none did)
    views: np.ndarray  # [videos] int: views that loaded
    failures: list[dict] = field(default_factory=list)  # the dataset's load_failures of the views that did not load

    @property
    def predicted(self) -> np.ndarray:
        """[videos] bool: the videos with at least one loaded view (those with a prediction)."""
        return self.views > 0

    def scores_by_id(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Video id (``ids[v]`` naming video v, e.g. the dataset's entries' clip ids) -> its
        scores, for the videos with a prediction only: the ``scores`` of
        :func:`avsf.evaluate.classification.classification_report`."""
        if len(ids) != len(self.views):
            raise ValueError(f"{len(ids)} ids for {len(self.views)} videos")
        return {video: self.scores[v] for v, video in enumerate(ids) if self.views[v] > 0}


Pool = Literal["softmax_mean", "logit_mean", "sigmoid_max"]


class ViewScores:
    """Per-video pooled scores of views (``pool``: see the module docstring), and how many
    views each video's score holds."""

    def __init__(self, videos: int, classes: int, pool: Pool = "softmax_mean"):
        if pool not in ("softmax_mean", "logit_mean", "sigmoid_max"):
            raise ValueError(f"pool must be softmax_mean, logit_mean or sigmoid_max, not {pool!r}")
        self.pool = pool
        self.sums = np.full((videos, classes), -np.inf if pool == "sigmoid_max" else 0.0, np.float64)
        self.views = np.zeros(videos, np.int64)
        self.failures: list[dict] = []

    def add(self, video_index: Any, logits: Any, loaded: Any) -> None:
        """Add a batch of views: ``video_index`` [B] ints, ``logits`` [B, classes] (the
        activation taken here, in float64), ``loaded`` [B] bools (False: a blank, left out)."""
        video = np.asarray(torch.as_tensor(video_index).cpu(), np.int64)
        keep = np.asarray(torch.as_tensor(loaded).cpu(), bool)
        logits = torch.as_tensor(logits).detach().cpu().double()
        if tuple(logits.shape) != (len(video), self.sums.shape[1]):
            raise ValueError(f"logits of shape {tuple(logits.shape)} for {len(video)} views of "
                             f"{self.sums.shape[1]} classes")
        if self.pool == "sigmoid_max":
            np.maximum.at(self.sums, video[keep], torch.sigmoid(logits).numpy()[keep])
        else:
            values = torch.softmax(logits, dim=1) if self.pool == "softmax_mean" else logits
            np.add.at(self.sums, video[keep], values.numpy()[keep])
        np.add.at(self.views, video[keep], 1)

    def result(self) -> ViewResult:
        if self.pool == "sigmoid_max":
            scores = np.where(self.views[:, None] > 0, self.sums, 0.0)
        else:
            scores = np.divide(self.sums, np.maximum(self.views, 1)[:, None])
        return ViewResult(scores, self.views.copy(), list(self.failures))


def head_outputs(cfg: ModelConfig) -> dict[str | None, int]:
    """The head's outputs and their classes: {None: K} for a one-output head, {"verb": V,
    "noun": N} for EPIC's."""
    if cfg.head.kind == "epic":
        return {"verb": cfg.head.verb_classes, "noun": cfg.head.noun_classes}
    if cfg.head.kind == "classification":
        return {None: cfg.head.num_classes}
    raise ValueError(f"predict_views scores clip heads, not a {cfg.head.kind} head")


@torch.no_grad()
def predict_views(model: torch.nn.Module, cfg: ModelConfig, dataset: ClipDataset, batch_size: int = 8,
                  device: str | torch.device = "cpu", workers: int = 0, progress: bool = False,
                  pool: Pool = "softmax_mean") -> ViewResult | dict[str, ViewResult]:
    """The multi-view prediction of every sample of ``dataset`` (a ClipDataset in test mode)
    by ``model`` (put in eval mode; the network returns logits, AVSlowFast with its audio
    fused), pooled by ``pool``; a dict of results by output for a head with several outputs
    (EPIC's verb and noun). See the module docstring."""
    if dataset.mode != "test":
        raise ValueError(f"predict_views needs a dataset in test mode, not {dataset.mode!r}")
    outputs = head_outputs(cfg)
    if pool == "softmax_mean" and cfg.head.activation != "softmax":
        raise ValueError(f"predict_views averages softmax scores here: a head with {cfg.head.activation} "
                         "activation is pooled with sigmoid_max or logit_mean")
    device = torch.device(device)
    model.eval()
    accumulators = {name: ViewScores(len(dataset.samples), classes, pool) for name, classes in outputs.items()}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", collate_fn=collate_clips)
    failures: list[dict] = []
    for batch in tqdm(loader, desc="views", unit="batch", disable=not progress):
        failures += batch["load_failures"]
        logits = model(model_inputs(cfg, batch, device, channels_last=False))
        for name, accumulator in accumulators.items():
            accumulator.add(batch["index"], (logits if name is None else logits[name]).float(), batch["loaded"])
    results = {}
    for name, accumulator in accumulators.items():
        accumulator.failures = failures
        results[name] = accumulator.result()
    return results[None] if None in results else results


@dataclass
class BoxPredictions:
    """Per-box scores of a detection head over every sample (AVA's keyframes) of a test set."""

    rows: list[tuple[str, int, list[float], int, float]]  # (video, timestamp, box, class id, score)
    samples: int  # keyframes seen
    boxes: int  # boxes scored
    failures: list[dict] = field(default_factory=list)  # samples that failed to load


@torch.no_grad()
def predict_boxes(model: torch.nn.Module, cfg: ModelConfig, dataset: ClipDataset, classes: Sequence[int],
                  batch_size: int = 8, device: str | torch.device = "cpu", workers: int = 0,
                  progress: bool = False) -> BoxPredictions:
    """A detection head's sigmoid score of every class id of ``classes`` (the head's outputs,
    in order) for every box of every sample of ``dataset`` (test mode; its label source gives
    the boxes, e.g. a person detector's), one clip per sample, fully convolutional."""
    if dataset.mode != "test":
        raise ValueError(f"predict_boxes needs a dataset in test mode, not {dataset.mode!r}")
    device = torch.device(device)
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_clips)
    rows: list[tuple[str, int, list[float], int, float]] = []
    failures: list[dict] = []
    scored = 0
    for batch in tqdm(loader, desc="keyframes", unit="batch", disable=not progress):
        failures += batch["load_failures"]
        boxes = batch["boxes"].to(device)
        if boxes.shape[0] == 0:
            continue
        scores = torch.sigmoid(model(model_inputs(cfg, batch, device, channels_last=False), boxes=boxes).float())
        scored += boxes.shape[0]
        for k in range(boxes.shape[0]):
            item = int(boxes[k, 0])
            video, timestamp = batch["video_id"][item], int(batch["timestamp"][item])
            box = [round(float(x), 4) for x in batch["box_normalised"][k]]
            rows += [(video, timestamp, box, classes[c], round(float(scores[k, c]), 6)) for c in range(len(classes))]
    return BoxPredictions(rows, len(dataset), scored, failures)
