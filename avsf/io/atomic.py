"""Write-then-rename, so a killed process never leaves a half-written file under its final name."""

from __future__ import annotations

import csv
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

TEMP_MARKER = ".tmp-"


def temp_path_for(path: Path) -> Path:
    """A hidden sibling of ``path`` that keeps its extension (container formats are guessed from it)."""
    return path.with_name(f".{path.stem}{TEMP_MARKER}{os.getpid()}{path.suffix}")


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success it is renamed to ``path``, on any error it is removed."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete temporaries a killed run left in ``directory``; returns how many."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and TEMP_MARKER in p.name]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def write_json(path: str | os.PathLike, data: object) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def write_csv(path: str | os.PathLike, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """A CSV of ``rows`` (dicts) with a header of ``columns``."""
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
