"""The readers against the public ImageBind preprocessing, on inputs made for it.

tests/fixtures/modalities/ holds the inputs and what the public code (facebookresearch/ImageBind's
imagebind/data.py with torchaudio, pytorchvideo and decord, in a scratch environment) made of
them; MAKING.md there says how. Tolerances: 1e-4 for audio, 1e-5 for video, exact ids for text."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data.audio import audio_clips, decode_audio, load_audio
from data.clip_timing import clip_timepoints
from data.resample import resample
from data.text_tokens import clip_token_ids
from data.video import decode_frames, load_video
from support import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "modalities"
SOUNDS = ["audio_stereo_44k", "audio_mono_8k", "audio_short"]


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as archive:
        return {key: archive[key] for key in archive.files}


@pytest.mark.parametrize("name", SOUNDS)
def test_audio_equals_the_public_preprocessing(name):
    expected = golden(name)
    waveform, rate = decode_audio(FIXTURES / f"{name}.wav")
    resampled = resample(waveform, rate, 16000)
    np.testing.assert_allclose(resampled.numpy(), expected["resampled"], rtol=0, atol=1e-5)
    timepoints = [(float(start), float(end)) for start, end in clip_timepoints(resampled.shape[1] / 16000, 2, 3)]
    np.testing.assert_array_equal(np.array(timepoints), expected["clip_timepoints"])
    ours = load_audio(FIXTURES / f"{name}.wav")
    assert ours.shape == expected["output"].shape
    np.testing.assert_allclose(ours.numpy(), expected["output"], rtol=0, atol=1e-4)


def test_audio_from_the_publics_own_resampled_waveform_equals_its_output():
    # The filterbank and clipping alone, from exactly the public code's waveform.
    expected = golden("audio_stereo_44k")
    ours = audio_clips(torch.from_numpy(expected["resampled"].copy()), 16000)
    np.testing.assert_allclose(ours.numpy(), expected["output"], rtol=0, atol=1e-4)


def test_video_equals_the_public_preprocessing():
    expected = golden("video")
    frames, per_clip = decode_frames(FIXTURES / "video.mp4")
    np.testing.assert_array_equal(np.array(per_clip), expected["frame_indices"])
    for index, frame in frames.items():  # PyAV decodes the same pixels as decord
        np.testing.assert_array_equal(frame.numpy(), expected["frames"][index])
    ours = load_video(FIXTURES / "video.mp4")
    assert tuple(ours.shape) == tuple(expected["shape"][1:])
    np.testing.assert_allclose(ours[..., ::4, ::4].numpy(), expected["strided"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours.double().sum(dim=(-1, -2)).numpy(), expected["sums"], rtol=1e-6, atol=1e-3)


def test_text_ids_equal_the_public_tokenizers():
    texts = json.loads((FIXTURES / "text_cases.json").read_text(encoding="utf-8"))
    expected = golden("text_tokens")["tokens"]
    np.testing.assert_array_equal(clip_token_ids(texts).numpy(), expected)
