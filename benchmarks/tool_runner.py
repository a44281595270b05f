"""One embedding tool in its own process, driven by ``compare_tools.py`` over stdin/stdout (JSON lines).

Runs in whichever virtual environment has the tool (fastembed and OpenVINO live in their own), so it
imports only the standard library and numpy at the top; each tool's packages are imported when it
loads. Protocol: the parent starts the process with ``--spec JSON --t0 EPOCH`` (its clock just before
spawning). The runner loads the tool, embeds one text and answers ``{"ready": ..., "cold_start_s":
...}``; then for each command line ``{"cmd": "run", "texts": FILE, "batch_size": B, "repeat": K}``
it answers ``{"times": [...]}`` (seconds per encode call); ``{"cmd": "embed", ..., "out": NPY}`` saves
the embeddings; ``{"cmd": "stats"}`` answers the peak RSS; ``{"cmd": "quit"}`` ends it.

Tool kinds (``spec["kind"]``):
  onnxembed     onnxembed.Embedder (spec: folder, variant, providers)
  ort-bare      tokenizers + onnxruntime.InferenceSession + numpy mean pooling, batches in input order
  st-torch      sentence-transformers on PyTorch fp32 (spec: checkpoint; "bf16": true for autocast)
  st-onnx       sentence-transformers backend="onnx" (spec: folder, file)
  optimum       optimum ORTModelForFeatureExtraction + AutoTokenizer + mean pooling, input order
  fastembed     fastembed TextEmbedding on a local folder, registered as a custom model (spec: folder, file)
  st-openvino   sentence-transformers backend="openvino" (spec: checkpoint or folder, file, precision)
Also ``python tool_runner.py quantize-openvino --checkpoint DIR --out DIR --calibration FILE``: NNCF
static int8 (sentence-transformers' OpenVINO int8 recipe, with local calibration sentences).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

Encoder = Callable[[list[str], int], np.ndarray]


def _rss_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def _mean_pool_np(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    v = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _ort_options(threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return so


def load_tool(spec: dict[str, Any], threads: int) -> Encoder:
    kind = spec["kind"]
    if kind == "onnxembed":
        from onnxembed import Embedder

        emb = Embedder.load(spec["folder"], variant=spec.get("variant", "auto"), providers=spec.get("providers"), threads=threads, verify=False)
        return lambda texts, b: emb.encode(texts, batch_size=b)
    if kind == "ort-bare":
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(spec["folder"]) / "tokenizer.json"))
        tok.enable_truncation(spec.get("max_length", 256))
        tok.enable_padding()
        sess = ort.InferenceSession(str(Path(spec["folder"]) / spec["file"]), sess_options=_ort_options(threads), providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]

        def bare(texts: list[str], b: int) -> np.ndarray:
            out = []
            for s in range(0, len(texts), b):
                enc = tok.encode_batch(texts[s:s + b])
                feed = {"input_ids": np.array([e.ids for e in enc], np.int64),
                        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                        "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}
                out.append(_mean_pool_np(sess.run(None, {n: feed[n] for n in names})[0], feed["attention_mask"]))
            return np.concatenate(out)
        return bare
    if kind == "st-torch":
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        model = SentenceTransformer(spec["checkpoint"], device="cpu")
        if spec.get("bf16"):
            def enc_bf16(texts: list[str], b: int) -> np.ndarray:
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    return model.encode(texts, batch_size=b, convert_to_numpy=True)
            return enc_bf16
        return lambda texts, b: model.encode(texts, batch_size=b, convert_to_numpy=True)
    if kind == "st-onnx":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(spec["folder"], backend="onnx", device="cpu", model_kwargs={
            "file_name": spec["file"], "provider": "CPUExecutionProvider", "session_options": _ort_options(threads)})
        return lambda texts, b: model.encode(texts, batch_size=b, convert_to_numpy=True)
    if kind == "optimum":
        import torch
        from optimum.onnxruntime import ORTModelForFeatureExtraction
        from transformers import AutoTokenizer

        torch.set_num_threads(threads)
        folder = Path(spec["folder"])
        sub, _, fname = spec["file"].rpartition("/")
        model = ORTModelForFeatureExtraction.from_pretrained(folder, subfolder=sub, file_name=fname, provider="CPUExecutionProvider",
                                                              session_options=_ort_options(threads))
        tok = AutoTokenizer.from_pretrained(folder)

        def opt(texts: list[str], b: int) -> np.ndarray:
            out = []
            for s in range(0, len(texts), b):
                enc = tok(texts[s:s + b], padding=True, truncation=True, max_length=spec.get("max_length", 256), return_tensors="pt")
                with torch.inference_mode():
                    hidden = model(**enc).last_hidden_state
                    m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    v = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                    out.append(torch.nn.functional.normalize(v, dim=1).numpy())
            return np.concatenate(out)
        return opt
    if kind == "fastembed":
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        name = f"local/{Path(spec['folder']).name}-{Path(spec['file']).stem}"
        TextEmbedding.add_custom_model(model=name, pooling=PoolingType.MEAN, normalization=True, sources=ModelSource(hf=name),
                                       dim=int(spec["dim"]), model_file=spec["file"])
        model = TextEmbedding(name, specific_model_path=spec["folder"], threads=threads, providers=["CPUExecutionProvider"])
        return lambda texts, b: np.stack(list(model.embed(texts, batch_size=b)))
    if kind == "st-openvino":
        from sentence_transformers import SentenceTransformer

        ov_config = {"INFERENCE_NUM_THREADS": str(threads), "INFERENCE_PRECISION_HINT": spec.get("precision", "f32")}
        kwargs: dict[str, Any] = {"ov_config": ov_config}
        if spec.get("file"):
            kwargs["file_name"] = spec["file"]
        model = SentenceTransformer(spec.get("folder") or spec["checkpoint"], backend="openvino", device="cpu", model_kwargs=kwargs)
        return lambda texts, b: model.encode(texts, batch_size=b, convert_to_numpy=True)
    raise ValueError(f"unknown tool kind {kind!r}")


def quantize_openvino(checkpoint: str, out: str, calibration: str, threads: int) -> None:
    """NNCF static int8 of the OpenVINO export (what ``export_static_quantized_openvino_model`` does,
    with local calibration sentences instead of a hub data set), saved where sentence-transformers looks."""
    import shutil

    import nncf
    import openvino as ov
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    model = SentenceTransformer(checkpoint, backend="openvino", device="cpu")
    dst = Path(out)
    if dst.exists():
        shutil.rmtree(dst)
    model.save(str(dst))  # writes openvino/openvino_model.xml and the sentence-transformers files
    tok = AutoTokenizer.from_pretrained(checkpoint)
    texts = json.loads(Path(calibration).read_text())
    ov_model = ov.Core().read_model(str(dst / "openvino" / "openvino_model.xml"))
    names = [i.get_any_name() for i in ov_model.inputs]
    feeds = []
    for s in range(0, len(texts), 8):
        enc = tok(texts[s:s + 8], padding=True, truncation=True, max_length=256, return_tensors="np")
        feeds.append({n: enc[n] for n in names if n in enc})
    q = nncf.quantize(ov_model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds))
    ov.save_model(q, str(dst / "openvino" / "openvino_model_qint8_quantized.xml"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", nargs="?", default="serve", choices=["serve", "quantize-openvino"])
    ap.add_argument("--spec", default="{}")
    ap.add_argument("--t0", type=float, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint")
    ap.add_argument("--out")
    ap.add_argument("--calibration")
    args = ap.parse_args()
    if args.mode == "quantize-openvino":
        quantize_openvino(args.checkpoint, args.out, args.calibration, args.threads)
        return 0
    t0 = args.t0 or time.time()
    spec = json.loads(args.spec)
    proto = sys.stdout
    sys.stdout = sys.stderr  # tools that print must not corrupt the protocol
    try:
        tl = time.perf_counter()
        encode = load_tool(spec, args.threads)
        load_s = time.perf_counter() - tl
        first = encode(["A man is playing a guitar."], 1)
        ready = {"ready": True, "cold_start_s": time.time() - t0, "load_s": load_s, "dim": int(np.asarray(first).shape[-1])}
    except Exception as e:  # report any tool failure to the parent as data
        ready = {"ready": False, "error": f"{type(e).__name__}: {e}"[:2000]}
    proto.write(json.dumps(ready) + "\n")
    proto.flush()
    if not ready["ready"]:
        return 1
    cache: dict[str, list[str]] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        if cmd["cmd"] == "stats":
            reply: dict[str, Any] = {"peak_rss_mb": _rss_kb("VmHWM") / 1024, "rss_mb": _rss_kb("VmRSS") / 1024}
        else:
            texts = cache.setdefault(cmd["texts"], json.loads(Path(cmd["texts"]).read_text()))
            times = []
            for _ in range(int(cmd.get("repeat", 1))):
                ts = time.perf_counter()
                vecs = encode(texts, int(cmd["batch_size"]))
                times.append(time.perf_counter() - ts)
            if cmd.get("out"):
                np.save(cmd["out"], np.asarray(vecs, dtype=np.float32))
            reply = {"times": times}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
