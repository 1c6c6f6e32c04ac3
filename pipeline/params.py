"""params.yaml, validated into one typed, frozen config per section.

Every stage loads the whole file through :func:`load_params`, so a wrong key anywhere is
caught before any stage writes anything. Errors are :class:`ParamsError` with a one-line
message naming the key and what is allowed; the stage CLI turns them into exit code 2.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

class ParamsError(ValueError):
    """A params file or override that does not validate; the message is one line."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- launch


class Resources(Section):
    """What one job of a stage asks for. ``timeout_min`` matters locally too:
    submitit's local executor kills a job after 2 minutes unless it is set."""

    timeout_min: int = Field(60, gt=0)
    nodes: int = Field(1, gt=0)
    tasks_per_node: int = Field(1, gt=0)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int = Field(2, gt=0)
    mem_gb: float = Field(8.0, gt=0)


class ResourceOverride(Section):
    """Per-stage changes to :class:`Resources`; unset fields keep the launch-wide value."""

    timeout_min: int | None = Field(None, gt=0)
    nodes: int | None = Field(None, gt=0)
    tasks_per_node: int | None = Field(None, gt=0)
    gpus_per_node: int | None = Field(None, ge=0)
    cpus_per_task: int | None = Field(None, gt=0)
    mem_gb: float | None = Field(None, gt=0)


# Every DVC stage, for the per-stage sections of ``launch``: a misspelt stage would silently
# run with the launch-wide settings.
STAGE_NAMES = ("demo", "download", "decode", "spectrogram", "model_report", "train", "evaluate", "probe")
# The datasets fine-tuned from the Kinetics family: each has its own section and stages
# (demo_<name>, download_<name>, ..., train_<name>@<member>, evaluate_<name>@<member>, <name>_summary).
FINETUNE_DATASETS = ("epic", "charades", "ava")
TRANSFER_DATASETS = ("ucf101", "hmdb51")  # probed by the self-supervised backbones (section ssl)
DATASET_SECTIONS = (*FINETUNE_DATASETS, *TRANSFER_DATASETS, "ssl")  # a dataset's own params drop the others'
PROBE_REFERENCES = ("random", "supervised")  # probe@ backbones beside ssl.settings


class SlurmParams(Section):
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    array_parallelism: int = Field(16, gt=0)
    # Extra sbatch arguments, e.g. {constraint: volta32gb, exclusive: true}.
    additional_parameters: dict[str, str | int | float | bool] = {}


class SlurmOverride(Section):
    """Per-stage changes to :class:`SlurmParams` (a GPU partition for training, a CPU one for
    decoding); unset fields keep the launch-wide value, extra sbatch arguments are merged."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    array_parallelism: int | None = Field(None, gt=0)
    additional_parameters: dict[str, str | int | float | bool] = {}


class LaunchParams(Section):
    cluster: Literal["local", "slurm", "debug", "auto"] = "local"
    log_dir: str = "logs/submitit"
    resources: Resources = Resources()
    slurm: SlurmParams = SlurmParams()
    stage_resources: dict[str, ResourceOverride] = {}
    stage_slurm: dict[str, SlurmOverride] = {}

    @field_validator("stage_resources", "stage_slurm")
    @classmethod
    def _known_stages(cls, value: dict) -> dict:
        unknown = [k for k in value if k not in STAGE_NAMES]
        if unknown:
            raise ValueError(f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGE_NAMES)}")
        return value

    @model_validator(mode="after")
    def _nodes_need_slurm(self) -> "LaunchParams":
        if self.cluster in ("local", "debug"):
            keys = {"resources": self.resources, **{f"stage_resources.{k}": v for k, v in self.stage_resources.items()}}
            for key, res in keys.items():
                if res.nodes is not None and res.nodes > 1:
                    raise ValueError(f"{key}.nodes = {res.nodes} needs cluster slurm or auto "
                                     f"({self.cluster} runs on one node)")
        return self

    def resources_for(self, stage: str) -> Resources:
        override = self.stage_resources.get(stage)
        if override is None:
            return self.resources
        return self.resources.model_copy(update=override.model_dump(exclude_none=True))

    def slurm_for(self, stage: str) -> SlurmParams:
        override = self.stage_slurm.get(stage)
        if override is None:
            return self.slurm
        update = override.model_dump(exclude_none=True, exclude={"additional_parameters"})
        extra = {**self.slurm.additional_parameters, **override.additional_parameters}
        return self.slurm.model_copy(update={**update, "additional_parameters": extra})

    def world_size(self, stage: str) -> int:
        """Ranks of a distributed stage: nodes x tasks per node."""
        res = self.resources_for(stage)
        return res.nodes * res.tasks_per_node


# --------------------------------------------------------------------------- demo


class DemoParams(Section):
    """The procedural demo world (see avsf.data.demo)."""

    seed: int = 0
    out_dir: str = "data/demo/remote"
    train_videos_per_class: int = Field(8, gt=0)
    val_videos_per_class: int = Field(3, gt=0)
    raw_seconds: tuple[float, float] = (4.0, 6.0)
    clip_seconds: int = Field(3, gt=0)  # Kinetics segments are whole seconds
    sizes: list[tuple[int, int]] = Field(
        default=[(160, 120), (128, 96), (176, 144), (96, 128), (192, 108)], min_length=1
    )
    fps_choices: list[float] = Field(default=[25.0, 29.97, 30.0], min_length=1)
    audio_rates: list[int] = Field(default=[44100, 48000], min_length=1)
    no_audio_fraction: float = Field(0.1, ge=0, le=1)
    corrupt_videos: int = Field(1, ge=0)
    missing_sources: int = Field(1, ge=0)
    shards: int = Field(2, gt=0)

    @field_validator("raw_seconds")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("must be [low, high] with 0 < low <= high")
        return value

    @field_validator("sizes")
    @classmethod
    def _encodable(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if any(w < 16 or h < 16 or w % 2 or h % 2 for w, h in value):
            raise ValueError("must be even [width, height] pairs of at least 16 (H.264 needs even sizes)")
        return value

    @field_validator("clip_seconds")
    @classmethod
    def _fits(cls, value: int, info: ValidationInfo) -> int:
        raw = info.data.get("raw_seconds")
        if raw is not None and value > raw[0]:
            raise ValueError(f"must not exceed the shortest raw video (raw_seconds[0] = {raw[0]})")
        return value


# --------------------------------------------------------------------------- download


class DownloadParams(Section):
    """Fetch raw videos named by the manifests and trim them into clips: Kinetics' segments,
    or (``format`` epic / charades) every annotated video whole, once, whatever its number of
    segments (the clip dataset reads any time range of it)."""

    manifests: list[str] = Field(
        default=["data/demo/remote/kinetics_demo_train.csv", "data/demo/remote/kinetics_demo_val.csv"],
        min_length=1,
    )
    # A directory or file:// URL holding <youtube_id>.<ext>, an http(s) URL prefix (or a URL
    # template with {youtube_id}), or "youtube" (needs the extra: pip install avsf[youtube]).
    source: str = Field("data/demo/remote/videos", min_length=1)
    format: Literal["kinetics", "epic", "charades", "ava", "ucf101", "hmdb51"] = "kinetics"  # what the manifests are
    out_dir: str = "data/clips"
    ledger: str = "data/ledger/download.csv"
    metrics: str = "reports/metrics/download.json"
    raw_cache: str = "data/download_cache"
    keep_raw: bool = False
    workers: int = Field(2, gt=0)
    shards: int = Field(2, gt=0)
    retries: int = Field(3, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    timeout_s: float = Field(30.0, gt=0)
    crf: int = Field(18, ge=0, le=51)  # x264 quality of the re-encoded video
    # A segment running past the end of its video, or past where the file breaks off, is cut
    # short; below this fraction of its annotated length (inside the video, and decoded) it
    # fails as segment_out_of_range or too_little_decoded.
    min_segment_fraction: float = Field(0.5, gt=0, le=1)
    # copy: the source's audio packets as they are, as the official crawler does (re-encoded
    # to AAC only where mp4 cannot hold them, e.g. PCM); aac: always re-encoded.
    audio: Literal["copy", "aac"] = "copy"
    audio_bitrate_k: int = Field(192, ge=32, le=512)  # kb/s of AAC where audio is re-encoded

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        return check_source(value)


def check_source(value: str) -> str:
    """download.source's forms: a directory, a file:// or http(s):// URL (or URL template), youtube."""
    scheme, sep, _ = value.partition("://")
    if sep and scheme not in ("http", "https", "file"):
        raise ValueError("must be a directory, a file:// or http(s):// URL, or 'youtube'")
    if set("{}") & set(value.replace("{youtube_id}", "")):
        raise ValueError("a URL template may only use the field {youtube_id}")
    return value


