"""Model configs as plain, JSON-able dicts and back: what a checkpoint records of the model,
so that the network can be rebuilt from the checkpoint alone.

Nested configs keep their class name under ``"type"``; tuples are written as lists and read
back as tuples (every sequence in a config is a tuple).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from avsf.models import config as configs

_TYPES = {cls.__name__: cls for cls in vars(configs).values()
          if isinstance(cls, type) and dataclasses.is_dataclass(cls)}


def config_to_dict(cfg: Any) -> Any:
    """A config dataclass (or any value inside one) as dicts, lists and scalars."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {"type": type(cfg).__name__,
                **{f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}}
    if isinstance(cfg, (tuple, list)):
        return [config_to_dict(v) for v in cfg]
    return cfg


def config_from_dict(data: Any) -> Any:
    """The inverse of :func:`config_to_dict`. Fields a newer config has and the dict lacks
    keep their defaults; unknown fields are an error (the dict is from another model)."""
    if isinstance(data, dict) and "type" in data:
        cls = _TYPES.get(data["type"])
        if cls is None:
            raise ValueError(f"unknown config type {data['type']!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {"type"}
        if unknown:
            raise ValueError(f"{data['type']}: unknown fields {sorted(unknown)}")
        return cls(**{k: config_from_dict(v) for k, v in data.items() if k != "type"})
    if isinstance(data, list):
        return tuple(config_from_dict(v) for v in data)
    if isinstance(data, dict):
        return {k: config_from_dict(v) for k, v in data.items()}
    return data
