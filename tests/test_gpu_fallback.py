"""Silent provider fallback with the real accelerator packages, each in its own environment.

onnxruntime-gpu and onnxruntime-openvino overwrite the plain onnxruntime package, so they live in
separate virtual environments. The OpenVINO one is made by the ``openvino_python`` fixture on the first
run (``.venv-openvino/`` beside ``.venv/``, git-ignored: numpy, onnxruntime-openvino and this checkout,
no torch; about two minutes, then reused while ``pyproject.toml`` is unchanged), so the OpenVINO tests
run on every CI, on any x86-64 CPU (onnxruntime-openvino has CPU wheels for x86-64 only). Set
``ONNXEMBED_OPENVINO_PYTHON`` to use another such venv. The GPU one needs a GPU to mean anything, so it
is only used when named, and skipped otherwise:

    python3 -m venv /tmp/gpu && /tmp/gpu/bin/pip install onnxruntime-gpu numpy \\
        && /tmp/gpu/bin/pip install -e . --no-deps
    ONNXEMBED_GPU_PYTHON=/tmp/gpu/bin/python pytest tests/test_gpu_fallback.py

Without a GPU, onnxruntime-gpu lists CUDAExecutionProvider as available yet creates sessions on the
CPU with only a log line: auto mode must warn and take the CPU choice, explicit CUDA must raise. On a
machine with a working GPU the same test checks the O4 file really runs on CUDA.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPENVINO_VENV = REPO / ".venv-openvino"

PROBE = """
import json, logging, sys
import numpy as np
import onnxruntime as ort
from onnxembed import Embedder, ProviderUnavailableError
records = []
class H(logging.Handler):
    def emit(self, r): records.append(r.getMessage())
