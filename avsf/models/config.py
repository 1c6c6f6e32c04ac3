"""Typed architecture configs: one dataclass per pathway kind, one for the whole network.

A network is a tuple of pathways run side by side, stage by stage (stem = s1, res2..res5 =
s2..s5), plus optional lateral connections between them and a head:

    Slow-only   (slow,)                     SlowFast    (slow, fast)  + Fast->Slow laterals
    Fast-only   (fast,)                     AVSlowFast  (slow, fast, audio) + Audio->visual fusion
    Audio-only  (audio,)

Pathway order is input order and PySlowFast's ``pathway{i}`` index, so a PySlowFast
SlowFast checkpoint (slow = pathway0, fast = pathway1) loads into the visual part of any
of these networks. :func:`model_config` builds the papers' instantiations by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

Arch = Literal["slow", "fast", "slowfast", "audio", "avslowfast"]
WITH_FAST: tuple[Arch, ...] = ("fast", "slowfast", "avslowfast")  # archs that read Fast frames
WITH_AUDIO: tuple[Arch, ...] = ("audio", "avslowfast")  # archs that read log-mel
FusionMode = Literal["a_fs", "a_f_s", "av_nonlocal"]
HeadKind = Literal["classification", "epic", "ava"]
DropPathwayMode = Literal["fusion", "pathway"]
NonlocalLayout = Literal["pyslowfast", "paper"]
DROP_PATHWAY = 0.8  # P_d of AVSlowFast (Sec. 3.4; the authors' configs)
SYNC_LEVELS = {"res3": 3, "res4": 4, "pool5": 5}  # sync level -> the stage whose features it compares

STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
TINY_DEPTHS = (1, 1, 1, 1)
# Blocks per stage with a temporal kernel; deeper blocks are 1 x 1 x 1 (PySlowFast R101).
TEMPORAL_BLOCKS = {50: None, 101: (3, 4, 6, 3)}
# PySlowFast's R101 configs name where temporal kernels sit by a suffix: _50_50 as above
# (SlowFast Table 2's FLOPs; SLOWFAST_16x8_R101_50_50), _101_101 in every block (the model
# zoo's SLOWFAST_8x8_R101_101_101).
TemporalLayout = Literal["suffix_50_50", "suffix_101_101"]


class _BottleneckWidths:
    """Channels of a bottleneck ResNet from its stem ``width``: inner width doubles per stage
    from ``width`` at res2, outputs are 4x inner."""

    width: int

    def stage_channels(self, stage: int) -> tuple[int, int]:
        """(inner, out) channels of res``stage`` (2..5)."""
        inner = self.width * 2 ** (stage - 2)
        return inner, 4 * inner

    @property
    def out_channels(self) -> int:
        return self.stage_channels(5)[1]


@dataclass(frozen=True)
class VisualPathwayConfig(_BottleneckWidths):
    """A 3D ResNet over [N, 3, T, H, W] frames (Slow or Fast pathway).

    ``stem_temporal_kernel`` is the stem conv's temporal size, ``temporal_kernels`` that of
    each res stage's first bottleneck conv (res2..res5). Temporal stride is always 1.
    """

    name: str
    frames: int
    width: int  # stem channels; res2 inner width (outputs are 4x this, doubling per stage)
    depths: tuple[int, int, int, int] = STAGE_DEPTHS[50]
    stem_temporal_kernel: int = 1
    temporal_kernels: tuple[int, int, int, int] = (1, 1, 3, 3)
    # How many leading blocks of each stage use its temporal kernel (the rest use 1); None:
    # all. PySlowFast's R101 uses (3, 4, 6, 3): only 6 of res4's 23 blocks are temporal.
    temporal_blocks: tuple[int, int, int, int] | None = None
    spatial_strides: tuple[int, int, int, int] = (1, 2, 2, 2)
    spatial_dilations: tuple[int, int, int, int] = (1, 1, 1, 1)
    # Non-local blocks after these block indices, per stage (res2..res5).
    nonlocal_blocks: tuple[tuple[int, ...], ...] = ((), (), (), ())
    nonlocal_pool: tuple[int, int, int] = (1, 2, 2)  # PySlowFast's default: max pool T x H x W before phi, g
    in_channels: int = 3

    def temporal_kernel(self, stage: int, block: int) -> int:
        """Temporal size of block ``block``'s first conv in res``stage``."""
        limit = self.temporal_blocks[stage - 2] if self.temporal_blocks else self.depths[stage - 2]
        return self.temporal_kernels[stage - 2] if block < limit else 1

    @property
    def spatial_scale(self) -> float:
        """res5 resolution over input resolution (stem 2, pool 2, then the stage strides)."""
        return 1.0 / (4 * math.prod(self.spatial_strides))


