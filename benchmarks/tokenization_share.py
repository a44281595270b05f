"""Share of tokenization in ``Embedder.encode`` on a multilingual-e5-small-shaped int8 model (issue 17).

Usage: ``python benchmarks/tokenization_share.py [--texts 2000] [--rounds 5] [--work /tmp/e5-shape]``

Builds, once, a random-weight checkpoint of multilingual-e5-small's shape -- a BERT body of 12 layers x
384 hidden (12 heads, 1,536 intermediate), 250,037 word rows, 512 positions, mean pooling, normalized,
``query: ``/``passage: `` prompts -- with the real XLM-R ``tokenizer.json`` (250,002 pieces, fetched by
``tests/tokenizer_fixtures.py``), then builds its artifact with the public ``build_model`` from that
local folder: fp32 and the int8 file this CPU runs. Random weights carry no meaning, so the int8
accuracy gates are skipped (``skip_gates=True``; the manifest records it): the timing does not depend
on what the weights say. No registry entry is added.

Then, in interleaved rounds, each with a freshly loaded Embedder and a fresh Tokenizer (both start
with empty caches, as a process meeting new text does):

- ``encode``: ``Embedder.encode(texts, kind="query")`` on the int8 file (tokenize, batch, run, pool);
- ``tokenize``: ``Tokenizer.encode_batch`` of the same prefixed texts at the model's max_length, the
  work ``encode`` does before its first onnxruntime run.

The share is tokenize / encode per round (median and range), cold and warm (the same objects again).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_tokenizer import load_sts, machine  # noqa: E402

VOCAB_ROWS = 250_037  # multilingual-e5-small's word embedding rows (the tokenizer uses 250,002 of them)


def make_checkpoint(folder: Path, tokenizer_json: Path) -> Path:
    """A random multilingual-e5-small-shaped checkpoint with the real XLM-R tokenizer file."""
    import torch
    from transformers import AutoModel, BertConfig

    from onnxembed.export.registry import ModelSpec
    from onnxembed.export.st_files import write_sentence_transformers_files

    if (folder / "model.safetensors").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = BertConfig(
        vocab_size=VOCAB_ROWS, hidden_size=384, num_hidden_layers=12, num_attention_heads=12, intermediate_size=1536,
        max_position_embeddings=512, type_vocab_size=2, pad_token_id=0,
    )
    torch.manual_seed(17)
    AutoModel.from_config(config).eval().save_pretrained(str(tmp), safe_serialization=True)
    shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "cls_token": "<s>",
                "pad_token": "<pad>", "mask_token": "<mask>"}
    # XLM-R tokenizers return no token_type_ids, while a BERT body's export takes them (all zeros, as
    # BertModel assumes when they are missing): ask transformers' tokenizer for them
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    (tmp / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512, "model_input_names": inputs, **specials})
    )
    (tmp / "special_tokens_map.json").write_text(json.dumps(specials))
    spec = ModelSpec(
        name="e5-small-shape", source="local", id=str(folder), revision="local", architecture="bert", hidden_size=384,
        num_layers=12, num_heads=12, embedding_dim=384, max_length=512, pooling="mean", normalize=True,
        prefixes={"query": "query: ", "passage": "passage: "}, license="unknown",
    )
    write_sentence_transformers_files(tmp, spec)
    tmp.rename(folder)
    return folder


def build_artifact(checkpoint: Path, out: Path) -> Path:
    from onnxembed.export import build_model

    result = build_model(str(checkpoint), out, variants=["fp32", "quint8_avx2"], skip_gates=True, progress=lambda m: print("  " + m, flush=True))
    print(f"artifact {out}: {result.status} ({result.seconds:.0f} s)")
    return out


def measure(artifact: Path, texts: list[str], rounds: int) -> None:
    from onnxembed import Embedder, Tokenizer

    cold: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    variant = ""
    n_tokens = 0
    for r in range(rounds):
        emb = Embedder.load(artifact, variant="int8", verify=False)
        tok = Tokenizer.from_file(artifact / emb.manifest.tokenizer_file)
        variant = emb.variant
        prefixed = [emb.prompts["query"] + t for t in texts]
        for times in (cold, warm):
            pair = {}
            order = ("encode", "tokenize") if r % 2 == 0 else ("tokenize", "encode")  # alternate who goes first
            for what in order:
                t0 = time.perf_counter()
                if what == "encode":
                    vectors = emb.encode(texts, kind="query")
                else:
                    ids, _ = tok.encode_batch(prefixed, max_length=emb.max_length)
                pair[what] = time.perf_counter() - t0
            times.append((pair["tokenize"], pair["encode"]))
        if vectors.shape != (len(texts), emb.dim):
            raise SystemExit(f"encode returned {vectors.shape}, expected ({len(texts)}, {emb.dim})")
        if emb.tokenize(texts, kind="query").ids != ids:
            raise SystemExit("the Embedder's tokens differ from the Tokenizer's for the same texts")
        n_tokens = sum(map(len, ids))
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{len(texts)} STS sentences with 'query: ', {n_tokens} tokens; variant {variant}; {rounds} interleaved rounds")
    for name, times in (("cold (fresh objects)", cold), ("warm (same objects again)", warm)):
        shares = [t / e for t, e in times]
        print(
            f"{name:26s} encode {statistics.median(e for _, e in times):6.2f} s  tokenize {statistics.median(t for t, _ in times):6.3f} s  "
            f"share {100 * statistics.median(shares):5.1f} % (range {100 * min(shares):.1f}-{100 * max(shares):.1f} %)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/onnxembed-e5-shape"))
    args = parser.parse_args()
    import tokenizer_fixtures as fx

    checkpoint = make_checkpoint(args.work / "checkpoint", fx.xlmr_unigram())
    artifact = args.work / "artifact"
    if not (artifact / "manifest.json").is_file():
        build_artifact(checkpoint, artifact)
    texts = load_sts()[: args.texts]
    measure(artifact, texts, args.rounds)


if __name__ == "__main__":
    main()
