"""params.yaml's schema: every key, its type, its default (written here once) and the checks
that need only its own section.

Every stage loads the whole file through :func:`load_params`, so a wrong key anywhere is
caught before any stage writes anything: the schema first, each dataset section by its own
module's schema (``pipeline.datasets``), then once the checks across sections
(:func:`pipeline.runs.check_params`). What a stage computes with, for a family member, a
fine-tuning dataset or a pretext setting, is derived from these by plain functions in
:mod:`pipeline.runs`; where it writes, by :mod:`pipeline.layout`. Errors are
:class:`ParamsError` with a one-line message naming the key and what is allowed; the stage
CLI turns them into exit code 2.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from avsf.models.config import DROP_PATHWAY


class ParamsError(ValueError):
    """A params file or override that does not validate; the message is one line."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


VARIANT_NAME = re.compile(r"[a-z0-9_]+")  # a family member's, a pretext setting's or a dataset's name


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
# (train, finetune and pretrain all run stage train's jobs; summary writes no job)
STAGE_NAMES = ("demo", "download", "decode", "spectrogram", "model_report", "train", "evaluate", "probe")


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
    # the math libraries' instruction set in every job (avsf.io.machine.CPU_ISA_PINS)
    cpu_isa: Literal["avx2", "native"] = "avx2"

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


# --------------------------------------------------------------------------- layout, demo


class LayoutParams(Section):
    """Where the stages write (pipeline/layout.py says what goes where below these): each
    dataset's data under ``<data>/<dataset>``, its reports under ``<reports>/<dataset>``."""

    data: str = "data"
    reports: str = "reports"


class DemoParams(Section):
    """What every demo flavour shares (stage demo@<dataset>; each flavour's own settings are
    its dataset section's ``demo``)."""

    shards: int = Field(2, gt=0)  # jobs a flavour's videos are rendered in


# --------------------------------------------------------------------------- download


class DownloadParams(Section):
    """How stage ``download@<dataset>`` fetches the raw videos its dataset's annotations name
    and trims them into clips: Kinetics' segments, or every annotated video whole, once,
    whatever its number of segments (the clip dataset reads any time range of it)."""

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


# --------------------------------------------------------------------------- decode


class DecodeParams(Section):
    """Decode the downloaded clips (clips.csv) into the HDF5 frame store (shard-NNNNN.h5,
    index.csv, classes.json)."""

    fps: float = Field(30.0, gt=0, le=240)  # frames are resampled to this rate
    short_side: int = Field(128, ge=8, le=4096)  # frames are resized so the shorter side is this
    jpeg_quality: int = Field(90, ge=1, le=100)
    sample_rate: int = Field(16000, ge=8000, le=96000)  # audio is resampled to this, mono
    clips_per_shard: int = Field(32, gt=0)  # one HDF5 file and one job per shard


# --------------------------------------------------------------------------- spectrogram