@dataclass(frozen=True)
class AudioPathwayConfig(_BottleneckWidths):
    """A 2D ResNet over log-mel spectrograms laid out [N, 1, T (time), F (frequency)].

    Stem: a time (k x 1) and a frequency (1 x k) conv whose outputs are summed, no pooling.
    Stages whose ``factorised`` flag is set split the 3x3 bottleneck conv the same way.
    ``strides`` downsample time and frequency in the first block of a stage.
    """

    name: str = "audio"
    frames: int = 128
    mel_bins: int = 80
    width: int = 32
    depths: tuple[int, int, int, int] = STAGE_DEPTHS[50]
    stem_kernel: int = 9
    factorised: tuple[bool, bool, bool, bool] = (True, True, False, False)
    strides: tuple[int, int, int, int] = (1, 2, 2, 2)
    in_channels: int = 1


PathwayConfig = VisualPathwayConfig | AudioPathwayConfig


@dataclass(frozen=True)
class LateralConfig:
    """Fast->Slow time-strided convolution: kernel x 1 x 1, stride alpha_f,
    ``channel_ratio`` x Fast channels, concatenated into Slow after the ``stages`` (1 =
    pool1, 2..4 = res2..res4): all four in SlowFast; the authors' AVSlowFast config keeps
    only res3 and res4."""

    alpha: int = 8
    kernel: int = 5
    channel_ratio: int = 2
    stages: tuple[int, ...] = (1, 2, 3, 4)


@dataclass(frozen=True)
class AudioFusionConfig:
    """Audio->visual lateral connections after the given stages (1 = pool1, 2..4 = res2..res4)
    and, with ``pool5``, concatenation of the pooled audio features before the classifier.

    Each lateral is two temporal convs of size ``kernel`` (authors' code): audio -> ``channels``
    at stride 1, then -> the visual width at the stride that brings audio to the visual length.
    """

    mode: FusionMode = "a_fs"
    stages: tuple[int, ...] = (3, 4)
    pool5: bool = True
    kernel: int = 5
    channels: int = 64


@dataclass(frozen=True)
class HeadConfig:
    """Heads always return logits. ``activation`` says how to read them (evaluation code
    applies it; the test-time pooling below also averages in its space).

    ``test_pool``: PySlowFast's test-time pooling. None (default): global average pool. k:
    in eval mode the visual res5 features are average-pooled over T x k x k windows at
    stride 1 (k = 7 is PySlowFast's TRAIN_CROP_SIZE / 32), each window is classified, the
    activations are averaged over windows, and the logits of that average are returned
    (``activation(logits)`` equals PySlowFast's averaged softmax / sigmoid). Training always
    pools globally (at a 224 crop a 7 x 7 window is global anyway).
    """

    kind: HeadKind = "classification"
    num_classes: int = 400
    dropout: float = 0.5
    activation: Literal["softmax", "sigmoid", "none"] = "softmax"  # for evaluation code
    verb_classes: int = 97  # EPIC-Kitchens
    noun_classes: int = 300
    roi_size: int = 7  # AVA: RoIAlign output
    roi_sampling_ratio: int = 0
    test_pool: int | None = None


@dataclass(frozen=True)
class SyncConfig:
    """Audio-visual synchronisation heads (training only) at these levels (res3, res4, pool5).

    Embeddings are projected to ``dim``, L2-normalised and multiplied by ``scale`` (0.5 in
    the authors' code, so squared distances lie in [0, 1]); ``margin`` is the contrastive
    margin on out-of-sync distances (authors: 0.99). See :mod:`avsf.models.sync`.
    """

    levels: tuple[str, ...] = ("res3", "res4", "pool5")
    dim: int = 64
    scale: float = 0.5
    margin: float = 0.99


