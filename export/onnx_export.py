"""Checkpoint -> ``onnx/model.onnx`` (fp32, dynamic batch and sequence axes) with optimum's exporter."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

__all__ = ["export_onnx", "graph_io_names"]

logger = logging.getLogger(__name__)


def graph_io_names(path: str | Path) -> tuple[list[str], list[str]]:
    """Input and output names a model file declares (reads the graph only, not the weights)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits], [o.name for o in m.graph.output]


def export_onnx(checkpoint: str | Path, dst: str | Path, *, expected_inputs: tuple[str, ...], opset: int | None = None,
                task: str = "embed", external_threshold: int | None = None) -> Path:
    """Export a checkpoint's ``last_hidden_state`` (task ``embed``) or its classifier's ``logits`` (task
    ``rerank``, a ``*ForSequenceClassification`` cross-encoder) to an ONNX file: one self-contained file,
    or, when the weights pass ``external_threshold`` bytes (protobuf cannot hold 2 GB), the graph in
    ``dst`` and the weights in ``<dst name>_data`` beside it.

    Args:
        checkpoint: a local transformers checkpoint folder.
        dst: the ``.onnx`` file to write.
        expected_inputs: the inputs the architecture takes; the export fails if the graph differs.
        opset: ONNX opset; None lets optimum choose (18 with current versions).
        task: ``embed`` or ``rerank``.
        external_threshold: see :func:`onnxembed.quantize.onnx_files.save_model` (default: under 2 GB).

    Returns:
        ``dst``.
    """
    from optimum.exporters.onnx import main_export

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="onnxembed-export-", dir=dst.parent) as tmp:
        kwargs = {"opset": opset} if opset else {}
        main_export(
            str(checkpoint),
            tmp,
            task="text-classification" if task == "rerank" else "feature-extraction",
            library_name="transformers",
            do_validation=False,  # validated against PyTorch by onnxembed.export.validate
            device="cpu",
            **kwargs,
        )
        produced = Path(tmp) / "model.onnx"
        inputs, outputs = graph_io_names(produced)
        want = "logits" if task == "rerank" else "last_hidden_state"
        if tuple(inputs) != tuple(expected_inputs) or want not in outputs:
            raise RuntimeError(
                f"exported graph of {checkpoint} has inputs {inputs} and outputs {outputs}; "
                f"expected inputs {list(expected_inputs)} and a {want} output"
            )
        data = _place(produced, dst, external_threshold)
    size = sum(p.stat().st_size for p in [dst, *(dst.parent / d for d in data)])
    logger.info("exported %s -> %s (%.1f MB%s)", checkpoint, dst, size / 1e6, f", weights in {data}" if data else "")
    return dst


def _place(produced: Path, dst: Path, external_threshold: int | None) -> list[str]:
    """Move the exporter's file (and its data file, for a model over 2 GB) to ``dst`` in the layout the
    threshold asks for; the data files written."""
    import onnx

    from ..quantize.onnx_files import EXTERNAL_DATA_THRESHOLD, data_files, save_model

    limit = EXTERNAL_DATA_THRESHOLD if external_threshold is None else external_threshold
    if not data_files(produced) and produced.stat().st_size <= limit:
        shutil.move(str(produced), dst)  # the common case: a small model, moved as it is
        (dst.parent / (dst.name + "_data")).unlink(missing_ok=True)
        return []
    # optimum writes a model over 2 GB as model.onnx + model.onnx_data (or one file per tensor, by version):
    # rewritten with one data file named after dst, or into one file when the threshold allows it
    return save_model(onnx.load(str(produced)), dst, external_threshold=limit)
