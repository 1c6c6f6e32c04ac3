"""The papers' multi-view test: every video seen as ``test_clips`` uniform clips x
``test_crops`` crops, its prediction the mean softmax over those views::

    ClipDataset (test mode; item i = view i % views of video i // views)
        ──DataLoader, in order──> batch ──model (eval, no grad)──> logits ──softmax──>
        ViewScores.add(video, probabilities, loaded) ──> scores [videos, classes] / views

A view that failed to load comes back from the dataset as a blank item (``loaded`` False)
with its failure in ``load_failures``: it is left out of its video's mean and of ``views``
(which counts the views that loaded), and reported in ``failures``; a video none of whose views loaded keeps zero scores and ``views`` 0 (the metrics
count it as missing, as the official rule counts a video with no prediction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

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

    scores: np.ndarray  # [videos, classes] float64: mean softmax over the views that loaded (zeros where none did)
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


class ViewScores:
    """Sums of per-view softmax probabilities per video, and how many views each sum holds."""

    def __init__(self, videos: int, classes: int):
        self.sums = np.zeros((videos, classes), np.float64)
        self.views = np.zeros(videos, np.int64)
        self.failures: list[dict] = []

    def add(self, video_index: Any, logits: Any, loaded: Any) -> None:
        """Add a batch of views: ``video_index`` [B] ints, ``logits`` [B, classes] (softmax
        taken here, in float64), ``loaded`` [B] bools (False: a blank, left out)."""
        video = np.asarray(torch.as_tensor(video_index).cpu(), np.int64)
        keep = np.asarray(torch.as_tensor(loaded).cpu(), bool)
        probabilities = torch.softmax(torch.as_tensor(logits).detach().cpu().double(), dim=1).numpy()
        if probabilities.shape != (len(video), self.sums.shape[1]):
            raise ValueError(f"logits of shape {probabilities.shape} for {len(video)} views of "
                             f"{self.sums.shape[1]} classes")
        np.add.at(self.sums, video[keep], probabilities[keep])
        np.add.at(self.views, video[keep], 1)

    def result(self) -> ViewResult:
        scores = np.divide(self.sums, np.maximum(self.views, 1)[:, None])
        return ViewResult(scores, self.views.copy(), list(self.failures))


@torch.no_grad()
def predict_views(model: torch.nn.Module, cfg: ModelConfig, dataset: ClipDataset, batch_size: int = 8,
                  device: str | torch.device = "cpu", workers: int = 0, progress: bool = False) -> ViewResult:
    """The multi-view prediction of every video of ``dataset`` (a ClipDataset in test mode)
    by ``model`` (put in eval mode; the network returns logits, AVSlowFast with its audio
    fused); see the module docstring."""
    if dataset.mode != "test":
        raise ValueError(f"predict_views needs a dataset in test mode, not {dataset.mode!r}")
    if cfg.head.kind != "classification" or cfg.head.activation != "softmax":
        raise ValueError(f"predict_views averages softmax scores: a {cfg.head.kind} head with "
                         f"{cfg.head.activation} activation is not one")
    device = torch.device(device)
    model.eval()
    classes = cfg.head.num_classes
    accumulator = ViewScores(len(dataset.samples), classes)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", collate_fn=collate_clips)
    for batch in tqdm(loader, desc="views", unit="batch", disable=not progress):
        accumulator.failures += batch["load_failures"]
        logits = model(model_inputs(cfg, batch, device, channels_last=False))
        accumulator.add(batch["index"], logits.float(), batch["loaded"])
    return accumulator.result()