@dataclass(frozen=True)
class ModelConfig:
    name: str
    arch: Arch
    pathways: tuple[PathwayConfig, ...]
    lateral: LateralConfig | None = None
    audio_fusion: AudioFusionConfig | None = None
    head: HeadConfig = field(default_factory=HeadConfig)
    drop_pathway: float = 0.0
    # What DropPathway drops. "fusion" (the authors' code, which produced the paper's numbers):
    # the audio pathway always runs; only its laterals into the visual pathways add zero, so
    # the sync heads and the pool5 classifier still see audio. "pathway" (the paper's wording):
    # the whole audio pathway is skipped and contributes zeros, pool5 features included.
    drop_pathway_mode: DropPathwayMode = "fusion"
    sync: SyncConfig | None = None

    def __post_init__(self) -> None:
        kinds = tuple(type(p).__name__ for p in self.pathways)
        expected = {
            "slow": ("VisualPathwayConfig",),
            "fast": ("VisualPathwayConfig",),
            "slowfast": ("VisualPathwayConfig",) * 2,
            "audio": ("AudioPathwayConfig",),
            "avslowfast": ("VisualPathwayConfig",) * 2 + ("AudioPathwayConfig",),
        }[self.arch]
        if kinds != expected:
            raise ValueError(f"{self.name}: arch {self.arch} needs pathways {expected}, got {kinds}")
        if self.audio_fusion is not None and self.arch != "avslowfast":
            raise ValueError(f"{self.name}: audio_fusion needs arch avslowfast")
        if self.audio_fusion and any(s not in (1, 2, 3, 4) for s in self.audio_fusion.stages):
            raise ValueError(f"{self.name}: audio fusion stages must be in 1..4")
        if not 0.0 <= self.drop_pathway < 1.0:
            raise ValueError(f"{self.name}: drop_pathway must be in [0, 1)")
        if self.drop_pathway_mode not in ("fusion", "pathway"):
            raise ValueError(f"{self.name}: drop_pathway_mode must be fusion or pathway")
        if self.sync is not None:
            if any(level not in SYNC_LEVELS for level in self.sync.levels):
                raise ValueError(f"{self.name}: sync levels must be among {', '.join(SYNC_LEVELS)}")
            if self.sync.scale <= 0 or self.sync.margin <= 0:
                raise ValueError(f"{self.name}: sync scale and margin must be positive")
        if self.head.test_pool is not None and self.head.test_pool < 1:
            raise ValueError(f"{self.name}: head.test_pool must be a positive window or None")
        if self.head.kind == "ava" and self.arch == "audio":
            raise ValueError(f"{self.name}: the AVA head needs a visual pathway")

    @property
    def visual(self) -> tuple[VisualPathwayConfig, ...]:
        return tuple(p for p in self.pathways if isinstance(p, VisualPathwayConfig))

    @property
    def audio(self) -> AudioPathwayConfig | None:
        return next((p for p in self.pathways if isinstance(p, AudioPathwayConfig)), None)

    @property
    def audio_index(self) -> int | None:
        return next((i for i, p in enumerate(self.pathways) if isinstance(p, AudioPathwayConfig)), None)

    @property
    def has_fast(self) -> bool:
        """Whether the network reads Fast frames (alpha_F x T at tau / alpha_F)."""
        return self.arch in WITH_FAST

    @property
    def has_sync(self) -> bool:
        """Whether the network has AV-sync heads (AVSlowFast with sync)."""
        return self.sync is not None and self.arch == "avslowfast"


# --------------------------------------------------------------------------- presets


