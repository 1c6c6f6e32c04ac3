"""params.yaml, validated into one typed, frozen config per section.

Every stage loads the whole file through :func:`load_params`, so a wrong key anywhere is
caught before any stage writes anything. Errors are :class:`ParamsError` with a one-line
message naming the key and what is allowed; the stage CLI turns them into exit code 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

class ParamsError(ValueError):
    """A params file or override that does not validate; the message is one line."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class SlurmParams(Section):
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    array_parallelism: int = Field(16, gt=0)
    # Extra sbatch arguments, e.g. {constraint: volta32gb, exclusive: true}.
    additional_parameters: dict[str, str | int | float | bool] = {}


class LaunchParams(Section):
    cluster: Literal["local", "slurm", "debug", "auto"] = "local"
    log_dir: str = "logs/submitit"
    resources: Resources = Resources()
    slurm: SlurmParams = SlurmParams()
    stage_resources: dict[str, ResourceOverride] = {}

    def resources_for(self, stage: str) -> Resources:
        override = self.stage_resources.get(stage)
        if override is None:
            return self.resources
        return self.resources.model_copy(update=override.model_dump(exclude_none=True))


# --------------------------------------------------------------------------- demo


class DemoParams(Section):
    """The procedural demo world (see avsf.data.demo)."""

    seed: int = 0
    out_dir: str = "data/demo/remote"
    train_videos_per_class: int = Field(8, gt=0)
    val_videos_per_class: int = Field(3, gt=0)
    raw_seconds: tuple[float, float] = (4.0, 6.0)
    clip_seconds: int = Field(3, gt=0)  # Kinetics segments are whole seconds
    sizes: list[tuple[int, int]] = Field(
        default=[(160, 120), (128, 96), (176, 144), (96, 128), (192, 108)], min_length=1
    )
    fps_choices: list[float] = Field(default=[25.0, 29.97, 30.0], min_length=1)
    audio_rates: list[int] = Field(default=[44100, 48000], min_length=1)
    no_audio_fraction: float = Field(0.1, ge=0, le=1)
    corrupt_videos: int = Field(1, ge=0)
    missing_sources: int = Field(1, ge=0)
    shards: int = Field(2, gt=0)

    @field_validator("raw_seconds")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("must be [low, high] with 0 < low <= high")
        return value

    @field_validator("sizes")
    @classmethod
    def _encodable(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if any(w < 16 or h < 16 or w % 2 or h % 2 for w, h in value):
            raise ValueError("must be even [width, height] pairs of at least 16 (H.264 needs even sizes)")
        return value

    @field_validator("clip_seconds")
    @classmethod
    def _fits(cls, value: int, info: ValidationInfo) -> int:
        raw = info.data.get("raw_seconds")
        if raw is not None and value > raw[0]:
            raise ValueError(f"must not exceed the shortest raw video (raw_seconds[0] = {raw[0]})")
        return value


# --------------------------------------------------------------------------- download


class DownloadParams(Section):
    """Fetch raw videos named by Kinetics-format manifests and trim them into clips."""

    manifests: list[str] = Field(
        default=["data/demo/remote/kinetics_demo_train.csv", "data/demo/remote/kinetics_demo_val.csv"],
        min_length=1,
    )
    # A directory or file:// URL holding <youtube_id>.<ext>, an http(s) URL prefix, or "youtube".
    source: str = "data/demo/remote/videos"
    out_dir: str = "data/clips"
    ledger: str = "data/ledger/download.csv"
    metrics: str = "reports/metrics/download.json"
    raw_cache: str = "data/download_cache"
    keep_raw: bool = False
    workers: int = Field(2, gt=0)
    shards: int = Field(2, gt=0)
    retries: int = Field(3, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    timeout_s: float = Field(30.0, gt=0)
    crf: int = Field(18, ge=0, le=51)


class Params(Section):
    launch: LaunchParams = LaunchParams()
    demo: DemoParams = DemoParams()
    download: DownloadParams = DownloadParams()


# --------------------------------------------------------------------------- loading


def load_params(path: str | os.PathLike = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """Read ``path``, apply ``key.sub=value`` overrides, and validate everything."""
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
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{path}: {describe_error(exc)}") from None


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


def describe_error(exc: ValidationError) -> str:
    """The first validation error as 'key: what is allowed (got value)'."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key; allowed: {_allowed(Params, loc[:-1])}"
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
