"""UCF101 and HMDB51: the small labelled datasets the self-supervised backbones are probed on
(AVSlowFast Table A.1; stage probe, pipeline.probe).

    annotations   UCF101: classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt (CRLF);
                  HMDB51: <class>_test_split{1,2,3}.txt (each line <video>.avi 1|2|0)
    download      every video some split names, whole, once, into store split ``videos``
                  (the files give no durations: each is cut at its end)
    labels        SplitLabels: split k's train list as ``train<k>``, its test list as ``test<k>``
    head, task    K classes, softmax cross-entropy
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from avsf.data.demo import ucf_hmdb as demo
from avsf.data.kinetics import ManifestError, Segment
from avsf.data.ucf_hmdb import (
    HMDB_SPLITS,
    SplitLabels,
    TransferSplits,
    hmdb_classes,
    read_hmdb_splits,
    read_ucf_classes,
    read_ucf_split,
)
from pipeline.datasets.base import Dataset, DownloadPlan, Flavour
from pipeline.launch import StageFailed
from pipeline.params import DatasetSection

STORE_SPLIT = "videos"  # every video once; a split's train and test lists pick from them


def _counts(plan: list) -> dict[str, Any]:
    """Videos per class, and split 1's train / test / unused counts."""
    return {"classes": len({v.label for v in plan}),
            "split1": dict(Counter({1: "train", 2: "test", 0: "unused"}[v.tags[0]] for v in plan)),
            "video_seconds": round(sum(v.scene.duration for v in plan), 2)}


class TransferDataset(Dataset):
    """A dataset of official splits, probed by the self-supervised backbones."""

    Section = DatasetSection
    probed = True

    def splits(self, ks=HMDB_SPLITS) -> TransferSplits:
        """Its classes and splits ``ks`` (1-3), from the copied split files."""
        raise NotImplementedError

    def download_plan(self) -> DownloadPlan:
        try:
            videos = self.splits().videos()
        except (OSError, ManifestError) as exc:
            raise StageFailed(f"download: {exc}") from None
        segments = [Segment(v.video_id, 0.0, math.inf, STORE_SPLIT) for v in videos]
        return DownloadPlan(segments, total_rows=len(segments))

    @property
    def train_split(self) -> str:
        return STORE_SPLIT

    def store_split(self, split: str) -> str:
        return STORE_SPLIT

    def class_names(self) -> list[str]:
        return self.splits().classes

    def label_source(self, split: str):
        """``train<k>``: split k's train list; ``test<k>``: its test list."""
        side, k = split.rstrip("0123456789"), split[len(split.rstrip("0123456789")):]
        if side not in ("train", "test") or not k:
            raise ValueError(f"a {self.name} split is train<k> or test<k>, not {split!r}")
        return SplitLabels.of(self.splits((int(k),)).splits[int(k)][side == "test"])


class Ucf101(TransferDataset):
    flavour = Flavour(demo.UcfWorldSpec, demo.plan_ucf_world, demo.write_probe_video, demo.write_ucf_annotations,
                      lambda v: v.path, _counts)
    title = "UCF101"
    FILES = ("classInd.txt", *(f"{side}list0{k}.txt" for k in HMDB_SPLITS for side in ("train", "test")))

    def annotation_files(self, root: Path) -> list[Path]:
        return [root / name for name in self.FILES]

    def splits(self, ks=HMDB_SPLITS) -> TransferSplits:
        classes = read_ucf_classes(self.files / "classInd.txt")
        return TransferSplits(classes, {k: (read_ucf_split(self.files / f"trainlist0{k}.txt", classes),
                                            read_ucf_split(self.files / f"testlist0{k}.txt", classes)) for k in ks})


class Hmdb51(TransferDataset):
    flavour = Flavour(demo.HmdbWorldSpec, demo.plan_hmdb_world, demo.write_probe_video, demo.write_hmdb_annotations,
                      lambda v: v.path, _counts)
    title = "HMDB51"

    def annotation_files(self, root: Path) -> list[Path]:
        return sorted(root.glob("*_test_split*.txt"))

    def splits(self, ks=HMDB_SPLITS) -> TransferSplits:
        return TransferSplits(hmdb_classes(self.files), {k: read_hmdb_splits(self.files, k) for k in ks})