def model_config(
    arch: Arch = "avslowfast",
    depth: int = 50,
    frames: int = 4,
    stride: int = 16,
    *,
    alpha_f: int | None = None,
    beta_f: float = 1 / 8,
    alpha_a: int | None = None,
    beta_a: float = 1 / 2,
    lateral_kernel: int | None = None,
    laterals: bool = True,
    lateral_stages: tuple[int, ...] = (1, 2, 3, 4),
    fusion: FusionMode = "a_fs",
    fusion_stages: tuple[int, ...] = (3, 4),
    fusion_pool5: bool = True,
    nonlocal_blocks: bool = False,
    nonlocal_layout: NonlocalLayout = "pyslowfast",
    temporal_layout: TemporalLayout = "suffix_50_50",
    head: HeadConfig | None = None,
    drop_pathway: float | None = None,
    drop_pathway_mode: DropPathwayMode = "fusion",
    sync: bool | SyncConfig | None = None,
    audio_width: int | None = None,
    mel_bins: int = 80,
    tiny: bool = False,
    width: int | None = None,
    name: str | None = None,
) -> ModelConfig:
    """The papers' instantiation ``arch`` R``depth`` ``frames``x``stride`` (T x tau).

    alpha_f defaults to 8 for tau = 16 and 4 for tau = 8 (Fast sees tau/alpha_f spacing);
    alpha_a to 4 x alpha_f (128 log-mel frames for 4x16 and 8x8, as in the authors' code).
    The lateral kernel follows PySlowFast's configs (:func:`default_lateral_kernel`), so
    their checkpoints load; ``laterals=False`` is SlowFast Table 5a's no-lateral baseline
    (pathways concatenated only at pool5) and ``lateral_stages`` where the Fast->Slow
    laterals are (all four by default, so SlowFast checkpoints load; (3, 4) is the authors'
    AVSlowFast config). ``nonlocal_blocks`` adds Slow-pathway non-local
    blocks where PySlowFast's NLN configs put them (:func:`nonlocal_placement`);
    ``nonlocal_layout="paper"`` pools them 2x2x2 instead of 1x2x2, the variant whose cost
    matches SlowFast Table 2's 234 G. ``temporal_layout`` places R101's temporal kernels
    (:data:`TemporalLayout`). ``drop_pathway`` (default :data:`DROP_PATHWAY`), ``drop_pathway_mode``
    and ``sync`` (default on; a :class:`SyncConfig` sets its options) apply to AVSlowFast
    only and are off for the other archs. ``tiny`` keeps the structure with 1 block per
    stage and narrow widths, for tests and the demo; ``width`` sets the Slow pathway's stem
    channels (64 in the papers, 8 when tiny), the Fast and Audio widths following by beta.
    """
    if depth not in STAGE_DEPTHS:
        raise ValueError(f"depth must be one of {sorted(STAGE_DEPTHS)}, got {depth}")
    if nonlocal_layout not in ("pyslowfast", "paper"):
        raise ValueError(f"nonlocal_layout must be pyslowfast or paper, got {nonlocal_layout!r}")
    if temporal_layout not in ("suffix_50_50", "suffix_101_101"):
        raise ValueError(f"temporal_layout must be suffix_50_50 or suffix_101_101, got {temporal_layout!r}")
    alpha_f, alpha_a = default_ratios(stride, alpha_f, alpha_a)
    depths = TINY_DEPTHS if tiny else STAGE_DEPTHS[depth]
    slow_width = width or (8 if tiny else 64)
    fast_width = max(1, round(slow_width * beta_f))
    nl = nonlocal_placement(depth, depths) if nonlocal_blocks else ((), (), (), ())
    nl_pool = (1, 2, 2) if nonlocal_layout == "pyslowfast" else (2, 2, 2)
    temporal = None if tiny or temporal_layout == "suffix_101_101" else TEMPORAL_BLOCKS[depth]
    slow = VisualPathwayConfig("slow", frames, slow_width, depths, 1, (1, 1, 3, 3), temporal,
                               nonlocal_blocks=nl, nonlocal_pool=nl_pool)
    fast = VisualPathwayConfig("fast", frames * alpha_f, fast_width, depths, 5, (3, 3, 3, 3), temporal)
    audio = AudioPathwayConfig(
        frames=frames * alpha_a,
        mel_bins=mel_bins,
        width=audio_width or max(1, round(slow_width * beta_a)),
        depths=depths,
    )
    head = head or HeadConfig()
    if head.kind == "ava":  # res5 at stride 16: spatial stride 1, dilation 2 (SlowFast Sec. 5)
        slow, fast = (replace(p, spatial_strides=(1, 2, 2, 1), spatial_dilations=(1, 1, 1, 2))
                      for p in (slow, fast))
    if any(st not in (1, 2, 3, 4) for st in lateral_stages):
        raise ValueError(f"lateral_stages must be in 1..4, got {lateral_stages}")
    lateral = LateralConfig(alpha_f, lateral_kernel or default_lateral_kernel(depth, alpha_f, nonlocal_blocks),
                            stages=tuple(sorted(lateral_stages)))
    pathways: tuple[PathwayConfig, ...] = {
        "slow": (slow,),
        "fast": (fast,),
        "slowfast": (slow, fast),
        "audio": (audio,),
        "avslowfast": (slow, fast, audio),
    }[arch]
    av = arch == "avslowfast"
    sync_cfg = sync if isinstance(sync, SyncConfig) else SyncConfig()
    return ModelConfig(
        name=name or preset_name(arch, depth, frames, stride, nonlocal_blocks, tiny) + (f"_w{width}" if width else ""),
        arch=arch,
        pathways=pathways,
        lateral=lateral if laterals and arch in ("slowfast", "avslowfast") else None,
        audio_fusion=AudioFusionConfig(fusion, tuple(fusion_stages), fusion_pool5) if av else None,
        head=head,
        drop_pathway=(DROP_PATHWAY if drop_pathway is None else drop_pathway) if av else 0.0,
        drop_pathway_mode=drop_pathway_mode,
        sync=sync_cfg if av and sync is not False else None,
    )


