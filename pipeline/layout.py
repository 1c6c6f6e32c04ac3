"""Where every stage writes: the one statement of the project's file layout.

dvc.yaml reads ``DATA`` and ``REPORTS`` (``vars: - pipeline/layout.py:DATA,REPORTS``) and
spells each stage's outputs from them; the stages find their paths through :class:`Layout`.
Under params.yaml's ``layout.data`` and ``layout.reports``, for dataset ``<d>`` (a key of
``datasets``) and family member ``<m>``::

    <data>/demo/<d>/                  demo@<d>: the demo world, in the dataset's own files
    <data>/<d>/annotations/           download@<d>: the annotation files it read; later stages read these
    <data>/<d>/clips/                 download@<d>: the clips, clips.csv, classes.json, inventory.csv
    <data>/<d>/store/frames/          decode@<d>: the HDF5 frame store, index.csv, classes.json, inventory.csv
    <data>/<d>/store/logmel/          spectrogram@<d>: the HDF5 log-mel store, stats.json, inventory.csv
                                      (DVC tracks these three folders by their inventory.csv:
                                      pipeline/inventory.py)
    <data>/<d>/ledger/<stage>.csv     every row that failed, with its reason
    <data>/<d>/train/<m>/             train@<m> (Kinetics), finetune@<d>-<m>: checkpoints (persist),
                                      summary.json and ledger.csv of the finished run
    <reports>/<d>/metrics/<stage>.json   each data stage's counts and rates
    <reports>/<d>/train/<m>/          DVCLive curves (plots/metrics/...), metrics.json, summary.json
    <reports>/<d>/models/<m>/         evaluate: metrics.json, per_class.csv (a plot), results/
    <reports>/<d>/summary.md          summary@<d>: the paper's table in miniature (and summary.json)
    <reports>/<d>/figures/            summary@<d>: the figures summary.md embeds (SVG)

Self-supervised pretraining keeps the same shape under ``ssl``: ``<data>/ssl/train/<setting>/``,
``<reports>/ssl/train/<setting>/``, and each probed backbone's results in
``<reports>/ssl/models/<backbone>/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Relative to <layout.data>/<dataset> (demo: to <layout.data>)
DATA = {
    "demo": "demo",
    "annotations": "annotations",
    "clips": "clips",
    "raw_cache": "download_cache",
    "frames": "store/frames",
    "logmel": "store/logmel",
    "ledger": "ledger",
    "train": "train",
    "probe": "probe",  # under <data>/ssl: each probed backbone's record and runs
    "inventory": "inventory.csv",  # in clips/, store/frames/, store/logmel/: what DVC tracks of them (pipeline/inventory.py)
}
# Relative to <layout.reports>/<dataset> (model_report: to <layout.reports>); the last ones,
# to a run's curves directory (train/<m>) and to an evaluated model's (models/<m>)
REPORTS = {
    "metrics": "metrics",
    "train": "train",
    "models": "models",
    "summary": "summary.md",
    "summary_metrics": "summary.json",
    "experiments": "experiments.json",
    "figures": "figures",  # the summary's figures (SVG), beside summary.md
    "model_report": "model",
    "run_summary": "summary.json",  # the training run's summary (a copy of it beside final.pyth)
    "live_summary": "metrics.json",  # DVCLive's
    "steps": "plots/metrics/steps",  # DVCLive's curves, x = global step ...
    "epochs": "plots/metrics/epochs",  # ... and x = epoch
    "evaluation": "metrics.json",  # an evaluated model's official figures
    "per_class": "per_class.csv",  # class, value, count: a bar plot
    "results": "results",  # the official results files
}
SSL = "ssl"  # the self-supervised runs' "dataset" directory
RUN_SUMMARY, RUN_LEDGER = REPORTS["run_summary"], "ledger.csv"  # in a training run's directory
METRICS_NAME, PER_CLASS_NAME, RESULTS_DIR = REPORTS["evaluation"], REPORTS["per_class"], REPORTS["results"]


@dataclass(frozen=True)
class RunPaths:
    """Where one training run writes: ``out_dir`` (checkpoints, persistent), ``live_dir``
    (curves), and the two files DVC declares beside them."""

    out_dir: Path
    live_dir: Path

    @property
    def summary(self) -> Path:
        """The run's summary (DVC metrics): reports/<d>/train/<m>/summary.json."""
        return self.live_dir / RUN_SUMMARY

    @property
    def ledger(self) -> Path:
        """The training samples that failed to load: data/<d>/train/<m>/ledger.csv."""
        return self.out_dir / RUN_LEDGER


@dataclass(frozen=True)
class Layout:
    """Every path of the project, from params.yaml's ``layout`` section."""

    data: Path
    reports: Path

    @classmethod
    def of(cls, section) -> "Layout":
        """From params' ``layout`` section (anything with ``data`` and ``reports``)."""
        return cls(Path(section.data), Path(section.reports))

    # ------------------------------------------------------------------ data stages

    def demo(self, dataset: str) -> Path:
        return self.data / DATA["demo"] / dataset

    def annotations(self, dataset: str) -> Path:
        return self.data / dataset / DATA["annotations"]

    def clips(self, dataset: str) -> Path:
        return self.data / dataset / DATA["clips"]

    def raw_cache(self, dataset: str) -> Path:
        return self.data / dataset / DATA["raw_cache"]

    def frames(self, dataset: str) -> Path:
        return self.data / dataset / DATA["frames"]

    def logmel(self, dataset: str) -> Path:
        return self.data / dataset / DATA["logmel"]

    def ledger(self, dataset: str, stage: str) -> Path:
        return self.data / dataset / DATA["ledger"] / f"{stage}.csv"

    def metrics(self, dataset: str, stage: str) -> Path:
        return self.reports / dataset / REPORTS["metrics"] / f"{stage}.json"

    # ------------------------------------------------------------------ training and evaluation

    def run(self, dataset: str, name: str) -> RunPaths:
        """A training run of member (or pretext setting) ``name`` on ``dataset`` (``ssl`` for pretraining)."""
        return RunPaths(self.data / dataset / DATA["train"] / name, self.reports / dataset / REPORTS["train"] / name)

    def probe(self, backbone: str) -> Path:
        """A probed backbone's record (probe.json) and, in mode all, its runs."""
        return self.data / SSL / DATA["probe"] / backbone

    def model(self, dataset: str, name: str) -> Path:
        """An evaluated model's reports: metrics.json, per_class.csv, results/."""
        return self.reports / dataset / REPORTS["models"] / name

    def summary(self, report: str) -> Path:
        return self.reports / report / REPORTS["summary"]

    def summary_metrics(self, report: str) -> Path:
        return self.reports / report / REPORTS["summary_metrics"]

    def experiments(self, report: str) -> Path:
        return self.reports / report / REPORTS["experiments"]

    def model_report(self) -> Path:
        return self.reports / REPORTS["model_report"]