# --------------------------------------------------------------------------- decode


class DecodeParams(Section):
    """Decode the downloaded clips (``download.out_dir``/clips.csv) into the HDF5 frame store."""

    out_dir: str = "data/store/frames"  # shard-NNNNN.h5, index.csv, classes.json
    ledger: str = "data/ledger/decode.csv"  # download's failures, then decode's own
    metrics: str = "reports/metrics/decode.json"
    fps: float = Field(30.0, gt=0, le=240)  # frames are resampled to this rate
    short_side: int = Field(128, ge=8, le=4096)  # frames are resized so the shorter side is this
    jpeg_quality: int = Field(90, ge=1, le=100)
    sample_rate: int = Field(16000, ge=8000, le=96000)  # audio is resampled to this, mono
    clips_per_shard: int = Field(32, gt=0)  # one HDF5 file and one job per shard


# --------------------------------------------------------------------------- spectrogram


class SpectrogramParams(Section):
    """Log-mel spectrograms of the decoded audio into the HDF5 log-mel store."""

    out_dir: str = "data/store/logmel"  # shard-NNNNN.h5 named as the frame store's, stats.json
    ledger: str = "data/ledger/spectrogram.csv"  # decode's failures, then the spectrogram's own
    metrics: str = "reports/metrics/spectrogram.json"
    n_fft: int = Field(512, ge=16)
    win_length: int = Field(512, ge=16)
    hop_length: int = Field(256, gt=0)
    n_mels: int = Field(80, gt=0)
    f_min: float = Field(0.0, ge=0)
    f_max: float | None = Field(None, gt=0)  # None: half the sample rate
    log_offset: float = Field(1e-8, gt=0)  # log(S + log_offset)
    stats_split: str = "train"  # normalisation mean/std are measured on this split

    @field_validator("win_length")
    @classmethod
    def _fits_fft(cls, value: int, info: ValidationInfo) -> int:
        n_fft = info.data.get("n_fft")
        if n_fft is not None and value > n_fft:
            raise ValueError(f"must not exceed n_fft ({n_fft})")
        return value


# --------------------------------------------------------------------------- dataset


