"""The log-mel filterbank ImageBind's audio encoder reads: Kaldi's `compute-fbank-feats` as the
public preprocessing configures it (through torchaudio.compliance.kaldi.fbank).

Settings: 25 ms frames every 10 ms, only frames that fit whole ("snip edges"), no dither, each
frame's mean removed, pre-emphasis 0.97 (the first sample repeated before it), a symmetric Hann
window, zero-padded to the next power of two for the FFT, the power spectrum, 128 triangular
filters evenly spaced on the mel scale 1127 ln(1 + f / 700) from 20 Hz to the Nyquist frequency,
and the natural log, floored at float32's epsilon. No energy column (use_energy off, so HTK
compatibility changes nothing). Everything is computed in the waveform's dtype as there.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

FRAME_MS, SHIFT_MS = 25.0, 10.0
PREEMPHASIS = 0.97
LOW_HZ = 20.0
MEL_BINS = 128


def _mel(hz: torch.Tensor | float) -> torch.Tensor | float:
    if isinstance(hz, torch.Tensor):
        return 1127.0 * (1.0 + hz / 700.0).log()
    return 1127.0 * math.log(1.0 + hz / 700.0)


@functools.lru_cache(maxsize=8)
def mel_filters(mel_bins: int, fft_size: int, sample_rate: float) -> torch.Tensor:
    """[mel_bins, fft_size // 2 + 1] triangles (float32); the Nyquist bin gets no weight, as in Kaldi."""
    nyquist = 0.5 * sample_rate
    low, high = _mel(LOW_HZ), _mel(nyquist)
    delta = (high - low) / (mel_bins + 1)
    index = torch.arange(mel_bins).unsqueeze(1)
    left, centre, right = low + index * delta, low + (index + 1.0) * delta, low + (index + 2.0) * delta
    bin_mels = _mel(sample_rate / fft_size * torch.arange(fft_size / 2)).unsqueeze(0)
    rising = (bin_mels - left) / (centre - left)
    falling = (right - bin_mels) / (right - centre)
    triangles = torch.max(torch.zeros(1), torch.min(rising, falling))
    return F.pad(triangles, (0, 1))


def frames_of(samples: int, sample_rate: float) -> int:
    """How many whole frames `samples` samples give (0 when fewer than one frame)."""
    size, shift = int(sample_rate * FRAME_MS / 1000), int(sample_rate * SHIFT_MS / 1000)
    return 0 if samples < size else 1 + (samples - size) // shift


def log_mel_filterbank(waveform: torch.Tensor, sample_rate: float, mel_bins: int = MEL_BINS) -> torch.Tensor:
    """[frames, mel_bins] log-mel energies of a mono waveform [T] (at least one frame long)."""
    size, shift = int(sample_rate * FRAME_MS / 1000), int(sample_rate * SHIFT_MS / 1000)
    count = frames_of(waveform.shape[0], sample_rate)
    if count == 0:
        raise ValueError(f"{waveform.shape[0]} samples are fewer than one {FRAME_MS:g} ms frame ({size})")
    frames = waveform.contiguous().as_strided((count, size), (shift * waveform.stride(0), waveform.stride(0)))
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = F.pad(frames.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)[:, :-1]
    frames = frames - PREEMPHASIS * previous
    frames = frames * torch.hann_window(size, periodic=False, dtype=waveform.dtype)
    fft_size = 1 << (size - 1).bit_length()
    frames = F.pad(frames, (0, fft_size - size))
    power = torch.fft.rfft(frames).abs().pow(2.0)
    energies = torch.mm(power, mel_filters(mel_bins, fft_size, float(sample_rate)).to(waveform.dtype).T)
    return torch.max(energies, torch.tensor(torch.finfo(torch.float32).eps, dtype=waveform.dtype)).log()