class SpectrogramParams(Section):
    """Log-mel spectrograms of the decoded audio into the HDF5 log-mel store (shard-NNNNN.h5
    named as the frame store's; stats.json: the mean and std over the dataset's train split)."""

    n_fft: int = Field(512, ge=16)
    win_length: int = Field(512, ge=16)
    hop_length: int = Field(256, gt=0)
    n_mels: int = Field(80, gt=0)
    f_min: float = Field(0.0, ge=0)
    f_max: float | None = Field(None, gt=0)  # None: half the sample rate
    log_offset: float = Field(1e-8, gt=0)  # log(S + log_offset)
    mel_norm: Literal["slaney"] | None = None  # null: triangles of peak 1 | slaney: of area 1 (librosa's)
    center: bool = True  # frame j centred on sample j * hop | false: starting there (the authors' librosa)
    fixed_stats: tuple[float, float] | None = None  # [mean, std] to normalise with instead of the measured

    @field_validator("fixed_stats")
    @classmethod
    def _positive_std(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[1] > 0:
            raise ValueError("must be [mean, std] with std > 0")
        return value

    @field_validator("win_length")
    @classmethod
    def _fits_fft(cls, value: int, info: ValidationInfo) -> int:
        n_fft = info.data.get("n_fft")
        if n_fft is not None and value > n_fft:
            raise ValueError(f"must not exceed n_fft ({n_fft})")
        return value


# --------------------------------------------------------------------------- dataset


class DatasetParams(Section):
    """How the clip dataset samples the stores.
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
    # Slow and Fast frame picks (avsf.data.clip_dataset): strided | pyslowfast (PySlowFast's linspace) |
    # auto: pyslowfast for weights from an official PySlowFast checkpoint, else as the weights were trained
    temporal_sampling: Literal["auto", "strided", "pyslowfast"] = "auto"

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
    drop_pathway: float = Field(DROP_PATHWAY, ge=0, lt=1)  # P_d, AVSlowFast only
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


# --------------------------------------------------------------------------- train, evaluate


def epochs_for(iterations: int, batch: int, samples: int) -> int:
    """Passes over ``samples`` that ``iterations`` steps of ``batch`` make (at least 1): a
    length in the papers' unit (iterations) in ours (epochs)."""
    return max(1, round(iterations * batch / max(1, samples)))


class TrainParams(Section):
    """Stages ``train@<member>``, ``finetune@<dataset>-<member>`` and ``pretrain@<setting>``:
    the papers' Kinetics recipe (AVSlowFast A.4, SlowFast Sec. 4) by default. Learning rates
    are for ``reference_batch`` clips and scale linearly with ``batch_size``."""

    seed: int = 0
    epochs: int = Field(196, gt=0)
    # The length in the papers' unit off Kinetics: iterations of reference_batch clips. Set, it
    # wins over epochs, which then follow from the train split's size (at least 1), and
    # warmup_iterations over warmup_epochs.
    iterations: int | None = Field(None, gt=0)
    warmup_iterations: int | None = Field(None, ge=0)
    batch_size: int = Field(1024, gt=0)  # global: split evenly over nodes x tasks_per_node ranks
    workers: int = Field(8, ge=0)  # DataLoader workers per rank
    persistent_workers: bool = True
    base_lr: float = Field(1.6, gt=0)
    reference_batch: int = Field(1024, gt=0)
    lr_policy: Literal["cosine", "steps"] = "cosine"
    warmup_epochs: float = Field(34.0, ge=0)
    warmup_start_lr: float = Field(0.16, ge=0)  # at reference_batch (PySlowFast: 0.01 at batch 64)
    warmup_start_absolute: bool = False  # true: warmup_start_lr is the LR itself, not scaled with the batch
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
    drop_last: bool = True  # an epoch's last incomplete batch dropped (PySlowFast) | false: filled by wrapping
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
        if self.iterations is None and self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must not exceed epochs ({self.epochs})")
        if self.iterations is not None and (self.warmup_iterations or 0) > self.iterations:
            raise ValueError(f"warmup_iterations ({self.warmup_iterations}) must not exceed iterations "
                             f"({self.iterations})")
        if self.warmup_iterations is not None and self.iterations is None:
            raise ValueError("warmup_iterations needs iterations (the length in iterations); with epochs: warmup_epochs")
        return self

    def length(self, train_clips: int) -> "TrainParams":
        """With ``iterations`` set: epochs for a train split of ``train_clips`` samples, as many
        clips as the paper's iterations at reference_batch, and the warm-up's epochs from
        ``warmup_iterations`` when set (otherwise warmup_epochs stays)."""
        if self.iterations is None:
            return self
        epochs = epochs_for(self.iterations, self.reference_batch, train_clips)
        if self.warmup_iterations is None:
            return self.model_copy(update={"epochs": epochs, "warmup_epochs": min(self.warmup_epochs, float(epochs))})
        warmup = self.warmup_iterations * self.reference_batch / max(1, train_clips)
        return self.model_copy(update={"epochs": epochs, "warmup_epochs": min(warmup, float(epochs))})


class EvaluateParams(Section):
    """Stage ``evaluate@<dataset>-<member>`` (and the probes' feature passes): the final
    checkpoint's test views, ``dataset.test_clips`` x ``test_crops`` per video."""

    batch_size: int = Field(8, gt=0)  # views per forward pass
    workers: int = Field(2, ge=0)  # DataLoader workers


class ModelReportParams(Section):
    """Parameters and multiply-adds of every preset, checked against the papers."""

    sizes: list[int] = Field(default=[224, 256], min_length=1)  # square crops to count at
    tolerance: float = Field(0.02, gt=0, lt=1)  # relative error allowed against a paper figure


class FinetuneParams(Section):
    """Stages ``finetune@<dataset>-<member>`` and ``evaluate@<dataset>-<member>``: every family
    member of ``members`` fine-tuned on every dataset of ``datasets`` from its Kinetics run
    (``train@<member>``'s final.pyth, or the dataset section's ``init_checkpoints``), with the
    dataset section's changes to the train, dataset and model sections."""

    members: list[str] = Field(default=[], min_length=0)
    datasets: list[str] = []


# --------------------------------------------------------------------------- datasets


def check_source(value: str) -> str:
    """A video source's forms: a directory, a file:// or http(s):// URL (or URL template), youtube."""
    scheme, sep, _ = value.partition("://")
    if sep and scheme not in ("http", "https", "file"):
        raise ValueError("must be a directory, a file:// or http(s):// URL, or 'youtube'")
    if set("{}") & set(value.replace("{youtube_id}", "")):
        raise ValueError("a URL template may only use the field {youtube_id}")
    return value


class DatasetSection(Section):
    """What every section of ``datasets`` holds; each dataset's module (pipeline.datasets)
    gives its own schema, a subclass of this one."""

    annotations: str  # the directory of the dataset's annotation files, as it distributes them
    # Where its videos are: a directory or file:// URL holding <id>.<ext>; an http(s):// prefix
    # or URL template with {youtube_id}; or "youtube" (yt-dlp: pip install avsf[youtube]).
    source: str = Field(min_length=1)
    demo: dict[str, Any] = {}  # its demo flavour's settings (stage demo@<dataset>): avsf.data.demo's spec

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        return check_source(value)


class SplitDatasetSection(DatasetSection):
    """A dataset trained on one split and tested on another."""

    train_split: str
    test_split: str


class FinetuneDatasetSection(SplitDatasetSection):
    """A dataset the family is fine-tuned on (``finetune.datasets``): its changes to the
    train, dataset and model sections (not the architecture: that is the member's)."""

    init_checkpoints: dict[str, str] = {}  # member -> weights to start from instead of its Kinetics run
    train: dict[str, Any] = {}
    dataset: dict[str, Any] = {}
    model: dict[str, Any] = {}


# --------------------------------------------------------------------------- self-supervised


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
    datasets: list[str] = Field(default=["ucf101", "hmdb51"], min_length=1)
    splits: list[Literal[1, 2, 3]] = Field(default=[1, 2, 3], min_length=1)
    train_views: int = Field(4, gt=0)  # linear: random train clips per video whose features the fc learns from
    test_clips: int = Field(10, gt=0)  # linear: uniform test clips per video x test_crops, softmax averaged
    test_crops: Literal[1, 3] = 3
    epochs: int = Field(100, gt=0)  # linear: passes over those features
    batch_size: int = Field(32, gt=0)
    base_lr: float = Field(0.1, gt=0)  # linear: the fc's starting lr (half-period cosine to 0)
    weight_decay: float = Field(1e-4, ge=0)
    train: dict[str, Any] = {}  # all: changes to the train section of the fine-tuning runs
    iterations: int | None = Field(None, gt=0)  # linear: the length in fc steps (A.8: 320k); wins over epochs


class SslParams(Section):
    """Self-supervised audiovisual pretraining (AVSlowFast Sec. 6, A.8): stages
    ``pretrain@<setting>`` (stage train's engine on the Kinetics store, labels ignored;
    ``train``'s changes: the A.8 recipe), ``probe@<setting>`` for every setting and
    ``probe_reference@`` for the two references (``random``: ``random_member``'s model
    untrained; ``supervised``: ``supervised_member``'s Kinetics final.pyth), and
    ``summary@ssl``."""

    settings: dict[str, PretextParams] = Field(min_length=1)
    train: dict[str, Any] = {}  # changes to the train section for pretraining
    random_member: str = "avslowfast"
    supervised_member: str = "avslowfast"
    probe: ProbeParams = ProbeParams()


# --------------------------------------------------------------------------- the file


class Params(Section):
    launch: LaunchParams = LaunchParams()
    layout: LayoutParams = LayoutParams()
    demo: DemoParams = DemoParams()
    download: DownloadParams = DownloadParams()
    decode: DecodeParams = DecodeParams()
    spectrogram: SpectrogramParams = SpectrogramParams()
    dataset: DatasetParams = DatasetParams()
    model: ModelParams = ModelParams()
    model_report: ModelReportParams = ModelReportParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    # The models ``dvc repro`` trains on Kinetics and evaluates side by side (train@<member>,
    # evaluate@kinetics-<member>): each name maps to changes to the ``model`` section.
    family: dict[str, dict[str, Any]] = {}
    finetune: FinetuneParams = FinetuneParams()
    # Every dataset the pipeline stores (demo@, download@, decode@, spectrogram@<name>): each
    # entry validated by its module's schema (pipeline.datasets), after this one.
    datasets: dict[str, Any] = {}
    ssl: SslParams | None = None
    # Named paper configurations per run (pipeline.recipes; README "Recipes"): recipes.<dataset>.<member>
    # for train@<member> (the pretraining dataset) and finetune@<dataset>-<member>, recipes.ssl.<setting>
    # for pretrain@<setting>, recipes.probe for the probes; null: none. Checked by pipeline.runs.
    recipes: dict[str, dict[str, str | None] | str | None] = {}

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, value: dict[str, Any]) -> dict[str, Any]:
        from pipeline.datasets import DATASETS

        unknown = [name for name in value if name not in DATASETS]
        if unknown:
            raise ValueError(f"unknown dataset {unknown[0]!r}; datasets: {', '.join(DATASETS)}")
        return value

    def section(self, dataset: str) -> DatasetSection:
        """Dataset ``dataset``'s validated section, or the error naming the datasets there are."""
        if dataset not in self.datasets:
            raise ParamsError(f"datasets: no dataset {dataset!r}; datasets: {', '.join(self.datasets) or '(none)'}")
        return self.datasets[dataset]