class DatasetParams(Section):
    """How the clip dataset samples the stores (``decode.out_dir``, ``spectrogram.out_dir``).
    Clip length in frames (T, tau, alpha) comes from the model."""

    train_scale: tuple[int, int] = (128, 160)  # short side drawn from [low, high] in training
    train_crop: int = Field(112, gt=0)  # random square crop in training
    flip: bool = True  # random horizontal flip in training
    test_scale: int = Field(128, gt=0)  # short side at test time
    test_crop: int = Field(128, gt=0)  # square crops at test time
    test_clips: int = Field(10, gt=0)  # uniform temporal clips per video at test time
    test_crops: Literal[1, 3] = 3  # centre, or left/centre/right along the longer side
    spec_frames: int = Field(128, gt=0)  # log-mel frames per clip (128 for ~2 s in the paper)
    hard_negative_min_shift_s: float = Field(0.5, ge=0)  # AV-sync hard negatives: audio shift
    max_open_shards: int = Field(64, gt=0)  # HDF5 files each loader process keeps open per store

    @field_validator("train_scale")
    @classmethod
    def _scale_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("must be [low, high] with 0 < low <= high")
        return value

    @field_validator("train_crop")
    @classmethod
    def _train_crop_fits(cls, value: int, info: ValidationInfo) -> int:
        scale = info.data.get("train_scale")
        if scale is not None and value > scale[0]:
            raise ValueError(f"must not exceed the smallest train_scale ({scale[0]})")
        return value

    @field_validator("test_crop")
    @classmethod
    def _test_crop_fits(cls, value: int, info: ValidationInfo) -> int:
        scale = info.data.get("test_scale")
        if scale is not None and value > scale:
            raise ValueError(f"must not exceed test_scale ({scale})")
        return value


# --------------------------------------------------------------------------- model


class ModelParams(Section):
    """The network, as ``avsf.models.model_config`` arguments: a paper instantiation
    ``arch`` R``depth`` ``frames`` x ``stride`` (T x tau), with its ratios and options."""

    arch: Literal["slow", "fast", "slowfast", "audio", "avslowfast"] = "avslowfast"
    depth: Literal[50, 101] = 50
    frames: int = Field(4, gt=0)  # T: Slow pathway frames
    stride: int = Field(16, gt=0)  # tau: Slow pathway frame stride
    alpha_f: int | None = Field(None, gt=0)  # Fast frame-rate ratio; null: 8 for tau 16, else 4
    beta_f: float = Field(0.125, gt=0, le=1)  # Fast channel ratio
    alpha_a: int | None = Field(None, gt=0)  # Audio frame-rate ratio; null: 4 x alpha_f
    beta_a: float = Field(0.5, gt=0, le=2)  # Audio channel ratio
    fusion: Literal["a_fs", "a_f_s", "av_nonlocal"] = "a_fs"
    fusion_stages: list[int] = [3, 4]  # audio laterals after these stages (1 = pool1, 2-4 = res2-res4)
    lateral_stages: list[int] = [1, 2, 3, 4]  # Fast->Slow laterals after these (authors' AVSlowFast: [3, 4])
    fusion_pool5: bool = True  # concatenate pooled audio features before the classifier
    nonlocal_blocks: bool = False  # Slow non-local blocks where PySlowFast's NLN configs put them
    nonlocal_layout: Literal["pyslowfast", "paper"] = "pyslowfast"  # 1x2x2 pooling | 2x2x2 (the 234 G)
    # R101's temporal kernels in res4's first 6 blocks | in all of them (PySlowFast's suffixes)
    temporal_layout: Literal["suffix_50_50", "suffix_101_101"] = "suffix_50_50"
    head: Literal["classification", "epic", "ava"] = "classification"
    num_classes: int = Field(400, gt=0)
    dropout: float = Field(0.5, ge=0, lt=1)
    test_pool: int | None = Field(None, gt=0)  # PySlowFast's test-time k x k pooling; null: global
    drop_pathway: float = Field(0.8, ge=0, lt=1)  # P_d, AVSlowFast only
    drop_pathway_mode: Literal["fusion", "pathway"] = "fusion"  # authors' code | the paper's wording
    sync: bool = True  # AV-sync heads at res3, res4, pool5 (AVSlowFast only)
    sync_margin: float = Field(0.99, gt=0)  # contrastive margin on out-of-sync distances
    sync_scale: float = Field(0.5, gt=0)  # embedding norm (L2-normalised, then scaled)
    mel_bins: int = Field(80, gt=0)
    tiny: bool = False  # one block per stage, narrow: the demo and the tests
    width: int | None = Field(None, gt=0)  # Slow stem channels; null: 64 (8 when tiny)

    def ratios(self) -> tuple[int, int]:
        """(alpha_f, alpha_a) with their defaults resolved, as the model builder resolves them."""
        from avsf.models.config import default_ratios

        return default_ratios(self.stride, self.alpha_f, self.alpha_a)

    @field_validator("lateral_stages")
    @classmethod
    def _lateral_stages(cls, value: list[int]) -> list[int]:
        if any(s not in (1, 2, 3, 4) for s in value) or len(set(value)) != len(value):
            raise ValueError("must be distinct stages from 1 (pool1) to 4 (res4)")
        return sorted(value)

    @field_validator("fusion_stages")
    @classmethod
    def _fusion_stages(cls, value: list[int]) -> list[int]:
        if any(s not in (1, 2, 3, 4) for s in value) or len(set(value)) != len(value):
            raise ValueError("must be distinct stages from 1 (pool1) to 4 (res4)")
        return sorted(value)


# --------------------------------------------------------------------------- train


