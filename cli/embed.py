"""``onnxembed embed DIR [TEXT ...]``: embed texts from the command line, a .txt or a .jsonl file.

A thin layer over :meth:`onnxembed.Embedder.load` and :meth:`~onnxembed.Embedder.encode_iter`;
its flags are their keyword arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from onnxembed._files import write_atomic
from onnxembed.progress import progress_reporter

from .common import CliError, positive_int, read_input

__all__ = ["register"]


def _cmd_embed(args: argparse.Namespace) -> int:
    from .. import Embedder

    texts = list(args.texts or [])
    if args.input is None and not texts:
        raise CliError("no texts; give TEXT arguments, or --input FILE (.txt one per line, .jsonl, or - for stdin)")
    if args.input is not None:
        texts.extend(read_input(args.input))
    providers = [p.strip() for p in args.providers.split(",") if p.strip()] if args.providers else None
    emb = Embedder.load(args.dir, variant=args.variant, providers=providers, threads=args.threads, verify=not args.no_verify)
    show = progress_reporter(sys.stderr.isatty(), len(texts))
    blocks = emb.encode_iter(texts, kind=args.kind, batch_size=args.batch_size, dimensions=args.dimensions)
    out: Path | None = args.output
    if out is None:
        for text, vec in zip(texts, _rows(blocks, show)):
            print(json.dumps({"text": text, "embedding": [round(float(x), 7) for x in vec]}, ensure_ascii=False))
    else:
        _write(out, texts, _rows(blocks, show), args.dimensions or emb.dim)
    show(-1)
    print(
        f"embedded {len(texts)} texts: dim {emb.dim}, variant {emb.variant} on {','.join(emb.providers)}, "
        f"{emb.truncated} truncated to {emb.max_length} tokens" + (f" -> {out}" if out else ""),
        file=sys.stderr,
    )
    return 0


def _rows(blocks: Iterator[np.ndarray], show: Any) -> Iterator[np.ndarray]:
    done = 0
    for block in blocks:
        yield from block
        done += len(block)
        show(done)


def _write(out: Path, texts: list[str], rows: Iterator[np.ndarray], dim: int) -> None:
    """Write into a temporary file beside ``out``, then rename: no half-written output."""
    suffix = out.suffix.lower()
    if suffix not in (".npy", ".jsonl"):
        raise ValueError(f"--output {out}: expected a .npy or .jsonl file name")

    def write(tmp: Path) -> None:
        if suffix == ".npy":
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(texts), dim))
            for i, vec in enumerate(rows):
                arr[i] = vec
            arr.flush()
            del arr
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for text, vec in zip(texts, rows):
                    f.write(json.dumps({"text": text, "embedding": [round(float(x), 7) for x in vec]}, ensure_ascii=False) + "\n")

    write_atomic(out, write)


def register(subparsers: Any) -> None:
    """Add the ``embed`` subcommand to the ``onnxembed`` parser."""
    p = subparsers.add_parser("embed", help="embed texts with an artifact folder (torch-free)")
    p.add_argument("dir", type=Path, help="artifact folder built by `onnxembed build`")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed (besides --input); before or after the options")
    p.add_argument("--input", default=None, metavar="FILE", help='a .txt file (one text per line), .jsonl (a "text" field or a string per line), or - for stdin')
    p.add_argument("--kind", default=None, help="query, passage, or a prompt name of the model's manifest: put that text before each input")
    p.add_argument("--dimensions", type=positive_int, default=None, help="keep the first N values (Matryoshka models: a size the manifest lists)")
    p.add_argument("--output", type=Path, default=None, help="a .npy (float32 matrix) or .jsonl file; default: JSON lines on stdout")
    p.add_argument("--variant", default="auto", help="auto (default), fp32, O2, int8, or any variant of the manifest")
    p.add_argument("--providers", default=None, help="comma-separated onnxruntime providers, e.g. CUDAExecutionProvider,CPUExecutionProvider")
    p.add_argument("--batch-size", type=positive_int, default=32, help="most texts per onnxruntime run (default 32)")
    p.add_argument("--threads", type=positive_int, default=None, help="onnxruntime intra-op threads (default: one per core)")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the model file")
    p.set_defaults(func=_cmd_embed)
