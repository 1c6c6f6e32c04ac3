"""Counting what the stages noted about each clip (padded audio, rotation, decode errors, ...)
for their metrics.

Its own module, free of the store, so that ``download`` needs neither h5py nor the store's
code (nor has them as DVC dependencies) to count its notes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable


def count_notes(notes: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many clips carry each note, from each clip's notes."""
    return dict(sorted(Counter(note for clip_notes in notes for note in clip_notes).items()))
