"""The runtime stays torch-free: a fresh interpreter imports onnxembed, embeds, and never loads the build stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("torch", "transformers", "tokenizers", "optimum", "onnx", "yaml", "sentence_transformers", "huggingface_hub")

CHECK = """
import json, sys
FORBIDDEN = {forbidden!r}
def loaded():
    return sorted({{m.split(".")[0] for m in sys.modules}} & set(FORBIDDEN))
{body}
print(json.dumps({{"loaded": loaded(), "result": result}}))
"""

LIBRARY = """
import onnxembed
emb = onnxembed.Embedder.load({folder!r})
vecs = emb.encode(["A man is playing a guitar.", "query: torch-free?"])
result = [list(vecs.shape), str(vecs.dtype), emb.variant]
"""

CLI = """
import contextlib, io
from onnxembed.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    code = main(["embed", {folder!r}, "one text"])
result = [code, len(json.loads(buf.getvalue().splitlines()[0])["embedding"])]
"""


def _dim(folder: Path) -> int:
    return int(json.loads((folder / "manifest.json").read_text())["dim"])


def _run(body: str) -> dict:
    script = CHECK.format(forbidden=FORBIDDEN, body=body)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_load_encode_loads_no_build_dependency(tiny_bert_artifacts: Path) -> None:
    out = _run(LIBRARY.format(folder=str(tiny_bert_artifacts)))
    assert out["loaded"] == [], f"the runtime imported {out['loaded']}"
    assert out["result"][:2] == [[2, _dim(tiny_bert_artifacts)], "float32"]


def test_embed_command_loads_no_build_dependency(tiny_bert_artifacts: Path) -> None:
    out = _run(CLI.format(folder=str(tiny_bert_artifacts)))
    assert out["loaded"] == [], f"onnxembed embed imported {out['loaded']}"
    assert out["result"] == [0, _dim(tiny_bert_artifacts)]


def test_the_check_itself_sees_onnx_when_it_is_imported() -> None:
    """Guard against a check that can never fail: importing onnx must show up."""
    import importlib.util

    if importlib.util.find_spec("onnx") is None:
        return
    out = _run("import onnx\nresult = None")
    assert out["loaded"] == ["onnx"]
