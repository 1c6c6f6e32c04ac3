"""The peer of bench/train_step.py: pytorchvideo's AVSlowFast, built as its users build it.

``create_audio_visual_slowfast()`` with its defaults is AVSlowFast R50 8x8 for 400 classes
(Slow 8 frames, Fast 32, audio 128 log-mel frames x 80 bins, laid out as its docstring says:
[N, 1, time, 1, frequency]). Tiny (``--tiny`` of the bench) keeps its depth (R50) and
narrows it (stem widths 16, 2, 8 instead of 64, 8, 32) with half the frames; off 224 the
head's pooling is sized to the inputs.

Two things are done to it, neither in its files:
- its fusion's forward prints the fused tensor's size at every call (a leftover debug line
  in pytorchvideo 0.1.5): a no-op ``print`` in that module's globals silences it;
- ``pytorchvideo.models`` imports torchvision's RoIAlign at import time for its detection
  head, which AVSlowFast does not use. Where torchvision does not import (CPU test machines:
  PyPI's torchvision does not load beside torch's CPU build) a stand-in that refuses to be
  built lets pytorchvideo import; the GPU machine has the real one.
"""

from __future__ import annotations

import sys
import types

import torch

NUM_CLASSES = 400


def _import_builder():
    """pytorchvideo's builder and whether torchvision had to be stood in for."""
    stand_in = False
    try:
        import torchvision.ops  # noqa: F401
    except Exception:  # noqa: BLE001  (absent, or a build that does not load beside this torch)
        stand_in = True
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]

        class RoIAlign:  # noqa: D401  (only the detection head builds one)
            def __init__(self, *args, **kwargs):
                raise RuntimeError("torchvision is not available: RoIAlign is a stand-in")

        vision, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.RoIAlign, vision.ops = RoIAlign, ops
        sys.modules.update({"torchvision": vision, "torchvision.ops": ops})
    try:
        from pytorchvideo.models import audio_visual_slowfast
    finally:
        if stand_in:  # nothing else in this process sees the stand-in
            del sys.modules["torchvision"], sys.modules["torchvision.ops"]
    audio_visual_slowfast.print = lambda *args, **kwargs: None  # the fusion's debug print
    return audio_visual_slowfast.create_audio_visual_slowfast, stand_in


def frames(tiny: bool) -> tuple[int, int, int, int]:
    """(Slow frames, Fast frames, log-mel frames, mel bins) of the peer's inputs."""
    return (4, 16, 64, 16) if tiny else (8, 32, 128, 80)


def build(crop: int = 224, tiny: bool = False) -> tuple[torch.nn.Module, dict]:
    """The peer model (on the CPU, in training mode) for ``crop`` x ``crop`` frames, and how
    it was built: at 224 and full size, the builder's defaults alone."""
    create, stand_in = _import_builder()
    import pytorchvideo

    info = {"pytorchvideo": getattr(pytorchvideo, "__version__", "?"), "torchvision_stand_in": stand_in,
            "builder": "pytorchvideo.models.audio_visual_slowfast.create_audio_visual_slowfast"}
    kwargs: dict = {"model_num_class": NUM_CLASSES}
    if tiny:
        kwargs["stem_dim_outs"] = (16, 2, 8)
    if tiny or crop != 224:  # the head pools whole maps: its kernels follow the input sizes
        slow, fast, mel_frames, mel_bins = frames(tiny)
        kwargs["head_pool_kernel_sizes"] = ((slow, crop // 32, crop // 32), (fast, crop // 32, crop // 32),
                                            (mel_frames // 8, 1, mel_bins // 8))
    return create(**kwargs), {**info, "arguments": {k: str(v) for k, v in kwargs.items()}}


def example_inputs(batch: int, crop: int, device: torch.device, tiny: bool = False) -> list[torch.Tensor]:
    """Random Slow, Fast and audio inputs in the peer's layout."""
    slow, fast, mel_frames, mel_bins = frames(tiny)
    return [torch.randn(batch, 3, slow, crop, crop, device=device),
            torch.randn(batch, 3, fast, crop, crop, device=device),
            torch.randn(batch, 1, mel_frames, 1, mel_bins, device=device)]
