"""Band-limited resampling of a waveform, as the public ImageBind preprocessing resamples sound.

The public code calls torchaudio's default resampler, a Hann-windowed sinc (6 zero crossings on
each side, cut-off at 99% of the lower Nyquist frequency). torchaudio has no release for the
torch this project pins, so the same filter is written here in PyTorch: for rates reduced to
p -> q (their greatest common divisor divided out), output sample j of each block of q is a dot
product of a kernel of its own with the input around position j * p / q; the q kernels are one
convolution with stride p. The kernels are computed in the waveform's dtype, as there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ZERO_CROSSINGS = 6  # lowpass_filter_width in torchaudio's terms
ROLLOFF = 0.99


def _kernels(rate_in: int, rate_out: int, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """[rate_out, 1, taps] windowed-sinc kernels and the padding each side needs (rates reduced)."""
    cutoff = min(rate_in, rate_out) * ROLLOFF  # in units of the reduced rates
    half_width = math.ceil(ZERO_CROSSINGS * rate_in / cutoff)
    positions = torch.arange(-half_width, half_width + rate_in, dtype=dtype) / rate_in
    offsets = torch.arange(0, -rate_out, -1, dtype=dtype)[:, None] / rate_out
    # Time from each output sample to each input tap, in periods of the cut-off frequency.
    t = ((offsets + positions[None, :]) * cutoff).clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS)
    window = torch.cos(t * math.pi / ZERO_CROSSINGS / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones((), dtype=dtype), t.sin() / t)
    return (sinc * (window * (cutoff / rate_in)))[:, None, :], half_width


def resample(waveform: torch.Tensor, rate_in: int, rate_out: int) -> torch.Tensor:
    """`waveform` [..., T] sampled at `rate_in` Hz, resampled to `rate_out` Hz: [..., ceil(T * out / in)]."""
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    if rate_in == rate_out:
        return waveform
    divisor = math.gcd(int(rate_in), int(rate_out))
    rate_in, rate_out = int(rate_in) // divisor, int(rate_out) // divisor
    kernels, half_width = _kernels(rate_in, rate_out, waveform.dtype)
    leading, length = waveform.shape[:-1], waveform.shape[-1]
    flat = F.pad(waveform.reshape(-1, length), (half_width, half_width + rate_in))
    blocks = F.conv1d(flat[:, None, :], kernels, stride=rate_in)  # [N, rate_out, blocks]
    interleaved = blocks.transpose(1, 2).reshape(flat.shape[0], -1)
    # The length as torchaudio rounds it: the ratio in float32, then its ceiling.
    out_length = int(torch.ceil(torch.tensor(rate_out * length / rate_in, dtype=torch.float32)))
    return interleaved[:, :out_length].reshape(*leading, out_length)
