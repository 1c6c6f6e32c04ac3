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
from avsf.models.network import VideoNet, build_model, example_inputs, to_channels_last

__all__ = [
    "PAPER_PRESETS", "AudioFusionConfig", "AudioPathwayConfig", "HeadConfig", "LateralConfig",
    "ModelConfig", "SyncConfig", "VisualPathwayConfig", "VideoNet", "build_model",
    "example_inputs", "model_config", "preset", "to_channels_last",
]