class TrainParams(Section):
    """Stage ``train``: the papers' recipe (AVSlowFast A.4, SlowFast Sec. 4) by default.
    Learning rates are for ``reference_batch`` clips and scale linearly with ``batch_size``."""

    out_dir: str = "data/train"  # checkpoint_epoch_NNNNN.pyth, last.pyth, final.pyth
    metrics: str = "reports/metrics/train.json"
    live_dir: str = "reports/train"  # DVCLive: per-step and per-epoch curves (dvc plots)
    ledger: str = "data/ledger/train.csv"  # training samples that failed to load
    train_split: str = "train"
    val_split: str = "val"
    seed: int = 0
    epochs: int = Field(196, gt=0)
    batch_size: int = Field(1024, gt=0)  # global: split evenly over nodes x tasks_per_node ranks
    workers: int = Field(8, ge=0)  # DataLoader workers per rank
    persistent_workers: bool = True
    base_lr: float = Field(1.6, gt=0)
    reference_batch: int = Field(1024, gt=0)
    lr_policy: Literal["cosine", "steps"] = "cosine"
    warmup_epochs: float = Field(34.0, ge=0)
    warmup_start_lr: float = Field(0.16, ge=0)  # at reference_batch (PySlowFast: 0.01 at batch 64)
    cosine_end_lr: float = Field(0.0, ge=0)
    lr_steps: list[float] = []  # epochs (or fractions of training, < 1) where lr *= lr_gamma
    lr_gamma: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0)
    bn_weight_decay: float = Field(0.0, ge=0)
    sync_weight: float = Field(1.0, ge=0)  # AV-sync loss weight (AVSlowFast with model.sync)
    hard_negatives_from: float = Field(0.5, ge=0, le=1)  # fraction of training with easy negatives only
    hard_negative_fraction: float = Field(0.25, ge=0, le=1)  # hard share of sync negatives after that
    precise_bn_batches: int = Field(200, ge=0)  # 0: no precise BN
    val_every: int = Field(1, gt=0)  # epochs
    checkpoint_every: int = Field(1, gt=0)  # epochs
    keep_checkpoints: int = Field(0, ge=0)  # newest epoch checkpoints kept; 0: all
    max_failed_fraction: float = Field(0.01, ge=0, le=1)  # of an epoch's samples failing to load
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when the job has a GPU
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False  # torch.compile the network
    log_every: int = Field(10, gt=0)  # steps between DVCLive step points
    signal_delay_s: int = Field(90, ge=0)  # SLURM's pre-timeout signal: checkpoint and requeue
    max_requeues: int = Field(3, ge=0)  # time-outs after which the job is not requeued again
    init_checkpoint: str | None = None  # start from these weights (e.g. an official .pyth)
    freeze_bn: bool = False  # BN statistics and affine fixed (a per-channel affine): fine-tuning on EPIC
    # What the loss learns besides AV-sync (model.sync, sync_weight > 0): the dataset's labels;
    # the rotation pretext instead (self-supervised: a 4-way head, labels ignored); or nothing
    # (self-supervised AV-sync alone).
    objective: Literal["labels", "rotation", "sync"] = "labels"

    @model_validator(mode="after")
    def _warmup_fits(self) -> "TrainParams":
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must not exceed epochs ({self.epochs})")
        return self


class EvaluateParams(Section):
    """Stage ``evaluate``: the papers' multi-view test (dataset.test_clips x test_crops views at
    dataset.test_scale, softmax averaged per video) of the final checkpoint, scored over every
    manifest row of ``split`` (a video with no prediction is a miss: the official figure)."""

    out_dir: str = "reports/kinetics"  # models/<name>/{metrics.json, predictions.csv, confusion.csv}, summary.md
    split: str = "val"
    batch_size: int = Field(8, gt=0)  # views per forward pass
    workers: int = Field(2, ge=0)  # DataLoader workers


class ModelReportParams(Section):
    """Parameters and multiply-adds of every preset, checked against the papers."""

    out_dir: str = "reports/model"
    sizes: list[int] = Field(default=[224, 256], min_length=1)  # square crops to count at
    tolerance: float = Field(0.02, gt=0, lt=1)  # relative error allowed against a paper figure


class FinetuneParams(Section):
    """A dataset fine-tuned from the Kinetics family (stage names in FINETUNE_DATASETS).

    Its videos go through the same download, decode and spectrogram code into their own
    store, and each member of ``members`` is fine-tuned from its Kinetics ``final.pyth`` (or
    ``init_checkpoints[member]``, e.g. an official PySlowFast checkpoint; the head is always
    replaced) with the train, dataset and model sections changed by ``train``, ``dataset``
    and ``model``. Every path of those sections moves under ``root`` (data) and ``reports``
    (metrics, curves, evaluation), as :meth:`Params.for_dataset` says."""

    annotations: str  # the dataset's own annotation files, as distributed
    source: str  # where the videos are: download.source's forms
    root: str  # clips, store, ledgers, checkpoints
    reports: str  # metrics, curves, evaluation and summary.md
    train_split: str
    test_split: str
    members: list[str] = Field(min_length=1)  # family members fine-tuned
    init_checkpoints: dict[str, str] = {}  # member -> weights to start from instead of its Kinetics run
    train: dict[str, Any] = {}  # changes to the train section
    dataset: dict[str, Any] = {}  # changes to the dataset section
    model: dict[str, Any] = {}  # changes to the model section (not arch: that is the member's)
    demo: dict[str, Any] = {}  # the demo flavour (stage demo_<name>): avsf.data.demo's spec

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        return check_source(value)


class EpicParams(FinetuneParams):
    """EPIC-Kitchens-100 (AVSlowFast A.5): verb and noun from one model with two heads, loss
    0.5 (CE_verb + CE_noun) (``heads: joint``), or a verb model and a noun model with their
    own learning rates (``separate``, the paper's form)."""

    heads: Literal["joint", "separate"] = "joint"
    verb_base_lr: float | None = Field(None, gt=0)  # separate: the verb model's base_lr (null: train's)
    noun_base_lr: float | None = Field(None, gt=0)  # separate: the noun model's
    action_top_k: int = Field(100, gt=0)  # the official action scoring: top k verbs x top k nouns


class CharadesParams(FinetuneParams):
    """Charades (AVSlowFast A.6): per-class sigmoid and BCE on the actions active in the clip;
    test scores max-pooled over a video's clips."""


class AvaParams(FinetuneParams):
    """AVA action detection (AVSlowFast A.7, SlowFast Sec. 5): the detection head (res5 at
    spatial stride 1, dilation 2; RoIAlign; per-class sigmoid) trained on every class of the
    action list, scored on the evaluated list. Each movie is stored from second 900 to 1800 at
    30 fps (decode.fps is set so); ``movie_start_s`` says which movie second a source file's
    t = 0 is: 0 for a whole film, 900 for a segment trimmed at 900 (PySlowFast's files)."""

    movie_start_s: float = Field(0.0, ge=0, le=1800)
    detection_score: float = Field(0.8, ge=0, le=1)  # person boxes used: the detector's score at least this
    train_iou: float = Field(0.9, gt=0, le=1)  # training adds detections overlapping a true box at least this


