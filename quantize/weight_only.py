"""Weight-only int8 (``MatMulNBits``): the other int8 recipe for decoders, beside the static QDQ graph.

Each MatMul whose second input is a weight becomes ``MatMulNBits`` with 8-bit symmetric blocks of
``block_size`` values along the input dimension, one fp32 scale per block; activations stay float in the
graph (with ``accuracy_level=4`` the CPU kernel quantizes them to int8 per block on the fly). No
calibration, no fixed activation scales: an embedding never depends on its batch neighbours. Compared
with the static QDQ file by structure in the tests and by speed in ``benchmarks/decoder_int8.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .onnx_files import save_model

__all__ = ["weight_only_int8"]

logger = logging.getLogger(__name__)


def weight_only_int8(src: str | Path, dst: str | Path, *, block_size: int = 32, accuracy_level: int = 4,
                     external_threshold: int | None = None) -> dict[str, int]:
    """Write the weight-only int8 (MatMulNBits) form of the fp32 file ``src`` to ``dst``.

    Args:
        src: an fp32 ONNX file (the plain export).
        dst: the file to write (with ``<dst>_data`` beside it when the weights pass ``external_threshold``).
        block_size: values per quantization block (a power of two >= 16).
        accuracy_level: MatMulNBits' compute type: 4 = int8 activations in the kernel, 0 = float.
        external_threshold: see :func:`onnxembed.quantize.onnx_files.save_model`.

    Returns:
        The operator counts of the written file (:func:`onnxembed.export.fusion.fused_op_counts` keys).

    >>> weight_only_int8("onnx/model.onnx", "onnx/model_wint8.onnx")  # doctest: +SKIP
    {'MatMul': 5, 'MatMulNBits': 14}
    """
    import onnx

    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    except ImportError as e:
        from onnxembed.extras import install_hint

        raise ImportError(f"weight-only int8 needs onnxruntime's MatMulNBits quantizer and onnx-ir ({e}); install: {install_hint('export')}") from e
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size={block_size}: expected a power of two >= 16")
    model = onnx.load(str(src))
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=8, accuracy_level=accuracy_level)
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    level = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    old = level.level
    level.setLevel(logging.WARNING)  # it logs one INFO line per node
    try:
        quantizer.process()
    finally:
        level.setLevel(old)
    out = quantizer.model.model
    dst = Path(dst)
    save_model(out, dst, external_threshold=external_threshold)
    from collections import Counter

    counts = Counter(n.op_type for n in out.graph.node if n.op_type in ("MatMul", "MatMulNBits"))
    logger.info("weight-only int8: %s -> %s %s", Path(src).name, dst.name, dict(counts))
    return {k: counts[k] for k in sorted(counts)}
