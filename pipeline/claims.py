"""The papers' claims as data, one piece of code for every summary: a claim on one run
(:class:`Claim`, its markdown line as summary.md states it), the same claim over the seeds of
an experiments record (:func:`over_seeds`: held on how many seeds, the mean of the paired
per-seed differences and its standard error, a verdict), and the section "## Over seeds"
that renders a report's record (:func:`seeds_section`) with its counts for summary.json
(:func:`claims_metrics`).

A claim **holds** over the seeds when it holds on every seed and the mean difference is at
least :data:`MARGIN_SE` standard errors (sd of the per-seed differences / sqrt(n)) above
zero; otherwise it is **not reproduced**, with the counts and, where the report can give
one, a measured reason. On one seed the margin is not measured.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from pipeline.tables import LABELS

MARGIN_SE = 2.0  # the mean difference a claim must reach, in standard errors
SAME = 1e-4  # per-seed differences within this (of a fraction; 0.01 in points) are the same: metrics
             # files keep 4 decimals (EPIC-55's 11/12 - 1/12 and 1 - 1/6 read 83.34 and 83.33 points)
ONE_SEED = "the margin not measured (one seed: no standard error)"


@dataclass(frozen=True)
class Claim:
    """One claim on one run: ``ours`` beats ``theirs`` (above them, or below with ``above``
    False), in ``unit`` ('%': figures in %, differences in points; '': 3 decimals). A claim
    of several ``parts`` holds when every part does; its margin is its weakest part's. None
    for a figure: not measured on this run (a member it needs is missing)."""

    key: str  # short and stable: summary.json's name for it
    text: str  # as summary.md states it
    ours: float | None = None
    theirs: float | None = None
    unit: str = ""
    above: bool = True
    parts: tuple[Claim, ...] = ()
    label: str = ""  # a part's figures: "{label} {ours} vs {versus}{theirs}"
    versus: str = ""
    about: tuple[str, ...] = ()  # the members (backbones, settings) it compares: for a reason

    @property
    def margin(self) -> float | None:
        """How far it holds (negative: how far it fails), in its unit; None when not measured."""
        if self.parts:
            return min(p.margin for p in self.parts)
        if self.ours is None or self.theirs is None:
            return None
        return self.ours - self.theirs if self.above else self.theirs - self.ours

    @property
    def holds(self) -> bool | None:
        margin = self.margin
        return None if margin is None else margin > 0

    @property
    def figures(self) -> str:
        """'0.812 vs 0.700' ('81.2% vs 70.0%' in %), a composite's parts joined by '; '; ''
        when not measured."""
        if self.parts:
            return "; ".join(p.figures for p in self.parts)
        if self.ours is None or self.theirs is None:
            return ""
        shown = f"{figure(self.ours, self.unit)} vs {self.versus}{figure(self.theirs, self.unit)}"
        return f"{self.label} {shown}" if self.label else shown

    @property
    def line(self) -> str:
        """summary.md's line on this run: '- text: **holds** (figures)', **does not hold**, or
        **not measured**."""
        held = self.holds
        if held is None:
            return f"- {self.text}: **not measured**"
        return f"- {self.text}: **{'holds' if held else 'does not hold'}** ({self.figures})"


def composite(key: str, text: str, parts: Sequence[Claim], **kwargs: Any) -> Claim:
    """A claim that holds when every one of ``parts`` does (none measured: not measured)."""
    return Claim(key, text, parts=tuple(parts), **kwargs)


def figure(value: float, unit: str = "") -> str:
    return f"{value:.1f}%" if unit == "%" else f"{value:.3f}"


def difference(value: float, unit: str = "", se: float | None = None) -> str:
    """'+0.120' ('+12.0 points' in %), with a standard error '+0.120 ± 0.031'."""
    digits = 1 if unit == "%" else 3
    shown = f"{value:+.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}")
    return shown + (" points" if unit == "%" else "")


def spread(values: Sequence[float | None], digits: int = 1) -> str:
    """Mean (min..max) of the figures given (in their display unit), one figure alone, '-'
    with none (a group with no video in the split)."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def hundred(value: float | None) -> float | None:
    """A fraction in % (None stays None)."""
    return None if value is None else 100 * value


