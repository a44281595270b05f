"""What a real ``pip install "onnxembed-0.1.0-py3-none-any.whl[cpu]"`` sees, as the README's Install section says.

The wheel is built from this checkout with ``pip wheel --no-deps`` and installed with the ``cpu`` extra into
a fresh virtual environment: onnxembed, numpy, onnxruntime and their own dependencies, nothing of the
export extra (torch, transformers, onnx, PyYAML and optimum are simply not there, as in such an install).
pip resolves and installs as it would for a user; its cache makes the second run offline-capable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runtime_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv holding the built wheel with ``[cpu]``."""
    root = tmp_path_factory.mktemp("runtime-install")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    steps = [
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(REPO)],
        [sys.executable, "-m", "venv", str(root / "venv")],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    wheels = list((root / "dist").glob("onnxembed-*.whl"))
    assert len(wheels) == 1, wheels
    python = root / "venv" / "bin" / "python"
    cmd = [str(python), "-m", "pip", "install", "-q", f"{wheels[0]}[cpu]"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return python


def _run(python: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    boot = "import sys; sys.argv = ['onnxembed']\n" + code
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(python), "-c", boot], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def _hint(python: Path, extras: str, cwd: Path) -> str:
    """The install hint as that environment computes it (a wheel install names the wheel)."""
    proc = _run(python, f"from onnxembed.extras import install_hint\nprint(install_hint({extras!r}))", cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_environment_really_lacks_the_export_extra(runtime_python: Path, tmp_path: Path) -> None:
    proc = _run(runtime_python, "import importlib.util as u\nprint([m for m in ('torch','transformers','onnx','yaml','optimum','onnxruntime','numpy') if u.find_spec(m)])", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['onnxruntime', 'numpy']"
    where = _run(runtime_python, "import onnxembed, onnxruntime\nprint(onnxembed.__file__)\nprint(onnxruntime.get_available_providers())", tmp_path)
    assert where.returncode == 0, where.stderr
    assert "site-packages" in where.stdout and str(REPO) not in where.stdout  # the installed wheel, not this checkout


@pytest.mark.parametrize("argv", [["build", "all-minilm-l6-v2", "--out", "x"], ["models"], ["demo", "--out", "x"]])
def test_export_commands_print_the_pip_line_and_exit_2(runtime_python: Path, tmp_path: Path, argv: list[str]) -> None:
    proc = _run(runtime_python, f"from onnxembed.cli import main\nsys.exit(main({argv!r}))", tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    hint = _hint(runtime_python, "export", tmp_path)
    assert hint.startswith("pip install torch==2.13.0 && pip install ") and ".whl[export" in hint, hint  # the wheel it came from
    assert hint in lines[0] and "missing: torch" in lines[0], lines[0]
    assert not (tmp_path / "x").exists()


def test_embed_works_without_the_export_extra(runtime_python: Path, tmp_path: Path, tiny_bert_artifacts: Path) -> None:
    code = f"from onnxembed.cli import main\nrc = main(['embed', {str(tiny_bert_artifacts)!r}, 'hello'])\nprint('torch' in sys.modules, 'onnx' in sys.modules)\nsys.exit(rc)"
    proc = _run(runtime_python, code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, last = proc.stdout.splitlines()[0], proc.stdout.splitlines()[-1]
    assert '"embedding"' in first and last == "False False"


def test_corpus_without_its_extra_prints_the_pip_line_and_exits_2(runtime_python: Path, tmp_path: Path, tiny_bert_artifacts: Path) -> None:
    """pyarrow is not part of the runtime install: ``onnxembed corpus`` says which extra to install."""
    (tmp_path / "in.txt").write_text("a text\n")
    argv = ["corpus", str(tiny_bert_artifacts), "in.txt", "--out", "out"]
    proc = _run(runtime_python, f"from onnxembed.cli import main\nsys.exit(main({argv!r}))", tmp_path)
    assert proc.returncode == 2, proc.stderr
    hint = _hint(runtime_python, "corpus", tmp_path)
    assert proc.stderr.strip().splitlines() == [f"onnxembed corpus: error: onnxembed corpus needs the corpus extra (missing: pyarrow); install it with: {hint}"]
    assert not (tmp_path / "out").exists()


def test_serve_without_its_extra_prints_the_pip_line_and_exits_2(runtime_python: Path, tmp_path: Path, tiny_bert_artifacts: Path) -> None:
    """The [cpu] install has no starlette/uvicorn: `onnxembed serve` says how to get them, in one line."""
    proc = _run(runtime_python, f"from onnxembed.cli import main\nsys.exit(main(['serve', {str(tiny_bert_artifacts)!r}]))", tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert _hint(runtime_python, "serve", tmp_path) in lines[0] and "missing: starlette" in lines[0], lines[0]


def test_verify_and_bench_work_without_the_export_extra(runtime_python: Path, tmp_path: Path, tiny_bert_artifacts: Path) -> None:
    """README: in a runtime-only install "embed, verify and bench work" (and load nothing of the export extra)."""
    folder = str(tiny_bert_artifacts)
    checks = {
        "verify": ["verify", folder],
        "bench": ["bench", folder, "--quick", "--rounds", "1", "--min-seconds", "0", "--no-progress"],
    }
    for name, argv in checks.items():
        code = f"from onnxembed.cli import main\nrc = main({argv!r})\nprint('torch' in sys.modules, 'onnx' in sys.modules)\nsys.exit(rc)"
        proc = _run(runtime_python, code, tmp_path)
        assert proc.returncode == 0, (name, proc.stdout[-2000:], proc.stderr[-3000:])
        assert proc.stdout.splitlines()[-1] == "False False", (name, proc.stdout[-500:])
        if name == "verify":
            assert proc.stdout.startswith(f"{folder}: OK"), proc.stdout[:500]
        else:
            assert "vs fp32" in proc.stdout and "1.00x" in proc.stdout, proc.stdout[-2000:]
