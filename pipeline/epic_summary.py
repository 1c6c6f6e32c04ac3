"""Stage ``epic_summary``: the fine-tuned members on EPIC-Kitchens-100 in the shape of
AVSlowFast Table 2 (verb / noun / action top-1 and top-5), with the dataset's tail and
unseen-participant top-1 beside them, and the claim the demo is built to show: audio helps
the nouns that only their sound tells apart.

    <epic.reports>/models/<member>/metrics.json ──> <epic.reports>/summary.md, summary.json
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from avsf.io.atomic import write_json, write_text
from pipeline.figures import epic_figures, write_figures
from pipeline.params import Params
from pipeline.summary import LABELS, claim_line, markdown_table, read_finetuned_metrics

log = logging.getLogger("avsf.summary")

SUMMARY_MD, SUMMARY_JSON = "summary.md", "summary.json"
KINDS = ("verb", "noun", "action")


def epic_results(params: Params, root: Path = Path()) -> dict[str, dict[str, Any]]:
    return read_finetuned_metrics(params, "epic", root)


def run_epic_summary(params: Params) -> None:
    """Write <epic.reports>/summary.md (and summary.json): every fine-tuned member's verb,
    noun and action top-1 / top-5 (AVSlowFast Table 2's columns), top-1 on the tail classes
    and on the unseen participants, the nouns by cue, GFLOPs x views, and whether AVSlowFast
    beats SlowFast on the nouns told apart by sound."""
    results = epic_results(params)
    out_dir = Path(params.epic.reports)
    figures = epic_figures(results, {m: Path(params.finetune("epic", m).evaluate.out_dir) for m in results})
    write_text(out_dir / SUMMARY_MD, summary_markdown(results) + write_figures(out_dir, figures))
    write_json(out_dir / SUMMARY_JSON, {name: {**{f"{k}_top1": m[f"{k}_top1"] for k in KINDS},
                                               **{f"{k}_top5": m[f"{k}_top5"] for k in KINDS},
                                               **{f"{g}_noun_top1": v["noun_top1"] for g, v in m["noun_groups"].items()}}
                                        for name, m in results.items()})
    log.info("epic_summary: %d models -> %s", len(results), out_dir / SUMMARY_MD)


def _pct(value: float | None, n: int | None = None) -> str:
    """A figure already in % (the official script's unit), ± one binomial standard error with ``n``."""
    if value is None:
        return "-"
    if not n:
        return f"{value:.1f}"
    p = value / 100
    return f"{value:.1f} ± {100 * (p * (1 - p) / n) ** 0.5:.1f}"


def summary_markdown(results: dict[str, dict[str, Any]]) -> str:
    first = next(iter(results.values()))
    n = first["narrations"]
    cues = list(dict.fromkeys(g for m in results.values() for g in m["noun_groups"]))
    header = ["model", *(f"{k} top-1" for k in KINDS), *(f"{k} top-5" for k in KINDS),
              *(f"tail {k}" for k in KINDS), *(f"unseen {k}" for k in KINDS), *(f"nouns by {c}" for c in cues),
              "GFLOPs x views"]
    rows = []
    for name, m in results.items():
        rows.append([f"{LABELS.get(m['arch'], name)} (`{m['model']}`)",
                     *(_pct(m[f"{k}_top1"], n) for k in KINDS), *(_pct(m[f"{k}_top5"]) for k in KINDS),
                     *(_pct(m["tail"][f"{k}_top1"]) for k in KINDS),
                     *(_pct(m["unseen"][f"{k}_top1"]) for k in KINDS),
                     *(_pct(m["noun_groups"][c]["noun_top1"], m["noun_groups"][c]["segments"])
                       if c in m["noun_groups"] else "-" for c in cues),
                     f"{m['gflops_per_view']:.3f} x {m['views_per_segment']}"])
    lines = ["# EPIC-Kitchens-100: fine-tuned from Kinetics (AVSlowFast Table 2's shape, in miniature)", "",
             f"Split `{first['split']}`: {n} narrations, {first['missing']} without a prediction (counted as misses). "
             f"Action = (verb, noun), scored from the top 100 verbs x top 100 nouns of the logits as the official "
             f"code does. Heads: {first['heads']}. Top-1 in %, ± one binomial standard error; tail and unseen: "
             f"the dataset's tail-class and unseen-participant subsets "
             f"({first['tail'].get('verb_segments', '-')} / {first['tail'].get('noun_segments', '-')} / "
             f"{first['tail'].get('action_segments', '-')} and {first['unseen'].get('segments', '-')} narrations).",
             "", *markdown_table(header, rows), "", "## The paper's claim on this run", ""]
    by_arch = {m["arch"]: m for m in reversed(list(results.values()))}

    def sound(arch: str) -> float | None:
        group = by_arch.get(arch, {}).get("noun_groups", {}).get("sound")
        return None if group is None else group["noun_top1"]

    lines.append(claim_line("AVSlowFast beats SlowFast on the nouns told apart by sound", sound("avslowfast"),
                            sound("slowfast"), "%"))
    av, sf = by_arch.get("avslowfast"), by_arch.get("slowfast")
    lines.append(claim_line("AVSlowFast beats SlowFast on nouns overall (the paper: +4.3 top-1 on EPIC-55)",
                            av and av["noun_top1"], sf and sf["noun_top1"], "%"))
    return "\n".join(lines) + "\n"
