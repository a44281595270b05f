"""``onnxembed demo`` prints no known-harmless third-party noise, and real warnings still show.

One tiny fp32 build through the demo (a driver wraps ``build_model`` to emit a real warning and a
real transformers log record through the same process), and the same build through ``onnxembed
build`` as the control that shows the noise is really emitted on this path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import run_cli

NOISE = ("torch_dtype", "TracerWarning", "requires accelerate")
DRIVER = r"""
import logging, sys, warnings
import onnxembed.export as export
from onnxembed.cli import main

real_build = export.build_model

def build_model(*args, **kwargs):
    warnings.warn("a real warning from the build", UserWarning)
    logging.getLogger("transformers.modeling_utils").warning("a real transformers warning")
    logging.getLogger("optimum.exporters.onnx.base").warning("a real optimum warning")
    return real_build(*args, **kwargs)

export.build_model = build_model
sys.exit(main(sys.argv[1:]))
"""


def test_demo_silences_known_noise_and_keeps_real_warnings(tiny_registry: dict, tmp_path: Path) -> None:
    import os

    checkpoint = str(tiny_registry["checkpoints"]["gte-small"])
    env = {**os.environ, **tiny_registry["env"]}
    control = run_cli("build", checkpoint, "--out", str(tmp_path / "control"), "--variants", "fp32", env=tiny_registry["env"])
    assert all(n in control.stderr for n in NOISE), control.stderr  # the noise is real on this path

    proc = subprocess.run([sys.executable, "-c", DRIVER, "demo", "--model", checkpoint, "--out", str(tmp_path / "demo"),
                           "--variants", "fp32", "--no-bench"], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for n in NOISE:
        assert n not in proc.stderr, proc.stderr
    for real in ("a real warning from the build", "a real transformers warning", "a real optimum warning"):
        assert real in proc.stderr, proc.stderr
    assert "query:" in proc.stdout
