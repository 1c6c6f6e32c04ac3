"""What each dataset's annotations give the train and evaluate stages: the label source of
a split, the training task, the head, the class names, and a digest of the files.

    params.download.format   kinetics   epic                         charades
    samples                  a clip     a narration's time range     a whole video
    labels (LabelSource)     VideoLabels EpicSegments                CharadesLabels
    task                     softmax CE  0.5 (CE_verb + CE_noun)      per-class BCE
                                         (or one of them: heads separate)
    head                     K classes   verb + noun projections     K sigmoid classes

UCF101 and HMDB51 (the self-supervised backbones' probes, pipeline.probe): a whole video
per sample from the store's one split ``videos``, split k's train and test lists as
``train<k>`` and ``test<k>`` (SplitLabels), softmax CE. Kinetics with ``train.objective``
rotation or sync ignores the labels: the rotation pretext's 4-way head, or no task beside
AV-sync.

The annotation files sit where ``Params.for_dataset`` put ``download.manifests``: the
dataset's own files, as it distributes them (``EPIC_100_<split>.csv`` and the class lists
beside them; ``Charades_v1_<split>.csv`` and ``Charades_v1_classes.txt``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from avsf.data.ava import store_start_second
from avsf.data.clip_dataset import LabelSource
from avsf.io.digest import file_digest
from avsf.models import HeadConfig
from avsf.train.tasks import Classification, Task
from pipeline.params import MANIFEST_NAMES, TRANSFER_DATASETS, TRANSFER_STORE_SPLIT, ModelParams, Params

EPIC_VERBS, EPIC_NOUNS = "EPIC_100_verb_classes.csv", "EPIC_100_noun_classes.csv"
EPIC_TAIL_VERBS, EPIC_TAIL_NOUNS = "EPIC_100_tail_verbs.csv", "EPIC_100_tail_nouns.csv"
EPIC_VIDEO_INFO = "EPIC_100_video_info.csv"
CHARADES_CLASSES = "Charades_v1_classes.txt"
EPIC_TARGETS = ("verb", "noun")
# AVA's files beside its ground truth (ava_<split>_v2.2.csv), as the dataset distributes them
AVA_ACTIONS, AVA_EVALUATED = "ava_action_list_v2.2.pbtxt", "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
AVA_DETECTIONS, AVA_EXCLUDED = "ava_{split}_predicted_boxes.csv", "ava_{split}_excluded_timestamps_v2.2.csv"
AVA_CLIP_MARGIN_S = 2.0  # the store keeps this much film past a movie's last keyframe (1800 for AVA's 1798)


def epic_unseen_name(split: str) -> str:
    """The unseen-participant list of a split (the dataset has one for validation)."""
    return f"EPIC_100_unseen_participant_ids_{split}.csv"


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset's annotations as the stages use them. ``target``: for EPIC's separate
    models, the one this model learns (verb or noun); None: both (joint) or not EPIC."""

    kind: str  # kinetics | epic | charades | ava | ucf101 | hmdb51
    annotations: str | None  # the directory of the annotation files
    target: str | None = None
    objective: str = "labels"  # train.objective: labels, or a self-supervised rotation | sync (Kinetics)
    train_split: str = "train"  # AVA: the split whose boxes are ground truth + matched detections
    detection_score: float = 0.8  # AVA: person boxes scoring at least this
    train_iou: float = 0.9  # AVA: detections added to training at this IoU with a true box
    store_start_s: float = 900.0  # AVA: the movie second the store's frame 0 shows

    # ------------------------------------------------------------------ files

    def annotation_file(self, split: str) -> Path:
        return Path(self.annotations) / MANIFEST_NAMES[self.kind].format(split=split)

    def files(self) -> list[Path]:
        """Every annotation file the run reads (their digests enter the run's fingerprint)."""
        if self.kind == "kinetics":
            return []
        root = Path(self.annotations)
        if self.kind in TRANSFER_DATASETS:
            return sorted(root.glob("*.txt"))
        if self.kind == "ava":
            return sorted(p for p in root.iterdir() if p.suffix in (".csv", ".pbtxt", ".txt"))
        names = [EPIC_VERBS, EPIC_NOUNS] if self.kind == "epic" else [CHARADES_CLASSES]
        return sorted([*root.glob(MANIFEST_NAMES[self.kind].format(split="*")), *(root / n for n in names)])

    def digest(self) -> dict[str, str]:
        return {p.name: file_digest(p) for p in self.files()}

    # ------------------------------------------------------------------ classes

    def class_names(self) -> dict[str, list[str]] | list[str] | None:
        """EPIC: {"verb": [...], "noun": [...]}; Charades: the class names; Kinetics: None
        (the store's classes.json)."""
        root = Path(self.annotations or ".")
        if self.kind == "epic":
            from avsf.data.epic import read_epic_classes

            return {"verb": read_epic_classes(root / EPIC_VERBS), "noun": read_epic_classes(root / EPIC_NOUNS)}
        if self.kind == "charades":
            from avsf.data.charades import read_charades_classes

            return read_charades_classes(root / CHARADES_CLASSES)
        if self.kind in TRANSFER_DATASETS:
            return self.transfer_splits().classes
        if self.kind == "ava":
            return list(self.action_names().values())
        return None

    # ------------------------------------------------------------------ AVA

    def action_names(self) -> dict[int, str]:
        """AVA: action id -> name of every class trained on (the action list)."""
        from avsf.data.ava import read_action_list

        return read_action_list(Path(self.annotations) / AVA_ACTIONS)

    def train_classes(self) -> list[int]:
        """AVA: the action ids of the head's outputs, in order."""
        return list(self.action_names())

    def evaluated_classes(self) -> list[int]:
        """AVA: the action ids the frame-mAP is over (the evaluation list: AVA's 60)."""
        from avsf.data.ava import read_action_list

        return list(read_action_list(Path(self.annotations) / AVA_EVALUATED))

    def excluded_file(self, split: str) -> Path:
        return Path(self.annotations) / AVA_EXCLUDED.format(split=split)

    def action_groups(self) -> dict[str, str]:
        """AVA: action name -> its kind (pose, movement, motion, sound) for the demo's actions."""
        from avsf.data.demo.ava import ava_cue_groups

        return ava_cue_groups()

    def val_sampling(self, sampling):
        """The validation / test views: one centre clip; AVA's is the whole frame (fully
        convolutional at test_scale), its boxes where the detector put them."""
        single = replace(sampling, test_clips=1, test_crops=1)
        return replace(single, test_full_frame=True) if self.kind == "ava" else single

    def transfer_splits(self):
        """UCF101's or HMDB51's classes and three splits (avsf.data.ucf_hmdb)."""
        from avsf.data.ucf_hmdb import read_transfer_splits

        return read_transfer_splits(self.kind, self.annotations)

    def store_split(self, split: str) -> str:
        """The store split a train or val split's samples come from: a transfer dataset
        stores every video once (its ``train<k>`` and ``test<k>`` pick from them)."""
        return TRANSFER_STORE_SPLIT if self.kind in TRANSFER_DATASETS else split

    def head(self, model: ModelParams) -> HeadConfig:
        """The head this dataset trains (its class counts from the annotation files)."""
        classes = self.class_names()
        if self.kind == "epic" and self.target is None:
            return HeadConfig(kind="epic", verb_classes=len(classes["verb"]), noun_classes=len(classes["noun"]),
                              dropout=model.dropout, activation="softmax", test_pool=model.test_pool)
        if self.kind == "epic":
            return HeadConfig(kind="classification", num_classes=len(classes[self.target]), dropout=model.dropout,
                              activation="softmax", test_pool=model.test_pool)
        if self.kind == "charades":
            return HeadConfig(kind="classification", num_classes=len(classes), dropout=model.dropout,
                              activation="sigmoid", test_pool=model.test_pool)
        if self.kind in TRANSFER_DATASETS:
            return HeadConfig(kind="classification", num_classes=len(classes), dropout=model.dropout,
                              activation="softmax", test_pool=model.test_pool)
        if self.kind == "ava":
            return HeadConfig(kind="ava", num_classes=len(classes), dropout=model.dropout, activation="sigmoid")
        if self.objective == "rotation":
            from avsf.data.rotation import ROTATIONS

            return HeadConfig(kind="classification", num_classes=ROTATIONS, dropout=model.dropout,
                              activation="softmax", test_pool=model.test_pool)
        return HeadConfig(kind=model.head, num_classes=model.num_classes, dropout=model.dropout,
                          activation="softmax", test_pool=model.test_pool)

    # ------------------------------------------------------------------ samples and loss

    def label_source(self, split: str) -> LabelSource | None:
        """The samples and targets of ``split``; None for Kinetics (the store's own labels)."""
        if self.kind == "epic":
            from avsf.data.epic import EpicSegments, read_epic_annotations

            return EpicSegments(read_epic_annotations(self.annotation_file(split)))
        if self.kind == "charades":
            from avsf.data.charades import CharadesLabels, read_charades

            return CharadesLabels(read_charades(self.annotation_file(split)), len(self.class_names()))
        if self.kind == "ava":
            from avsf.data.ava import read_ava_detections, read_ava_ground_truth
            from avsf.data.ava_clips import AvaKeyframes

            truth, _ = read_ava_ground_truth(self.annotation_file(split))
            detections_path = Path(self.annotations) / AVA_DETECTIONS.format(split=split)
            if not detections_path.is_file() and split != self.train_split:
                raise ValueError(f"AVA's test boxes are a person detector's: {detections_path} is missing "
                                 "(put your detector's boxes there, in the ground truth's CSV layout with a score)")
            detections = read_ava_detections(detections_path) if detections_path.is_file() else []
            return AvaKeyframes(self.train_classes(), truth, detections,
                                mode="train" if split == self.train_split else "test",
                                score_threshold=self.detection_score, train_iou=self.train_iou,
                                movie_start_s=self.store_start_s)
        if self.kind in TRANSFER_DATASETS:  # "train2": split 2's train list; "test2": its test list
            from avsf.data.ucf_hmdb import SplitLabels

            side, k = split.rstrip("0123456789"), split[len(split.rstrip("0123456789")):]
            if side not in ("train", "test") or not k:
                raise ValueError(f"a {self.kind} split is train<k> or test<k>, not {split!r}")
            return SplitLabels.of(self.transfer_splits().splits[int(k)][side == "test"])
        return None

    def task(self) -> Task:
        if self.objective != "labels":
            from avsf.train.tasks import Rotation, SyncOnly

            return Rotation() if self.objective == "rotation" else SyncOnly()
        if self.kind == "epic" and self.target is None:
            from avsf.train.tasks import VerbNoun

            return VerbNoun()
        if self.kind == "epic":
            return Classification(key=self.target)
        if self.kind == "charades":
            from avsf.train.tasks import MultiLabel

            return MultiLabel()
        if self.kind == "ava":
            from avsf.train.tasks import Detection

            return Detection()
        return Classification()

    def record(self) -> dict[str, Any]:
        """What a checkpoint keeps of it (``data``): the kind, the target and the class names."""
        record = {"dataset": self.kind, "target": self.target, "class_names": self.class_names(),
                  "objective": self.objective}
        if self.kind == "ava":
            record.update(detection_score=self.detection_score, train_iou=self.train_iou,
                          store_start_s=self.store_start_s)
        return record


def dataset_spec(params: Params, target: str | None = None) -> DatasetSpec:
    """The dataset ``params`` train on (``download.format``), its annotations beside the manifests."""
    kind = params.download.format
    if kind == "kinetics":
        return DatasetSpec("kinetics", None, objective=params.train.objective)
    if kind in TRANSFER_DATASETS:  # (its manifests are split files, or HMDB51's split directory)
        return DatasetSpec(kind, getattr(params, kind).annotations)
    if kind == "ava":
        a = params.ava
        return DatasetSpec(kind, str(Path(params.download.manifests[0]).parent), train_split=a.train_split,
                           detection_score=a.detection_score, train_iou=a.train_iou,
                           store_start_s=store_start_second(a.movie_start_s))
    return DatasetSpec(kind, str(Path(params.download.manifests[0]).parent), target)


def epic_targets(params: Params) -> list[str | None]:
    """The models an EPIC run trains: [None] for the joint model, ["verb", "noun"] for
    separate ones; [None] for any other dataset."""
    if params.download.format == "epic" and params.epic is not None and params.epic.heads == "separate":
        return list(EPIC_TARGETS)
    return [None]
