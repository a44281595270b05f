"""``onnxembed demo`` and ``build`` print no known-harmless third-party noise, and real warnings still show.

One tiny fp32 build through the demo (a driver wraps ``build_model`` to emit a real warning and a
real transformers log record through the same process), the same build through the library's
``build_model`` (no CLI, so no filter) as the control that shows the noise is really emitted on this
path, and through ``onnxembed build``, which must be as quiet as the demo.
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
    lib = f"import onnxembed.export as e; e.build_model({checkpoint!r}, {str(tmp_path / 'control')!r}, variants='fp32')"
    control = subprocess.run([sys.executable, "-c", lib], capture_output=True, text=True, env=env, timeout=900)
    assert control.returncode == 0, control.stderr[-3000:]
    assert all(n in control.stderr for n in NOISE), control.stderr  # the noise is real on this path
    cli = run_cli("build", checkpoint, "--out", str(tmp_path / "cli"), "--variants", "fp32", env=tiny_registry["env"])
    assert not [n for n in NOISE if n in cli.stderr], cli.stderr

    proc = subprocess.run([sys.executable, "-c", DRIVER, "demo", "--model", checkpoint, "--out", str(tmp_path / "demo"),
                           "--variants", "fp32", "--no-bench"], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for n in NOISE:
        assert n not in proc.stderr, proc.stderr
    for real in ("a real warning from the build", "a real transformers warning", "a real optimum warning"):
        assert real in proc.stderr, proc.stderr
    assert "query:" in proc.stdout
