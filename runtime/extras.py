"""Optional extras: which packages each one needs, read from onnxembed's own metadata, and the
``pip install`` line that adds one, in the form that works for how onnxembed was installed.

``pyproject.toml`` is the single source of what an extra installs (model2vec's habit): the check
reads the installed distribution's ``Requires-Dist: ...; extra == "NAME"`` lines. onnxembed is not on
a package index, so ``pip install "onnxembed[serve]"`` would fail; the hint follows PEP 610's
``direct_url.json``: ``pip install -e "/path/to/clone[serve]"`` for an editable install from a clone,
the wheel's path for a wheel, the repository URL for a VCS install.

>>> require_extra("serve", "onnxembed.serve")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import sys
from typing import Sequence
from urllib.parse import unquote, urlparse

__all__ = ["extra_requirements", "install_hint", "missing_for", "require_extra"]

DIST = "onnxembed"
# What the export extra needs installed first: an unpinned torch pulls a multi-gigabyte CUDA build.
_BEFORE = {"export": "pip install torch==2.13.0 && "}
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_CLAUSE = re.compile(r"""\s*([a-z_]+)\s*(==|!=)\s*["']([^"']*)["']\s*""")


def _installed() -> md.Distribution | None:
    """onnxembed's installed distribution: the one pip wrote (``INSTALLER``), not a build's
    ``onnxembed.egg-info`` that a source checkout puts on ``sys.path``; None when not installed."""
    found = list(md.distributions(name=DIST))
    return next((d for d in found if d.read_text("INSTALLER") is not None), found[0] if found else None)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _environment() -> dict[str, str]:
    return {
        "sys_platform": sys.platform,
        "platform_python_implementation": platform.python_implementation(),
        "platform_machine": platform.machine(),
        "os_name": os.name,
        "python_version": ".".join(platform.python_version_tuple()[:2]),
    }


def _marker_extra(marker: str, env: dict[str, str]) -> tuple[str | None, bool]:
    """``(extra named by the marker, whether its other clauses hold here)``. Our markers are ``and``
    chains of ``==`` / ``!=``; a clause this reader cannot evaluate counts as true."""
    extra: str | None = None
    applies = True
    for clause in re.split(r"\band\b", marker):
        m = _CLAUSE.fullmatch(clause.strip().strip("()"))
        if m is None:
            continue
        var, op, value = m.groups()
        if var == "extra":
            extra = _normal(value)
        elif var in env:
            applies = applies and ((env[var] == value) == (op == "=="))
    return extra, applies


def extra_requirements(extra: str) -> list[str]:
    """Distribution names the extra installs on this platform, from onnxembed's metadata (empty if
    onnxembed is not installed, e.g. run from a bare source tree)."""
    dist = _installed()
    requires = (dist.requires or []) if dist is not None else []
    env = _environment()
    names: list[str] = []
    for req in requires:
        spec, _, marker = req.partition(";")
        found, applies = _marker_extra(marker, env)
        m = _NAME.match(spec)
        if found == _normal(extra) and applies and m and m.group(1) not in names:
            names.append(m.group(1))
    return names


def missing_for(extra: str) -> list[str]:
    """The extra's distributions that are not installed."""
    out = []
    for name in extra_requirements(extra):
        try:
            md.distribution(name)
        except md.PackageNotFoundError:
            out.append(name)
    return out


def install_hint(extras: str) -> str:
    """The command that adds ``extras`` (``"serve"``, ``"export,cpu"``) to this onnxembed install."""
    before = "".join(_BEFORE.get(e.strip(), "") for e in extras.split(","))
    return before + _pip_line(extras)


def _pip_line(extras: str) -> str:
    index = f'pip install "onnxembed[{extras}]"'
    dist = _installed()
    raw = dist.read_text("direct_url.json") if dist is not None else None
    if not raw:
        return index  # installed from a package index: the name works
    try:
        info = json.loads(raw)
    except ValueError:
        return index
    url = str(info.get("url", ""))
    vcs = info.get("vcs_info")
    if isinstance(vcs, dict):
        rev = f"@{vcs['requested_revision']}" if vcs.get("requested_revision") else ""
        return f'pip install "onnxembed[{extras}] @ {vcs.get("vcs", "git")}+{url}{rev}"'
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return f'pip install "onnxembed[{extras}] @ {url}"' if url else index
    path = unquote(parsed.path)
    if isinstance(info.get("dir_info"), dict):
        editable = "-e " if info["dir_info"].get("editable") else ""
        return f'pip install {editable}"{path}[{extras}]"'
    if os.path.exists(path):
        return f'pip install "{path}[{extras}]"'
    return f'pip install "{path}[{extras}]" (the wheel onnxembed was installed from; it is no longer there: use that wheel, or the clone, with [{extras}])'


def require_extra(extra: str, who: str, modules: Sequence[str] = ()) -> None:
    """Raise ImportError whose message is the command to run, if a package of ``extra`` is missing.

    Args:
        extra: the extra's name in ``pyproject.toml`` (``"serve"``, ``"corpus"``, ``"export"``).
        who: what needs it, for the message (``"onnxembed.serve"``).
        modules: modules that must also be importable (checked by ``find_spec``, without importing
            them), for a package present as metadata but not importable.
    """
    missing = missing_for(extra)
    missing += [m for m in modules if m not in missing and importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{who} needs the {extra} extra (missing: {', '.join(missing)}); install it with: {install_hint(extra)}")
