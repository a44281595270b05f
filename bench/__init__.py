"""onnxembed.bench: the engine behind ``onnxembed bench`` (variants of an artifact folder, timed here).

Needs only the standard library, numpy and onnxruntime, like the runtime it measures; it is not
part of the runtime core, which never imports it.
"""

from __future__ import annotations

from .accuracy import ACCURACY_SENTENCES as ACCURACY_SENTENCES
from .engine import bench as bench
from .engine import plot_result as plot_result
from .machine import flops_per_token as flops_per_token
from .machine import machine_info as machine_info
from .machine import peak_gflops as peak_gflops
from .result import BenchResult as BenchResult
from .result import Measurement as Measurement
from .result import VariantReport as VariantReport
from .workloads import Workload as Workload

__all__ = ["ACCURACY_SENTENCES", "BenchResult", "Measurement", "VariantReport", "Workload", "bench", "flops_per_token",
           "machine_info", "peak_gflops", "plot_result"]
