"""What the summaries of every dataset share: model labels as the papers name them, figures
with their standard errors, markdown tables (the claims: pipeline/claims.py)."""

from __future__ import annotations

from typing import Sequence

LABELS = {"slow": "Slow-only", "fast": "Fast-only", "slowfast": "SlowFast", "audio": "Audio-only",
          "avslowfast": "AVSlowFast"}


def percent(p: float | None, n: int | None = None) -> str:
    """0.523 -> '52.3'; with ``n`` samples, '52.3 ± 4.1' (one binomial standard error)."""
    if p is None:
        return "-"
    if not n:
        return f"{100 * p:.1f}"
    return f"{100 * p:.1f} ± {100 * (p * (1 - p) / n) ** 0.5:.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |",
            *("| " + " | ".join(row) + " |" for row in rows)]
