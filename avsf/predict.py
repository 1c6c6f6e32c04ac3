"""Classify your own videos with a trained checkpoint::

    python -m avsf.predict VIDEO [VIDEO ...] --checkpoint data/train/final.pyth [--top 5] [--json]

Each video goes through the code that built the training store, with the settings the
checkpoint's ``data`` record saved (pipeline/train.py ``data_record``), into a temporary
one-video store, and is then scored as the test views score a stored clip::

    video ──decode_clip (decode: fps, short side, JPEG quality, mono audio rate)──> frame shard
          ──clip_log_mel (spectrogram settings)──> log-mel shard, stats.json = the run's audio stats
          ──ClipDataset(test mode, the run's sampling: test_clips x test_crops views)──>
          ──predict_views (softmax averaged over the views)──> top-K classes and scores

So a video scores here exactly as it would had it been one of the store's test clips. A
video without an audio stream gets what the store gives a clip without audio: silence (the
normalised mean) on the audio pathway, which is said plainly next to its scores.

Exit status: 0 when every video was scored, 1 when some could not be read (the others are
still scored), 2 when the checkpoint cannot be used (missing, unreadable, or without the
``data`` record, e.g. an official PySlowFast checkpoint).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np
import torch

from avsf.data.clip_dataset import ClipDataset, ClipSampling
from avsf.data.decode import DecodeSettings, decode_clip
from avsf.data.logmel import LogMelSettings, clip_log_mel
from avsf.data.store import CLASSES_NAME, INDEX_NAME, STATS_NAME, StoreEntry, open_shard, shard_name, write_index
from avsf.evaluate.views import predict_views
from avsf.evaluate.classification import ranked_classes
from avsf.io.atomic import write_json
from avsf.io.media import MediaError
from avsf.models import ModelConfig, build_model
from avsf.models.config import AudioPathwayConfig
from avsf.models.serialize import config_from_dict

SPLIT = "predict"  # the one split of a temporary store
CLIP_ID = "video"  # its one clip


class CheckpointError(ValueError):
    """A checkpoint predict cannot use; the message is one line for the user."""


# --------------------------------------------------------------------------- the checkpoint


@dataclass(frozen=True)
class DataRecord:
    """A checkpoint's ``data``: how the run's store was made and sampled, and the classes."""

    classes: list[str]
    decode: DecodeSettings
    sampling: ClipSampling
    logmel: LogMelSettings | None = None  # with audio only
    audio_stats: dict[str, float] | None = None  # mean and std of the training log-mels

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DataRecord":
        decode = DecodeSettings(**data["decode"])
        sampling = dict(data["sampling"])
        sampling["train_scale"] = tuple(sampling["train_scale"])
        known = {f.name for f in fields(ClipSampling)}
        logmel = None
        if data.get("spectrogram") is not None:
            logmel = LogMelSettings(sample_rate=decode.sample_rate, **data["spectrogram"])
        stats = data.get("audio_stats")
        return cls(list(data["classes"]), decode, ClipSampling(**{k: v for k, v in sampling.items() if k in known}),
                   logmel, {"mean": float(stats["mean"]), "std": float(stats["std"])} if stats else None)


@dataclass
class Predictor:
    """A trained network in eval mode on ``device``, with what its checkpoint says of its data."""

    model: torch.nn.Module
    cfg: ModelConfig
    data: DataRecord
    device: str

    @property
    def takes_audio(self) -> bool:
        return self.cfg.audio is not None

    @property
    def audio_only(self) -> bool:
        return all(isinstance(p, AudioPathwayConfig) for p in self.cfg.pathways)


def resolve_device(device: str) -> str:
    """``auto``: CUDA when this machine has it, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("--device cuda: this machine has no CUDA device (try --device cpu)")
    return device


