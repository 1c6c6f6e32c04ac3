"""The datasets the pipeline knows, one module each behind one interface
(:class:`pipeline.datasets.base.Dataset`): its params section, annotation files and readers,
what download fetches, classes, head, task and label source, demo flavour, evaluation and
summary. Adding a dataset means a new module and its line here; params.yaml's ``datasets``
names which of them a project stores, and dvc.yaml iterates over that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.datasets.base import Dataset
    from pipeline.params import Params

DATASETS = {
    "kinetics": "pipeline.datasets.kinetics:Kinetics",
    "epic": "pipeline.datasets.epic:EpicKitchens100",
    "epic55": "pipeline.datasets.epic55:EpicKitchens55",
    "charades": "pipeline.datasets.charades:Charades",
    "ava": "pipeline.datasets.ava:Ava",
    "ucf101": "pipeline.datasets.ucf_hmdb:Ucf101",
    "hmdb51": "pipeline.datasets.ucf_hmdb:Hmdb51",
}


def dataset_class(name: str) -> type[Dataset]:
    """The module's class of registered dataset ``name``."""
    module, _, attr = DATASETS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def dataset(params: Params, name: str) -> Dataset:
    """Dataset ``name`` of ``params.datasets``, bound to its section and the project's layout."""
    from pipeline.layout import Layout

    section = params.section(name)  # (a name params.yaml lacks: its error, naming the datasets there are)
    return dataset_class(name)(name, section, Layout.of(params.layout))


def pretraining_dataset(params: Params) -> Dataset:
    """The dataset the family is trained on from scratch (and pretrained on without labels)."""
    names = [n for n in params.datasets if dataset_class(n).pretraining]
    if not names:
        from pipeline.params import ParamsError

        raise ParamsError("datasets: no dataset the family is trained on (kinetics)")
    return dataset(params, names[0])


def stage_dataset(params: Params, name: str | None) -> Dataset:
    """The dataset a data stage's ``--dataset`` names (none: the pretraining dataset)."""
    return pretraining_dataset(params) if name is None else dataset(params, name)
