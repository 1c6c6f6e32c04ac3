"""Load official PySlowFast checkpoints: ``.pyth`` holding ``model_state``, and the model
zoo's Caffe2 ``.pkl`` files (``{"blobs": {caffe2 name: numpy array}}``), whose names are
converted by PySlowFast's rules (:func:`caffe2_to_pyslowfast_name`).

Our module names are PySlowFast's (s1..s5, pathway{i}_stem / pathway{i}_res{j} /
pathway{i}_nonlocal{j}, s{k}_fuse.conv_f2s, head.projection), so tensors map by name. Into AVSlowFast, a SlowFast checkpoint
fills the Slow and Fast pathways and their laterals; the audio pathway, the audio fusion and
the sync heads keep their fresh initialisation, and the classifier (which also sees audio
features, so its shape differs) is skipped. Every key is accounted for in a :class:`LoadReport`; a tensor whose
shape differs from ours stops the load with a message naming it.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
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

    Files are unpickled with ``weights_only=True`` unless ``trusted``. A ``.pkl`` path is
    read as a Caffe2 checkpoint (:func:`read_caffe2_state_dict`).
    """
    return model_tensors(read_checkpoint(path, trusted), str(path))


def read_checkpoint(path: str | os.PathLike, trusted: bool = False) -> Mapping:
    """A checkpoint file as it was saved: a ``.pyth`` (or bare state dict) as torch loads it,
    a Caffe2 ``.pkl`` as ``{"blobs": ...}`` (see :func:`read_state_dict` for ``trusted``)."""
    if str(path).endswith(".pkl"):
        return _read_caffe2(path, trusted)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        hint = "" if trusted else " (if you trust the file, pass trusted=True)"
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}{hint}") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict with 'model_state' mapping names to tensors")
    return obj


def trained_temporal_sampling(checkpoint: Mapping) -> str:
    """The Slow / Fast frame picks (``avsf.data.clip_dataset.ClipSampling.temporal_sampling``)
    a loaded checkpoint's weights were trained on: what ours record in ``data.sampling``
    ("strided" where older ones record none); "pyslowfast" for any other (an official
    PySlowFast ``.pyth`` or Caffe2 ``.pkl``, trained on PySlowFast's linspace picks)."""
    data = checkpoint.get("data") if "avsf" in checkpoint else None
    if not isinstance(data, Mapping):
        return "pyslowfast"
    return str(data.get("sampling", {}).get("temporal_sampling", "strided"))


