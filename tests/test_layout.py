"""The layout shows the architecture: each top-level stage folder is one import path, and imports
point one way (command line -> stages -> quantize and verify -> runtime core), with no import cycles.

Read from the source with ``ast`` (every import, including those inside functions), so the rule holds
for lazy imports too.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# stage (import path under onnxembed) -> the stages it may import. The runtime core is "".
ALLOWED: dict[str, set[str]] = {
    "": {""},
    "quantize": {"", "quantize"},
    "export": {"", "quantize", "verify", "export"},
    "bench": {"", "bench"},
    "serve": {"", "serve"},
    "corpus": {"", "corpus"},
    "integrations": {"", "integrations"},
    "verify": {"", "verify"},
}
CORE_THIRD_PARTY = {"numpy", "onnxruntime"}


def _packages() -> dict[str, Path]:
    """``{"onnxembed.cli": REPO/"cli", ...}`` from pyproject's package-dir."""
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())
    return {name: REPO / folder for name, folder in conf["tool"]["setuptools"]["package-dir"].items()}


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg, folder in _packages().items():
        for f in sorted(folder.glob("*.py")):
            mods[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return mods


def _imports(name: str, path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    is_pkg = path.stem == "__init__"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                mod = ".".join(parent + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            out.extend(f"{mod}.{a.name}" for a in node.names)  # `from . import x` imports module x
    return out


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "onnxembed":
        return None
    stages = {p.split(".")[1] for p in _packages() if "." in p}
    return parts[1] if len(parts) > 1 and parts[1] in stages else ""


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {i for i in _imports(m, p) if i in mods and i != m} for m, p in mods.items()}


def test_every_stage_folder_is_one_import_path() -> None:
    pkgs = _packages()
    assert pkgs["onnxembed"].name == "runtime"
    for name, folder in pkgs.items():
        assert folder.is_dir() and (folder / "__init__.py").is_file(), name
        if name != "onnxembed":
            assert name == f"onnxembed.{folder.name}", f"{folder.name}/ is imported as {name}"
    # nothing generic lands in site-packages
    assert all(n == "onnxembed" or n.startswith("onnxembed.") for n in pkgs)


def test_imports_point_one_way() -> None:
    violations = []
    for mod, path in _modules().items():
        src = _stage(mod)
        if src == "cli":
            continue
        for imp in _imports(mod, path):
            dst = _stage(imp)
            if dst is not None and dst not in ALLOWED[src]:
                violations.append(f"{path.relative_to(REPO)}: {mod} ({src or 'runtime core'}) imports {imp} ({dst or 'runtime core'})")
    assert not violations, "imports against the arrows:\n" + "\n".join(violations)


def test_runtime_core_imports_only_stdlib_numpy_onnxruntime() -> None:
    bad = []
    for mod, path in _modules().items():
        if _stage(mod) != "":
            continue
        for imp in _imports(mod, path):
            top = imp.split(".")[0]
            if top and top != "onnxembed" and top not in sys.stdlib_module_names and top not in CORE_THIRD_PARTY:
                bad.append(f"{path.relative_to(REPO)} imports {imp}")
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles between modules. A package and its own submodules (re-exports, parents run
    first) are not cycles."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if n.startswith(m + ".") or m.startswith(n + "."):
                continue
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_cycle() -> None:
    """The old cli.py <-> cli_demo.py shape is reported."""
    found = _cycles({"onnxembed.cli.main": {"onnxembed.cli.demo"}, "onnxembed.cli.demo": {"onnxembed.cli.main"}})
    assert len(found) == 1 and set(found[0]) == {"onnxembed.cli.main", "onnxembed.cli.demo"}


@pytest.mark.parametrize("bad", ["onnxembed.export", "onnxembed.cli.main"])
def test_the_check_sees_a_violation(tmp_path: Path, bad: str) -> None:
    """Guard against a check that cannot fail: a core module importing a stage is caught."""
    f = tmp_path / "mod.py"
    f.write_text(f"def f():\n    import {bad}\n")
    imps = _imports("onnxembed.mod", f)
    assert bad in imps and _stage(bad) not in ALLOWED[_stage("onnxembed.mod")]


# Inside the server, the layers of text-embeddings-inference (router -> Infer -> queue): HTTP handlers
# parse and call the model layer; the model layer owns loading, admission, splitting, cancellation and
# the queue; the batcher and loading know neither HTTP nor the model layer. Module -> what it may import
# inside onnxembed.serve (the runtime core is always allowed).
SERVE_LAYERS: dict[str, set[str]] = {
    "onnxembed.serve.server": {"app", "model"},
    "onnxembed.serve.app": {"model", "batcher", "schema", "metrics"},
    "onnxembed.serve.model": {"batcher", "loading"},
    "onnxembed.serve.loading": {"batcher"},
    "onnxembed.serve.batcher": set(),
    "onnxembed.serve.schema": set(),
    "onnxembed.serve.metrics": set(),
}
HTTP_PACKAGES = {"starlette", "uvicorn", "fastapi", "httptools", "h11"}


def _serve_violations(modules: dict[str, Path]) -> list[str]:
    bad = []
    for mod, path in modules.items():
        if mod not in SERVE_LAYERS:
            continue
        for imp in _imports(mod, path):
            if imp.startswith("onnxembed.serve.") and imp.split(".")[2] not in SERVE_LAYERS[mod]:
                bad.append(f"{mod} imports {imp}")
            if imp.split(".")[0] in HTTP_PACKAGES and mod not in ("onnxembed.serve.app", "onnxembed.serve.server"):
                bad.append(f"{mod} imports {imp} (HTTP below the handlers)")
    return bad


def test_serve_layers_point_one_way() -> None:
    mods = _modules()
    assert set(SERVE_LAYERS) | {"onnxembed.serve"} == {m for m in mods if m.startswith("onnxembed.serve")}, "a new serve module: place it in SERVE_LAYERS"
    bad = _serve_violations(mods)
    assert not bad, "\n".join(bad)


def test_the_serve_layer_check_sees_a_violation(tmp_path: Path) -> None:
    """A batcher that imported the model layer, or a model layer that imported starlette, is caught."""
    up = tmp_path / "batcher.py"
    up.write_text("from .model import Models\n")
    http = tmp_path / "model.py"
    http.write_text("def f():\n    from starlette.requests import Request\n")
    got = _serve_violations({"onnxembed.serve.batcher": up, "onnxembed.serve.model": http})
    assert "onnxembed.serve.batcher imports onnxembed.serve.model" in got
    assert "onnxembed.serve.model imports starlette.requests (HTTP below the handlers)" in got
