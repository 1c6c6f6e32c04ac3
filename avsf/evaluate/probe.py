"""The linear probe of a pretrained backbone (AVSlowFast A.8, Table A.1): the backbone
frozen, BN included, and only a new last fc trained on a labelled transfer dataset.

    clips ──frozen network (eval mode)──> pooled features [N, D]   (the head's input, once)
    features of a split's train videos ──SGD, half-period cosine──> fc [D -> classes]
    test views' features ──fc, softmax, mean over a video's views──> top-1

A frozen backbone in eval mode computes the same features for a clip whatever the fc
learns, so they are computed once per clip: training the fc on the features of
``train_views`` random training clips per video is the frozen network's linear probe with
its augmentation drawn from that many clips per video. The backbone's weights are never
handed to an optimiser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Features:
    """Pooled clip features and which video each clip is of."""

    values: torch.Tensor  # [clips, D] float32
    video: np.ndarray  # [clips] the dataset's sample (video) index of each clip
    loaded: np.ndarray  # [clips] False for a clip that failed to load (left out)

    def of_videos(self, videos: Iterable[int]) -> "Features":
        """Only the loaded clips of ``videos``."""
        keep = np.isin(self.video, np.fromiter(videos, dtype=np.int64)) & self.loaded
        return Features(self.values[torch.from_numpy(keep)], self.video[keep], self.loaded[keep])


@torch.no_grad()
def extract_features(model: nn.Module, batches: Iterable[dict[str, Any]], inputs_of, device: torch.device | str = "cpu"
                     ) -> Features:
    """The input of ``model.head.projection`` (pooled, concatenated pathway features; eval
    mode, so no dropout and no DropPathway) for every clip of ``batches``. ``inputs_of(batch)``
    gives the network's inputs in pathway order, on ``device``."""
    model.eval()
    captured: list[torch.Tensor] = []
    hook = model.head.projection.register_forward_hook(lambda _m, args, _out: captured.append(args[0].float().cpu()))
    videos, loaded = [], []
    try:
        for batch in batches:
            model(inputs_of(batch))
            videos.append(np.asarray(batch["index"], dtype=np.int64))
            loaded.append(np.asarray(batch["loaded"], dtype=bool))
    finally:
        hook.remove()
    if not captured:
        raise ValueError("no clips to extract features from")
    return Features(torch.cat(captured), np.concatenate(videos), np.concatenate(loaded))


def train_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int,
                       batch_size: int = 32, base_lr: float = 0.1, weight_decay: float = 1e-4, momentum: float = 0.9,
                       seed: int = 0) -> nn.Linear:
    """A new fc [D -> num_classes] trained on ``features`` [N, D] with ``labels`` [N]: SGD
    with momentum, softmax cross-entropy, the learning rate falling from ``base_lr`` to 0 on
    a half-period cosine over ``epochs`` passes (shuffled by ``seed``), one step per batch."""
    generator = torch.Generator().manual_seed(seed)
    fc = nn.Linear(features.shape[1], num_classes)
    with torch.no_grad():  # the papers' head init: small normal weights, zero bias
        fc.weight.normal_(0.0, 0.01, generator=generator)
        fc.bias.zero_()
    optimiser = torch.optim.SGD(fc.parameters(), lr=base_lr, momentum=momentum, weight_decay=weight_decay)
    n = features.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            for group in optimiser.param_groups:
                group["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * step / total))
            pick = order[start : start + batch_size]
            loss = F.cross_entropy(fc(features[pick]), labels[pick])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
    return fc


@torch.no_grad()
def video_top1(fc: nn.Linear, test: Features, labels_by_video: dict[int, int]) -> tuple[int, int]:
    """(videos right, videos scored): each video of ``labels_by_video``, its softmax averaged
    over its loaded views in ``test``, its argmax against its label. A video with no
    loaded view counts as a miss."""
    probs = F.softmax(fc(test.values), dim=1)
    hits = 0
    for video, label in labels_by_video.items():
        rows = torch.from_numpy(test.video == video)
        if rows.any() and int(probs[rows].mean(dim=0).argmax()) == label:
            hits += 1
    return hits, len(labels_by_video)
