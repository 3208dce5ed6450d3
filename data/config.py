"""The YAML data config: which meta files to read, and how.

    META:
      - /data/cc3m.tsv                      # a plain path, as the published configs have it
      - path: /data/coco/captions.csv       # or a mapping with per-file options
        image_root: /data/coco/train2017    # relative image paths resolve here (default: the meta file's folder)
        ratio: 2.0                          # samples per pass, relative to the file's size (default 1)
      - path: llava_instruct_150k.json
        image_root: /data/coco/train2017
        turns: all                          # conversations: train on every answer (default) or `first`
        keep_image_token: false             # keep "<image>" in the question text (default false)

A relative meta path or image_root is looked up in the current directory first (where the
published code looked) and then beside the YAML file. Mistakes (an unknown option, a missing
file, an empty config) raise `DataConfigError` naming the YAML file and the line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONVERSATION_TURNS = ("first", "all")
SOURCE_OPTIONS = ("path", "image_root", "ratio", "turns", "keep_image_token")
CONFIG_KEYS = ("META",)


class DataConfigError(ValueError):
    """A mistake in the YAML data config; the message names the file and the line."""


@dataclass
class MetaSource:
    """One meta file and its options (see the module docstring for their meaning)."""

    path: Path
    image_root: Path | None = None
    """Where relative image paths resolve; None means the meta file's folder."""
    ratio: float = 1.0
    """Per pass, this file contributes ratio x its size samples: a fraction draws a random subset
    each pass, 2.5 means every sample twice plus a random half."""
    turns: str = "all"
    """Conversation (LLaVA) records: "all" trains on every answer, "first" on the first one only."""
    keep_image_token: bool = False
    """Keep the "<image>" placeholder in conversation text, as the published code did."""
    declared_at: str = ""
    """Where the config declares this file ("data.yaml line 3"), for error messages."""

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.image_root = self.path.parent if self.image_root is None else Path(self.image_root)
        where = self.origin
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)):
            raise DataConfigError(f"{where}: ratio must be a number, got {self.ratio!r}")
        if not (math.isfinite(self.ratio) and self.ratio > 0):
            raise DataConfigError(
                f"{where}: ratio must be a positive number, got {self.ratio!r} (remove the entry to leave a file out)"
            )
        self.ratio = float(self.ratio)
        if self.turns not in CONVERSATION_TURNS:
            raise DataConfigError(f"{where}: turns must be one of {CONVERSATION_TURNS}, got {self.turns!r}")
        if not isinstance(self.keep_image_token, bool):
            raise DataConfigError(f"{where}: keep_image_token must be true or false, got {self.keep_image_token!r}")

    @property
    def origin(self) -> str:
        """Where the config lists this file, or its path when made in code: how errors name it."""
        return self.declared_at or str(self.path)


@dataclass
class DataConfig:
    """The parsed YAML: its path and its meta files, in order."""

    path: Path
    sources: list[MetaSource] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sources:
            raise DataConfigError(f"{self.path}: no meta files; list them under META:")


def load_data_config(path: str | os.PathLike) -> DataConfig:
    """Read and check a YAML data config; relative paths resolve as the module docstring says."""
    path = Path(path)
    if not path.is_file():
        raise DataConfigError(f"data config not found: {path}")
    root = _compose(path)
    if root is None:
        raise DataConfigError(f"{path}: the config is empty; write `META:` followed by a list of meta files")
    if not isinstance(root, yaml.MappingNode):
        raise DataConfigError(f"{_at(path, root)}: the config must be a mapping with the key META")
    top = _mapping(path, root, allowed=CONFIG_KEYS)
    if "META" not in top:
        raise DataConfigError(f"{_at(path, root)}: the config has no META key; list the meta files under META:")
    meta = top["META"]
    if not isinstance(meta, yaml.SequenceNode) or not meta.value:
        raise DataConfigError(f"{_at(path, meta)}: META must be a non-empty list of meta files")
    return DataConfig(path=path, sources=[_source(path, item) for item in meta.value])


def _compose(path: Path) -> yaml.Node | None:
    """The YAML node tree, whose marks give line numbers (a plain safe_load would lose them)."""
    try:
        with open(path, encoding="utf-8") as stream:
            return yaml.compose(stream, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise DataConfigError(f"{path}: not valid YAML: {error}") from error


def _at(config_path: Path, node: yaml.Node) -> str:
    return f"{config_path} line {node.start_mark.line + 1}"


def _mapping(config_path: Path, node: yaml.MappingNode, allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
    """Key -> value node; unknown or repeated keys are errors."""
    values: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value
        if key not in allowed:
            raise DataConfigError(
                f"{_at(config_path, key_node)}: unknown option {key!r}; the options are {', '.join(allowed)}"
            )
        if key in values:
            raise DataConfigError(f"{_at(config_path, key_node)}: {key!r} is given twice")
        values[key] = value_node
    return values


def _scalar(config_path: Path, node: yaml.Node) -> object:
    if not isinstance(node, yaml.ScalarNode):
        raise DataConfigError(f"{_at(config_path, node)}: expected a single value here, not a list or mapping")
    return _construct(node)


def _construct(node: yaml.ScalarNode) -> object:
    """The Python value of a scalar node, typed as yaml.safe_load would type it."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _source(config_path: Path, node: yaml.Node) -> MetaSource:
    where = _at(config_path, node)
    if isinstance(node, yaml.MappingNode):
        given = _mapping(config_path, node, SOURCE_OPTIONS)
        options = {key: _scalar(config_path, value) for key, value in given.items()}
        if "path" not in options:
            raise DataConfigError(f"{where}: a META entry given as a mapping needs `path:`")
    else:
        options = {"path": _scalar(config_path, node)}
    if not isinstance(options["path"], str) or not options["path"]:
        raise DataConfigError(f"{where}: the meta file path must be a non-empty string, got {options['path']!r}")
    options["path"] = _existing(config_path, where, options["path"], want_dir=False)
    if "image_root" in options:
        if not isinstance(options["image_root"], str) or not options["image_root"]:
            raise DataConfigError(f"{where}: image_root must be a folder path, got {options['image_root']!r}")
        options["image_root"] = _existing(config_path, where, options["image_root"], want_dir=True)
    return MetaSource(declared_at=where, **options)


def _existing(config_path: Path, where: str, name: str, want_dir: bool) -> Path:
    """`name` as given if it exists, else beside the config; the error names both places."""
    given = Path(name).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, config_path.parent / given]
    kind = "folder" if want_dir else "file"
    for candidate in candidates:
        if (candidate.is_dir() if want_dir else candidate.is_file()):
            return candidate.resolve()
    looked = " or ".join(str(candidate) for candidate in candidates)
    raise DataConfigError(f"{where}: {kind} {name!r} not found (looked for {looked})")
