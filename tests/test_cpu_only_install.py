"""What a real ``pip install onnxembed[cpu]`` sees: onnxembed, numpy, onnxruntime and their own
dependencies, nothing of the export extra.

The environment is rebuilt from this venv's installed distributions: the closure of
``onnxruntime`` and ``numpy`` requirements (read from their metadata, as pip resolves them) plus the
onnxembed install itself, linked into a folder that a ``python -S`` interpreter adds as its only
site directory. torch, transformers, onnx, PyYAML and optimum are simply not there, as in such an install.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from onnxembed.extras import install_hint

RUNTIME_ROOTS = ("onnxruntime", "numpy")


def _closure(roots: tuple[str, ...]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = re.split(r"[ ;<>=!~\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen.add(name)
        for req in dist.requires or []:
            if "extra ==" not in req:  # only unconditional requirements, as pip installs them
                todo.append(req)
    return seen


@pytest.fixture(scope="module")
def cpu_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("cpu-only-site")
    for name in _closure(RUNTIME_ROOTS):
        dist = md.distribution(name)
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = base / top
            if src.exists() and not (site / top).exists():
                (site / top).symlink_to(src)
    # onnxembed itself as installed here (editable finder and .pth, or the package folder)
    purelib = Path(sysconfig.get_paths()["purelib"])
    for entry in purelib.glob("*onnxembed*"):
        if not (site / entry.name).exists():
            (site / entry.name).symlink_to(entry)
    return site


def _run(site: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    boot = f"import site, sys; site.addsitedir({str(site)!r}); sys.argv = ['onnxembed']\n" + code
    return subprocess.run([sys.executable, "-S", "-c", boot], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_the_environment_really_lacks_the_export_extra(cpu_site: Path, tmp_path: Path) -> None:
    proc = _run(cpu_site, "import importlib.util as u\nprint([m for m in ('torch','transformers','onnx','yaml','optimum','onnxruntime','numpy') if u.find_spec(m)])", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['onnxruntime', 'numpy']"


@pytest.mark.parametrize("argv", [["build", "all-minilm-l6-v2", "--out", "x"], ["models"], ["demo", "--out", "x"]])
def test_export_commands_print_the_pip_line_and_exit_2(cpu_site: Path, tmp_path: Path, argv: list[str]) -> None:
    proc = _run(cpu_site, f"from onnxembed.cli import main\nsys.exit(main({argv!r}))", tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert install_hint("export").startswith("pip install torch==2.13.0 && pip install ")
    assert install_hint("export") in lines[0] and "missing: torch" in lines[0]
    assert not (tmp_path / "x").exists()


def test_embed_works_without_the_export_extra(cpu_site: Path, tmp_path: Path, tiny_bert_artifacts: Path) -> None:
    code = f"from onnxembed.cli import main\nrc = main(['embed', {str(tiny_bert_artifacts)!r}, 'hello'])\nprint('torch' in sys.modules, 'onnx' in sys.modules)\nsys.exit(rc)"
    proc = _run(cpu_site, code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, last = proc.stdout.splitlines()[0], proc.stdout.splitlines()[-1]
    assert '"embedding"' in first and last == "False False"


def test_corpus_without_its_extra_prints_the_pip_line_and_exits_2(cpu_site: Path, tmp_path: Path, tiny_bert_artifacts: Path) -> None:
    """pyarrow is not part of the runtime install: ``onnxembed corpus`` says which extra to install."""
    (tmp_path / "in.txt").write_text("a text\n")
    argv = ["corpus", str(tiny_bert_artifacts), "in.txt", "--out", "out"]
    proc = _run(cpu_site, f"from onnxembed.cli import main\nsys.exit(main({argv!r}))", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"onnxembed corpus: error: onnxembed corpus needs the corpus extra (missing: pyarrow); install it with: {install_hint('corpus')}"]
    assert not (tmp_path / "out").exists()


def test_serve_without_its_extra_prints_the_pip_line_and_exits_2(cpu_site: Path, tmp_path: Path, tiny_bert_artifacts: Path) -> None:
    """The [cpu] install has no starlette/uvicorn: `onnxembed serve` says how to get them, in one line."""
    proc = _run(cpu_site, f"from onnxembed.cli import main\nsys.exit(main(['serve', {str(tiny_bert_artifacts)!r}]))", tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert install_hint("serve") in lines[0] and "missing: starlette" in lines[0], lines[0]
