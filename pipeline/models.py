"""params.yaml's ``model`` section as the library's model config: the one translation every
stage that builds a network (the model report, training, evaluation) uses."""

from __future__ import annotations

from avsf.models import HeadConfig, ModelConfig, SyncConfig, model_config
from pipeline.params import ModelParams


def config_from_params(p: ModelParams, head: HeadConfig | None = None) -> ModelConfig:
    """params.yaml's ``model`` section as a library config; ``head`` replaces the section's
    (a fine-tuning dataset's head: its class counts come from its annotation files)."""
    return model_config(
        p.arch, p.depth, p.frames, p.stride, alpha_f=p.alpha_f, beta_f=p.beta_f, alpha_a=p.alpha_a,
        beta_a=p.beta_a, lateral_stages=tuple(p.lateral_stages), fusion=p.fusion,
        fusion_stages=tuple(p.fusion_stages), fusion_pool5=p.fusion_pool5,
        nonlocal_blocks=p.nonlocal_blocks, nonlocal_layout=p.nonlocal_layout,
        temporal_layout=p.temporal_layout, drop_pathway=p.drop_pathway,
        drop_pathway_mode=p.drop_pathway_mode,
        sync=SyncConfig(scale=p.sync_scale, margin=p.sync_margin) if p.sync else False,
        mel_bins=p.mel_bins, tiny=p.tiny, width=p.width,
        head=head or HeadConfig(kind=p.head, num_classes=p.num_classes, dropout=p.dropout,
                                activation="sigmoid" if p.head == "ava" else "softmax", test_pool=p.test_pool),
    )