def model_tensors(obj: object, origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The name -> tensor mapping inside a loaded checkpoint ``{"model_state": ...}``, a
    Caffe2 one ``{"blobs": ...}`` (names converted), or a bare state dict, without
    DistributedDataParallel's ``module.`` prefixes."""
    if isinstance(obj, Mapping) and isinstance(obj.get("blobs"), Mapping):
        return caffe2_tensors(obj["blobs"])
    state = obj.get("model_state", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{origin}: expected a dict with 'model_state' mapping names to tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


# --------------------------------------------------------------------------- Caffe2 .pkl

_BN_SUFFIXES = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
_OPTIMIZER_BLOBS = re.compile(r"(_momentum|^lr|^model_iter)$")


def caffe2_to_pyslowfast_name(name: str) -> str | None:
    """PySlowFast's module name for a Caffe2 blob (its ``c2_model_loading`` rules), or None
    for a blob it does not convert. A ``t_`` prefix is the Fast pathway (pathway1)::

        conv1_w / res_conv1_bn_s          s1.pathway0_stem.conv.weight / .bn.weight
        res3_2_branch2b_bn_riv            s3.pathway0_res2.branch2.b_bn.running_var
        res4_0_branch1_w                  s4.pathway0_res0.branch1.weight
        t_pool1_subsample_w               s1_fuse.conv_f2s.weight     (Fast->Slow laterals)
        t_res2_2_branch2c_bn_subsample_bn_rm   s2_fuse.bn.running_mean
        nonlocal_conv4_6_theta_b          s4.pathway0_nonlocal6.conv_theta.bias
        nonlocal_conv4_6_bn_s             s4.pathway0_nonlocal6.bn.weight
        pred_w                            head.projection.weight
    """
    bn = re.fullmatch(r"(.+)_bn_(s|b|rm|riv)", name)
    plain = re.fullmatch(r"(.+)_(w|b)", name)
    if bn:
        base, param, is_bn = bn.group(1), _BN_SUFFIXES[bn.group(2)], True
    elif plain:
        base, param, is_bn = plain.group(1), {"w": "weight", "b": "bias"}[plain.group(2)], False
    else:
        return None
    if base == "pred" and not is_bn:
        return f"head.projection.{param}"
    if m := re.fullmatch(r"nonlocal_conv(\d+)_(\d+)(?:_(theta|phi|g|out))?", base):
        stage, block, conv = m.groups()
        if (conv is None) != is_bn:
            return None
        return f"s{stage}.pathway0_nonlocal{block}.{'bn' if is_bn else 'conv_' + conv}.{param}"
    if m := re.fullmatch(r"t_(?:pool(1)|res(\d+)_\d+_branch2c_bn)_subsample", base):  # F->S lateral
        stage = m.group(1) or m.group(2)
        return f"s{stage}_fuse.{'bn' if is_bn else 'conv_f2s'}.{param}"
    fast = base.startswith("t_")
    base = base.removeprefix("t_")
    pathway = f"pathway{int(fast)}"
    if base in ("conv1", "res_conv1"):
        return f"s1.{pathway}_stem.{'bn' if is_bn else 'conv'}.{param}"
    if m := re.fullmatch(r"res(\d+)_(\d+)_branch(1|2[abc])", base):
        stage, block, branch = m.groups()
        layer = "branch1" if branch == "1" else f"branch2.{branch[1]}"
        return f"s{stage}.{pathway}_res{block}.{layer}{'_bn' if is_bn else ''}.{param}"
    return None


def caffe2_tensors(blobs: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Caffe2 blobs (numpy arrays) as tensors under PySlowFast's names. Optimizer state
    (``*_momentum``, ``lr``, ``model_iter``) is dropped; a blob with no conversion keeps its
    Caffe2 name, so the load reports it as unexpected."""
    out = {}
    for name, value in blobs.items():
        if _OPTIMIZER_BLOBS.search(name):
            continue
        out[caffe2_to_pyslowfast_name(name) or name] = torch.from_numpy(np.array(value, copy=True))
    return out


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what a Caffe2 checkpoint holds: dicts, strings, numbers, numpy arrays."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module.replace("numpy.core.", "numpy._core."), name)


def read_caffe2_state_dict(path: str | os.PathLike, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a PySlowFast model-zoo Caffe2 ``.pkl`` (a pickle, latin-1 strings, of
    ``{"blobs": {name: numpy array}}``), under PySlowFast's names. Unless ``trusted``, the
    pickle may hold nothing but dicts, numbers, strings and numpy arrays."""
    return caffe2_tensors(_read_caffe2(path, trusted)["blobs"])


def _read_caffe2(path: str | os.PathLike, trusted: bool) -> Mapping:
    """A Caffe2 ``.pkl`` as unpickled: a dict whose ``blobs`` map names to numpy arrays."""
    try:
        with open(path, "rb") as f:
            unpickler = pickle.Unpickler(f, encoding="latin1") if trusted else _ArrayUnpickler(f, encoding="latin1")
            obj = unpickler.load()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - unpickling raises many kinds for a bad file
        hint = "" if trusted else " (if you trust the file, pass trusted=True)"
        raise CheckpointError(f"{path}: cannot read Caffe2 checkpoint: {exc}{hint}") from None
    if not isinstance(obj, Mapping) or not isinstance(obj.get("blobs"), Mapping):
        raise CheckpointError(f"{path}: expected a Caffe2 checkpoint, a dict with 'blobs'")
    return obj


# --------------------------------------------------------------------------- loading


def load_pyslowfast_checkpoint(model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor],
                               skip_prefixes: Sequence[str] | None = None, trusted: bool = False) -> LoadReport:
    """Copy matching tensors from ``source`` (a ``.pyth`` or Caffe2 ``.pkl`` path, or a
    checkpoint or state dict already loaded) into ``model`` and report what happened.
    BN step counters (``num_batches_tracked``) are never reported missing: Caffe2 has none.

    When any head tensor (``head.``) differs in shape from ours the whole head is skipped,
    not refused: the checkpoint's classifier is for other classes, or for other features
    (a SlowFast head loaded into AVSlowFast, whose classifier also sees pooled audio), and
    ours stays as initialised; a head of the same shapes (our own checkpoints) loads. ``skip_prefixes``
    leaves out more on purpose. Any other shape mismatch raises :class:`CheckpointError`,
    before changing anything.
    """
    state = model_tensors(source) if isinstance(source, Mapping) else read_state_dict(source, trusted)
    ours = model.state_dict()
    skip_prefixes = tuple(skip_prefixes or ())
    if any(k.startswith("head.") and k in ours and _expand_dims(v, ours[k]).shape != ours[k].shape
           for k, v in state.items()):
        skip_prefixes += ("head.",)
    report = LoadReport()
    to_copy = {}
    for key, value in state.items():
        if key not in ours:
            report.unexpected.append(key)
        elif any(key.startswith(p) for p in skip_prefixes):
            report.skipped.append(key)
        else:
            value = _expand_dims(value, ours[key])
            if ours[key].shape != value.shape:
                raise CheckpointError(f"shape mismatch for {key}: checkpoint {tuple(value.shape)}, "
                                      f"model {tuple(ours[key].shape)}")
            to_copy[key] = value
    report.missing = [k for k in ours if k not in state and not k.endswith("num_batches_tracked")]
    with torch.no_grad():
        for key, value in to_copy.items():
            ours[key].copy_(value)
            report.loaded.append(key)
    log.info("checkpoint: %s", report.summary())
    return report


def _expand_dims(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Trailing singleton dims added where the checkpoint has fewer (Caffe2 stores some
    blobs flatter than PyTorch's modules, as PySlowFast's loader allows)."""
    if value.dim() < like.dim():
        return value.reshape(*value.shape, *(1,) * (like.dim() - value.dim()))
    return value
