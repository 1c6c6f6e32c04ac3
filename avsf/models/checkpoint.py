"""Load official PySlowFast checkpoints (``.pyth`` holding ``model_state``).

Our module names are PySlowFast's (s1..s5, pathway{i}_stem / pathway{i}_res{j}, s{k}_fuse
.conv_f2s, head.projection), so tensors map by name. Into AVSlowFast, a SlowFast checkpoint
fills the Slow and Fast pathways and their laterals; the audio pathway, the audio fusion and
the sync heads keep their fresh initialisation, and the classifier (which also sees audio
features) is skipped. Every key is accounted for in a :class:`LoadReport`; a tensor whose
shape differs from ours stops the load with a message naming it.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ours, absent from the checkpoint: kept as initialised
    unexpected: list[str] = field(default_factory=list)  # the checkpoint's, with no place in ours: ignored
    skipped: list[str] = field(default_factory=list)  # in both, left out on purpose (skip_prefixes)

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        for label, keys in (("missing (kept as initialised)", self.missing),
                            ("unexpected (ignored)", self.unexpected),
                            ("skipped", self.skipped)):
            if keys:
                groups = Counter(_group(k) for k in keys)
                shown = ", ".join(f"{g} ({n})" for g, n in sorted(groups.items()))
                lines.append(f"{label}: {len(keys)} tensors in {shown}")
        return "; ".join(lines)


def _group(key: str) -> str:
    """'s3.pathway2_res1.branch2.a.weight' -> 's3.pathway2'; 'head.projection.weight' -> 'head'."""
    parts = key.split(".")
    if len(parts) > 2 and parts[1].startswith("pathway"):
        return f"{parts[0]}.{parts[1].split('_')[0]}"
    return parts[0]


def read_state_dict(path: str | os.PathLike, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The model tensors of a PySlowFast ``.pyth`` (``{"model_state": ...}``), a bare state
    dict, or one saved from DistributedDataParallel (``module.`` prefixes are dropped).

    Files are unpickled with ``weights_only=True`` unless ``trusted``.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        hint = "" if trusted else " (if you trust the file, pass trusted=True)"
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}{hint}") from None
    return model_tensors(obj, str(path))


def model_tensors(obj: object, origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The name -> tensor mapping inside a loaded checkpoint ``{"model_state": ...}`` or a
    bare state dict, without DistributedDataParallel's ``module.`` prefixes."""
    state = obj.get("model_state", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{origin}: expected a dict with 'model_state' mapping names to tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_pyslowfast_checkpoint(model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor],
                               skip_prefixes: Sequence[str] | None = None, trusted: bool = False) -> LoadReport:
    """Copy matching tensors from ``source`` (a path, or a checkpoint or state dict already
    loaded) into ``model`` and report what happened.

    ``skip_prefixes`` defaults to ``("head.",)`` for a model whose classifier also sees
    audio (AVSlowFast with pool5 fusion) and to nothing otherwise. Raises
    :class:`CheckpointError` on a shape mismatch, before changing anything.
    """
    state = model_tensors(source) if isinstance(source, Mapping) else read_state_dict(source, trusted)
    if skip_prefixes is None:
        skip_prefixes = ("head.",) if getattr(model, "head_uses_audio", False) and \
            getattr(getattr(model, "cfg", None), "arch", "") == "avslowfast" else ()
    ours = model.state_dict()
    report = LoadReport()
    to_copy = {}
    for key, value in state.items():
        if key not in ours:
            report.unexpected.append(key)
        elif any(key.startswith(p) for p in skip_prefixes):
            report.skipped.append(key)
        elif ours[key].shape != value.shape:
            raise CheckpointError(f"shape mismatch for {key}: checkpoint {tuple(value.shape)}, "
                                  f"model {tuple(ours[key].shape)}")
        else:
            to_copy[key] = value
    report.missing = [k for k in ours if k not in state]
    with torch.no_grad():
        for key, value in to_copy.items():
            ours[key].copy_(value)
            report.loaded.append(key)
    log.info("checkpoint: %s", report.summary())
    return report
