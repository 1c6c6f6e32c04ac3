"""Hierarchical audio-visual synchronisation (AVSlowFast Sec. 3.5), as the authors' code does it.

Every clip brings its own (in-sync) audio and one out-of-sync ``negative_audio``; both run
through the audio pathway together (the batch doubled along N), and only the clip's own
half is fused into the visual pathways and classified. At each level (res3, res4, pool5)::

    visual  the Slow features after the Fast->Slow concatenation, before audio is added
            (pool5: res5 Slow + a training-only res5 Fast->Slow lateral)
    audio   the Audio->visual lateral's output for the positive and the negative audio
            (shared with the fusion at that stage; pool5 and stages without fusion: own lateral)

are pooled over (T, H, W), each through its own linear projection, L2-normalised and
scaled by ``SyncConfig.scale`` (0.5): a :class:`SyncLevel`. :func:`sync_loss` is the
authors' contrastive loss over the valid pairs (:func:`sync_valid`). A level counts only
while no audio has reached its visual features in this iteration (``SyncLevel.counted``):
on a DropPathway-dropped iteration every level, on a fused one only the levels up to the
earliest audio fusion (res3 for fusion after res3 and res4).

Out-of-sync audio comes from another clip (easy) or from the same video shifted by at least
0.5 s (hard, made by the data loader); :func:`avsf.train.recipe.hard_negative_fraction` is the paper's
curriculum and :func:`easy_negatives` makes easy ones inside a batch.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avsf.models.fusion import AudioToVisual, FuseFastToSlow

DUPLICATE_COSINE = 0.99999  # authors' AVS_DUPLICATE_THRESH


class SyncLevel(NamedTuple):
    """One level's embeddings ([N, D] each, norm ``scale``) and whether it counts this iteration."""

    name: str
    visual: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    counted: bool


class SyncHead(nn.Module):
    """The projections of one sync level, plus the laterals a level needs of its own::

        visual features [N, Cv, T, H, W] -> mean (T, H, W) -> visual (linear) -> L2 -> x scale
        audio lateral   [2N, Ca, T, 1, 1] -> mean (T)      -> audio  (linear) -> L2 -> x scale

    ``fuse`` (pool5 only): the res5 Fast->Slow lateral that makes pool5's visual features
    like res3's and res4's. ``a2v``: the Audio->visual lateral, for levels whose stage has
    no audio fusion to share one with (pool5, or a stage not in ``fusion.stages``).
    """

    def __init__(self, visual_dim: int, audio_dim: int, dim: int, scale: float,
                 fuse: FuseFastToSlow | None = None, a2v: AudioToVisual | None = None):
        super().__init__()
        self.visual = nn.Linear(visual_dim, dim)
        self.audio = nn.Linear(audio_dim, dim)
        self.scale = scale
        self.fuse, self.a2v = fuse, a2v

    def embed(self, projection: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(projection(x.flatten(2).mean(dim=2)), dim=1) * self.scale

    def forward(self, visual: torch.Tensor, audio: torch.Tensor | None, n: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(visual, positive, negative) embeddings; ``audio`` holds the positive then the
        negative half along N (None: the audio pathway was dropped; zeros)."""
        v = self.embed(self.visual, visual)
        if audio is None:
            zeros = v.new_zeros(v.shape).detach()
            return v, zeros, zeros
        a = self.embed(self.audio, audio)
        return v, a[:n], a[n:]


def sync_valid(audio: torch.Tensor, negative_audio: torch.Tensor, audible: torch.Tensor,
               negative_audible: torch.Tensor, duplicate_cosine: float = DUPLICATE_COSINE) -> torch.Tensor:
    """[N] bool: the pairs the sync loss may use. Both log-mels audible (flags the dataset
    judges on the raw, un-normalised log-mel of each item) and not near-duplicates (cosine
    similarity of the two inputs below ``duplicate_cosine``, as in the authors' code)."""
    with torch.no_grad():
        cosine = F.cosine_similarity(audio.flatten(1).float(), negative_audio.flatten(1).float(), dim=1)
        return audible.bool() & negative_audible.bool() & (cosine < duplicate_cosine)


def sync_loss(levels: Sequence[SyncLevel], valid: torch.Tensor, margin: float = 0.99) -> torch.Tensor:
    """The authors' contrastive loss, summed over the counted levels (their training loop
    adds the levels' losses)::

        level loss = (sum ||v - a+||^2 + sum max(0, margin - ||v - a-||)^2) / (2 N_valid)

    with sums over the valid pairs (``valid``, bool [N]) and embeddings of norm 0.5 (so
    squared distances lie in [0, 1]). Uncounted levels enter with weight zero, so every
    sync parameter stays in the autograd graph (DistributedDataParallel without
    find_unused_parameters). A differentiable zero when nothing is valid or counted.
    """
    if not levels:
        return valid.new_zeros((), dtype=torch.float32)
    mask = valid.to(levels[0].visual.dtype)
    pairs = 2 * mask.sum().clamp(min=1)
    total = levels[0].visual.new_zeros(())
    for level in levels:
        positive = (level.visual - level.positive).pow(2).sum(dim=1)
        negative = (margin - (level.visual - level.negative).norm(dim=1)).clamp(min=0).pow(2)
        loss = ((positive + negative) * mask).sum() / pairs
        total = total + loss * (1.0 if level.counted else 0.0)
    return total


def easy_negatives(audio: torch.Tensor, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """An easy negative for every clip: another clip's audio, in a random cyclic order of the
    batch so that no clip keeps its own. Returns (negative_audio, donor index [N]); index
    the clips' audible flags with the donor index to get ``negative_audible``."""
    n = audio.shape[0]
    if n < 2:
        raise ValueError("easy negatives need a batch of at least 2 clips")
    order = torch.randperm(n, generator=generator)
    donor = torch.empty_like(order)
    donor[order] = order.roll(1)
    donor = donor.to(audio.device)
    return audio[donor], donor
