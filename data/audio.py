"""Sound files into ImageBind's audio input, exactly as the public preprocessing makes it.

    load_audio("dog.wav") -> FloatTensor[3, 1, 128, 204]   (3 clips of 2 s, 128 mel bins, 204 frames)

The steps of the public `load_and_transform_audio_data`: decode every channel to float in [-1, 1]
(16-bit samples / 32768); resample to 16 kHz (data/resample.py); place 3 clips of 2 s evenly
(data/clip_timing.py) and cut each at whole samples; subtract the clip's mean from the clip, in
place, on the shared waveform (so where clips overlap, a later clip sees the earlier clip's
subtraction: the public code does this, the released weights saw it); the log-mel filterbank of
the first channel (data/filterbank.py); 204 frames, padded with zeros or cut; (x + 4.268) / 9.138.

Decoding uses PyAV, which carries its own FFmpeg: WAV, FLAC, MP3, Ogg, M4A and the sound of video
files, with nothing to install beside it; torchaudio, which the public code uses, has no release
for the torch pinned here. Plain PCM WAV files are read by the standard library instead: faster,
and the same numbers. A file that is missing, has no decodable sound, is silent or is
shorter than one 25 ms frame raises BadInput naming the file (the bad-sample policy's reasons).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data.bad_samples import SILENT_AUDIO, TOO_SHORT, UNREADABLE_AUDIO, BadInput
from data.clip_timing import clip_timepoints
from data.filterbank import MEL_BINS, frames_of, log_mel_filterbank
from data.media_files import media_stream
from data.resample import resample

SAMPLE_RATE = 16000
CLIP_SECONDS = 2
CLIPS = 3
TARGET_FRAMES = 204
MEAN, STD = -4.268, 9.138  # the public preprocessing's filterbank statistics

# Integer sample formats and the divisor that maps them to [-1, 1), as torchaudio loads them.
_INTEGER_SCALE = {"s16": 32768.0, "s32": 2147483648.0, "u8": 128.0}


def _samples_as_float(frame) -> np.ndarray:
    """One decoded audio frame as float32 [channels, samples]."""
    array = frame.to_ndarray()
    name = frame.format.name
    base = name.rstrip("p")
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:  # interleaved: [1, samples * channels]
        array = array.reshape(-1, channels).T
    if base == "u8":
        return (array.astype(np.float32) - 128.0) / 128.0
    if base in _INTEGER_SCALE:
        return array.astype(np.float32) / _INTEGER_SCALE[base]
    return array.astype(np.float32)


def _read_pcm_wav(path: Path) -> tuple[np.ndarray, int] | None:
    """A plain PCM WAV file in one read (float32 [channels, samples], rate); None for any other file.

    PyAV decodes a WAV file in frames of about a thousand samples, each a Python call: 50 ms for
    5 s of stereo, more than the rest of the preprocessing. The standard library reads it at once.
    """
    try:
        with wave.open(str(path), "rb") as sound:
            width, channels, rate = sound.getsampwidth(), sound.getnchannels(), sound.getframerate()
            data = sound.readframes(sound.getnframes())
    except (wave.Error, EOFError, OSError):
        return None  # not a PCM WAV (float, compressed, another container): PyAV reads it
    if width == 3:  # 24-bit: widen to 32-bit, the sample in the upper three bytes
        raw = np.frombuffer(data, np.uint8).reshape(-1, 3)
        data = np.pad(raw, ((0, 0), (1, 0))).tobytes()
        width = 4
    kind = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    samples = np.frombuffer(data, kind).reshape(-1, channels).T
    if width == 1:
        return (samples.astype(np.float32) - 128.0) / 128.0, rate
    return samples.astype(np.float32) / float(2 ** (8 * width - 1)), rate


def decode_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """(waveform float32 [channels, samples] in [-1, 1], sample rate) of the first audio stream."""
    if Path(path).suffix.lower() == ".wav" and Path(path).is_file():
        pcm = _read_pcm_wav(Path(path))
        if pcm is not None and pcm[0].shape[1]:
            return torch.from_numpy(np.ascontiguousarray(pcm[0])), pcm[1]
    with media_stream(path, "audio", UNREADABLE_AUDIO) as (container, stream):
        chunks = [_samples_as_float(frame) for frame in container.decode(stream)]
        rate = stream.sample_rate or stream.codec_context.sample_rate
    if not chunks or sum(chunk.shape[1] for chunk in chunks) == 0:
        raise BadInput(UNREADABLE_AUDIO, f"{path}: the audio stream holds no samples")
    return torch.from_numpy(np.concatenate(chunks, axis=1)), int(rate)


def audio_clips(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """[3, 1, 128, 204] from a waveform [channels, samples] (modified in place, as the public code does)."""
    if sample_rate != SAMPLE_RATE:
        waveform = resample(waveform, sample_rate, SAMPLE_RATE)
    clips = []
    for start, end in clip_timepoints(waveform.shape[1] / SAMPLE_RATE, CLIP_SECONDS, CLIPS):
        clip = waveform[:, int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)]
        clip -= clip.mean()  # in place: a later, overlapping clip sees it (the public arithmetic)
        fbank = log_mel_filterbank(clip[0], SAMPLE_RATE, MEL_BINS).T  # [mel bins, frames]
        missing = TARGET_FRAMES - fbank.shape[1]
        fbank = F.pad(fbank, (0, missing)) if missing > 0 else fbank[:, :TARGET_FRAMES]
        clips.append(((fbank - MEAN) / STD).unsqueeze(0))
    return torch.stack(clips)


def load_audio(path: str | Path) -> torch.Tensor:
    """ImageBind's audio input [3, 1, 128, 204] for the sound file at `path`."""
    waveform, rate = decode_audio(path)
    if not waveform.abs().amax():
        raise BadInput(SILENT_AUDIO, f"{path}: every sample is zero")
    resampled_length = waveform.shape[1] * SAMPLE_RATE / rate
    if frames_of(int(resampled_length), SAMPLE_RATE) == 0:
        raise BadInput(TOO_SHORT, f"{path}: {waveform.shape[1] / rate * 1000:.1f} ms of sound is shorter "
                                  "than one 25 ms filterbank frame")
    return audio_clips(waveform, rate)
