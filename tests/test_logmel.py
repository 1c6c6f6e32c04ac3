"""Log-mel spectrograms: closed-form checks everywhere, torchaudio's MelSpectrogram where it imports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avsf.data.logmel import LogMelSettings, hz_to_mel, log_mel, mel_filterbank, mel_to_hz

PAPER = LogMelSettings()  # 16 kHz, 512 window and FFT, hop 256, 80 HTK mel bins, log(S + 1e-8)
# fanyix/SlowFast's librosa.feature.melspectrogram(sr=16000, n_fft=512, win_length=512, hop_length=256,
# n_mels=80, htk=True, center=False): librosa's default Slaney area normalisation, unpadded frames
AUTHORS = LogMelSettings(mel_norm="slaney", center=False)


def tone(hz: float, seconds: float = 1.0, rate: int = 16000, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    return (amplitude * torch.sin(2 * math.pi * hz * t)).float()


def test_htk_mel_scale_round_trips_and_hits_known_values():
    assert hz_to_mel(700.0) == pytest.approx(2595 * math.log10(2))
    assert hz_to_mel(1000.0) == pytest.approx(999.99, abs=0.01)  # ~1000 mel at 1 kHz by design
    assert mel_to_hz(hz_to_mel(4321.0)) == pytest.approx(4321.0)


def test_filterbank_triangles_peak_at_their_centres():
    fb = mel_filterbank(PAPER)
    assert fb.shape == (257, 80) and fb.dtype == torch.float32
    assert fb.min() >= 0 and fb.max() <= 1
    # Corner m + 1 is filter m's centre; a bin that sits on it has weight ~1 there.
    corners = mel_to_hz(torch.linspace(0, hz_to_mel(8000.0), 82, dtype=torch.float64))
    bin_hz = 8000 / 256
    for m in (10, 40, 79):
        centre_bin = round(float(corners[m + 1]) / bin_hz)
        assert int(fb[centre_bin].argmax()) == m
    # Between the first and last centre the overlapping triangles sum to one.
    inside = [b for b in range(257) if corners[1] <= b * bin_hz <= corners[80]]
    assert torch.allclose(fb[inside].sum(dim=1), torch.ones(len(inside)), atol=1e-5)


@pytest.mark.parametrize("hz", [250.0, 1000.0, 3000.0, 6500.0])
def test_pure_tone_peaks_in_its_mel_bin(hz):
    spectrum = log_mel(tone(hz), PAPER)
    assert spectrum.shape == (PAPER.num_frames(16000), 80)
    # Mel bin m is centred at corner m + 1 of 82 corners evenly spaced in mel from 0 to 8 kHz.
    step = hz_to_mel(8000.0) / 81
    expected = round(hz_to_mel(hz) / step) - 1
    peaks = spectrum[2:-2].argmax(dim=1)  # away from the reflect-padded edges
    assert torch.all((peaks - expected).abs() <= 1), (peaks.unique(), expected)
    assert torch.mode(peaks).values == expected


def test_silence_is_the_log_floor():
    spectrum = log_mel(torch.zeros(16000), PAPER)
    assert torch.equal(spectrum, torch.full_like(spectrum, math.log(1e-8)))


def test_frames_are_centred_on_multiples_of_the_hop():
    click = torch.zeros(16000)
    click[8000] = 1.0  # frame j is centred on sample 256 j; 8000 / 256 = 31.25
    energy = log_mel(click, PAPER).exp().sum(dim=1)
    assert int(energy.argmax()) == 31
    assert PAPER.num_frames(16000) == 63 and PAPER.frames_per_second == 62.5


def test_batched_equals_one_by_one_and_short_input_keeps_its_frame_count():
    waves = torch.stack([tone(440.0, 0.5), tone(2000.0, 0.5)])
    batch = log_mel(waves, PAPER)
    assert torch.allclose(batch[1], log_mel(waves[1], PAPER))
    assert log_mel(torch.zeros(100), PAPER).shape == (1, 80)


def _torchaudio():
    try:  # its wheel links CUDA and can fail to import next to a CPU-only torch: skip then
        import torchaudio
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"torchaudio does not import here: {type(exc).__name__}")
    return torchaudio


@pytest.mark.parametrize("settings", [PAPER, AUTHORS], ids=["paper", "authors"])
def test_matches_torchaudio_mel_spectrogram_in_log_space(settings):
    torchaudio = _torchaudio()
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=512, win_length=512, hop_length=256, n_mels=80, mel_scale="htk",
        f_min=0.0, f_max=None, power=2.0, center=settings.center, pad_mode="reflect", norm=settings.mel_norm,
    )
    generator = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(2 * 16000, generator=generator) + tone(440.0, 2.0) + tone(3100.0, 2.0, amplitude=0.2)
    expected = torch.log(reference(wave) + 1e-8).transpose(0, 1)  # [time, n_mels]
    ours = log_mel(wave, settings)
    assert ours.shape == expected.shape
    assert torch.allclose(ours, expected, atol=1e-4, rtol=0)
    fbanks = torchaudio.functional.melscale_fbanks(257, 0.0, 8000.0, 80, 16000, norm=settings.mel_norm, mel_scale="htk")
    assert torch.allclose(mel_filterbank(settings), fbanks, atol=1e-6 * float(fbanks.max()), rtol=0)


def slaney_filterbank(n_fft: int = 512, rate: int = 16000, n_mels: int = 80) -> np.ndarray:
    """The authors' filterbank from its definition (librosa.filters.mel, htk=True, norm="slaney"):
    n_mels + 2 corners evenly spaced on the HTK mel scale from 0 to rate / 2, triangle m
    rising from corner m to m + 1 and falling to m + 2, times 2 / (corner m + 2 - corner m)
    in Hz, so that each triangle, as a function of Hz, has area 1."""
    top = 2595 * np.log10(1 + rate / 2 / 700)
    corners = 700 * (10 ** (np.linspace(0, top, n_mels + 2) / 2595) - 1)
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    out = np.zeros((n_fft // 2 + 1, n_mels))
    for m in range(n_mels):
        lo, mid, hi = corners[m : m + 3]
        out[:, m] = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid))) * 2 / (hi - lo)
    return out


def test_slaney_filterbank_is_the_area_normalised_triangles():
    fb = mel_filterbank(AUTHORS).double().numpy()
    assert np.allclose(fb, slaney_filterbank(), rtol=1e-6, atol=0)
    # Area 1 in Hz: where a triangle spans many FFT bins, its samples sum to 1 / bin width.
    wide = fb[:, 60:].sum(axis=0) * (16000 / 512)
    assert np.allclose(wide, 1.0, atol=0.01)
    # Only the scale differs from the peak-1 triangles: filter m by 2 / (its width in Hz).
    peak = mel_filterbank(PAPER).double().numpy()
    ratio = np.divide(fb, peak, out=np.zeros_like(fb), where=peak > 1e-3)
    for m in (0, 40, 79):
        column = ratio[peak[:, m] > 1e-3, m]
        assert np.ptp(column) < 1e-6 * column.max()
    assert ratio[:, 0].max() > 10 * ratio[:, 79].max()  # 45 Hz wide against 525 Hz


def test_the_authors_features_are_unpadded_frames_of_area_normalised_triangles():
    """center=False: frame j is the Hann-windowed samples [256 j, 256 j + 512), no padding,
    so 1 + (n - 512) // 256 frames, row 0 centred 16 ms in; log(slaney mel power + 1e-8)."""
    generator = torch.Generator().manual_seed(1)
    wave = 0.1 * torch.randn(16000 + 100, generator=generator) + tone(700.0, 1.00625)
    ours = log_mel(wave, AUTHORS).double().numpy()
    frames = 1 + (len(wave) - 512) // 256
    assert ours.shape == (frames, 80) == (AUTHORS.num_frames(len(wave)), 80)
    assert AUTHORS.first_row_s == 0.016 and AUTHORS.store_attrs()["center"] is False
    x = wave.double().numpy()
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)  # periodic, as librosa's and torch's
    power = np.stack([np.abs(np.fft.rfft(hann * x[256 * j : 256 * j + 512])) ** 2 for j in range(frames)])
    expected = np.log(power @ slaney_filterbank() + 1e-8)
    assert np.allclose(ours, expected, atol=2e-4, rtol=0)
    # The centred features differ: other frames (one more, shifted by half a window) and scale.
    assert log_mel(wave, PAPER).shape[0] == 1 + len(wave) // 256
    # A click at sample 8000 is loudest in the unpadded frame centred nearest it: (8000 - 256) / 256.
    click = torch.zeros(16000)
    click[8000] = 1.0
    assert int(log_mel(click, AUTHORS).exp().sum(dim=1).argmax()) == 30
    assert log_mel(torch.zeros(300), AUTHORS).shape == (1, 80)  # shorter than a window: padded to one frame
