"""onnxembed: a torch-free sentence embedder on ONNX Runtime.

>>> from onnxembed import Embedder                      # doctest: +SKIP
>>> Embedder.load("artifacts/all-minilm-l6-v2").encode(["hello"]).shape
(1, 384)
"""

from __future__ import annotations

from .batching import Tokens as Tokens
from .batching import plan_batches as plan_batches
from .embedder import Embedder as Embedder
from .errors import IntegrityError as IntegrityError
from .errors import ManifestError as ManifestError
from .errors import ProviderUnavailableError as ProviderUnavailableError
from .errors import ValidationError as ValidationError
from .manifest import Manifest as Manifest
from .manifest import load_manifest as load_manifest
from .pooling import cosine_similarity as cosine_similarity
from .reranker import Ranked as Ranked
from .reranker import Reranker as Reranker
from .tokenizer import Tokenizer as Tokenizer

__version__ = "0.1.0"

__all__ = [
    "Embedder",
    "IntegrityError",
    "Manifest",
    "ManifestError",
    "ProviderUnavailableError",
    "Ranked",
    "Reranker",
    "Tokenizer",
    "Tokens",
    "ValidationError",
    "cosine_similarity",
    "load_manifest",
    "plan_batches",
]
