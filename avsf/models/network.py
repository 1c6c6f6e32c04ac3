"""One network class for the whole family: Slow-only, Fast-only, SlowFast, Audio-only, AVSlowFast.

Data flow for AVSlowFast (A->FS fusion after res3 and res4, audio concatenated at pool5)::

    slow  [N,3,T,H,W]    -s1-> s1_fuse -s2-> s2_fuse -s3-> s3_fuse  s3_afuse -s4-> s4_fuse  s4_afuse -s5-+
    fast  [N,3,aT,H,W]   -s1---^       -s2---^       -s3---^          |       -s4---^          |      -s5-+-> head
    audio [N,1,aaT,F]    -s1---------- -s2---------- -s3--------------+       -s4--------------+      -s5-+

``sK_fuse`` concatenates the time-strided Fast->Slow conv into Slow; ``sK_afuse`` adds
audio (reshaped to Slow's T and channels) to the fused Slow features. Under DropPathway the
audio pathway is not computed and contributes zeros. Module names are PySlowFast's, so
SlowFast checkpoints load one to one (see :mod:`avsf.models.checkpoint`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from avsf.models.blocks import init_weights
from avsf.models.config import AudioPathwayConfig, ModelConfig
from avsf.models.fusion import AudioFuse, AudioVisualNonlocal, FuseFastToSlow
from avsf.models.heads import ClassificationHead, DetectionHead, EpicHead
from avsf.models.stages import PathwayStem, ResStage
from avsf.models.sync import SyncProjection

Output = torch.Tensor | dict[str, torch.Tensor]
SyncPairs = list[tuple[torch.Tensor, torch.Tensor]]


class VideoNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        paths = cfg.pathways
        self.audio_index = cfg.audio_index
        fusion = cfg.audio_fusion
        self.s1 = PathwayStem(paths)
        dims = [p.width for p in paths]
        stage_dims: dict[int, list[int]] = {}  # channels of each stage's own output (before fusion)
        for stage in range(1, 6):
            if stage > 1:
                self.add_module(f"s{stage}", ResStage(paths, stage, dims))
                dims = [p.stage_channels(stage)[1] for p in paths]
            stage_dims[stage] = list(dims)
            if stage == 5:
                break
            if fusion and stage in fusion.stages and fusion.mode == "a_f_s":
                self.add_module(f"s{stage}_afuse", self._audio_fusion(AudioFuse, stage, 1, dims[1]))
            if cfg.lateral:
                lat = cfg.lateral
                self.add_module(f"s{stage}_fuse", FuseFastToSlow(dims[1], lat.channel_ratio, lat.kernel, lat.alpha))
                dims[0] += dims[1] * lat.channel_ratio
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
                                      cfg.visual[0].spatial_scale, head.roi_size, head.roi_sampling_ratio,
                                      act="sigmoid" if head.activation == "softmax" else head.activation)
        elif head.kind == "epic":
            self.head = EpicHead(visual_dims + [audio_dim] * bool(audio_dim), head.verb_classes,
                                 head.noun_classes, head.dropout, head.activation)
        else:
            self.head = ClassificationHead(visual_dims + [audio_dim] * bool(audio_dim), head.num_classes,
                                           head.dropout, head.activation)

        self.sync = None
        if cfg.sync is not None and self.audio_index is not None and cfg.arch == "avslowfast":
            levels = {"res3": 3, "res4": 4, "pool5": 5}
            self.sync = nn.ModuleDict({
                level: SyncProjection(sum(stage_dims[levels[level]][: self.audio_index]),
                                      stage_dims[levels[level]][self.audio_index], cfg.sync.dim)
                for level in cfg.sync.levels
            })
        init_weights(self)

    def _audio_fusion(self, kind: type[nn.Module], stage: int, target: int, channels: int) -> nn.Module:
        audio = self.cfg.audio
        assert audio is not None
        audio_channels = audio.width if stage == 1 else audio.stage_channels(stage)[1]
        ratio = self._audio_frames(audio, stage) / self.cfg.pathways[target].frames
        return kind(audio_channels, channels, ratio, self.cfg.audio_fusion.kernel)

    @staticmethod
    def _audio_frames(audio: AudioPathwayConfig, stage: int) -> float:
        """Audio time length after stem (stage 1) or res``stage``."""
        return audio.frames / math.prod(audio.strides[: stage - 1])

    # ----------------------------------------------------------------------- forward

    def forward(self, inputs: Sequence[torch.Tensor], boxes: torch.Tensor | None = None,
                drop_audio: bool | None = None) -> Output:
        """``inputs`` in pathway order (slow, fast, audio; see the config); ``boxes`` for the
        AVA head. ``drop_audio`` overrides the DropPathway draw (None: draw in training)."""
        return self._run(inputs, boxes, drop_audio, want_sync=False)[0]

    def forward_with_sync(self, inputs: Sequence[torch.Tensor], boxes: torch.Tensor | None = None,
                          drop_audio: bool | None = None) -> tuple[Output, SyncPairs]:
        """Also the (visual, audio) embeddings of every sync level; empty when audio is dropped."""
        return self._run(inputs, boxes, drop_audio, want_sync=True)

    def draw_drop_pathway(self) -> bool:
        """DropPathway: one Bernoulli(P_d) draw for the whole batch, from torch's CPU RNG."""
        p = self.cfg.drop_pathway
        return bool(self.training and p > 0 and torch.rand((), device="cpu").item() < p)

    def _run(self, inputs, boxes, drop_audio, want_sync):
        if len(inputs) != len(self.cfg.pathways):
            names = ", ".join(p.name for p in self.cfg.pathways)
            raise ValueError(f"{self.cfg.name} takes {len(self.cfg.pathways)} inputs ({names}), got {len(inputs)}")
        if isinstance(self.head, DetectionHead) and boxes is None:
            raise ValueError(f"{self.cfg.name} has the AVA head: pass boxes [K, 5]")
        xs = list(inputs)
        ai = self.audio_index
        if self.cfg.arch == "avslowfast":  # the only arch that drops audio (and draws for it)
            drop = self.draw_drop_pathway() if drop_audio is None else drop_audio
            if drop:
                xs[ai] = None
        captured: dict[str, list] = {}
        xs = self.s1(xs)
        for stage in range(1, 5):
            if stage > 1:
                xs = getattr(self, f"s{stage}")(xs)
            captured[f"res{stage}"] = list(xs)
            xs = self._fuse(stage, xs)
        xs = self.s5(xs)
        captured["pool5"] = xs
        head_in = xs if self.head_uses_audio or ai is None else [x for i, x in enumerate(xs) if i != ai]
        out = self.head(head_in, boxes) if isinstance(self.head, DetectionHead) else self.head(head_in)
        pairs: SyncPairs = []
        if want_sync and self.sync is not None and xs[ai] is not None:
            for level, proj in self.sync.items():
                feats = captured[level]
                pairs.append(proj(feats[:ai], feats[ai]))
        return out, pairs

    def _fuse(self, stage: int, xs: list) -> list:
        ai = self.audio_index
        mode = self.cfg.audio_fusion.mode if self.cfg.audio_fusion else None
        afuse = getattr(self, f"s{stage}_afuse", None)
        if afuse is not None and mode == "a_f_s" and xs[ai] is not None:
            xs[1] = afuse(xs[1], xs[ai])
        fuse = getattr(self, f"s{stage}_fuse", None)
        if fuse is not None:
            xs[0] = fuse(xs[0], xs[1])
        if afuse is not None and mode != "a_f_s" and xs[ai] is not None:
            xs[0] = afuse(xs[0], xs[ai])
        return xs


def build_model(cfg: ModelConfig, device: str | torch.device | None = None) -> VideoNet:
    """Build and initialise ``cfg``; ``device="meta"`` gives a shape-only model (FLOP counts)."""
    if device is None:
        return VideoNet(cfg)
    with torch.device(device):
        return VideoNet(cfg)


def example_inputs(cfg: ModelConfig, crop: int, batch: int = 1, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Random inputs of the right shapes: frames [N, 3, T, crop, crop], log-mel [N, 1, T, F]."""
    out = []
    for p in cfg.pathways:
        if isinstance(p, AudioPathwayConfig):
            shape = (batch, p.in_channels, p.frames, p.mel_bins)
        else:
            shape = (batch, p.in_channels, p.frames, crop, crop)
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
