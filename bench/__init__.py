"""onnxembed.bench: the engine behind ``onnxembed bench`` (variants of an artifact folder, timed here).

Needs only the standard library, numpy and onnxruntime, like the runtime it measures; it is not
part of the runtime core, which never imports it.
"""

from __future__ import annotations

from .engine import ACCURACY_SENTENCES as ACCURACY_SENTENCES
from .engine import BenchResult as BenchResult
from .engine import Measurement as Measurement
from .engine import VariantReport as VariantReport
from .engine import bench as bench
from .engine import plot_result as plot_result
from .machine import flops_per_token as flops_per_token
from .machine import machine_info as machine_info
from .machine import peak_gflops as peak_gflops

__all__ = ["ACCURACY_SENTENCES", "BenchResult", "Measurement", "VariantReport", "bench", "flops_per_token",
           "machine_info", "peak_gflops", "plot_result"]
