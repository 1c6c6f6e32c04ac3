"""What DVC tracks of a data store: an inventory of its files, not their bytes.

    data/<d>/clips/inventory.csv          name,bytes,identity    one row per file, sorted by name
    data/<d>/store/frames/inventory.csv
    data/<d>/store/logmel/inventory.csv

DVC hashes an output by reading every byte of it after its stage, and again wherever its
state database is gone (another machine, another user, a copy of the project).
For Kinetics-400 that is 1.3 TB of frames: measured, 14% of decode's hours on one 16-core
node with a 3.1 GB/s disk, and several times decode's own hours after a 32-node array,
where DVC hashes on one machine what 32 wrote (README "DVC at Kinetics scale"). So each data
stage writes its store's inventory last (not when it fails), and dvc.yaml declares the
inventory, not the folder, as the stage's output and as its consumers' dependency: DVC hashes
megabytes (Kinetics' clips: 520,000 rows, about 56 MB) where it hashed terabytes.

A file's identity is what its stage already knows of its content, without reading it again:
a shard's fingerprint of what it was built from (its meta), a clip's sha256 (its download
record); the small files (index, classes, statistics, records) are hashed here (sha256). So a
consumer reruns exactly when a file of the store changed, and a rebuilt shard with the same
inputs changes nothing downstream. A stage removes its inventory before it touches the folder
(:func:`remove_inventory`), so an unfinished run always shows as a changed output. What DVC
no longer notices is a file edited by hand with its identity left as it was; a missing or
unreadable shard still stops the stages that read it (pipeline/store_check.py), and a clip
missing from its folder is a ``missing_clip`` row of decode's ledger.

dvc.yaml declares the inventories ``persist: true``, and that is required: DVC's run-cache
neither saves nor restores a run of a stage with a persist output. Without it, a cached
inventory, or an uncached one after ``dvc commit`` or ``dvc exp save`` of the stage (they save
run-cache entries that ``dvc repro`` does not), was restored by a param changed and changed
back over a folder left as the last run made it. The stage removes its inventory itself.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from avsf.io.atomic import write_csv
from avsf.io.digest import file_digest
from pipeline.layout import DATA

INVENTORY_NAME = DATA["inventory"]
COLUMNS = ("name", "bytes", "identity")


def write_inventory(directory: Path, identity: Callable[[Path], str | None] = lambda path: None) -> Path:
    """Write ``directory``'s inventory: every file in it (not hidden, not the inventory) with its
    size and ``identity(path)``, or the sha256 of its bytes where that is None. Returns its path."""
    rows = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name == INVENTORY_NAME or not entry.is_file():
                continue
            path = Path(entry.path)
            rows.append({"name": entry.name, "bytes": entry.stat().st_size,
                         "identity": identity(path) or f"sha256:{file_digest(path)}"})
    rows.sort(key=lambda row: row["name"])
    path = directory / INVENTORY_NAME
    write_csv(path, rows, COLUMNS)
    return path


def read_inventory(directory: Path) -> dict[str, dict[str, str]]:
    """File name -> its row (``bytes``, ``identity``) of ``directory``'s inventory."""
    with open(directory / INVENTORY_NAME, newline="", encoding="utf-8") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def write_shard_inventory(directory: Path, shard_paths: Sequence[str], metas: Sequence[dict[str, Any]]) -> Path:
    """The inventory of a store whose shards record their fingerprints in ``metas``."""
    made = {Path(p).name: f"fingerprint:{meta['fingerprint']}" for p, meta in zip(shard_paths, metas)}
    return write_inventory(directory, lambda path: made.get(path.name))


def remove_inventory(directory: Path) -> None:
    """The first thing a data stage does: from now until its inventory is written again, the
    folder is not what any inventory says, and DVC sees the stage's output missing (a run
    killed outside DVC, a requeued job or a crash then never leaves a clean ``dvc status``)."""
    (directory / INVENTORY_NAME).unlink(missing_ok=True)
