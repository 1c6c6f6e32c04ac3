"""Training checkpoints in PySlowFast's format, with what exact resumption needs.

A checkpoint is one ``torch.save`` dict::

    epoch            index of the last completed epoch (-1: none), as PySlowFast writes it
    model_state      the model's state dict, PySlowFast's names, no DDP ``module.`` prefix
    optimizer_state  the SGD state (momentum buffers)
    cfg              YAML text of the run's settings (PySlowFast stores its config there)
    model_config     our model config (:func:`avsf.models.serialize.config_to_dict`)
    avsf             resumption: next epoch and step, global step, every RNG state, the LR
                     schedule, the curriculum phase, the fingerprint of what the run
                     depends on, the metrics history and the load failures so far

so PySlowFast's tools and :func:`avsf.models.checkpoint.load_pyslowfast_checkpoint` read
it as an official checkpoint, and :func:`load_training_checkpoint` resumes from it.
Files are written under a temporary name and renamed: a kill never leaves half a file.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avsf.io.atomic import atomic_output, temp_path_for

CHECKPOINT_VERSION = 1
LAST = "last.pyth"  # the point to resume from: a hard link to the newest checkpoint (a copy where links fail)
FINAL = "final.pyth"  # the trained model, after precise BN: what later stages take


EPOCH_NAME = re.compile(r"checkpoint_epoch_\d{5}\.pyth")  # not the mid-epoch ..._step_NNNNNN.pyth
STEP_NAME = re.compile(r"checkpoint_epoch_\d{5}_step_\d{6}\.pyth")
# Every checkpoint a run writes, named by where training goes on from: (epoch, step)
POSITION_NAME = re.compile(r"checkpoint_epoch_(\d{5})(?:_step_(\d{6}))?\.pyth")


def epoch_checkpoint_name(epochs_done: int) -> str:
    """PySlowFast's name: ``checkpoint_epoch_00005.pyth`` after 5 epochs."""
    return f"checkpoint_epoch_{epochs_done:05d}.pyth"


def step_checkpoint_name(epoch: int, step: int) -> str:
    """A mid-epoch resumption point (a preempted job's): training goes on at ``step`` of
    ``epoch`` (both counted from 0)."""
    return f"checkpoint_epoch_{epoch:05d}_step_{step:06d}.pyth"


def rng_states() -> dict[str, Any]:
    state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": state[0], "keys": torch.from_numpy(state[1].astype(np.int64)), "pos": int(state[2]),
                  "has_gauss": int(state[3]), "gauss": float(state[4])},
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(state, tmp)
    return path


def link_last(directory: str | os.PathLike, target: str | os.PathLike) -> None:
    """Point ``last.pyth`` at ``target`` atomically (a hard link; a copy where links fail)."""
    final = Path(directory) / LAST
    tmp = temp_path_for(final)
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, final)


def resume_point(directory: str | os.PathLike) -> Path | None:
    """The checkpoint to resume from: ``last.pyth``, unless a checkpoint further on sits
    beside it (a job killed between that checkpoint's write and the link of ``last.pyth``)
    or ``last.pyth`` is no checkpoint of ours; None when there is none."""
    directory = Path(directory)
    last = directory / LAST
    written = sorted((_position(m), p) for p in directory.glob("checkpoint_epoch_*.pyth")
                     if (m := POSITION_NAME.fullmatch(p.name)))
    newest_position, newest = written[-1] if written else (None, None)
    linked = [pos for pos, p in written if _same_file(last, p)]
    if linked:  # a hard link: the name it shares says where it is
        last_position = linked[-1]
    else:  # a copy, or last.pyth alone (the others pruned): its record says
        record = read_record(last)
        if record is None:
            return newest
        last_position = (record["next_epoch"], record["next_step"])
    return newest if newest is not None and newest_position > last_position else last


def _position(name: re.Match) -> tuple[int, int]:
    return int(name[1]), int(name[2] or 0)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def load_training_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint this engine wrote (tensors and plain containers only: no code runs);
    ``mmap`` reads tensors only when they are used (for a look at the record)."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    if not isinstance(state, dict) or "avsf" not in state:
        raise ValueError(f"{path}: not a training checkpoint of avsf (no 'avsf' resumption record)")
    return state


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The resumption record (``avsf``) of the checkpoint at ``path``, without reading its
    tensors; None when there is no file there or it is not a checkpoint of ours."""
    try:
        record = load_training_checkpoint(path, mmap=True)["avsf"]
        return record if {"fingerprint", "next_epoch", "next_step"} <= set(record) else None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, pickle.UnpicklingError):
        return None


def prune_checkpoints(directory: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` epoch checkpoints (``last.pyth`` keeps its own link)."""
    if keep <= 0:
        return []
    epochs = sorted(p for p in Path(directory).glob("checkpoint_epoch_*.pyth") if EPOCH_NAME.fullmatch(p.name))
    removed = epochs[:-keep]
    for old in removed:
        old.unlink()
    return removed