class TransferParams(Section):
    """A small labelled dataset the self-supervised backbones are probed on (UCF101,
    HMDB51; stage names in TRANSFER_DATASETS): its three official splits, its videos stored
    whole once by the same download, decode and spectrogram code under ``root``."""

    annotations: str  # the split files as distributed: UCF101's ucfTrainTestlist/, HMDB51's split directory
    source: str  # where the videos are (download.source's forms; <class>/<video>.avi looked up too)
    root: str  # clips, store, ledgers
    demo: dict[str, Any] = {}  # the demo flavour (stage demo_<name>): avsf.data.demo.ucf_hmdb's spec

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        return check_source(value)


class PretextParams(Section):
    """One self-supervised pretraining setting (AVSlowFast A.8, Table A.1): a family
    member's model trained on the Kinetics store without its labels, on ``pretexts``:
    ``avs`` (hierarchical AV-synchronisation, with the easy-then-hard curriculum of train's
    hard_negatives_*), ``rotation`` (which of 4 quarter turns the clip was given)."""

    member: str  # the family member whose model is pretrained
    pretexts: list[Literal["avs", "rotation"]] = Field(min_length=1)


class ProbeParams(Section):
    """Stages ``probe@<setting>`` and ``probe_reference@<random|supervised>``: a backbone's
    transfer to each of ``datasets``, top-1 on each official split's test list and the mean over ``splits`` (AVSlowFast Table A.1).

    ``linear``: the backbone frozen (BN included, eval mode), only a new last fc trained, by
    SGD with a half-period cosine (A.8), on the pooled features of ``train_views`` random
    train clips per video (crop, scale, flip as in training) computed once; test: the
    softmax over ``test_clips`` x ``test_crops`` views. ``all``: every layer fine-tuned
    from the backbone by the training engine (stage train's recipe with ``train``'s changes),
    one run per split, scored on the split's test list by its validation (one centre view)."""

    mode: Literal["linear", "all"] = "linear"
    datasets: list[Literal["ucf101", "hmdb51"]] = Field(default=["ucf101", "hmdb51"], min_length=1)
    splits: list[Literal[1, 2, 3]] = Field(default=[1, 2, 3], min_length=1)
    train_views: int = Field(4, gt=0)  # linear: random train clips per video whose features the fc learns from
    test_clips: int = Field(10, gt=0)  # linear: uniform test clips per video x test_crops, softmax averaged
    test_crops: Literal[1, 3] = 3
    epochs: int = Field(100, gt=0)  # linear: passes over those features
    batch_size: int = Field(32, gt=0)
    base_lr: float = Field(0.1, gt=0)  # linear: the fc's starting lr (half-period cosine to 0)
    weight_decay: float = Field(1e-4, ge=0)
    train: dict[str, Any] = {}  # all: changes to the train section of the fine-tuning runs


class SslParams(Section):
    """Self-supervised audiovisual pretraining (AVSlowFast Sec. 6, A.8): stages
    ``pretrain@<setting>`` (stage train's engine on the Kinetics store, labels ignored;
    ``train``'s changes: the A.8 recipe), ``probe@<setting>`` for every setting and
    ``probe_reference@`` for the two references (``random``: ``random_member``'s model untrained; ``supervised``:
    ``supervised_member``'s Kinetics final.pyth), and ``ssl_summary``."""

    out_dir: str = "data/ssl"  # <setting>/final.pyth ... ; probe/<backbone>/ (stage all's runs)
    reports: str = "reports/ssl"  # pretrain/<setting>{.json,/} curves and summaries, probe/<backbone>.json, summary.md
    settings: dict[str, PretextParams] = Field(min_length=1)
    train: dict[str, Any] = {}  # changes to the train section for pretraining
    random_member: str = "avslowfast"
    supervised_member: str = "avslowfast"
    probe: ProbeParams = ProbeParams()