logging.getLogger("onnxembed").addHandler(H()); logging.getLogger("onnxembed").setLevel(logging.INFO)
folder = sys.argv[1]
out = {"available": ort.get_available_providers()}
ref = Embedder.load(folder, variant="fp32", providers=["CPUExecutionProvider"], verify=False)
texts = ["A man is playing a guitar.", "A woman is slicing an onion.", "word " * 400]
base = ref.encode(texts)
def attempt(name, **kw):
    try:
        emb = Embedder.load(folder, **kw)
        vecs = emb.encode(texts)
        out[name] = {"variant": emb.variant, "providers": emb.providers, "min_cos": float((vecs * base).sum(1).min())}
    except ProviderUnavailableError as e:
        out[name] = {"error": str(e)}
{attempts}
out["log"] = records
print(json.dumps(out))
"""

GPU_ATTEMPTS = """
attempt("auto")
attempt("explicit_cuda", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
"""

OV_BF16 = {"device_type": "CPU", "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}})}
OV_ATTEMPTS = f"""
attempt("bf16_load_config", variant="fp32", providers=[("OpenVINOExecutionProvider", {OV_BF16!r}), "CPUExecutionProvider"])
attempt("precision_BF16", variant="fp32", providers=[("OpenVINOExecutionProvider", {{"precision": "BF16"}}), "CPUExecutionProvider"])
"""


def _python(var: str) -> str:
    exe = os.environ.get(var)
    if not exe:
        pytest.skip(f"{var} is not set: point it at the python of a venv with that onnxruntime flavour (see this module's docstring)")
    if not Path(exe).is_file():
        pytest.skip(f"{var}={exe} does not exist")
    return exe


@pytest.fixture(scope="session")
def openvino_python() -> str:
    """The python of a venv with ``onnxembed[openvino]``: ``$ONNXEMBED_OPENVINO_PYTHON``, else ``.venv-openvino``,
    made (or brought up to date) here. Failing to make it fails the tests: it is not optional hardware."""
    given = os.environ.get("ONNXEMBED_OPENVINO_PYTHON")
    if given:
        if not Path(given).is_file():
            pytest.fail(f"ONNXEMBED_OPENVINO_PYTHON={given} does not exist")
        return given
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"onnxruntime-openvino publishes CPU wheels for x86-64 only, this machine is {platform.machine()}")
    python = OPENVINO_VENV / "bin" / "python"
    stamp = OPENVINO_VENV / ".onnxembed-stamp"
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if python.is_file() and stamp.is_file() and stamp.read_text() == key:
        return str(python)
    steps = ([] if python.is_file() else [[sys.executable, "-m", "venv", str(OPENVINO_VENV)]]) + [
        [str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[openvino]"]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            pytest.fail(f"making the OpenVINO venv failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    stamp.write_text(key)
    return str(python)


def _probe(exe: str, folder: Path, attempts: str, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(
        [exe, "-c", PROBE.replace("{attempts}", attempts), str(folder)],
        capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cuda_listed_but_not_working(default_artifacts: Path) -> None:
    out = _probe(_python("ONNXEMBED_GPU_PYTHON"), default_artifacts, GPU_ATTEMPTS)
    if "CUDAExecutionProvider" not in out["available"]:
        pytest.skip(f"that environment lists no CUDAExecutionProvider: {out['available']}")
    auto = out["auto"]
    if auto["providers"][0] == "CUDAExecutionProvider":  # a machine with a working GPU
        assert auto["variant"] in ("O4", "fp32") and auto["min_cos"] > 0.999
        assert out["explicit_cuda"]["providers"][0] == "CUDAExecutionProvider"
        return
    assert auto["providers"] == ["CPUExecutionProvider"]
    assert not auto["variant"].startswith("O4") and auto["min_cos"] > 0.95
    assert any("fell back silently" in line for line in out["log"]), out["log"]
    assert "CUDAExecutionProvider was requested" in out["explicit_cuda"]["error"]


def test_openvino_bf16_options_and_the_rejected_precision_option(default_artifacts: Path, openvino_python: str) -> None:
    out = _probe(openvino_python, default_artifacts, OV_ATTEMPTS)
    assert "OpenVINOExecutionProvider" in out["available"], out["available"]
    ok = out["bf16_load_config"]
    assert ok["providers"][0] == "OpenVINOExecutionProvider" and ok["min_cos"] > 0.999, ok
    # precision="BF16" is rejected by the CPU plugin and onnxruntime silently runs on the CPU: caught.
    assert "OpenVINOExecutionProvider was requested" in out["precision_BF16"]["error"]


def test_openvino_is_the_auto_choice_on_an_amx_cpu(default_artifacts: Path, openvino_python: str) -> None:
    """AMX faked through ONNXEMBED_CPU_FEATURES: auto picks the fused O2 file on OpenVINO with bf16,
    and OpenVINO really runs it (its fused Attention/SkipLayerNorm ops are not left to the CPU provider)."""
    out = _probe(openvino_python, default_artifacts, 'attempt("auto")', env={"ONNXEMBED_CPU_FEATURES": "avx2,avx512_vnni,amx_tile,amx_int8,amx_bf16"})
    assert "OpenVINOExecutionProvider" in out["available"], out["available"]
    assert out["auto"]["variant"] == "O2" and out["auto"]["providers"][0] == "OpenVINOExecutionProvider", out
    assert out["auto"]["min_cos"] > 0.999


def test_openvino_runs_the_int8_file_on_a_vnni_cpu_without_amx(default_artifacts: Path, openvino_python: str) -> None:
    """AVX512-VNNI without AMX (faked, so the test means the same on any x86 host): auto picks the
    static int8 file on OpenVINO, and it embeds like that file on the CPU provider."""
    attempts = 'attempt("auto")\nattempt("int8_cpu", variant="qint8_avx512_vnni", providers=["CPUExecutionProvider"])'
    out = _probe(openvino_python, default_artifacts, attempts, env={"ONNXEMBED_CPU_FEATURES": "avx2,avx512f,avx512_vnni"})
    assert "OpenVINOExecutionProvider" in out["available"], out["available"]
    auto = out["auto"]
    assert auto["variant"] == "qint8_avx512_vnni" and auto["providers"][0] == "OpenVINOExecutionProvider", out
    # Same file, two engines: both close to fp32 on the probe texts (one is 400 repeated words, an
    # outlier for int8, hence the margin below the manifest's real-sentence gate of 0.98).
    assert auto["min_cos"] > 0.95 and out["int8_cpu"]["min_cos"] > 0.95, out
