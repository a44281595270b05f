"""onnxembed.quantize: accuracy-gated static int8 variants of an fp32 export (needs the ``export`` extra)."""

from __future__ import annotations

import importlib.util

EXPORT_EXTRA = ("torch", "transformers", "onnx", "yaml", "optimum")
EXPORT_EXTRA_HINT = "pip install torch==2.13.0 && pip install 'onnxembed[export,cpu]'"


def require_export_extra(stage: str) -> None:
    """Raise ImportError whose message is the pip command, if a package of the export extra is missing."""
    missing = [m for m in EXPORT_EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{stage} needs the export extra (missing: {', '.join(missing)}); install it with: {EXPORT_EXTRA_HINT}")


require_export_extra("onnxembed.quantize")

from .api import QuantizeResult as QuantizeResult
from .api import quantize_model as quantize_model
from .presets import DEFAULT_GATES as DEFAULT_GATES
from .presets import PRESETS as PRESETS
from .presets import Preset as Preset
from .presets import get_preset as get_preset
from .qdq import QuantScheme as QuantScheme

__all__ = ["EXPORT_EXTRA_HINT", "require_export_extra", "DEFAULT_GATES", "PRESETS", "Preset", "QuantScheme", "QuantizeResult", "get_preset", "quantize_model"]
