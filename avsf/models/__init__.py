"""The AVSlowFast model family: configs, builders, heads, RoIAlign, checkpoints, FLOPs.

The configs (:mod:`avsf.models.config`) import without torch: the params schema reads them, and
every data stage's job validates params, so a decode or download job does not pay torch's
import (a second of CPU and 180 MB per job, 8,000 jobs a Kinetics decode). The network's
names load torch on first use."""

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

_NETWORK = ("VideoNet", "build_model", "example_inputs", "to_channels_last")

__all__ = [
    "PAPER_PRESETS", "AudioFusionConfig", "AudioPathwayConfig", "HeadConfig", "LateralConfig",
    "ModelConfig", "SyncConfig", "VisualPathwayConfig", "VideoNet", "build_model",
    "example_inputs", "model_config", "preset", "to_channels_last",
]


def __getattr__(name: str):
    if name in _NETWORK:
        from avsf.models import network

        return getattr(network, name)
    raise AttributeError(f"module 'avsf.models' has no attribute {name!r}")
