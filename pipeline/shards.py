"""What the store's stages share: splitting work into shards and keeping complete shards on a
rerun (``decode``, ``spectrogram``), carrying the failure ledger on.

Kept out of the stages' own modules so that one stage's code is not a dependency of another.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

from avsf.data.ledger import Failure, read_ledger, write_ledger
from avsf.data.store import read_meta
from avsf.io.atomic import remove_stale_temporaries
from pipeline.inventory import remove_inventory


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def prepare_out_dir(stage: str, out_dir: Path, shards: Sequence[Any]) -> list[Any]:
    """Make ``out_dir`` ready for ``shards`` (objects with ``path`` and ``fingerprint``) and
    return the ones still to build: its inventory, temporaries of a killed run and shard files
    no longer in the plan are removed, shards whose recorded fingerprint matches are kept."""
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_inventory(out_dir)
    stale = remove_stale_temporaries(out_dir)
    planned = {Path(s.path).name for s in shards}
    for old in out_dir.glob("shard-*.h5"):
        if old.name not in planned:
            old.unlink()
            stale += 1
    todo = [s for s in shards if (read_meta(s.path) or {}).get("fingerprint") != s.fingerprint]
    logging.getLogger(f"avsf.{stage}").info(
             "%s: %d shards, %d already complete, %d to build%s", stage, len(shards),
             len(shards) - len(todo), len(todo), f"; removed {stale} stale files" if stale else "")
    return todo


def carry_ledger(upstream: str | Path, failures: Iterable[Failure], path: str | Path) -> int:
    """Write the ledger at ``path``: the upstream stage's rows, then ``failures``; returns how
    many rows came from upstream."""
    carried = read_ledger(upstream)
    write_ledger(path, [*carried, *failures])
    return len(carried)

