"""One network class for the whole family: Slow-only, Fast-only, SlowFast, Audio-only, AVSlowFast.

Data flow for AVSlowFast (A->FS fusion after res3 and res4, audio concatenated at pool5)::

    slow  [N,3,T,H,W]    -s1-> s1_fuse -s2-> s2_fuse -s3-> s3_fuse  s3_afuse -s4-> s4_fuse  s4_afuse -s5-+
    fast  [N,3,aT,H,W]   -s1---^       -s2---^       -s3---^          |       -s4---^          |      -s5-+-> head
    audio [N,1,aaT,F]    -s1---------- -s2---------- -s3--------------+       -s4--------------+      -s5-+

``sK_fuse`` concatenates the time-strided Fast->Slow conv into Slow; ``sK_afuse`` adds
audio (its lateral reshapes it to Slow's T and channels) to the fused Slow features.
DropPathway, drawn once per batch, drops either the audio fusion (``drop_pathway_mode``
"fusion", the authors' code: the audio pathway runs, its laterals add zero) or the whole
audio pathway ("pathway", the paper's wording: nothing of audio is computed, pool5 gets
zeros). With ``negative_audio`` the out-of-sync audio runs through the audio pathway with
the clip's own (batch doubled along N) and reaches only the sync heads
(:mod:`avsf.models.sync`). Module names are PySlowFast's, so SlowFast checkpoints load one
to one (see :mod:`avsf.models.checkpoint`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from avsf.models.blocks import init_weights
from avsf.models.config import SYNC_LEVELS, AudioPathwayConfig, ModelConfig
from avsf.models.fusion import AudioFuse, AudioToVisual, AudioVisualNonlocal, FuseFastToSlow
from avsf.models.heads import ClassificationHead, DetectionHead, EpicHead
from avsf.models.stages import PathwayStem, ResStage
from avsf.models.sync import SyncHead, SyncLevel

Output = torch.Tensor | dict[str, torch.Tensor]


class VideoNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        paths = cfg.pathways
        self.audio_index = cfg.audio_index
        fusion = cfg.audio_fusion
        self.s1 = PathwayStem(paths)
        dims = [p.width for p in paths]
        slow_dims: dict[int, int] = {}  # Slow channels after the F->S concatenation, before audio
        for stage in range(1, 6):
            if stage > 1:
                self.add_module(f"s{stage}", ResStage(paths, stage, dims))
                dims = [p.stage_channels(stage)[1] for p in paths]
            if stage == 5:
                break
            if fusion and stage in fusion.stages and fusion.mode == "a_f_s":
                self.add_module(f"s{stage}_afuse", self._audio_fusion(AudioFuse, stage, 1, dims[1]))
            if cfg.lateral and stage in cfg.lateral.stages:
                lat = cfg.lateral
                self.add_module(f"s{stage}_fuse", FuseFastToSlow(dims[1], lat.channel_ratio, lat.kernel, lat.alpha))
                dims[0] += dims[1] * lat.channel_ratio
            slow_dims[stage] = dims[0]
            if fusion and stage in fusion.stages and fusion.mode != "a_f_s":
                kind = AudioFuse if fusion.mode == "a_fs" else AudioVisualNonlocal
                self.add_module(f"s{stage}_afuse", self._audio_fusion(kind, stage, 0, dims[0]))

        visual_dims = [d for i, d in enumerate(dims) if i != self.audio_index]
        audio_dim = dims[self.audio_index] if self.audio_index is not None else 0
        if fusion is not None and not fusion.pool5:
            audio_dim = 0
        self.head_uses_audio = audio_dim > 0
        head = cfg.head
        if head.kind == "ava":
            self.head = DetectionHead(visual_dims, audio_dim, head.num_classes, head.dropout,
                                      cfg.visual[0].spatial_scale, head.roi_size, head.roi_sampling_ratio)
        elif head.kind == "epic":
            self.head = EpicHead(visual_dims + [audio_dim] * bool(audio_dim), head.verb_classes,
                                 head.noun_classes, head.dropout, head.activation, head.test_pool)
        else:
            self.head = ClassificationHead(visual_dims + [audio_dim] * bool(audio_dim), head.num_classes,
                                           head.dropout, head.activation, head.test_pool)

        self.sync = None
        if cfg.has_sync:
            self.sync = nn.ModuleDict({level: self._sync_head(level, slow_dims, dims)
                                       for level in cfg.sync.levels})
        init_weights(self)

    def _audio_fusion(self, kind: type[nn.Module], stage: int, target: int, channels: int) -> nn.Module:
        fusion = self.cfg.audio_fusion
        return kind(self._audio_channels(stage), channels, self._time_ratio(stage, target), fusion.kernel,
                    fusion.channels)

    def _audio_channels(self, stage: int) -> int:
        audio = self.cfg.audio
        return audio.width if stage == 1 else audio.stage_channels(stage)[1]

    def _time_ratio(self, stage: int, target: int) -> float:
        """Audio time length after stem (stage 1) or res``stage`` over pathway ``target``'s."""
        audio = self.cfg.audio
        return audio.frames / math.prod(audio.strides[: stage - 1]) / self.cfg.pathways[target].frames

    def _sync_head(self, level: str, slow_dims: dict[int, int], res5_dims: list[int]) -> SyncHead:
        """The level's projections; pool5 brings its own res5 F->S lateral (the visual side)
        and every level without a fusion at its stage its own A->FS lateral."""
        stage, sync, lat = SYNC_LEVELS[level], self.cfg.sync, self.cfg.lateral
        fuse = None
        if stage == 5:
            visual_dim = res5_dims[0]
            if lat:
                fuse = FuseFastToSlow(res5_dims[1], lat.channel_ratio, lat.kernel, lat.alpha)
                visual_dim += res5_dims[1] * lat.channel_ratio
        else:
            visual_dim = slow_dims[stage]
        shared = getattr(self, f"s{stage}_afuse", None)
        a2v = None
        if shared is not None:
            audio_dim = shared.a2v.conv2.out_channels
        else:
            fusion = self.cfg.audio_fusion
            a2v = AudioToVisual(self._audio_channels(stage), visual_dim, self._time_ratio(stage, 0),
                                fusion.kernel, fusion.channels)
            audio_dim = visual_dim
        return SyncHead(visual_dim, audio_dim, sync.dim, sync.scale, fuse, a2v)

    # ----------------------------------------------------------------------- forward

    def forward(self, inputs: Sequence[torch.Tensor], boxes: torch.Tensor | None = None,
                drop_audio: bool | None = None, negative_audio: torch.Tensor | None = None
                ) -> Output | tuple[Output, list[SyncLevel]]:
        """``inputs`` in pathway order (slow, fast, audio; see the config); ``boxes`` for the
        AVA head. ``drop_audio`` decides DropPathway for this batch (None: the model's own
        draw, in training only). With ``negative_audio`` (shaped like the audio input;
        AVSlowFast with sync heads) returns ``(output, sync_levels)``: one
        :class:`~avsf.models.sync.SyncLevel` per configured level, always all of them."""
        self._check_inputs(inputs, boxes, negative_audio)
        ai, n = self.audio_index, inputs[0].shape[0]
        drop = False
        if self.cfg.arch == "avslowfast":  # the only arch that drops audio (and draws for it)
            drop = self.draw_drop_pathway() if drop_audio is None else bool(drop_audio)
        skip_audio = drop and self.cfg.drop_pathway_mode == "pathway"
        weight = 0.0 if drop else 1.0  # fusion mode: laterals computed, added with weight zero
        xs = list(inputs)
        if ai is not None:
            if skip_audio:
                xs[ai] = None
            elif negative_audio is not None:
                xs[ai] = torch.cat([xs[ai], negative_audio])
        taps: dict[int, tuple] = {}  # stage -> (visual before audio, lateral, audio features)
        xs = self.s1(xs)
        for stage in range(1, 5):
            if stage > 1:
                xs = getattr(self, f"s{stage}")(xs)
            xs = self._fuse(stage, xs, n, weight, taps)
        xs = self.s5(xs)
        if ai is None:
            head_in = xs
        else:
            audio = xs[ai]
            head_in = [x for i, x in enumerate(xs) if i != ai]
            if self.head_uses_audio:
                head_in.append(None if audio is None else audio[:n])
        out = self.head(head_in, boxes) if isinstance(self.head, DetectionHead) else self.head(head_in)
        if negative_audio is None:
            return out
        taps[5] = (xs[0], xs[1] if self.cfg.lateral else None, xs[ai])
        return out, self._sync_levels(taps, n, drop)

    def draw_drop_pathway(self) -> bool:
        """DropPathway: one Bernoulli(P_d) draw for the whole batch, from torch's CPU RNG."""
        p = self.cfg.drop_pathway
        return bool(self.training and p > 0 and torch.rand((), device="cpu").item() < p)

    def _check_inputs(self, inputs, boxes, negative_audio) -> None:
        if len(inputs) != len(self.cfg.pathways):
            names = ", ".join(p.name for p in self.cfg.pathways)
            raise ValueError(f"{self.cfg.name} takes {len(self.cfg.pathways)} inputs ({names}), got {len(inputs)}")
        for i, (cfg, x) in enumerate(zip(self.cfg.pathways, inputs)):
            if isinstance(cfg, AudioPathwayConfig):
                want, shape = (cfg.in_channels, cfg.frames, cfg.mel_bins), "[N, 1, time, mel bins]"
            else:
                want, shape = (cfg.in_channels, cfg.frames), "[N, 3, frames, H, W]"
            ndim = 4 if isinstance(cfg, AudioPathwayConfig) else 5
            if x.dim() != ndim or tuple(x.shape[1 : 1 + len(want)]) != want or x.shape[0] != inputs[0].shape[0]:
                expected = ", ".join(["N", *map(str, want)] + (["H", "W"] if ndim == 5 else []))
                raise ValueError(f"{self.cfg.name}: input {i} ({cfg.name}) must be {shape} = [{expected}] "
                                 f"with the batch of input 0, got {tuple(x.shape)}")
        if isinstance(self.head, DetectionHead) and boxes is None:
            raise ValueError(f"{self.cfg.name} has the AVA head: pass boxes [K, 5]")
        if negative_audio is not None:
            if self.sync is None:
                raise ValueError(f"{self.cfg.name}: negative_audio needs AVSlowFast with sync heads "
                                 f"(arch {self.cfg.arch}, sync {'on' if self.cfg.sync else 'off'})")
            audio = inputs[self.audio_index]
            if negative_audio.shape != audio.shape:
                raise ValueError(f"{self.cfg.name}: negative_audio must be shaped like the audio input "
                                 f"{tuple(audio.shape)}, got {tuple(negative_audio.shape)}")

    def _fuse(self, stage: int, xs: list, n: int, weight: float, taps: dict) -> list:
        """Laterals after ``stage``: A->F (a_f_s), F->S, then A->FS / AV non-local. The audio
        lateral runs on the whole (positive + negative) audio batch; only its first ``n``
        (the clips' own audio) is fused."""
        ai = self.audio_index
        mode = self.cfg.audio_fusion.mode if self.cfg.audio_fusion else None
        afuse = getattr(self, f"s{stage}_afuse", None)
        audio = xs[ai] if ai is not None else None
        lateral = None
        if afuse is not None and audio is not None:
            target = xs[1] if mode == "a_f_s" else xs[0]
            lateral = afuse.a2v(audio, target.shape[2])
        if lateral is not None and mode == "a_f_s":
            xs[1] = afuse(xs[1], lateral[:n], weight)
        fuse = getattr(self, f"s{stage}_fuse", None)
        if fuse is not None:
            xs[0] = fuse(xs[0], xs[1])
        taps[stage] = (xs[0], lateral, audio)
        if lateral is not None and mode != "a_f_s":
            xs[0] = afuse(xs[0], lateral[:n], weight)
        return xs

    def _sync_levels(self, taps: dict, n: int, drop: bool) -> list[SyncLevel]:
        levels = []
        for name, head in self.sync.items():
            stage = SYNC_LEVELS[name]
            if stage == 5:
                slow, fast, audio = taps[5]
                visual, lateral = (slow if head.fuse is None else head.fuse(slow, fast)), None
            else:
                visual, lateral, audio = taps[stage]
            if lateral is None and audio is not None:
                lateral = head.a2v(audio, visual.shape[2])
            v, positive, negative = head(visual, lateral, n)
            counted = audio is not None and self._audio_free(stage, drop)
            levels.append(SyncLevel(name, v, positive, negative, counted))
        return levels

    def _audio_free(self, stage: int, drop: bool) -> bool:
        """Whether level ``stage``'s visual features (taken before that stage's own A->FS)
        are free of audio in this iteration: always when the fusion was dropped, else only
        when no fusion came earlier (A->F->S fuses into Fast before the F->S lateral, so its
        own stage counts too)."""
        fusion = self.cfg.audio_fusion
        if drop or fusion is None or not fusion.stages:
            return True
        earliest = min(fusion.stages)
        return stage < earliest or (stage == earliest and fusion.mode != "a_f_s")


