from pathlib import Path

import pytest

from data.config import DataConfigError, MetaSource, load_data_config


@pytest.fixture
def meta_files(tmp_path: Path) -> Path:
    (tmp_path / "cc3m.tsv").write_text("url\tcaption\n")
    (tmp_path / "llava.json").write_text("[]")
    (tmp_path / "coco").mkdir()
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_plain_list_and_mapping_items_mix(meta_files: Path):
    config = load_data_config(write(meta_files / "data.yaml", (
        "META:\n"
        f"  - {meta_files / 'cc3m.tsv'}\n"
        "  - path: llava.json\n"          # relative: found beside the YAML file
        "    image_root: coco\n"
        "    ratio: 2.5\n"
        "    turns: first\n"
        "    keep_image_token: true\n"
    )))
    plain, mapped = config.sources
    assert plain.path == meta_files / "cc3m.tsv"
    assert plain.image_root == meta_files  # default: the meta file's folder
    assert (plain.ratio, plain.turns, plain.keep_image_token) == (1.0, "all", False)
    assert plain.declared_at.endswith("data.yaml line 2")
    assert mapped.path == (meta_files / "llava.json").resolve()
    assert mapped.image_root == (meta_files / "coco").resolve()
    assert (mapped.ratio, mapped.turns, mapped.keep_image_token) == (2.5, "first", True)
    assert mapped.declared_at.endswith("data.yaml line 3")


def test_relative_paths_prefer_the_current_directory(meta_files: Path, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("cwd")
    (elsewhere / "cc3m.tsv").write_text("url\tcaption\n")
    monkeypatch.chdir(elsewhere)
    config = load_data_config(write(meta_files / "data.yaml", "META:\n  - cc3m.tsv\n"))
    assert config.sources[0].path == (elsewhere / "cc3m.tsv").resolve()


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"data\.yaml: the config is empty"),
        ("# only a comment\n", r"data\.yaml: the config is empty"),
        ("META: []\n", r"data\.yaml line 1: META must be a non-empty list"),
        ("META:\n", r"data\.yaml line 1: META must be a non-empty list"),
        ("DATA:\n  - cc3m.tsv\n", r"data\.yaml line 1: unknown option 'DATA'"),
        ("META:\n  - cc3m.tsv\n  - path: cc3m.tsv\n    ratoi: 2\n", r"data\.yaml line 4: unknown option 'ratoi'"),
        ("META:\n  - nope.tsv\n", r"data\.yaml line 2: file 'nope.tsv' not found"),
        ("META:\n  - path: cc3m.tsv\n    image_root: nope\n", r"data\.yaml line 2: folder 'nope' not found"),
        ("META:\n  - image_root: coco\n", r"data\.yaml line 2: a META entry given as a mapping needs `path:`"),
        ("META:\n  - path: cc3m.tsv\n    ratio: 0\n", r"data\.yaml line 2: ratio must be a positive number"),
        ("META:\n  - path: cc3m.tsv\n    ratio: half\n", r"data\.yaml line 2: ratio must be a number"),
        ("META:\n  - path: cc3m.tsv\n    turns: some\n", r"data\.yaml line 2: turns must be one of"),
        ("META:\n  - path: cc3m.tsv\n    keep_image_token: 1\n", r"data\.yaml line 2: keep_image_token must be"),
        ("META:\n  - path: cc3m.tsv\n    path: cc3m.tsv\n", r"data\.yaml line 3: 'path' is given twice"),
        ("META:\n  - [cc3m.tsv]\n", r"data\.yaml line 2: expected a single value"),
        ("META: [unclosed\n", r"data\.yaml: not valid YAML"),
    ],
)
def test_mistakes_name_the_file_and_line(meta_files: Path, monkeypatch, text: str, message: str):
    monkeypatch.chdir(meta_files)
    with pytest.raises(DataConfigError, match=message):
        load_data_config(write(meta_files / "data.yaml", text))


def test_missing_config_file_is_named(tmp_path: Path):
    with pytest.raises(DataConfigError, match="absent.yaml"):
        load_data_config(tmp_path / "absent.yaml")


def test_meta_source_made_in_code_checks_itself(tmp_path: Path):
    source = MetaSource(path=tmp_path / "x.json")
    assert source.image_root == tmp_path
    with pytest.raises(DataConfigError, match="ratio"):
        MetaSource(path=tmp_path / "x.json", ratio=-1)