def by_arch(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each arch's result among a run's members (each with its ``arch``): the first member of
    an arch stands for it in the claims."""
    first: dict[str, dict[str, Any]] = {}
    for m in results.values():
        first.setdefault(m["arch"], m)
    return first


# --------------------------------------------------------------------------- over seeds


@dataclass(frozen=True)
class OverSeeds:
    """One claim over the seeds: its figures per seed and the verdict."""

    claim: Claim  # its first measured seed's (text and unit)
    seeds: tuple[int, ...]  # the seeds where it was measured
    held: tuple[int, ...]  # ... and those where it holds
    figures: tuple[str, ...]  # per measured seed
    margins: tuple[float, ...]  # per measured seed
    unmeasured: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.margins) if self.margins else None

    @property
    def standard_error(self) -> float | None:
        """sd of the per-seed differences / sqrt(n) (a paired comparison); None under 2 seeds.
        Differences equal but for the rounding of the figures (:data:`SAME`) have sd 0, not a
        ten-thousandth that would make the margin a million standard errors."""
        if self.n < 2:
            return None
        sd = statistics.stdev(self.margins)
        return 0.0 if sd <= SAME * (100 if self.claim.unit == "%" else 1) else sd / math.sqrt(self.n)

    @property
    def margin_se(self) -> float | None:
        """The mean difference in standard errors (inf where every seed gives the same
        positive difference); None under 2 seeds."""
        se, mean = self.standard_error, self.mean
        if se is None or mean is None:
            return None
        if se == 0:
            return math.copysign(math.inf, mean) if mean else 0.0
        return mean / se

    @property
    def verdict(self) -> str:
        """'holds', 'not reproduced', 'margin not measured' (held on its one seed) or 'not
        measured' (on no seed)."""
        if not self.n:
            return "not measured"
        if len(self.held) < self.n:
            return "not reproduced"
        if self.n == 1:
            return "margin not measured"
        return "holds" if self.margin_se >= MARGIN_SE else "not reproduced"

    def line(self, reason: str | None = None) -> str:
        """summary.md's line: the verdict, the counts, the mean difference ± its standard
        error, ``reason`` (a measured one, shown where not reproduced), the figures per seed."""
        c, verdict = self.claim, self.verdict
        if verdict == "not measured":
            return f"- {c.text}: **not measured** on any seed"
        counts = f"{len(self.held)} of {self.n} seed{'s' if self.n != 1 else ''}"
        if verdict == "holds":
            said = f"**holds**: on {counts}, mean difference {self._mean()}"
        elif verdict == "margin not measured":
            said = f"**holds on {counts}**, {ONE_SEED}"
        elif len(self.held) < self.n:
            failed = [s for s in self.seeds if s not in self.held]
            which = f" (not on seed{'s' if len(failed) > 1 else ''} {', '.join(map(str, failed))})" if self.held else ""
            said = (f"**not reproduced**: holds on {counts}{which}, "
                    + (f"mean difference {self._mean()}" if self.n >= 2 else ONE_SEED))
        else:
            said = (f"**not reproduced**: holds on {counts}, but the mean difference "
                    f"{difference(self.mean, c.unit, self.standard_error)} is {self.margin_se:.1f} standard errors, "
                    f"under {MARGIN_SE:g}")
        if reason and verdict != "holds":
            said += f"; {reason}"
        if self.unmeasured:
            said += f"; not measured on seed{'s' if len(self.unmeasured) > 1 else ''} {', '.join(map(str, self.unmeasured))}"
        return f"- {c.text}: {said}" + "".join(f"; seed {s}: {f}" for s, f in zip(self.seeds, self.figures))

    def _mean(self) -> str:
        se = self.standard_error
        shown = difference(self.mean, self.claim.unit, se)
        if se is None:
            return shown
        return shown + (" (the same on every seed)" if se == 0 else f" ({self.margin_se:.1f} standard errors)")

    def metrics(self) -> dict[str, float | int]:
        """summary.json's entry: seeds where it holds, seeds measured, the margin in standard
        errors (where finite), 1 when it holds over the seeds."""
        out: dict[str, float | int] = {"held": len(self.held), "seeds": self.n}
        if self.margin_se is not None and math.isfinite(self.margin_se):
            out["margin_se"] = round(self.margin_se, 2)
        out["reproduced"] = int(self.verdict == "holds")
        return out


def over_seeds(per_seed: Sequence[tuple[int, Sequence[Claim]]]) -> list[OverSeeds]:
    """Each claim (by key, in the order the first seed states them) over ``per_seed``: (seed,
    that seed's claims)."""
    keys = list(dict.fromkeys(c.key for _, claims in per_seed for c in claims))
    out = []
    for key in keys:
        measured = [(seed, c) for seed, claims in per_seed for c in claims if c.key == key and c.holds is not None]
        first = measured[0][1] if measured else next(c for _, cs in per_seed for c in cs if c.key == key)
        out.append(OverSeeds(first, tuple(s for s, _ in measured), tuple(s for s, c in measured if c.holds),
                             tuple(c.figures for _, c in measured), tuple(c.margin for _, c in measured),
                             tuple(s for s, cs in per_seed if not any(c.key == key and c.holds is not None
                                                                         for c in cs))))
    return out


# --------------------------------------------------------------------------- a report's section


@dataclass(frozen=True)
class Column:
    """A column of the seeds' table: its header and its figure of one member's result, in
    its display unit (% for accuracies), None where it has none."""

    header: str
    value: Callable[[dict[str, Any]], float | None]


@dataclass(frozen=True)
class Report:
    """What the seeds' section needs of one report: its claims on one run's results, the
    columns of its table, each member's label, and optionally a measured reason for a claim
    not reproduced (from the claim and the record's seed runs)."""

    name: str
    claims: Callable[[dict[str, dict[str, Any]]], list[Claim]]
    columns: Sequence[Column]
    label: Callable[[str, dict[str, Any]], str] = lambda name, result: LABELS.get(result.get("arch"), name)
    reason: Callable[[Claim, list[dict[str, Any]]], str | None] | None = None
    member_header: str = "model"


def seed_runs(experiments: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The record's runs of the whole pipeline, one per seed (not Kinetics' ablations)."""
    return [r for r in (experiments or {}).get("runs", []) if r.get("kind", "seed") == "seed"]


def seeds_section(report: Report, experiments: dict[str, Any] | None) -> list[str]:
    """summary.md's "## Over seeds": the record's command, machine and time; each member's
    figures as mean (min..max) over the seeds; each claim over the seeds. Without a record,
    a line saying how to measure it."""
    runs = seed_runs(experiments)
    if not runs:
        return ["", f"Over seeds: not measured yet (`python scripts/experiments.py --reports {report.name}`)."]
    lines = ["", "## Over seeds", "",
             f"`{experiments['command']}` on {experiments['machine']}, {experiments['date']}: "
             f"{experiments['seconds'] / 60:.0f} minutes. Mean (min..max) over the seeds.", ""]
    members = list(dict.fromkeys(n for r in runs for n in r["results"]))
    lines += ["| " + " | ".join([report.member_header, "seeds", *(c.header for c in report.columns)]) + " |",
              "| " + " | ".join("---" for _ in range(len(report.columns) + 2)) + " |"]
    for name in members:
        ms = [r["results"][name] for r in runs if name in r["results"]]
        lines.append(f"| {report.label(name, ms[0])} | {len(ms)} | "
                     + " | ".join(spread([c.value(m) for m in ms]) for c in report.columns) + " |")
    lines += ["", f"The claims over the seeds: a claim **holds** when it holds on every seed and its mean "
                  f"difference is at least {MARGIN_SE:g} standard errors (sd of the per-seed differences / "
                  f"sqrt(seeds)) above zero, else it is **not reproduced**; a claim of several parts counts its "
                  f"weakest part's margin. Mean difference ± one standard error.", ""]
    for claim in over_seeds([(r["seed"], report.claims(r["results"])) for r in runs]):
        reason = report.reason(claim.claim, runs) if report.reason and claim.verdict != "holds" else None
        lines.append(claim.line(reason))
    for note in experiments.get("notes", []):
        lines += ["", note]
    return lines


def with_seeds(markdown: str, report: Report, experiments: dict[str, Any] | None) -> str:
    """A summary's ``markdown`` with its seeds' section (:func:`seeds_section`) at the end."""
    return markdown + "\n".join(seeds_section(report, experiments)) + "\n"


def claims_metrics(report: Report, experiments: dict[str, Any] | None, seed: int,
                   results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """summary.json's ``claims``: each measured claim's counts over the record's seeds, or,
    without a record, on this run (``results``, trained with ``seed``) alone."""
    runs = seed_runs(experiments)
    per_seed = [(r["seed"], report.claims(r["results"])) for r in runs] or [(seed, report.claims(results))]
    return {c.claim.key: c.metrics() for c in over_seeds(per_seed) if c.n}
