"""What DVC tracks of a data store: a manifest of its files, not their bytes.

    data/<d>/clips/manifest.csv          name,bytes,identity    one row per file, sorted by name
    data/<d>/store/frames/manifest.csv
    data/<d>/store/logmel/manifest.csv

DVC hashes an output by reading every byte of it after its stage, and again wherever its
state database is gone (another machine, a copy of the project, ``dvc exp run --temp``).
For Kinetics-400 that is 1.3 TB of frames: measured, 14% of decode's hours on one 16-core
node with a 3.1 GB/s disk, and several times decode's own hours after a 32-node array,
where DVC hashes on one machine what 32 wrote (README "DVC at Kinetics scale"). So each data
stage writes its store's manifest last, and dvc.yaml declares the manifest, not the folder,
as the stage's output and as its consumers' dependency: DVC hashes a few megabytes.

A file's identity is what its stage already knows of its content, without reading it again:
a shard's fingerprint of what it was built from (its meta), a clip's sha256 (its download
record); the small files (index, classes, statistics, records) are hashed here (sha256). So a
consumer reruns exactly when a file of the store changed, and a rebuilt shard with the same
inputs changes nothing downstream. What DVC no longer notices is a file edited by hand with
its identity left as it was; a missing or unreadable shard still stops the stages that read
it (pipeline/store_check.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from avsf.io.atomic import write_csv
from avsf.io.digest import file_digest
from pipeline.layout import DATA

MANIFEST_NAME = DATA["manifest"]
COLUMNS = ("name", "bytes", "identity")


def write_manifest(directory: Path, identity: Callable[[Path], str | None] = lambda path: None) -> Path:
    """Write ``directory``'s manifest: every file in it (not hidden, not the manifest) with its
    size and ``identity(path)``, or the sha256 of its bytes where that is None. Returns its path."""
    rows = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name == MANIFEST_NAME or not entry.is_file():
                continue
            path = Path(entry.path)
            rows.append({"name": entry.name, "bytes": entry.stat().st_size,
                         "identity": identity(path) or f"sha256:{file_digest(path)}"})
    rows.sort(key=lambda row: row["name"])
    path = directory / MANIFEST_NAME
    write_csv(path, rows, COLUMNS)
    return path
