"""onnxembed.cli: the ``onnxembed`` command, a thin argparse layer over the stages' public functions.

Only this package prints. ``python -m onnxembed.cli`` runs it too.
"""

from __future__ import annotations

from .main import build_parser as build_parser
from .main import main as main

__all__ = ["build_parser", "main"]
