"""Stage ``charades_summary``: the fine-tuned members on Charades in the shape of AVSlowFast
Table 4 (mAP, GFLOPs x views), the official script's figure and the sklearn-style one side
by side.

    <charades.reports>/models/<member>/metrics.json ──> <charades.reports>/summary.md, summary.json
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from avsf.io.atomic import write_json, write_text
from pipeline.figures import charades_figures, write_figures
from pipeline.params import Params
from pipeline.summary import LABELS, claim_line, markdown_table, percent, read_finetuned_metrics

log = logging.getLogger("avsf.summary")

SUMMARY_MD, SUMMARY_JSON = "summary.md", "summary.json"


def run_charades_summary(params: Params) -> None:
    """Write <charades.reports>/summary.md (and summary.json): every fine-tuned member's mAP
    (official semantics, and the sklearn-style figure), parameters and GFLOPs x views, and
    whether AVSlowFast beats SlowFast (Table 4: 42.5 -> 43.7 mAP)."""
    results = read_finetuned_metrics(params, "charades")
    out_dir = Path(params.charades.reports)
    figures = charades_figures(results, {m: Path(params.finetune("charades", m).evaluate.out_dir) for m in results})
    write_text(out_dir / SUMMARY_MD, summary_markdown(results) + write_figures(out_dir, figures))
    write_json(out_dir / SUMMARY_JSON, {name: {"map": m["map_official"], "map_sklearn": m["map_sklearn"]}
                                        for name, m in results.items()})
    log.info("charades_summary: %d models -> %s", len(results), out_dir / SUMMARY_MD)


def _map_claim(av: dict | None, sf: dict | None) -> str:
    """The claim on the official mAP; on the sklearn-style one, said so, where the official
    figure is undefined (a class without a positive in the split makes it NaN)."""
    claim = "AVSlowFast beats SlowFast in mAP (the paper: 42.5 -> 43.7)"
    if av and sf and av["map_official"] is not None and sf["map_official"] is not None:
        return claim_line(claim + ", official", av["map_official"], sf["map_official"])
    return claim_line(claim + ", sklearn-style (the official mAP is undefined here)", av and av["map_sklearn"],
                      sf and sf["map_sklearn"])


def summary_markdown(results: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    rows = [[f"{LABELS.get(m['arch'], name)} (`{m['model']}`)", percent(m["map_official"]), percent(m["map_sklearn"]),
             f"{m['params_m']:.3f}", f"{m['gflops_per_view']:.3f} x {m['views_per_video']}"]
            for name, m in results.items()]
    by_arch = {m["arch"]: m for m in reversed(list(results.values()))}
    av, sf = by_arch.get("avslowfast"), by_arch.get("slowfast")
    return "\n".join([
        "# Charades: fine-tuned from Kinetics (AVSlowFast Table 4's shape, in miniature)", "",
        f"Split `{first['split']}`: {first['videos']} videos ({first['videos_without_actions']} with an empty `actions` "
        f"field, {first['missing']} without a prediction). Scores: per-class sigmoid, max-pooled over "
        f"{first['views_per_video']} views. mAP (official): the official script's semantics (every ground-truth video; "
        f"one without a prediction scores minus infinity; videos with an empty `actions` field drop out; mean over "
        f"every class). mAP (sklearn-style): per class with positives, over the predicted videos, ties grouped.", "",
        *markdown_table(["model", "mAP (official)", "mAP (sklearn-style)", "params (M)", "GFLOPs x views"], rows), "",
        "## The paper's claim on this run", "",
        _map_claim(av, sf),
    ]) + "\n"
