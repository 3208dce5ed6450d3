"""Every modality from files: readers' shapes and errors, and generation from each (tiny model).

The readers' numbers against the public preprocessing are in test_modality_golden.py."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch

from data.audio import load_audio
from data.bad_samples import (
    MISSING_FILE, SILENT_AUDIO, TOO_SHORT, UNREADABLE_AUDIO, UNREADABLE_FILE, UNREADABLE_VIDEO, BadInput,
)
from data.clip_timing import clip_timepoints
from data.modality_inputs import read_inputs, read_modality
from data.resample import resample
from data.sensors import load_depth, load_imu
from data.video import clip_frame_indices, load_video
from exps.modality_examples import write_modality_examples
from support.tiny_models import random_images, tiny_model

SHAPES = {"Audio": (3, 1, 128, 204), "Video": (15, 3, 2, 224, 224), "Depth": (1, 224, 224),
          "Thermal": (1, 224, 224), "IMU": (6, 2000), "Point": (2048, 3)}


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return write_modality_examples(tmp_path_factory.mktemp("modalities"))


def write_wav(path, samples: np.ndarray, rate: int):
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(rate)
        sound.writeframes(samples.astype(np.int16).tobytes())
    return path


def test_every_example_file_reads_to_the_shape_its_encoder_takes(examples):
    for name, path in examples.items():
        tensor = read_modality(name, path)
        assert tuple(tensor.shape) == SHAPES[name], name
        assert torch.isfinite(tensor).all() and tensor.std() > 0, name
    assert tuple(read_modality("Text", "a red square").shape) == (77,)


def test_clips_are_placed_as_the_constant_clips_sampler_places_them():
    assert clip_timepoints(5.0, 2, 3) == [(0, 2), (1.5, 3.5), (3, 5)]  # from the start to the end
    assert clip_timepoints(1.3, 2, 3) == [(0, 2)] * 3  # shorter than a clip: every clip from 0
    # A video of 35 frames at 10/s: clip k of 5 starts at 0.375 k s; its first and last frames are kept.
    assert clip_frame_indices(35, 10.0) == [[0, 19], [4, 23], [8, 27], [12, 31], [15, 34]]


def test_resampling_keeps_a_tone_and_removes_what_the_new_rate_cannot_hold():
    rate = 44100
    t = torch.arange(rate, dtype=torch.float64) / rate
    low, high = torch.sin(2 * torch.pi * 1000 * t), torch.sin(2 * torch.pi * 12000 * t)
    out = resample(torch.stack([low, high]).float(), rate, 16000)
    assert out.shape == (2, 16000)
    expected = torch.sin(2 * torch.pi * 1000 * torch.arange(16000, dtype=torch.float64) / 16000).float()
    assert (out[0, 200:-200] - expected[200:-200]).abs().max() < 1e-3  # inside the edges: the same tone
    assert out[1, 200:-200].abs().max() < 1e-2  # 12 kHz is above 8 kHz: filtered out


def test_bad_sounds_are_bad_inputs_naming_the_file_and_the_reason(tmp_path):
    cases = {
        MISSING_FILE: tmp_path / "nowhere.wav",
        UNREADABLE_AUDIO: tmp_path / "empty.wav",
        SILENT_AUDIO: write_wav(tmp_path / "silent.wav", np.zeros(16000), 16000),
        TOO_SHORT: write_wav(tmp_path / "short.wav", np.full(160, 1000), 16000),  # 10 ms
    }
    cases[UNREADABLE_AUDIO].write_bytes(b"")
    for reason, path in cases.items():
        with pytest.raises(BadInput) as caught:
            load_audio(path)
        assert caught.value.reason == reason and str(path) in caught.value.detail


def test_bad_videos_depth_maps_and_imu_files_are_bad_inputs(tmp_path, examples):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    nan_depth = tmp_path / "depth.npy"
    np.save(nan_depth, np.full((8, 8), np.nan, np.float32))
    wrong_imu = tmp_path / "imu.npy"
    np.save(wrong_imu, np.zeros((3, 100), np.float32))
    for reader, path, reason in ((load_video, not_a_video, UNREADABLE_VIDEO), (load_video, tmp_path / "none.mp4", MISSING_FILE),
                                 (load_video, examples["Audio"], UNREADABLE_VIDEO),  # a sound has no video stream
                                 (load_depth, nan_depth, UNREADABLE_FILE), (load_imu, wrong_imu, UNREADABLE_FILE)):
        with pytest.raises(BadInput) as caught:
            reader(path)
        assert caught.value.reason == reason and str(path) in caught.value.detail, (reader, path)


def test_read_inputs_takes_the_published_calls_shape_and_batches_several_files(examples):
    inputs = read_inputs({"Audio": [[examples["Audio"], examples["Audio"]], 0.5], "IMU": examples["IMU"]})
    assert inputs["Audio"][0].shape == (2, *SHAPES["Audio"]) and inputs["Audio"][1] == 0.5
    assert inputs["IMU"][0].shape == (1, *SHAPES["IMU"]) and inputs["IMU"][1] == 1.0
    with pytest.raises(ValueError, match="unknown modality 'Smell'"):
        read_inputs({"Smell": ["rose.txt", 1]})


def test_generation_from_each_modality_alone_and_from_image_and_audio_together(tokenizer, examples):
    model = tiny_model("finetune", tokenizer).eval()
    files = {name: [path, 1] for name, path in examples.items() if name != "Point"}  # points: test_points.py
    inputs = read_inputs({**files, "Text": ["a red square", 1]})
    inputs["Image"] = [random_images(1), 1]
    prompt = ["What is this?"]
    visuals = {}
    for name, value in inputs.items():
        alone = {name: value}
        visuals[name] = model.forward_visual(alone)
        continuation = model.generate_ids(alone, prompt, max_gen_len=4, temperature=0.0)[0]
        assert continuation and continuation == model.generate_ids(alone, prompt, max_gen_len=4, temperature=0.0)[0]
    names = list(visuals)
    assert all(not torch.allclose(visuals[a], visuals[b]) for i, a in enumerate(names) for b in names[i + 1:])
    # Image and audio together: the published fusion, each embedding normalised, weighted 1 : 2.
    together = {"Image": inputs["Image"], "Audio": [inputs["Audio"][0], 2]}
    embeddings = [(model.encode("vision", inputs["Image"][0]), 1), (model.encode("audio", inputs["Audio"][0]), 2)]
    torch.testing.assert_close(model.forward_visual(together), model.visual_tokens(embeddings))
    assert model.generate_ids(together, prompt, max_gen_len=4, temperature=0.0)[0]


def test_a_flac_file_decoded_by_pyav_gives_what_its_wav_gives(tmp_path):
    import av

    rate = 22050
    samples = (np.sin(np.arange(rate * 3) * 0.05) * 12000).astype(np.int16)
    wav = write_wav(tmp_path / "tone.wav", samples, rate)
    flac = tmp_path / "tone.flac"
    with av.open(str(flac), "w") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    torch.testing.assert_close(load_audio(flac), load_audio(wav), rtol=0, atol=0)  # lossless, same floats
