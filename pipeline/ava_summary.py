"""Stage ``ava_summary``: the fine-tuned detectors on AVA in the shape of AVSlowFast Table 7
(frame-mAP, GFLOPs), the mean AP of each kind of action, and AP per class.

    <ava.reports>/models/<member>/metrics.json ──> <ava.reports>/summary.md, summary.json
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from avsf.io.atomic import write_json, write_text
from pipeline.figures import ava_figures, write_figures
from pipeline.params import Params
from pipeline.summary import LABELS, claim_line, markdown_table, percent, read_finetuned_metrics

log = logging.getLogger("avsf.summary")

SUMMARY_MD, SUMMARY_JSON = "summary.md", "summary.json"


def run_ava_summary(params: Params) -> None:
    """Write <ava.reports>/summary.md (and summary.json): every fine-tuned member's frame-mAP
    (the official semantics), its mean AP per kind of action and per class, GFLOPs, and
    whether AVSlowFast beats SlowFast on the actions defined by their sound (Table 7:
    SlowFast 27.3 -> AVSlowFast 28.6 mAP)."""
    results = read_finetuned_metrics(params, "ava")
    out_dir = Path(params.ava.reports)
    write_text(out_dir / SUMMARY_MD, summary_markdown(results) + write_figures(out_dir, ava_figures(results)))
    write_json(out_dir / SUMMARY_JSON, {name: {"map": m["map"], **{f"map_{g}": v for g, v in m["group_map"].items()}}
                                        for name, m in results.items()})
    log.info("ava_summary: %d models -> %s", len(results), out_dir / SUMMARY_MD)


def summary_markdown(results: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    groups = sorted({g for m in results.values() for g in m["group_map"]})
    rows = [[f"{LABELS.get(m['arch'], name)} (`{m['model']}`)", percent(m["map"]),
             *(percent(m["group_map"].get(g)) for g in groups), f"{m['params_m']:.3f}", f"{m['gflops_per_view']:.3f}"]
            for name, m in results.items()]
    classes = sorted(first["class_count"], key=lambda c: (-first["class_count"][c], c))
    class_rows = [[c, str(first["class_count"][c]), *(percent(m["class_ap"].get(c)) for m in results.values())]
                  for c in classes]
    by_arch = {m["arch"]: m for m in reversed(list(results.values()))}
    av, sf = by_arch.get("avslowfast"), by_arch.get("slowfast")

    def group(m: dict | None, g: str) -> float | None:
        value = m["group_map"].get(g) if m else None
        return None if value is None else 100 * value

    return "\n".join([
        "# AVA: action detection fine-tuned from Kinetics (AVSlowFast Table 7's shape, in miniature)", "",
        f"Split `{first['split']}`: {first['keyframes']} keyframes scored ({first['excluded']} excluded), "
        f"{first['boxes']} detected person boxes; frame-mAP at IoU 0.5 with the official evaluator's semantics over "
        f"the {first['evaluated_classes']} evaluated classes (top 50 detections per keyframe). Mean AP by kind of "
        f"action: pose (the person's shape), movement and motion (what moves), sound (what it sounds like). "
        f"GFLOPs: one clip, a square view of the short side ({first['test_scale']} px) with one box.", "",
        *markdown_table(["model", "frame-mAP", *(f"{g} mAP" for g in groups), "params (M)", "GFLOPs"], rows), "",
        "## AP per class (most frequent first, as SlowFast Fig. 3)", "",
        *markdown_table(["class", "boxes", *(LABELS.get(m["arch"], n) for n, m in results.items())], class_rows), "",
        "## The paper's claims on this run", "",
        claim_line("AVSlowFast beats SlowFast on the actions defined by their sound", group(av, "sound"),
                   group(sf, "sound"), "%"),
        claim_line("AVSlowFast beats SlowFast in frame-mAP (the paper: 27.3 -> 28.6)", av and 100 * (av["map"] or 0),
                   sf and 100 * (sf["map"] or 0), "%"),
    ]) + "\n"