class Params(Section):
    launch: LaunchParams = LaunchParams()
    demo: DemoParams = DemoParams()
    download: DownloadParams = DownloadParams()
    decode: DecodeParams = DecodeParams()
    spectrogram: SpectrogramParams = SpectrogramParams()
    dataset: DatasetParams = DatasetParams()
    model: ModelParams = ModelParams()
    model_report: ModelReportParams = ModelReportParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    # The models ``dvc repro`` trains and evaluates side by side (stages train@<name> and
    # evaluate@<name>): each name maps to changes to the ``model`` section.
    family: dict[str, dict[str, Any]] = {}
    epic: EpicParams | None = None
    charades: CharadesParams | None = None
    ava: AvaParams | None = None
    ucf101: TransferParams | None = None
    hmdb51: TransferParams | None = None
    ssl: SslParams | None = None

    @model_validator(mode="after")
    def _family_members_valid(self) -> "Params":
        self._train_fits_model_and_store()  # the params' own errors first, named by the key the user set
        if self.family and self.download.format == "kinetics":  # dvc.yaml's train@ stages spell these out
            for key in ("metrics", "ledger"):
                default = TrainParams.model_fields[key].default
                if getattr(self.train, key) != default:
                    raise ValueError(f"train.{key}: with a family, dvc.yaml's train@<member> stages declare "
                                     f"{_with_suffix(default, '<member>')}; keep {default} or change dvc.yaml too")
        for name, changes in self.family.items():
            if not VARIANT_NAME.fullmatch(name):
                raise ValueError(f"family.{name}: a member's name is lower-case letters, digits and _")
            if not isinstance(changes, dict):
                raise ValueError(f"family.{name}: a mapping of model keys to values, e.g. {{arch: slowfast}}")
            unknown = [k for k in changes if k not in ModelParams.model_fields]
            if unknown:
                raise ValueError(f"family.{name}.{unknown[0]}: unknown model key; allowed: "
                                 f"{', '.join(ModelParams.model_fields)}")
            _derived_valid(f"family.{name}", lambda: self.variant(name))
        return self

    def variant(self, name: str) -> "Params":
        """These params for family member ``name``: its changes applied to ``model``, and the
        train, evaluate and launch outputs moved to its own place (``<dir>/<name>`` for a
        directory, ``<stem>_<name><suffix>`` for a file; evaluate's in
        ``<out_dir>/models/<name>``), as dvc.yaml's train@ and evaluate@ stages declare them."""
        if name not in self.family:
            raise ParamsError(f"family: no member {name!r}; members: {', '.join(self.family) or '(none)'}")
        raw = self.model_dump()
        raw["family"] = {}
        if self.download.format == "kinetics":  # they name members: one member's params have none
            raw.update({n: None for n in DATASET_SECTIONS})
        raw["model"].update(self.family[name])
        t = raw["train"]
        t["out_dir"], t["live_dir"] = f"{t['out_dir']}/{name}", f"{t['live_dir']}/{name}"
        t["metrics"], t["ledger"] = (_with_suffix(t[k], name) for k in ("metrics", "ledger"))
        raw["evaluate"]["out_dir"] = f"{raw['evaluate']['out_dir']}/models/{name}"
        raw["launch"]["log_dir"] = f"{raw['launch']['log_dir']}/{name}"
        return Params.model_validate(raw)

    @model_validator(mode="after")
    def _finetune_sections_valid(self) -> "Params":
        if self.download.format != "kinetics":  # a dataset's own params (for_dataset): checked on the whole file
            return self
        for name in FINETUNE_DATASETS:
            ft = getattr(self, name)
            if ft is None:
                continue
            for member in ft.members:
                if member not in self.family:
                    raise ValueError(f"{name}.members: {member!r} is not a family member; members: "
                                     f"{', '.join(self.family) or '(none)'}")
            unknown = [m for m in ft.init_checkpoints if m not in ft.members]
            if unknown:
                raise ValueError(f"{name}.init_checkpoints.{unknown[0]}: not one of {name}.members")
            for key, section in (("train", TrainParams), ("dataset", DatasetParams), ("model", ModelParams)):
                changes = getattr(ft, key)
                bad = [k for k in changes if k not in section.model_fields or (key == "model" and k == "arch")]
                if bad:
                    allowed = [f for f in section.model_fields if not (key == "model" and f == "arch")]
                    raise ValueError(f"{name}.{key}.{bad[0]}: unknown {key} key (the architecture is the "
                                     f"member's); allowed: {', '.join(allowed)}")
            _check_demo_keys(name, ft.demo)
            if name == "ava" and "movie_start_s" in ft.demo:
                raise ValueError("ava.demo.movie_start_s: the demo's file offset is ava.movie_start_s (one value "
                                 "for the demo and the pipeline)")
            for member in ft.members:
                _derived_valid(f"{name} (member {member})", lambda: self.finetune(name, member))
        return self

    def for_dataset(self, name: str) -> "Params":
        """These params for dataset ``name`` (its section, e.g. ``epic``; a fine-tuning or a
        transfer dataset): download reads its annotations and videos (``download.format`` =
        name); every output of download, decode, spectrogram, train and evaluate moves under
        its ``root`` and ``reports`` (``data/a/b`` -> ``<root>/a/b``, ``reports/a/b`` ->
        ``<reports>/a/b``; evaluate's to ``<reports>``; launch logs to ``<log_dir>/<name>``),
        as dvc.yaml's ``*_<name>`` stages declare them; a fine-tuning dataset's train, dataset
        and model changes are applied. A transfer dataset (UCF101, HMDB51) stores every video
        its split files name once, in store split ``videos``; its reports go under ssl.reports."""
        ft = getattr(self, name, None) if name in (*FINETUNE_DATASETS, *TRANSFER_DATASETS) else None
        if ft is None:
            raise ParamsError(f"{name}: no such section in params; datasets: "
                              f"{', '.join((*FINETUNE_DATASETS, *TRANSFER_DATASETS))}")
        transfer = name in TRANSFER_DATASETS
        raw = self.model_dump()
        raw.update({n: None for n in DATASET_SECTIONS if n != name})  # the dataset's own params
        reports_root = f"{self.ssl.reports if self.ssl else 'reports/ssl'}/{name}" if transfer else ft.reports

        def data(path: str) -> str:
            return _rebase(path, "data", ft.root)

        def reports(path: str) -> str:
            return _rebase(path, "reports", reports_root)

        d, dec, spec, t = raw["download"], raw["decode"], raw["spectrogram"], raw["train"]
        d.update(format=name, source=ft.source, manifests=dataset_manifests(name, ft))
        for section in (d, dec, spec):
            for key in ("out_dir", "ledger", "raw_cache"):
                if key in section:
                    section[key] = data(section[key])
            section["metrics"] = reports(section["metrics"])
        spec["stats_split"] = TRANSFER_STORE_SPLIT if transfer else ft.train_split
        if name == "ava":  # AVA's store: 30 fps, so that keyframe s is frame (s - 900) x 30
            from avsf.data.ava import AVA_STORE_FPS

            dec["fps"] = AVA_STORE_FPS
        if not transfer:
            t.update(ft.train)
            t.update(train_split=ft.train_split, val_split=ft.test_split)
            raw["dataset"].update(ft.dataset)
            raw["model"].update(ft.model)
            raw["evaluate"].update(out_dir=ft.reports, split=ft.test_split)
        t.update(out_dir=data(t["out_dir"]), ledger=data(t["ledger"]), metrics=reports(t["metrics"]),
                 live_dir=reports(t["live_dir"]))
        raw["launch"]["log_dir"] = f"{raw['launch']['log_dir']}/{name}"
        return Params.model_validate(raw)

    def pretrain(self, setting: str) -> "Params":
        """The params of self-supervised pretraining setting ``setting`` (ssl.settings): its
        member's model (:meth:`variant`), ssl.train's changes, the objective its pretexts
        make (rotation: the 4-way rotation head; avs alone: AV-sync alone; without avs:
        sync weight 0), outputs in ``<ssl.out_dir>/<setting>`` and ``<ssl.reports>/pretrain``."""
        ssl = self.ssl
        if ssl is None or setting not in ssl.settings:
            known = ", ".join(ssl.settings) if ssl is not None else "(no ssl section)"
            raise ParamsError(f"ssl.settings: no setting {setting!r}; settings: {known}")
        s = ssl.settings[setting]
        raw = self.variant(s.member).model_dump()
        t = raw["train"]
        t.update(ssl.train)
        t.update(objective="rotation" if "rotation" in s.pretexts else "sync", out_dir=f"{ssl.out_dir}/{setting}",
                 live_dir=f"{ssl.reports}/pretrain/{setting}", metrics=f"{ssl.reports}/pretrain/{setting}.json",
                 ledger=f"{ssl.out_dir}/ledger/{setting}.csv")
        if "avs" not in s.pretexts:
            t["sync_weight"] = 0.0
        raw["launch"]["log_dir"] = f"{self.launch.log_dir}/ssl/{setting}"
        return Params.model_validate(raw)

    @model_validator(mode="after")
    def _ssl_section_valid(self) -> "Params":
        ssl = self.ssl
        if ssl is None or self.download.format != "kinetics":
            return self
        for key in ("random_member", "supervised_member"):
            if getattr(ssl, key) not in self.family:
                raise ValueError(f"ssl.{key}: {getattr(ssl, key)!r} is not a family member; members: "
                                 f"{', '.join(self.family) or '(none)'}")
        for name in ssl.probe.datasets:
            if getattr(self, name) is None:
                raise ValueError(f"ssl.probe.datasets: {name} has no section {name} in params")
        for key, changes in (("ssl.train", ssl.train), ("ssl.probe.train", ssl.probe.train)):
            bad = [k for k in changes if k not in TrainParams.model_fields or k == "objective"]
            if bad:
                raise ValueError(f"{key}: unknown train key {bad[0]!r} (the objective is the pretexts' or the "
                                 f"labels'); allowed: {', '.join(f for f in TrainParams.model_fields if f != 'objective')}")
        try:
            TrainParams.model_validate({**self.train.model_dump(), **ssl.probe.train})
        except ValidationError as exc:
            raise ValueError(f"ssl.probe.train: {describe_error(exc)}") from None
        for name, s in ssl.settings.items():
            if not VARIANT_NAME.fullmatch(name) or name in (*PROBE_REFERENCES, "probe", "ledger"):
                raise ValueError(f"ssl.settings.{name}: a setting's name is lower-case letters, digits and _, "
                                 f"not {', '.join((*PROBE_REFERENCES, 'probe', 'ledger'))} (their outputs share "
                                 f"ssl.out_dir)")
            if s.member not in self.family:
                raise ValueError(f"ssl.settings.{name}.member: {s.member!r} is not a family member; members: "
                                 f"{', '.join(self.family) or '(none)'}")
            m = self.variant(s.member).model
            if "avs" in s.pretexts and not (m.arch == "avslowfast" and m.sync):
                raise ValueError(f"ssl.settings.{name}.pretexts: avs needs an AVSlowFast member with model.sync "
                                 f"true; {s.member} is {m.arch}{'' if m.sync else ' without sync'}")
            weight = ssl.train.get("sync_weight", self.train.sync_weight)  # pretraining's, as pretrain() makes it
            if "avs" in s.pretexts and isinstance(weight, (int, float)) and weight <= 0:
                if "sync_weight" in ssl.train:
                    raise ValueError(f"ssl.train.sync_weight: {weight:g} leaves ssl.settings.{name} (pretext avs) "
                                     "without its sync loss; set it > 0")
                raise ValueError(f"train.sync_weight: {weight:g} leaves ssl.settings.{name} (pretext avs), which takes "
                                 "it, without its sync loss; set ssl.train.sync_weight > 0 for pretraining, and "
                                 "train.sync_weight: 0 switches sync off for the other runs only")
            _derived_valid(f"ssl.settings.{name}", lambda: self.pretrain(name))
        for name in TRANSFER_DATASETS:
            if getattr(self, name) is not None:
                _check_demo_keys(name, getattr(self, name).demo)
        return self

    def finetune(self, name: str, member: str) -> "Params":
        """The params of fine-tuning family ``member`` on dataset ``name``: :meth:`for_dataset`,
        then :meth:`variant`, starting from the member's Kinetics ``final.pyth`` (or the
        section's ``init_checkpoints[member]``)."""
        ft = getattr(self, name, None) if name in FINETUNE_DATASETS else None
        if ft is None or member not in ft.members:
            known = ", ".join(ft.members) if ft is not None else "(no such section)"
            raise ParamsError(f"{name}.members: no member {member!r}; members: {known}")
        start = ft.init_checkpoints.get(member) or f"{self.variant(member).train.out_dir}/final.pyth"
        raw = self.for_dataset(name).variant(member).model_dump()
        raw["train"]["init_checkpoint"] = start
        return Params.model_validate(raw)

    @model_validator(mode="after")
    def _train_fits_model_and_store(self) -> "Params":
        """Combinations that cannot train, refused before any job starts."""
        m, d, t = self.model, self.dataset, self.train
        if m.head != "classification" and (m.head, self.download.format) != ("ava", "ava"):
            raise ValueError(f"model.head: stage train trains the classification head here; "
                             f"{m.head!r} needs its own dataset and task (ava: section ava)")
        ranks = self.launch.world_size("train")
        if t.batch_size % ranks:
            raise ValueError(f"train.batch_size: {t.batch_size} does not split evenly over {ranks} ranks "
                             "(launch nodes x tasks_per_node for train)")
        from avsf.models.config import WITH_AUDIO, WITH_FAST

        alpha_f, alpha_a = m.ratios()
        if m.arch in WITH_FAST and m.stride % alpha_f:
            raise ValueError(f"model.stride: {m.stride} is not a multiple of the Fast pathway's alpha ({alpha_f})")
        if m.arch in WITH_AUDIO:
            if m.frames * alpha_a != d.spec_frames:
                raise ValueError(f"dataset.spec_frames: {d.spec_frames} log-mel frames, but the model's audio "
                                 f"input is model.frames x alpha_a = {m.frames} x {alpha_a} = {m.frames * alpha_a}")
            if self.spectrogram.n_mels != m.mel_bins:
                raise ValueError(f"model.mel_bins: {m.mel_bins}, but spectrogram.n_mels is {self.spectrogram.n_mels}")
        if t.objective != "labels" and self.download.format != "kinetics":
            raise ValueError(f"train.objective: {t.objective!r} pretrains without labels on the Kinetics store; "
                             f"a run on {self.download.format} learns its labels (objective: labels)")
        if t.objective == "sync" and not (m.arch == "avslowfast" and m.sync and t.sync_weight > 0):
            raise ValueError("train.objective: 'sync' learns AV-synchronisation alone: it needs model.arch "
                             "avslowfast with model.sync true and train.sync_weight > 0")
        return self


