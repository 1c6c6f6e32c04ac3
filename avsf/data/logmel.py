"""Log-mel spectrograms in plain torch, as the AVSlowFast paper takes them.

    waveform [samples] ──STFT (Hann, centred, reflect pad)──> |X|^2 [freq, time]
        ──HTK triangular mel filterbank──> S [n_mels, time] ──log(S + eps)──> [time, n_mels]

The defaults are the paper's: 16 kHz, 32 ms window (512 samples), 16 ms hop (256), 80 mel
bins, log(S + 1e-8). The result equals ``torchaudio.transforms.MelSpectrogram(sample_rate,
n_fft, win_length, hop_length, n_mels=80, mel_scale="htk")`` followed by the same log; this
module exists because torchaudio's wheels do not import next to every torch build.

Frame ``j`` is centred on sample ``j * hop_length`` (``center=True``), i.e. at time
``j * hop_length / sample_rate``; a waveform of ``n`` samples gives ``1 + n // hop_length`` frames.

The authors' features (fanyix/SlowFast's ``librosa.feature.melspectrogram(..., htk=True,
center=False)``, librosa's default Slaney normalisation) are ``mel_norm="slaney"`` (each
triangle scaled to area 1: by ``2 / (upper - lower corner in Hz)``) and ``center=False``
(frame ``j`` is samples ``[j * hop, j * hop + n_fft)``, unpadded: it is centred
``n_fft / 2`` samples later, ``first_row_s``, and ``n`` samples give
``1 + (n - n_fft) // hop_length`` frames; a waveform shorter than one window is padded with
zeros to one frame).

:func:`clip_log_mel` is one clip's entry in the log-mel store, from the frame store's int16
audio: what the ``spectrogram`` stage writes and ``avsf.predict`` writes for a new video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from avsf.data.store import PCM_SCALE

# Part of every log-mel shard's fingerprint: bump it when the same frame shard and settings
# would give a different log-mel shard, so shards made by older code are made again.
# 2: digital-silence clips marked (``silent``) and left out of the statistics.
LOGMEL_VERSION = 2
# A clip whose raw log-mel never rises above this is digital silence (a muted upload's
# track of zeros, log(0 + 1e-8) everywhere): real quiet sound lies well above it.
SILENT_LOG_POWER = math.log(1e-6)


def is_silent(logmel: torch.Tensor) -> bool:
    """Whether a raw log-mel ``[time, n_mels]`` is digital silence (see SILENT_LOG_POWER)."""
    return bool(logmel.numel() == 0 or logmel.max() <= SILENT_LOG_POWER)


@dataclass(frozen=True)
class LogMelSettings:
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 512
    hop_length: int = 256
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    log_offset: float = 1e-8
    mel_norm: str | None = None  # None: triangles of peak 1 | "slaney": of area 1 (librosa's default)
    center: bool = True  # frame j centred on sample j * hop (reflect-padded) | starting there (librosa's center=False)

    def __post_init__(self) -> None:
        if self.mel_norm not in (None, "slaney"):
            raise ValueError(f"mel_norm must be None or 'slaney', not {self.mel_norm!r}")

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def first_row_s(self) -> float:
        """When frame 0 is centred, in seconds from the first sample."""
        return 0.0 if self.center else self.n_fft / 2 / self.sample_rate

    @property
    def top_hz(self) -> float:
        """The upper edge of the filterbank: ``f_max``, or half the sample rate."""
        return self.f_max if self.f_max is not None else self.sample_rate / 2

    def num_frames(self, samples: int) -> int:
        if self.center:
            return 1 + samples // self.hop_length
        return 1 + max(samples - self.n_fft, 0) // self.hop_length

    def store_attrs(self) -> dict[str, float | int | str | bool]:
        """The settings as each clip group of the log-mel store records them (README, "Store format")."""
        return {"sample_rate": self.sample_rate, "n_fft": self.n_fft, "win_length": self.win_length,
                "hop_length": self.hop_length, "n_mels": self.n_mels, "f_min": self.f_min,
                "f_max": self.top_hz, "log_offset": self.log_offset, "mel_norm": self.mel_norm or "none",
                "center": self.center, "frames_per_second": self.frames_per_second,
                "first_row_s": self.first_row_s}


def hz_to_mel(hz: float | torch.Tensor) -> float | torch.Tensor:
    """HTK mel scale."""
    if isinstance(hz, torch.Tensor):
        return 2595.0 * torch.log10(1.0 + hz / 700.0)
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: float | torch.Tensor) -> float | torch.Tensor:
    """Inverse of :func:`hz_to_mel` (the same expression serves floats and tensors)."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(settings: LogMelSettings = LogMelSettings()) -> torch.Tensor:
    """Triangular filters [n_fft // 2 + 1, n_mels] on the HTK scale: of peak 1, or of area 1
    with ``mel_norm="slaney"``.

    Filter m rises linearly from corner m to its centre m + 1 and falls to corner m + 2,
    the n_mels + 2 corners being evenly spaced in mel between f_min and f_max.
    """
    n_freqs = settings.n_fft // 2 + 1
    bins_hz = torch.linspace(0, settings.sample_rate // 2, n_freqs, dtype=torch.float64)
    corners_mel = torch.linspace(hz_to_mel(settings.f_min), hz_to_mel(settings.top_hz), settings.n_mels + 2,
                                 dtype=torch.float64)
    corners_hz = mel_to_hz(corners_mel)
    lower, centre, upper = corners_hz[:-2], corners_hz[1:-1], corners_hz[2:]
    freqs = bins_hz[:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    filters = torch.clamp(torch.minimum(rising, falling), min=0)
    if settings.mel_norm == "slaney":  # a triangle of height h over its base has area h * base / 2
        filters = filters * (2.0 / (upper - lower))
    return filters.to(torch.float32)


def log_mel(waveform: torch.Tensor, settings: LogMelSettings = LogMelSettings()) -> torch.Tensor:
    """``waveform``: float [samples] or [batch, samples] in [-1, 1], at ``settings.sample_rate``.
    Returns float32 [time, n_mels] (or [batch, time, n_mels])."""
    frames = settings.num_frames(waveform.shape[-1])
    waveform = waveform.to(torch.float32)
    # Reflect padding needs more than half a window; an unpadded frame a whole one
    shortest = settings.n_fft // 2 + 1 if settings.center else settings.n_fft
    if waveform.shape[-1] < shortest:
        waveform = torch.nn.functional.pad(waveform, (0, shortest - waveform.shape[-1]))
    window = torch.hann_window(settings.win_length, dtype=torch.float32, device=waveform.device)
    spectrum = torch.stft(
        waveform, n_fft=settings.n_fft, hop_length=settings.hop_length,
        win_length=settings.win_length, window=window, center=settings.center,
        pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
    )
    power = spectrum.abs().pow(2.0)  # [..., freq, time]
    filters = mel_filterbank(settings).to(power.device)
    mel = torch.matmul(power.transpose(-1, -2), filters)  # [..., time, n_mels]
    return torch.log(mel[..., :frames, :] + settings.log_offset)


@dataclass(frozen=True)
class ClipLogMel:
    """One clip of the log-mel store: ``values`` float16 [time, n_mels] (None without audio),
    whether they are digital silence, and the seconds of audio they cover."""

    values: np.ndarray | None
    silent: bool
    seconds: float
    settings: LogMelSettings

    @property
    def has_audio(self) -> bool:
        return self.values is not None

    def store_attrs(self) -> dict[str, float | int | bool]:
        """The clip group's attributes in the log-mel store (README, "Store format")."""
        return {**self.settings.store_attrs(), "has_audio": self.has_audio, "silent": self.silent}


def clip_log_mel(pcm: np.ndarray | None, settings: LogMelSettings = LogMelSettings()) -> ClipLogMel:
    """The log-mel store's entry for a clip whose frame-store audio is ``pcm`` (int16 mono at
    ``settings.sample_rate``; None when the clip has none): log-mel as float16, the precision
    the store keeps and the dataset reads, marked silent when the raw values are digital silence."""
    if pcm is None:
        return ClipLogMel(None, False, 0.0, settings)
    wave = torch.from_numpy(pcm.astype(np.float32) / PCM_SCALE)
    raw = log_mel(wave, settings)
    return ClipLogMel(raw.numpy().astype(np.float16), is_silent(raw), len(wave) / settings.sample_rate, settings)
