"""What one run of the whole pipeline measured, per report, as scripts/experiments.py records
it after each seed's ``dvc exp run`` (in logs/experiments.json; reports/<report>/experiments.json
at the end):

    kinetics, epic, epic55, charades, ava   results: each member's metrics.json with its arch
                                            (pipeline.summary.member_results)
    ssl                                     results: each probed backbone's metrics.json;
                                            pretexts: each pretext setting's own figures
                                            (pipeline.ssl_summary.pretext_figures)

Each report's summary renders the record's runs (pipeline.claims.seeds_section).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from avsf.io.machine import cpu_description
from pipeline.datasets import pretraining_dataset
from pipeline.layout import SSL
from pipeline.params import Params


def report_names(params: Params) -> list[str]:
    """The reports a run of ``params`` writes: the pretraining dataset's (Kinetics), each
    fine-tuning dataset's, and the self-supervised one where params has an ssl section."""
    return [pretraining_dataset(params).name, *params.finetune.datasets, *([SSL] if params.ssl else [])]


def collect(params: Params, report: str, root: Path = Path()) -> dict[str, Any]:
    """One run's entry fields for ``report``, read from the workspace at ``root``."""
    if report == SSL:
        from pipeline.ssl_summary import pretext_figures, ssl_results

        return {"results": ssl_results(params, root), "pretexts": pretext_figures(params, root)}
    from pipeline.summary import member_results

    return {"results": member_results(params, report, root)}


def new_record(command: str) -> dict[str, Any]:
    """An experiments record with no runs yet: the command, the machine (its CPU, as the
    summaries' Machine: line names it) and the date."""
    return {"command": command, "machine": cpu_description(), "date": datetime.date.today().isoformat(),
            "seconds": 0.0, "runs": []}
