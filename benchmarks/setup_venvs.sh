#!/usr/bin/env bash
# Virtual environments for the competitors that cannot share onnxembed's (each would replace its
# onnxruntime or pin other transformers): compare_tools.py looks for them at these paths and
# reports a row as "not measured" when one is missing. About 7 GB in all (see the note on torch).
set -euo pipefail
# sentence-transformers backend="openvino" (optimum-intel, OpenVINO) and NNCF for its static int8.
# optimum-intel requires torchvision, which pulls a newer (CUDA) torch over the CPU pin; torch is only
# used there to export the checkpoint to OpenVINO IR, inference runs on OpenVINO.
[ -x /tmp/bench-ov/bin/python ] || { python3 -m venv /tmp/bench-ov && /tmp/bench-ov/bin/pip install -q torch==2.13.0 \
  && /tmp/bench-ov/bin/pip install -q "sentence-transformers[openvino]" nncf; }
# fastembed (brings its own onnxruntime); it loads a local folder offline with specific_model_path.
[ -x /tmp/bench-fe/bin/python ] || { python3 -m venv /tmp/bench-fe && /tmp/bench-fe/bin/pip install -q fastembed; }
# onnxruntime-openvino for onnxembed's OpenVINO-EP bf16 row (onnxembed itself comes from this
# checkout through PYTHONPATH, it needs only numpy and onnxruntime).
[ -x /tmp/bench-ortov/bin/python ] || { python3 -m venv /tmp/bench-ortov && /tmp/bench-ortov/bin/pip install -q onnxruntime-openvino numpy; }
echo "venvs ready: /tmp/bench-ov /tmp/bench-fe /tmp/bench-ortov"
