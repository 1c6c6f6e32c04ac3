"""The interface every dataset module implements, and what the stages ask of it::

    demo@<d>         flavour                     the demo world in the dataset's own files
    download@<d>     annotation_files, download_plan   what is fetched: segments or whole videos
    decode@<d>       decode_settings             (AVA: every movie at 30 fps)
    spectrogram@<d>  stats_split                 the split whose audio statistics normalise
    train/finetune   class_names, head, task, label_source, store_split, targets, record
    evaluate@<d>-<m> evaluation_splits, test_sampling, predict (in the job), view_cost, score
    summary@<d>      summary, figures            the paper's table in miniature, its figures

A dataset reads its annotation files from the copy download made (``files``: the
``annotations`` directory of the layout), so that every later stage depends on exactly
what it reads. Capabilities are class attributes: ``pretraining`` (the family is trained on
it from scratch: Kinetics), ``finetunable`` (it may be listed in ``finetune.datasets``),
``probed`` (the self-supervised backbones are probed on it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from avsf.io.digest import file_digest
from pipeline.figures import Figure, grouped_bars, missing_inputs, model_labels, number, read_csv
from pipeline.layout import PER_CLASS_NAME, Layout
from pipeline.params import DatasetSection, DecodeParams, EvaluateParams, ModelParams, TrainParams

if TYPE_CHECKING:
    import torch

    from avsf.data.clip_dataset import ClipDataset, ClipSampling, LabelSource
    from avsf.data.kinetics import Segment
    from avsf.data.ledger import Failure
    from avsf.models import HeadConfig, ModelConfig
    from avsf.train.tasks import Task
    from pipeline.params import Params
    from pipeline.runs import TrainRun


@dataclass(frozen=True)
class Flavour:
    """A dataset's demo world (a module of avsf.data.demo): its spec, how it is planned, how
    each video is written (None: a planned row without a video), the annotation files, each
    video's file name, and the counts its metrics report."""

    Spec: type
    plan: Callable[[Any], list]
    write_video: Callable[[Any, str], Path | None]
    write_annotations: Callable[[Path, list], None]
    video_name: Callable[[Any], str]
    counts: Callable[[list], dict[str, Any]]

    def spec(self, settings: dict[str, Any], where: str) -> Any:
        """The spec of a section's ``demo`` settings; errors name ``where`` (e.g. datasets.epic.demo)."""
        allowed = [f.name for f in dataclasses.fields(self.Spec)]
        unknown = [k for k in settings if k not in allowed]
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key; allowed: {', '.join(allowed)}")
        try:
            return self.Spec(**{k: _tupled(v) for k, v in settings.items()})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}.{exc}" if str(exc).split(":")[0] in allowed else f"{where}: {exc}") from None


def _tupled(value: Any) -> Any:
    """YAML's lists as the tuples a frozen spec holds."""
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


@dataclass(frozen=True)
class DownloadPlan:
    """What download fetches: ``segments`` (a Kinetics clip, or a whole video), the rows that
    could not be used (``failures``), how many rows the annotations have, and the class
    list download writes beside the clips (Kinetics: every label; the others: empty, their
    classes come from their class files)."""

    segments: list[Segment]
    failures: list[Failure] = dataclasses.field(default_factory=list)
    total_rows: int = 0
    classes: list[str] = dataclasses.field(default_factory=list)