def build_model(cfg: ModelConfig, device: str | torch.device | None = None) -> VideoNet:
    """Build and initialise ``cfg``; ``device="meta"`` gives a shape-only model (FLOP counts)."""
    if device is None:
        return VideoNet(cfg)
    with torch.device(device):
        return VideoNet(cfg)


def example_inputs(cfg: ModelConfig, crop: int | tuple[int, int], batch: int = 1,
                   device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Random inputs of the right shapes: frames [N, 3, T, H, W] (``crop``: H = W, or (H, W)),
    log-mel [N, 1, T, F]."""
    height, width = (crop, crop) if isinstance(crop, int) else crop
    out = []
    for p in cfg.pathways:
        if isinstance(p, AudioPathwayConfig):
            shape = (batch, p.in_channels, p.frames, p.mel_bins)
        else:
            shape = (batch, p.in_channels, p.frames, height, width)
        out.append(torch.randn(shape, device=device, dtype=dtype))
    return out


def to_channels_last(module_or_tensor):
    """channels_last_3d for 5-D parameters/buffers/tensors, channels_last for 4-D ones
    (``Module.to(memory_format=channels_last_3d)`` refuses the audio pathway's 4-D weights)."""
    def convert(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 5:
            return t.contiguous(memory_format=torch.channels_last_3d)
        if t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(module_or_tensor, torch.Tensor):
        return convert(module_or_tensor)
    for m in module_or_tensor.modules():
        for p in m.parameters(recurse=False):
            p.data = convert(p.data)
        for name, b in m.named_buffers(recurse=False):
            setattr(m, name, convert(b))
    return module_or_tensor
