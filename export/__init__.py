"""onnxembed.export: checkpoint -> validated ONNX artifact folder (needs the ``export`` extra)."""

from __future__ import annotations

from onnxembed.extras import require_extra

require_extra("export", "onnxembed.export", modules=("torch", "transformers", "onnx", "yaml", "optimum"))

from .build import ALL_VARIANTS as ALL_VARIANTS
from .build import BuildResult as BuildResult
from .build import build_model as build_model
from .build import build_models as build_models
from .checkpoint import resolve_checkpoint as resolve_checkpoint
from .model_table import model_table as model_table
from .registry import ModelSpec as ModelSpec
from .registry import RegistryError as RegistryError
from .registry import get_spec as get_spec
from .registry import load_registry as load_registry

__all__ = ["ALL_VARIANTS", "BuildResult", "ModelSpec", "RegistryError", "build_model", "build_models", "get_spec", "load_registry", "model_table",
           "resolve_checkpoint"]