def load_predictor(path: str | os.PathLike, device: str = "cpu") -> Predictor:
    """The network of a checkpoint the train stage wrote, built from its ``model_config``
    with its ``model_state`` (strictly: every weight present and used). Raises
    :class:`CheckpointError` when the file is missing, unreadable or has no ``data`` record."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about other pickle protocols before failing
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever torch says, the file is not one of ours
        raise CheckpointError(f"{path}: not a checkpoint of the train stage (torch cannot load it as one: "
                              f"{type(exc).__name__}); predict needs one with its 'data' record (classes, decode "
                              "and sampling settings), which an official PySlowFast checkpoint lacks") from None
    if not isinstance(state, dict) or "model_state" not in state:
        raise CheckpointError(f"{path}: not a model checkpoint (no model_state)")
    if not state.get("data") or "model_config" not in state:
        raise CheckpointError(f"{path}: the checkpoint has no 'data' record (classes, decode and sampling settings), "
                              "so a new video cannot be prepared as its store was; predict needs a checkpoint "
                              "written by the train stage (an official PySlowFast checkpoint has none)")
    try:
        cfg = config_from_dict(state["model_config"])
        data = DataRecord.from_dict(state["data"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed model_config or data record ({type(exc).__name__}: {exc})") from None
    if cfg.head.kind != "classification" or cfg.head.activation != "softmax":
        raise CheckpointError(f"{path}: a {cfg.head.kind} head ({cfg.head.activation}); predict ranks the classes "
                              "of a softmax classification head")
    if cfg.audio is not None and (data.logmel is None or data.audio_stats is None):
        raise CheckpointError(f"{path}: the model takes audio but the data record has no spectrogram settings "
                              "or audio statistics")
    model = build_model(cfg)
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: model_state does not fit model_config ({str(exc).splitlines()[0]})") from None
    return Predictor(model.to(device).eval(), cfg, data, device)


# --------------------------------------------------------------------------- one video


@dataclass(frozen=True)
class VideoStore:
    """A one-video store: its frame store, its log-mel store (None for a visual-only
    model), and what the video's sound turned out to be."""

    frames_dir: Path
    logmel_dir: Path | None
    has_audio: bool
    silent: bool  # an audio stream of digital silence (only known with a log-mel store)


def write_video_store(video: str | os.PathLike, directory: str | os.PathLike, data: DataRecord,
                      with_audio: bool) -> VideoStore:
    """Decode ``video`` into a frame store under ``directory`` (and, ``with_audio``, its
    log-mel store with the run's statistics) as the decode and spectrogram stages would,
    with the settings of ``data``. Raises :class:`MediaError` when the video cannot be used."""
    if not Path(video).is_file():
        raise MediaError("no_such_file", os.fspath(video))
    frames_dir = Path(directory) / "frames"
    frames_dir.mkdir(parents=True)
    clip = decode_clip(video, data.decode)
    shard = shard_name(0)
    with open_shard(frames_dir / shard) as writer:
        writer.add_clip(CLIP_ID, clip.store_attrs(), frames=clip.frames, audio=clip.audio)
    write_index(frames_dir / INDEX_NAME, [StoreEntry(CLIP_ID, "", SPLIT, "", shard, len(clip.frames), clip.fps,
                                                     clip.duration, clip.has_audio)])
    write_json(frames_dir / CLASSES_NAME, data.classes)
    if not with_audio:
        return VideoStore(frames_dir, None, clip.has_audio, False)
    logmel_dir = Path(directory) / "logmel"
    logmel_dir.mkdir()
    sound = clip_log_mel(clip.audio, data.logmel)
    with open_shard(logmel_dir / shard) as writer:
        writer.add_clip(CLIP_ID, sound.store_attrs(), logmel=sound.values)
    write_json(logmel_dir / STATS_NAME, data.audio_stats)
    return VideoStore(frames_dir, logmel_dir, clip.has_audio, sound.silent)


