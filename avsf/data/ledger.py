"""The failure ledger: one CSV row per input a stage could not use, and why.

Columns ``id,stage,reason,detail``: ``id`` names the input (a clip id, or ``path:line`` for
an unreadable manifest row), ``reason`` is a short code counted in the stage's metrics,
``detail`` is one line for a human. Later stages read it and append their own rows.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from avsf.io.atomic import atomic_output

LEDGER_COLUMNS = ("id", "stage", "reason", "detail")
DETAIL_CHARS = 500


@dataclass(frozen=True)
class Failure:
    id: str
    stage: str
    reason: str
    detail: str = ""


def read_ledger(path: str | os.PathLike) -> list[Failure]:
    """All rows of the ledger at ``path``; a ledger that does not exist yet is empty."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != LEDGER_COLUMNS:
            raise ValueError(f"{path}: not a failure ledger (expected columns {','.join(LEDGER_COLUMNS)})")
        return [Failure(r["id"], r["stage"], r["reason"], r["detail"]) for r in reader]


def write_ledger(path: str | os.PathLike, failures: Iterable[Failure]) -> None:
    """Write ``failures`` as the whole ledger, atomically."""
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(LEDGER_COLUMNS)
        for x in failures:
            writer.writerow([x.id, x.stage, x.reason, _one_line(x.detail)])


def append_ledger(path: str | os.PathLike, failures: Iterable[Failure]) -> None:
    """Add rows to the ledger at ``path`` (created when absent); the file is rewritten
    atomically, so a reader never sees half a row."""
    write_ledger(path, [*read_ledger(path), *failures])


def count_by_reason(failures: Iterable[Failure]) -> dict[str, int]:
    return dict(sorted(Counter(x.reason for x in failures).items()))


def _one_line(detail: str) -> str:
    line = " ".join(str(detail).split())
    return line if len(line) <= DETAIL_CHARS else line[: DETAIL_CHARS - 3] + "..."
