"""Small example files of every modality besides pictures, for the demo, the notebook and tests.

    python -m exps.modality_examples FOLDER     (the demo writes them under demo_output/assets/modalities)

    sound.wav     2.5 s, 16-bit mono at 22.05 kHz: a rising tone with a soft start and end
    clip.mp4      2.5 s of H.264 at 10 frames/s, 128 x 96: a red square crossing a blue gradient
    depth.png     16-bit disparity, 96 x 128: a near sphere in front of a sloping floor
    thermal.png   8-bit grayscale, 96 x 128: a warm blob on a cool background
    imu.npy       [6, 1000] float32: 5 s at 200 Hz of a slow sway (accelerometer, then gyroscope)
    points.ply    2048 points on a torus (binary PLY), centred, within the unit sphere

Every file is a pure function of the code (no randomness), so the bytes are the same every time.
"""

from __future__ import annotations

import argparse
import sys
import wave
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 96, 128


def write_sound(path: Path, seconds: float = 2.5, rate: int = 22050) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    frequency = 300.0 + 500.0 * t / seconds  # rising from 300 to 800 Hz
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.2)
    samples = (0.5 * envelope * np.sin(2 * np.pi * np.cumsum(frequency) / rate) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(rate)
        sound.writeframes(samples.tobytes())
    return path


def write_clip(path: Path, seconds: float = 2.5, fps: int = 10) -> Path:
    import av

    gradient = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    gradient[..., 2] = np.linspace(80, 230, WIDTH, dtype=np.uint8)[None, :]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(int(seconds * fps)):
            frame = gradient.copy()
            left = 4 + index * (WIDTH - 40) // int(seconds * fps)
            frame[30:62, left:left + 32] = (220, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_depth(path: Path) -> Path:
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    floor = 0.2 + 0.5 * rows / HEIGHT  # nearer towards the bottom
    sphere = np.clip(1.0 - ((rows - 45) ** 2 + (columns - 64) ** 2) / 30.0 ** 2, 0, None)
    disparity = np.maximum(floor, 0.6 + 0.4 * np.sqrt(sphere) * (sphere > 0))
    Image.fromarray((disparity * 65535).astype(np.uint16)).save(path)
    return path


def write_thermal(path: Path) -> Path:
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    heat = 60 + 180 * np.exp(-(((rows - 50) / 18) ** 2 + ((columns - 70) / 24) ** 2))
    Image.fromarray(heat.astype(np.uint8), mode="L").save(path)
    return path


def write_imu(path: Path, seconds: float = 5.0, rate: int = 200) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sway = [np.sin(2 * np.pi * f * t + phase) for f, phase in ((0.5, 0), (0.7, 1), (0.3, 2))]
    accelerometer = np.stack([0.2 * sway[0], 0.2 * sway[1], 9.81 + 0.1 * sway[2]])
    gyroscope = np.stack([0.05 * np.cos(2 * np.pi * f * t) for f in (0.5, 0.7, 0.3)])
    np.save(path, np.concatenate([accelerometer, gyroscope]).astype(np.float32))
    return path


def write_points(path: Path, count: int = 2048) -> Path:
    index = np.arange(count)
    around, across = 2 * np.pi * index / count * 37, 2 * np.pi * index / count * 5  # two co-prime windings
    points = np.stack([(0.6 + 0.25 * np.cos(around)) * np.cos(across), (0.6 + 0.25 * np.cos(around)) * np.sin(across),
                       0.25 * np.sin(around)], axis=1).astype("<f4")
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {count}\n" \
             "property float x\nproperty float y\nproperty float z\nend_header\n"
    path.write_bytes(header.encode("ascii") + points.tobytes())
    return path


def write_modality_examples(folder: str | Path) -> dict[str, Path]:
    """Write the files listed in the module docstring under `folder`; {modality name: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "Audio": write_sound(folder / "sound.wav"),
        "Video": write_clip(folder / "clip.mp4"),
        "Depth": write_depth(folder / "depth.png"),
        "Thermal": write_thermal(folder / "thermal.png"),
        "IMU": write_imu(folder / "imu.npy"),
        "Point": write_points(folder / "points.ply"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write example files of every modality besides pictures.")
    parser.add_argument("folder")
    for name, path in write_modality_examples(parser.parse_args(argv).folder).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