# --------------------------------------------------------------------------- loading

VARIANT_NAME = re.compile(r"[a-z0-9_]+")
# A fine-tuning dataset's annotation file of a split, as the dataset distributes it.
MANIFEST_NAMES = {"epic": "EPIC_100_{split}.csv", "charades": "Charades_v1_{split}.csv", "ava": "ava_{split}_v2.2.csv"}
TRANSFER_STORE_SPLIT = "videos"  # a transfer dataset's store: every video once; its splits pick from it
UCF_SPLIT_FILES = ("classInd.txt", *(f"{side}list0{k}.txt" for k in (1, 2, 3) for side in ("train", "test")))


def dataset_manifests(name: str, section: "FinetuneParams | TransferParams") -> list[str]:
    """download.manifests of a dataset: a fine-tuning dataset's train and test annotation
    files; UCF101's class index and six split lists; HMDB51's split directory."""
    root = section.annotations
    if name == "ucf101":
        return [f"{root}/{n}" for n in UCF_SPLIT_FILES]
    if name == "hmdb51":
        return [root]
    return [f"{root}/{MANIFEST_NAMES[name].format(split=s)}" for s in dict.fromkeys((section.train_split, section.test_split))]


DEMO_WORLD_SPECS = {"ucf101": ("ucf_hmdb", "UcfWorldSpec"), "hmdb51": ("ucf_hmdb", "HmdbWorldSpec")}


