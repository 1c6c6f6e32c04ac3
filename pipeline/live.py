"""DVCLive for the training loop (rank 0): per-step and per-epoch curves that ``dvc plots``
shows, continued, not restarted, when a run resumes.

    <live_dir>/plots/metrics/steps/{loss,sync_loss,lr,epoch}.tsv    x = global step
    <live_dir>/plots/metrics/epochs/{top1,val_top1,...}.tsv         x = epoch (1-based)
    <live_dir>/metrics.json                                         the latest of each

A resumed run first drops the points logged after its checkpoint (they were computed by
the interrupted run past the point it resumes from, and will be logged again), so the
curves of a resumed run are those of an uninterrupted one.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from avsf.io.atomic import write_json

log = logging.getLogger("avsf.train")

STEP, EPOCH = "steps", "epochs"  # ("step" is DVCLive's own key in metrics.json)


def rebuild_summary(live_dir: str | os.PathLike, machine: str | None = None) -> bool:
    """Write ``<live_dir>/metrics.json`` as DVCLive's make_summary does (the last point of
    every curve by kind, and the last epoch as ``step``) from the curves alone, with the
    ``machine`` that trained: DVC removes it before it reruns a stage whose finished run then
    trains nothing. False without curves."""
    summary: dict = {"machine": machine} if machine else {}
    for kind in (STEP, EPOCH):
        for path in sorted((Path(live_dir) / "plots" / "metrics" / kind).glob("*.tsv")):
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
            if rows:
                summary.setdefault(kind, {})[path.stem] = float(rows[-1][path.stem])
                if kind == EPOCH:
                    summary["step"] = max(summary.get("step", 0), int(rows[-1]["step"]))
    if not summary.keys() - {"machine"}:
        return False
    write_json(Path(live_dir) / "metrics.json", summary)
    return True


def prune_curves(live_dir: str | os.PathLike, steps_done: int, epochs_done: int, prefix: str = "") -> int:
    """Drop rows past ``steps_done`` (step curves) and ``epochs_done`` (epoch curves) of
    the curves named ``<prefix>*``; returns how many were dropped."""
    dropped = 0
    for kind, limit in ((STEP, steps_done), (EPOCH, epochs_done)):
        for path in (Path(live_dir) / "plots" / "metrics" / kind).glob(f"{prefix}*.tsv"):
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
                fields = list(rows[0]) if rows else None
            keep = [r for r in rows if int(r["step"]) <= limit]
            dropped += len(rows) - len(keep)
            if fields and len(keep) != len(rows):
                with path.open("w", newline="") as f:
                    writer = csv.DictWriter(f, fields, delimiter="\t")
                    writer.writeheader()
                    writer.writerows(keep)
    return dropped


class LiveLogger:
    """:class:`avsf.train.engine.TrainLogger` on DVCLive."""

    def __init__(self, live_dir: str | os.PathLike, resume_at: tuple[int, int] | None, prefix: str = "",
                 machine: str | None = None):
        """``resume_at``: (steps, epochs) done by the checkpoint the run resumes from; None
        for a fresh run, which clears the curves of earlier runs. With ``prefix`` (several
        models' curves in one directory, e.g. EPIC's ``verb_`` and ``noun_``) the curves are
        named ``<prefix><name>`` and a fresh run clears only its own. ``machine``: the
        machine's description, kept in the summary (metrics.json) as ``machine``."""
        self.prefix = prefix
        if resume_at is not None or prefix:
            dropped = prune_curves(live_dir, *(resume_at or (0, 0)), prefix=prefix)
            if dropped and resume_at is not None:
                log.info("train: dropped %d curve points logged after the checkpoint", dropped)
        try:  # (dvclive itself may be missing: the lent GPU machine has no DVC)
            from dvclive import Live

            self.live = Live(str(live_dir), resume=resume_at is not None or bool(prefix), save_dvc_exp=False,
                             dvcyaml=None, report=None)
        except Exception as exc:  # noqa: BLE001 - e.g. a git repository without a commit yet, no dvclive
            log.warning("train: DVCLive cannot start here (%s: %s): no curves are written", type(exc).__name__, exc)
            self.live = None
        if self.live is not None and machine:
            self.live.summary["machine"] = machine  # (a string: `dvc metrics diff` leaves it out)

    def log_step(self, step: int, values: dict[str, float]) -> None:
        if self.live is None:
            return
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(f"{STEP}/{self.prefix}{name}", float(value))

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:  # noqa: ARG002
        if self.live is None:
            return
        self.live.step = epoch + 1
        for name, value in values.items():
            if name != "epoch":
                self.live.log_metric(f"{EPOCH}/{self.prefix}{name}", float(value))
        self.live.make_summary()

    def close(self) -> None:
        if self.live is not None:
            self.live.make_summary()
