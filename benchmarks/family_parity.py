"""Parity of a built folder's torch-free ``Embedder`` with sentence-transformers (torch) on its checkpoint.

2,000 texts by default: real STS sentences plus probe sentences in several scripts (Latin with accents,
Cyrillic, Greek, Arabic, Devanagari, CJK, emoji, mixed), and texts longer than the model's length. Prints
min / mean cosine and max |diff| per variant, and the tokenizer's id mismatches against the checkpoint's
own (Rust) tokenizer on the same texts. Usage:

    python benchmarks/family_parity.py ARTIFACT_DIR CHECKPOINT_DIR [--texts 2000] [--variants fp32,qint8_avx512_vnni]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_runtime import sts_sentences  # noqa: E402

PROBES = (
    "Zwei Männer spielen Fußball auf einer grünen Wiese.", "Le café est très chaud ce matin, n'est-ce pas ?",
    "Быстрая коричневая лиса прыгает через ленивую собаку.", "Η γρήγορη καφέ αλεπού πηδά πάνω από το τεμπέλικο σκυλί.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.", "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "敏捷的棕色狐狸跳过了懒狗。", "素早い茶色の狐がのろまな犬を飛び越える。", "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "I love this 😀👍🏽 — and 👨‍👩‍👧‍👦 too!", "ﬁnancial ﬂow of ＦＵＬＬＷＩＤＴＨ text", "naïve café résumé Ångström",
    "code: def f(x): return x**2  # squares", "e\u0301 combining a\u0308 marks", "zero\u200bwidth\u00a0nbsp",
)


def texts(n: int) -> list[str]:
    base = sts_sentences(n)
    probes = [p for i in range(max(1, n // 10)) for p in (PROBES[i % len(PROBES)],)]
    long = [" ".join(base[i: i + 40]) for i in range(0, 40 * 5, 40)]  # past any model's max length
    out = list(dict.fromkeys(probes + long + base))
    return out[:n]


def parity(artifact: Path, checkpoint: Path, data: list[str], variants: list[str]) -> dict[str, dict[str, float]]:
    """Per variant: min / mean cosine and max |diff| of ``Embedder.encode`` against sentence-transformers
    (torch) on the checkpoint, plus ``tokenizer_mismatches``: texts whose ids differ from the Rust library's."""
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer as RustTokenizer

    from onnxembed import Embedder

    st = SentenceTransformer(str(checkpoint), device="cpu")
    ref = st.encode(data, batch_size=32, convert_to_numpy=True, normalize_embeddings=False)
    out: dict[str, dict[str, float]] = {}
    for v in variants:
        ours = Embedder.load(artifact, variant=v).encode(data)
        cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
        out[v] = {"min_cos": float(cos.min()), "mean_cos": float(cos.mean()), "max_abs_diff": float(np.abs(ours - ref).max())}
    rust = RustTokenizer.from_file(str(artifact / "tokenizer.json"))
    rust.no_padding()
    rust.no_truncation()
    ours_tok = Embedder.load(artifact, variant="fp32").tokenizer
    out["tokenizer"] = {"mismatches": sum(1 for t in data if rust.encode(t).ids != ours_tok.encode(t)), "texts": len(data)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--variants", default="fp32")
    args = ap.parse_args()

    data = texts(args.texts)
    res = parity(args.artifact, args.checkpoint, data, args.variants.split(","))
    tok = res.pop("tokenizer")
    print(f"{len(data)} texts; sentence-transformers (torch) on {args.checkpoint}")
    for v, r in res.items():
        print(f"{v:<20} min cos {r['min_cos']:.7f}  mean cos {r['mean_cos']:.7f}  max|diff| {r['max_abs_diff']:.2e}")
    print(f"tokenizer: {tok['mismatches']} of {len(data)} texts with ids different from the Rust library (no truncation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
