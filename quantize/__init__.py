"""onnxembed.quantize: accuracy-gated static int8 variants of an fp32 export (needs the ``export`` extra)."""

from __future__ import annotations

from onnxembed.extras import require_extra

require_extra("export", "onnxembed.quantize", modules=("torch", "transformers", "onnx", "yaml", "optimum"))

from .api import QuantizeResult as QuantizeResult
from .api import quantize_model as quantize_model
from .presets import DEFAULT_GATES as DEFAULT_GATES
from .presets import PRESETS as PRESETS
from .presets import Preset as Preset
from .presets import get_preset as get_preset
from .qdq import QuantScheme as QuantScheme

__all__ = ["DEFAULT_GATES", "PRESETS", "Preset", "QuantScheme", "QuantizeResult", "get_preset", "quantize_model"]
