"""Peak memory of one variant, measured in a fresh interpreter so variants do not share arenas.

The probe reports the RSS growth from loading the variant and from running its largest workload
twice: ``VmRSS`` after loading and ``VmHWM`` after running, both minus the RSS once onnxruntime is
imported. Linux only (``/proc/self/status``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from .workloads import synthetic_feed

__all__ = ["measure_peak_memory", "run_probe"]

STATUS = Path("/proc/self/status")
PROBE = "import json,sys; from onnxembed.bench.memory import run_probe; run_probe(*json.loads(sys.stdin.read()))"


def _status_kb(key: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"{key} not in {STATUS}")


def _reset_high_water_mark() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS (Linux >= 4.0)
    except OSError:
        pass


def run_probe(folder: str, variant: str, batch: int, seq: int, threads: int, providers: list[Any],
              texts: list[str] | None, out: str) -> None:
    """In the fresh interpreter: load, run the workload twice, write ``{"load_kb", "peak_kb"}`` to ``out``."""
    import onnxruntime  # noqa: F401  (imported before the baseline so its own pages are not counted)

    from ..manifest import load_manifest
    from .selection import model_class

    base = _status_kb("VmRSS")
    _reset_high_water_mark()
    emb = model_class(load_manifest(folder)).load(folder, variant=variant, providers=providers or None, threads=threads or None, verify=False)
    loaded = _status_kb("VmRSS")
    for _ in range(2):
        if texts:
            emb.encode(texts, batch_size=batch)
        else:
            emb.session.run(None, synthetic_feed(emb.session, emb.manifest.vocab_size, batch, seq))
    Path(out).write_text(json.dumps({"load_kb": loaded - base, "peak_kb": _status_kb("VmHWM") - base}))


def measure_peak_memory(folder: Path, variant: str, batch: int, seq: int, threads: int | None,
                        providers: Sequence[Any] | None, texts: Sequence[str] | None) -> tuple[float, float]:
    """``(MB after loading, peak MB while running)`` of one variant, each above the onnxruntime baseline.

    Raises:
        OSError: not Linux (no ``/proc``).
        RuntimeError: the probe process failed (its last stderr line is in the message).
        subprocess.TimeoutExpired: the probe ran over 15 minutes.
    """
    if not STATUS.exists():
        raise OSError("peak memory needs Linux /proc")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "mem.json"
        args = [str(folder), variant, batch, seq, threads or 0, list(providers or []), list(texts) if texts else None, str(out)]
        proc = subprocess.run([sys.executable, "-c", PROBE], input=json.dumps(args), capture_output=True, text=True, timeout=900)
        if proc.returncode:
            raise RuntimeError(f"memory probe for {variant} failed: {proc.stderr.strip().splitlines()[-1:]}")
        res = json.loads(out.read_text())
    return res["load_kb"] / 1024, res["peak_kb"] / 1024
