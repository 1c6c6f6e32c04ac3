"""The AVSlowFast model family: configs, builders, heads, RoIAlign, checkpoints, FLOPs."""

from avsf.models.config import (
    PAPER_PRESETS,
    AudioFusionConfig,
    AudioPathwayConfig,
    HeadConfig,
    LateralConfig,
    ModelConfig,
    SyncConfig,
    VisualPathwayConfig,
    model_config,
    preset,
)

__all__ = [
    "PAPER_PRESETS", "AudioFusionConfig", "AudioPathwayConfig", "HeadConfig", "LateralConfig",
    "ModelConfig", "SyncConfig", "VisualPathwayConfig", "VideoNet", "build_model",
    "example_inputs", "model_config", "preset", "to_channels_last",
]

# The network's names come from avsf.models.network on first use: the configs alone need no
# torch, and pipeline.params (which every stage loads) reads them, so stages that never
# build a model (demo, download, decode) start without importing torch (seconds each).
_NETWORK = ("VideoNet", "build_model", "example_inputs", "to_channels_last")


def __getattr__(name: str):
    if name in _NETWORK:
        from avsf.models import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
