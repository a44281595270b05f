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
                task: str = "embed") -> Path:
    """Export a checkpoint's ``last_hidden_state`` (task ``embed``) or its classifier's ``logits`` (task
    ``rerank``, a ``*ForSequenceClassification`` cross-encoder) to one self-contained ONNX file.

    Args:
        checkpoint: a local transformers checkpoint folder.
        dst: the ``.onnx`` file to write.
        expected_inputs: the inputs the architecture takes; the export fails if the graph differs.
        opset: ONNX opset; None lets optimum choose (18 with current versions).
        task: ``embed`` or ``rerank``.

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
        if (Path(tmp) / "model.onnx_data").exists():
            raise RuntimeError(f"export of {checkpoint} produced external data; models over 2 GB are not supported")
        inputs, outputs = graph_io_names(produced)
        want = "logits" if task == "rerank" else "last_hidden_state"
        if tuple(inputs) != tuple(expected_inputs) or want not in outputs:
            raise RuntimeError(
                f"exported graph of {checkpoint} has inputs {inputs} and outputs {outputs}; "
                f"expected inputs {list(expected_inputs)} and a {want} output"
            )
        shutil.move(str(produced), dst)
    logger.info("exported %s -> %s (%.1f MB)", checkpoint, dst, dst.stat().st_size / 1e6)
    return dst
