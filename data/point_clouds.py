"""Point cloud files into the 3D branch's input: float32 [N, 3], the points as the file holds them.

As the published demo: `.pt` (a saved tensor) and `.npy` arrays [N, 3] (or more columns: the first
three are x, y, z), no resampling or normalisation (the published examples are already centred
and scaled, 8192 points each). As this project's extension, read here without a 3D library:
`.ply` (ASCII or binary, any vertex property types), `.pcd` (ASCII or binary; not
binary_compressed), `.xyz` / `.pts` (text, x y z first on each line) and `.obj` (its `v` lines).
The encoder samples 512 centres, so a cloud needs at least 512 points; clouds batched together
need the same count. A missing or unreadable file, too few points or NaN raises BadInput.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data.bad_samples import MISSING_FILE, TOO_SHORT, UNREADABLE_FILE, BadInput

MIN_POINTS = 512  # the encoder's centres (model/imagebind/points.py)

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}


def _header(stream, end: bytes) -> list[str]:
    lines = []
    while True:
        line = stream.readline()
        if not line:
            raise ValueError("the header never ends")
        lines.append(line.decode("ascii", errors="replace").strip())
        if line.strip().startswith(end):
            return lines


def _read_ply(path: Path) -> np.ndarray:
    with open(path, "rb") as stream:
        header = _header(stream, b"end_header")
        if header[0] != "ply":
            raise ValueError("not a PLY file")
        fmt = next(line.split()[1] for line in header if line.startswith("format"))
        count, properties, in_vertex = 0, [], False
        for line in header:
            words = line.split()
            if words[:1] == ["element"]:
                in_vertex = words[1] == "vertex"
                count = int(words[2]) if in_vertex else count
            elif words[:1] == ["property"] and in_vertex:
                if words[1] == "list":
                    raise ValueError("list properties on vertices are not supported")
                properties.append((words[2], _PLY_TYPES[words[1]]))
        if fmt == "ascii":
            rows = np.loadtxt(stream, max_rows=count, ndmin=2, usecols=range(len(properties)))
            columns = {name: rows[:, i] for i, (name, _) in enumerate(properties)}
        else:
            order = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(name, order + kind) for name, kind in properties])
            table = np.frombuffer(stream.read(count * dtype.itemsize), dtype=dtype, count=count)
            columns = {name: table[name] for name, _ in properties}
    return np.stack([columns["x"], columns["y"], columns["z"]], axis=1)


def _read_pcd(path: Path) -> np.ndarray:
    with open(path, "rb") as stream:
        header = {line.split()[0]: line.split()[1:] for line in _header(stream, b"DATA")
                  if line and not line.startswith("#")}
        fields, data = header["FIELDS"], header["DATA"][0]
        sizes = [int(v) for v in header["SIZE"]]
        kinds = header["TYPE"]
        counts = [int(v) for v in header.get("COUNT", ["1"] * len(fields))]
        points = int(header["POINTS"][0])
        if data == "ascii":
            rows = np.loadtxt(stream, max_rows=points, ndmin=2)
            offsets = np.cumsum([0] + counts)
            columns = {name: rows[:, offsets[i]] for i, name in enumerate(fields)}
        elif data == "binary":
            dtype = np.dtype([(name, "<" + _PCD_TYPES[(kind, size)], (count,)) if count > 1 else
                              (name, "<" + _PCD_TYPES[(kind, size)])
                              for name, kind, size, count in zip(fields, kinds, sizes, counts)])
            table = np.frombuffer(stream.read(points * dtype.itemsize), dtype=dtype, count=points)
            columns = {name: table[name] for name in fields}
        else:
            raise ValueError(f"PCD data '{data}' is not supported (ascii or binary are)")
    return np.stack([columns["x"], columns["y"], columns["z"]], axis=1)


def _read_text_points(path: Path) -> np.ndarray:
    return np.loadtxt(path, ndmin=2, usecols=(0, 1, 2), comments=("#", "//"))


def _read_obj(path: Path) -> np.ndarray:
    with open(path, encoding="utf-8", errors="replace") as stream:
        vertices = [line.split()[1:4] for line in stream if line.startswith("v ")]
    return np.asarray(vertices, dtype=np.float64).reshape(-1, 3)


def _read_array(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".pt":
        value = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"holds a {type(value).__name__}, not a tensor of points")
        return value.float().numpy()
    readers = {".ply": _read_ply, ".pcd": _read_pcd, ".xyz": _read_text_points, ".pts": _read_text_points,
               ".obj": _read_obj}
    if suffix not in readers:
        raise ValueError(f"'{suffix}' is not a point cloud format read here (.pt, .npy, .ply, .pcd, .xyz, .pts, .obj)")
    return readers[suffix](path)


def load_point_cloud(path: str | Path) -> torch.Tensor:
    """The points of the file at `path` as float32 [N, 3] (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(MISSING_FILE, f"{path} does not exist")
    try:
        array = np.asarray(_read_array(path), dtype=np.float32)
    except Exception as error:
        raise BadInput(UNREADABLE_FILE, f"{path}: {type(error).__name__}: {error}") from error
    if array.ndim != 2 or array.shape[1] < 3:
        raise BadInput(UNREADABLE_FILE, f"{path}: points must be [N, 3] (or more columns), got shape {array.shape}")
    points = np.ascontiguousarray(array[:, :3])
    if not np.isfinite(points).all():
        raise BadInput(UNREADABLE_FILE, f"{path}: holds NaN or infinite coordinates")
    if points.shape[0] < MIN_POINTS:
        raise BadInput(TOO_SHORT, f"{path}: {points.shape[0]} points; the encoder needs at least {MIN_POINTS}")
    return torch.from_numpy(points)
