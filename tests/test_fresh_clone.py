"""README line 1 exactly as a new user runs it: a fresh copy of the repository with no ``shared/`` beside it,
no network (``HF_HUB_OFFLINE=1``, an empty Hugging Face cache), ``ONNXEMBED_DATA`` unset.

The demo must build every variant of the embedded model with the int8 accuracy gates judged (on the set
shipped in the package, the only data such a machine has), and the same line again must skip the build
without looking for calibration or gate data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_LINE = re.search(r"```bash\n(.*?)\n", (ROOT / "README.md").read_text(encoding="utf-8")).group(1)  # type: ignore[union-attr]


def _copy_checkout(dst: Path) -> None:
    """The files a clone of this checkout has (tracked, plus new files not ignored), as they are on disk now."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():  # a tracked file deleted in the work tree is not copied
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _user_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ONNXEMBED_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "PYTEST", "VIRTUAL_ENV", "PYTHON"))}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(home / "hf"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    return env


def _run_line(cwd: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", FIRST_LINE], cwd=cwd, env=env, capture_output=True, text=True, timeout=2400)
    return proc, time.monotonic() - started


def test_readme_line_1_on_a_fresh_offline_machine(tmp_path: Path) -> None:
    repo = tmp_path / "onnxembed"
    _copy_checkout(repo)
    assert not (tmp_path / "shared").exists() and (repo / "pyproject.toml").is_file()
    env = _user_env(tmp_path)

    proc, first = _run_line(repo, env)
    tail = f"exit {proc.returncode} after {first:.0f} s\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, tail
    print(f"README line 1, first run: {first:.0f} s\n{proc.stdout[-1500:]}")

    folder = repo / "artifacts" / "all-minilm-l6-v2"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    int8 = {n: v for n, v in manifest["variants"].items() if v.get("precision") == "int8"}
    assert set(int8) == {"qint8_avx512_vnni", "quint8_avx2", "qint8_arm64"}, sorted(manifest["variants"])
    for name, v in int8.items():
        acc = v["accuracy"]
        assert acc["gates_passed"] is True, (name, acc)
        held = acc["data"]["heldout"]
        assert held["source"].startswith("shipped set") and held["texts"] >= 2000, held  # the only data here
        assert acc["data"]["sts_pairs"]["pairs"] >= 500
        assert v["recipe"]["calibration"]["source"].startswith("shipped set")
    err = proc.stderr
    assert "gates judged on shipped set" in err, err[-3000:]
    assert "Retrying in" not in err and "hf_hub" not in err.lower()  # offline: the hub was never tried

    again, second = _run_line(repo, env)
    assert again.returncode == 0, f"stdout:\n{again.stdout[-3000:]}\nstderr:\n{again.stderr[-3000:]}"
    assert "skipped" in again.stdout and "inputs unchanged" in again.stdout, again.stdout[-2000:]
    assert "int8 calibration on" not in again.stderr  # up to date: no data was resolved
    print(f"README line 1, second run (skipped): {second:.0f} s")