def _check_demo_keys(name: str, demo: dict[str, Any]) -> None:
    """A flavour's demo settings are its world spec's fields (avsf.data.demo.<name>, or the
    module and spec DEMO_WORLD_SPECS names)."""
    import dataclasses
    import importlib

    module_name, spec_name = DEMO_WORLD_SPECS.get(name, (name, None))
    module = importlib.import_module(f"avsf.data.demo.{module_name}")
    spec = next(v for k, v in vars(module).items() if k == spec_name or (spec_name is None and k.endswith("WorldSpec")))
    allowed = [f.name for f in dataclasses.fields(spec)]
    unknown = [k for k in demo if k not in allowed]
    if unknown:
        raise ValueError(f"{name}.demo.{unknown[0]}: unknown key; allowed: {', '.join(allowed)}")


def _derived_valid(where: str, derive: Callable[[], "Params"]) -> None:
    """Validate params derived from these (a member's, a setting's), their error named ``where``."""
    try:
        derive()
    except ValidationError as exc:
        raise ValueError(f"{where}: {describe_error(exc)}") from None


def _rebase(path: str, top: str, root: str) -> str:
    """``top/a/b`` -> ``root/a/b``; any other relative path -> ``root/path``."""
    parts = Path(path).parts
    return str(Path(root, *(parts[1:] if parts and parts[0] == top else parts)))


def _with_suffix(path: str, name: str) -> str:
    p = Path(path)
    return str(p.with_name(f"{p.stem}_{name}{p.suffix}"))



def load_params(path: str | os.PathLike = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """Read ``path``, apply ``key.sub=value`` overrides, and validate everything."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ParamsError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: must be a mapping of sections; allowed: {_allowed(Params)}")
    for item in overrides:
        apply_override(raw, item)
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{path}: {describe_error(exc)}") from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in ``raw``; the value is parsed as YAML (``4``, ``true``, ``[1, 2]``)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ParamsError(f"--set {item!r}: expected KEY=VALUE, e.g. download.workers=4")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParamsError(f"--set {key}: {part} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:
        raise ParamsError(f"--set {key}: value {value!r} is not valid YAML") from None


def describe_error(exc: ValidationError) -> str:
    """The first validation error as 'key: what is allowed (got value)'."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    if not loc:  # a check across sections: its message starts with the key
        return err["msg"].removeprefix("Value error, ")
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key; allowed: {_allowed(Params, loc[:-1])}"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    if isinstance(got, (dict, list)) or got is None and err["type"] == "missing":
        return f"{key}: {msg}"
    return f"{key}: {msg} (got {got!r})"


def _allowed(model: type[BaseModel], loc: tuple = ()) -> str:
    """Field names of the section at ``loc`` (stepping through dict-valued fields)."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:  # a key of a dict-valued field, e.g. launch.stage_resources.<stage>
            continue
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), model)
    return ", ".join(model.model_fields)