# --------------------------------------------------------------------------- loading


def load_params(path: str | os.PathLike = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """Read ``path``, apply ``key.sub=value`` overrides, and validate everything: the schema,
    each dataset section by its module's schema, then the checks across sections."""
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
        return validate_params(raw)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None


def validate_params(raw: dict[str, Any]) -> Params:
    """The whole validation of a params mapping (:func:`load_params` without the file)."""
    from pipeline.datasets import dataset_class
    from pipeline.runs import check_params

    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(describe_error(exc)) from None
    sections = {}
    for name, value in params.datasets.items():
        schema = dataset_class(name).Section
        if not isinstance(value, dict):
            raise ParamsError(f"datasets.{name}: a mapping of its keys; allowed: {', '.join(schema.model_fields)}")
        try:
            sections[name] = schema.model_validate(value)
        except ValidationError as exc:
            raise ParamsError(describe_error(exc, ("datasets", name), schema)) from None
    params = params.model_copy(update={"datasets": sections})
    try:
        check_params(params)
    except ValueError as exc:
        raise ParamsError(str(exc)) from None
    if params.ssl is not None:  # the probe recipe, once, for every stage that reads ssl.probe
        from pipeline.runs import probe_params

        params = params.model_copy(update={"ssl": params.ssl.model_copy(update={"probe": probe_params(params)})})
    return params


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


def describe_error(exc: ValidationError, prefix: tuple = (), model: type[BaseModel] | None = None) -> str:
    """The first validation error as 'key: what is allowed (got value)'; ``prefix``: where the
    validated mapping sits in params.yaml (e.g. ("datasets", "epic")), ``model`` its schema."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    if not loc and not prefix:  # a check across a section's keys: its message starts with the key
        return err["msg"].removeprefix("Value error, ")
    key = ".".join(str(p) for p in (*prefix, *loc))
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key; allowed: {_allowed(model or Params, loc[:-1])}"
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
