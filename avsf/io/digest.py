"""Short content digests of settings and inputs: what an output was built from."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def digest(*parts: Any) -> str:
    """A 16-hex-digit digest of JSON-able ``parts`` (dict keys sorted, anything else as str)."""
    blob = json.dumps(list(parts), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes (hex), read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_identity(path: str | os.PathLike, name: str, edge_bytes: int = 1 << 16) -> str:
    """``name``, the file's size and the blake2b of its first and last ``edge_bytes``: what
    tells a file from another without reading it whole (a container keeps its headers and
    index at either end), and stays the same when the file is copied (unlike its mtime)."""
    size = os.stat(path).st_size
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read(edge_bytes))
        if size > edge_bytes:
            f.seek(max(edge_bytes, size - edge_bytes))
            h.update(f.read(edge_bytes))
    return f"{name}:{size}:{h.hexdigest()}"


def tree_digest(paths: "list[str] | tuple[str, ...]", root: str | os.PathLike, suffix: str = ".py",
                exclude: "list[str] | tuple[str, ...]" = ()) -> str:
    """A 16-hex-digit digest of the ``suffix`` files at or below ``paths`` (relative to
    ``root``), but those at or below ``exclude``: their relative paths and bytes, in sorted
    order. A path that does not exist is an error (a digest of nothing would never change)."""
    from pathlib import Path

    base = Path(root)
    files = set()
    for rel in paths:
        path = base / rel
        if not path.exists():
            raise FileNotFoundError(f"tree_digest: no {path}")
        files |= {path} if path.is_file() else set(path.rglob(f"*{suffix}"))
    skipped = tuple(base / rel for rel in exclude)
    h = hashlib.sha256()
    for path in sorted(f for f in files if not any(f.is_relative_to(x) for x in skipped)):
        h.update(f"{path.relative_to(base).as_posix()}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