@dataclass
class Prediction:
    """One video's result: mean softmax ``scores`` [classes] over ``views`` loaded views, or
    ``error`` (one line) when the video could not be scored."""

    path: str
    scores: np.ndarray | None = None
    views: int = 0
    has_audio: bool | None = None
    note: str | None = None  # what the user should know about the scores (no audio, ...)
    error: str | None = None
    failures: list[dict[str, str]] = field(default_factory=list)  # views that failed to load

    def top(self, classes: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` highest classes and their scores, highest first (ties: the lower index)."""
        order = ranked_classes(self.scores, k)
        return [(classes[i], float(self.scores[i])) for i in order]


def audio_note(predictor: Predictor, store: VideoStore) -> str | None:
    """A plain sentence when the model takes audio and the video gives it none to hear."""
    if not predictor.takes_audio or (store.has_audio and not store.silent):
        return None
    what = "no audio track" if not store.has_audio else "the audio track is digital silence"
    if predictor.audio_only:
        return (f"{what}: this audio-only model hears only silence, so its scores say nothing about "
                "this video")
    return f"{what}: the audio pathway gets silence; the scores rest on the frames alone"


def predict_video(predictor: Predictor, video: str | os.PathLike, sampling: ClipSampling | None = None,
                  batch_size: int = 8, workers: int = 0) -> Prediction:
    """Score one video (see the module docstring); a video that cannot be read or scored
    comes back with ``error`` set instead of raising."""
    sampling = sampling or predictor.data.sampling
    path = os.fspath(video)
    with tempfile.TemporaryDirectory(prefix="avsf-predict-") as tmp:
        try:
            store = write_video_store(video, tmp, predictor.data, predictor.takes_audio)
        except MediaError as exc:
            return Prediction(path, error=f"cannot read the video: {exc}")
        except Exception as exc:  # noqa: BLE001 - one bad video never stops the others
            return Prediction(path, error=f"cannot read the video: {type(exc).__name__}: {exc}")
        try:
            dataset = ClipDataset(store.frames_dir, store.logmel_dir, SPLIT, "test", sampling)
            try:
                result = predict_views(predictor.model, predictor.cfg, dataset, batch_size=batch_size,
                                       device=predictor.device, workers=workers)
            finally:
                dataset.reader.close()
        except Exception as exc:  # noqa: BLE001 - one bad video never stops the others
            return Prediction(path, has_audio=store.has_audio,
                              error=f"cannot score the video: {type(exc).__name__}: {exc}")
    views = int(result.views[0])
    if views == 0:
        first = result.failures[0]["detail"] if result.failures else "no view loaded"
        return Prediction(path, views=0, has_audio=store.has_audio, error=f"no view could be loaded: {first}",
                          failures=list(result.failures))
    return Prediction(path, np.asarray(result.scores[0], dtype=np.float64), views, store.has_audio,
                      audio_note(predictor, store), failures=list(result.failures))


# --------------------------------------------------------------------------- output


def format_prediction(prediction: Prediction, classes: Sequence[str], k: int) -> str:
    """The text the command prints for one video: its path, then ``k`` ranked classes with
    their scores (3 decimals), then the note, if any."""
    if prediction.error:
        return f"{prediction.path}: error: {prediction.error}"
    top = prediction.top(classes, k)
    width = max(len(name) for name, _ in top)
    lines = [prediction.path]
    lines += [f"  {rank}. {name:<{width}}  {score:.3f}" for rank, (name, score) in enumerate(top, 1)]
    if prediction.note:
        lines.append(f"  {prediction.note}")
    return "\n".join(lines)


def prediction_record(prediction: Prediction, classes: Sequence[str], k: int) -> dict[str, Any]:
    """One video of ``--json``'s list."""
    if prediction.error:
        return {"path": prediction.path, "error": prediction.error}
    return {"path": prediction.path,
            "top": [{"class": name, "score": score} for name, score in prediction.top(classes, k)],
            "views": prediction.views, "has_audio": prediction.has_audio, "note": prediction.note}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("videos", nargs=-1, required=True)
@click.option("--checkpoint", "checkpoint", required=True, help="A checkpoint of the train stage (final.pyth).")
@click.option("--top", "top", default=5, show_default=True, type=click.IntRange(min=1), help="Classes to print.")
@click.option("--clips", type=click.IntRange(min=1), default=None,
              help="Temporal clips per video (default: the checkpoint's test_clips).")
@click.option("--crops", type=click.Choice(["1", "3"]), default=None,
              help="Spatial crops per clip (default: the checkpoint's test_crops).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Views per forward pass.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per video.")
def main(videos: tuple[str, ...], checkpoint: str, top: int, clips: int | None, crops: str | None, device: str,
         batch_size: int, as_json: bool) -> None:
    """Print the top classes of each VIDEO, decoded and sampled exactly as the training store was."""
    try:
        predictor = load_predictor(checkpoint, resolve_device(device))
    except CheckpointError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    sampling = predictor.data.sampling
    if clips is not None:
        sampling = replace(sampling, test_clips=clips)
    if crops is not None:
        sampling = replace(sampling, test_crops=int(crops))
    classes = predictor.data.classes
    records, failed = [], 0
    for video in videos:
        prediction = predict_video(predictor, video, sampling, batch_size)
        failed += prediction.error is not None
        if as_json:
            records.append(prediction_record(prediction, classes, top))
        elif prediction.error:
            click.echo(format_prediction(prediction, classes, top), err=True)
        else:
            click.echo(format_prediction(prediction, classes, top))
    if as_json:
        click.echo(json.dumps(records, indent=2))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
