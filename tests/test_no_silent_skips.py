"""The suite's rule for skips: a missing test dependency fails (it would otherwise hide whole files behind
a green run); a skip for hardware the machine lacks stays a skip. Checked on a scratch suite that uses
this conftest."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def test_a_missing_dependency_fails_and_a_hardware_skip_stays_a_skip(tmp_path: Path) -> None:
    shutil.copyfile(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_module_level.py").write_text(
        "import pytest\nmissing = pytest.importorskip('no_such_module_for_onnxembed')\n\ndef test_a():\n    pass\n")
    (tmp_path / "test_in_tests.py").write_text(
        "import pytest\n\ndef test_b():\n    pytest.importorskip('no_such_module_for_onnxembed')\n\n"
        "def test_c():\n    pytest.skip('this machine has no GPU')\n\ndef test_d():\n    pass\n")
    def run(name: str) -> tuple[int, str]:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", name],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        return proc.returncode, proc.stdout

    code, out = run("test_in_tests.py")
    summary = out.strip().splitlines()[-1]
    assert code == 1 and "1 failed" in summary and "1 passed" in summary and "1 skipped" in summary, out
    assert "FAILED test_in_tests.py::test_b" in out and "A test dependency is missing" in out and "no GPU" in out, out
    code, out = run("test_module_level.py")  # at import: a collection error, which stops the run
    assert code == 2 and "ERROR test_module_level.py" in out and "A test dependency is missing" in out, out