def default_ratios(stride: int, alpha_f: int | None = None, alpha_a: int | None = None) -> tuple[int, int]:
    """(alpha_f, alpha_a): 8 for tau = 16 and 4 for tau = 8; alpha_a = 4 x alpha_f."""
    alpha_f = alpha_f or (8 if stride >= 16 else 4)
    return alpha_f, alpha_a or 4 * alpha_f


def default_lateral_kernel(depth: int, alpha_f: int, nonlocal_blocks: bool = False) -> int:
    """The Fast->Slow lateral's temporal kernel in PySlowFast's configs: 7 only in the plain
    R50 models with alpha_F = 4 (SLOWFAST_8x8_R50); 5 in every R101 (8x8, 16x8), every NLN
    and every alpha_F = 8 (4x16) config."""
    return 7 if depth == 50 and alpha_f < 8 and not nonlocal_blocks else 5


def nonlocal_placement(depth: int, depths: tuple[int, int, int, int]) -> tuple[tuple[int, ...], ...]:
    """Slow-pathway non-local blocks per stage (res2..res5), after these block indices, as
    PySlowFast's NLN configs place them: R101 (SLOWFAST_NLN_16x8_R101_50_50) after res4
    blocks 6, 13, 20; R50 (SLOWFAST_NLN_4x16_R50, _8x8_R50) after res3 blocks 1, 3 and res4
    blocks 1, 3, 5. Shallower (tiny) stages keep the indices that exist, else their last block."""
    wanted = {101: ((), (), (6, 13, 20), ()), 50: ((), (1, 3), (1, 3, 5), ())}[depth]

    def fit(indices: tuple[int, ...], blocks: int) -> tuple[int, ...]:
        kept = tuple(i for i in indices if i < blocks)
        return kept or ((blocks - 1,) if indices else ())

    return tuple(fit(ix, n) for ix, n in zip(wanted, depths))


def preset_name(arch: Arch, depth: int, frames: int, stride: int, nonlocal_blocks: bool = False,
                tiny: bool = False) -> str:
    backbone = "tiny" if tiny else f"r{depth}" + ("_nl" if nonlocal_blocks else "")
    return f"{arch}_{backbone}_{frames}x{stride}"


# The instantiations the papers report, with their multiply-adds per 256x256 view (G) and
# parameters (M) where given. Source: SlowFast Tables 2 and 5a, AVSlowFast Tables 5, 6, A.3.
PAPER_PRESETS: dict[str, dict] = {
    "slow_r50_4x16": dict(args=dict(arch="slow", depth=50, frames=4, stride=16), gmacs=27.3, mparams=32.4),
    "fast_r50_4x16": dict(args=dict(arch="fast", depth=50, frames=4, stride=16), gmacs=6.4, mparams=0.53),
    "slowfast_r50_4x16": dict(args=dict(arch="slowfast", depth=50, frames=4, stride=16), gmacs=36.1),
    "slowfast_r50_8x8": dict(args=dict(arch="slowfast", depth=50, frames=8, stride=8), gmacs=65.7),
    "slowfast_r101_8x8": dict(args=dict(arch="slowfast", depth=101, frames=8, stride=8), gmacs=106.0),
    "slowfast_r101_16x8": dict(args=dict(arch="slowfast", depth=101, frames=16, stride=8), gmacs=213.0),
    "slowfast_r101_nl_16x8": dict(
        args=dict(arch="slowfast", depth=101, frames=16, stride=8, nonlocal_blocks=True), gmacs=234.0),
    "avslowfast_r50_4x16": dict(args=dict(arch="avslowfast", depth=50, frames=4, stride=16), gmacs=39.8),
    "avslowfast_r50_8x8": dict(args=dict(arch="avslowfast", depth=50, frames=8, stride=8), gmacs=None),
    "audio_r50_4x16": dict(args=dict(arch="audio", depth=50, frames=4, stride=16), gmacs=None),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A named paper instantiation (see :data:`PAPER_PRESETS`), with keyword overrides."""
    if name not in PAPER_PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PAPER_PRESETS)}")
    return model_config(**{**PAPER_PRESETS[name]["args"], **overrides})
