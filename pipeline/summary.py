"""What the summaries of every dataset share: model labels as the papers name them, figures
with their standard errors, markdown tables and the family members' metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline.evaluate import METRICS_NAME
from pipeline.launch import StageFailed

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


def read_member_metrics(stage: str, members: Sequence[str], path_of: Callable[[str], Path],
                        arch_of: Callable[[str], str]) -> dict[str, dict[str, Any]]:
    """Each member's metrics.json (at ``path_of(member)``) with its ``arch``; a missing one
    stops the stage naming the stage to run first."""
    results = {}
    for name in members:
        path = path_of(name)
        if not path.is_file():
            raise StageFailed(f"{stage}: {path} is missing; run its evaluation of {name} first")
        results[name] = {**json.loads(path.read_text()), "arch": arch_of(name)}
    return results


def read_finetuned_metrics(params, dataset: str, root: Path = Path()) -> dict[str, dict[str, Any]]:
    """Each member of fine-tuning dataset ``dataset`` (its section's ``members``): the metrics
    its evaluate_<dataset>@<member> stage wrote, with its ``arch``."""
    section = getattr(params, dataset, None)
    if section is None:
        raise StageFailed(f"{dataset}_summary: params.yaml has no {dataset} section")
    return read_member_metrics(f"{dataset}_summary", section.members,
                               lambda m: root / params.finetune(dataset, m).evaluate.out_dir / METRICS_NAME,
                               lambda m: params.variant(m).model.arch)


def claim_line(claim: str, mine: float | None, theirs: float | None, unit: str = "") -> str:
    """'- claim: **holds** (0.812 vs 0.700)' ('81.2% vs 70.0%' with ``unit`` '%'), or **not
    measured** when a figure is missing."""
    if mine is None or theirs is None:
        return f"- {claim}: **not measured**"
    shown = f"{mine:.1f}% vs {theirs:.1f}%" if unit == "%" else f"{mine:.3f} vs {theirs:.3f}"
    return f"- {claim}: **{'holds' if mine > theirs else 'does not hold'}** ({shown})"