class Dataset:
    """One dataset as the pipeline's stages see it; a subclass per module."""

    Section: ClassVar[type[DatasetSection]] = DatasetSection
    flavour: ClassVar[Flavour | None] = None
    pretraining: ClassVar[bool] = False
    finetunable: ClassVar[bool] = False
    probed: ClassVar[bool] = False
    heads: ClassVar[tuple[str, ...]] = ("classification",)  # the model.head values it trains
    pool: ClassVar[str] = "softmax_mean"  # how predict_views pools a sample's views
    title: ClassVar[str] = ""  # as its summary names it
    # What the value of the evaluation's per_class.csv is, as a figure's axis names it, and its
    # d3 format ('.0%': a fraction shown in %)
    per_class_value: ClassVar[str] = "value"
    per_class_format: ClassVar[str] = ""

    def __init__(self, name: str, section: DatasetSection, layout: Layout):
        self.name, self.section, self.layout = name, section, layout

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # ------------------------------------------------------------------ files

    @property
    def files(self) -> Path:
        """Where the stages after download read the annotation files: download's copy."""
        return self.layout.annotations(self.name)

    def annotation_files(self, root: Path) -> list[Path]:
        """The files of annotation directory ``root`` the dataset reads (download copies them)."""
        raise NotImplementedError

    def files_digest(self) -> dict[str, str]:
        """Each copied annotation file's digest (an evaluation's fingerprint holds them)."""
        return {p.name: file_digest(p) for p in self.annotation_files(self.files)}

    def digest(self) -> dict[str, str]:
        """The digests of what a training run reads of the annotations (its fingerprint holds them)."""
        return self.files_digest()

    # ------------------------------------------------------------------ download, decode, spectrogram

    def download_plan(self) -> DownloadPlan:
        """What download fetches, from the copied annotation files."""
        raise NotImplementedError

    def decode_settings(self, decode: DecodeParams) -> DecodeParams:
        return decode

    def store_split(self, split: str) -> str:
        """The store split a split's samples come from."""
        return split

    @property
    def train_split(self) -> str:
        return self.section.train_split

    @property
    def test_split(self) -> str:
        return self.section.test_split

    @property
    def stats_split(self) -> str:
        """The store split whose audio the log-mel statistics are measured on."""
        return self.store_split(self.train_split)

    # ------------------------------------------------------------------ training

    def members(self, params: Params) -> list[str]:
        """The family members trained (and evaluated) on it."""
        return list(params.finetune.members)

    def class_names(self) -> list[str] | dict[str, list[str]] | None:
        """The head's classes from the annotation files; None: the store's classes.json."""
        return None

    def head(self, model: ModelParams, target: str | None = None, objective: str = "labels") -> HeadConfig:
        """The head it trains (class counts from the annotation files)."""
        from avsf.models import HeadConfig

        return HeadConfig(kind="classification", num_classes=len(self.class_names()), dropout=model.dropout,
                          activation="softmax", test_pool=model.test_pool)

    def task(self, target: str | None = None, objective: str = "labels") -> Task:
        from avsf.train.tasks import Classification

        return Classification()

    def label_source(self, split: str) -> LabelSource | None:
        """The samples and targets of ``split``; None: the store's own labels (Kinetics)."""
        raise NotImplementedError

    def targets(self) -> list[str | None]:
        """The models a run trains: [None] for one; EPIC's separate verb and noun models."""
        return [None]

    def target_train(self, train: TrainParams, target: str | None) -> TrainParams:
        """The train section of ``target``'s model (EPIC: its own learning rate)."""
        return train

    def record(self) -> dict[str, Any]:
        """What a checkpoint keeps of it (``data``): the dataset, the class names."""
        return {"dataset": self.name, "class_names": self.class_names()}

    def validation_sampling(self, sampling: ClipSampling) -> ClipSampling:
        """Training's validation views: one centre clip."""
        return replace(sampling, test_clips=1, test_crops=1)

    def test_sampling(self, sampling: ClipSampling) -> ClipSampling:
        """The evaluation's views: dataset.test_clips x test_crops."""
        return sampling

    def check(self, params: Params) -> None:
        """Checks of this dataset's section against the others (ValueError naming the key)."""

    def demo_settings(self) -> dict[str, Any]:
        """The demo flavour's spec settings (the section's ``demo``)."""
        return dict(self.section.demo)

    # ------------------------------------------------------------------ evaluation

    def evaluation_truth(self) -> Any:
        """What the evaluation scores against, read (and checked) before its job starts."""
        return None

    def evaluation_splits(self) -> list[str]:
        """The splits the evaluation predicts: the test split (EPIC-55 adds its test sets)."""
        return [self.test_split]

    def predict(self, model: torch.nn.Module, cfg: ModelConfig, clips: ClipDataset, device: torch.device,
                settings: EvaluateParams) -> dict[str, Any]:
        """In the evaluation job: the model's predictions on one split's test views."""
        raise NotImplementedError

    def view_cost(self, cfg: ModelConfig, sampling: ClipSampling) -> Any:
        """Multiply-adds and parameters of one test view (avsf.models.flops.ModelCost)."""
        from avsf.models.flops import count_cost

        return count_cost(cfg, sampling.test_crop)

    def score(self, run: TrainRun, out: dict[str, Any], truth: Any, out_dir: Path) -> tuple[dict[str, Any], str]:
        """The evaluation job's output (``out["splits"][split][target]``: :meth:`predict`'s)
        scored against ``truth`` as the dataset's official evaluation does: its metrics
        (metrics.json), with its results files (``results/``) and per_class.csv (class, value,
        count: a DVC bar plot) written to ``out_dir``, and the stage's log line."""
        raise NotImplementedError

    # ------------------------------------------------------------------ summary

    def summary(self, results: dict[str, dict[str, Any]], experiments: dict[str, Any] | None,
                params: Params) -> tuple[str, dict[str, Any]]:
        """summary.md and summary.json of the members' evaluations (``results``: member ->
        its metrics.json with its ``arch``), with the seeds and ablations of ``experiments``:
        the papers' claims as :class:`pipeline.claims.Claim` on this run and over the seeds
        (:func:`pipeline.claims.seeds_section`), their counts in summary.json's ``claims``."""
        raise NotImplementedError

    def figures(self, results: dict[str, dict[str, Any]], params: Params) -> list[Figure]:
        """The figures summary.md embeds, from the members' evaluations (``results`` as
        :meth:`summary` gets them) and the files beside them. By default each class's figure
        of every member side by side, from the evaluation's per_class.csv."""
        per_class = self.per_class(results)
        if per_class is None:
            return []
        labels = model_labels(results)
        rows = [{"model": labels[member], **row} for member, rows in per_class.items() for row in rows]
        title = f"{self.title}: {self.per_class_value} per class"
        return [Figure("per_class", title, grouped_bars(title, rows, "class", "value", self.per_class_value,
                                                        fmt=self.per_class_format))]

    def per_class(self, results: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]] | None:
        """Each member's per_class.csv (class, value, count; an empty value is None), or None
        where a member's file is missing."""
        paths = {member: self.layout.model(self.name, member) / PER_CLASS_NAME for member in results}
        if missing_inputs(paths.values(), f"{self.title} per-class figure"):
            return None
        return {member: [{"class": r["class"], "value": number(r["value"]), "count": int(r["count"])}
                         for r in read_csv(path)] for member, path in paths.items()}
