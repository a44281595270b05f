"""``onnxembed demo``: the README's main job on the embedded default model, start to finish.

1. build ``artifacts/all-minilm-l6-v2/`` (fp32 validated against PyTorch, fused and int8 variants with
   their accuracy gates), or skip it when the folder is up to date;
2. print what the build recorded and time fp32 against this CPU's int8 file (``bench --quick``);
3. embed an example with ``Embedder.load(..., variant="auto")`` and rank passages for a query.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .common import positive_int

__all__ = ["register", "EXAMPLE_QUERY", "EXAMPLE_PASSAGES"]

DEFAULT_MODEL = "all-minilm-l6-v2"
EXAMPLE_QUERY = "How do I make my embedding model faster on a CPU?"
EXAMPLE_PASSAGES = (
    "Quantizing the weights to int8 makes transformer inference several times faster on modern CPUs.",
    "The recipe calls for two cups of flour, a pinch of salt and three eggs.",
    "Fusing attention and layer normalization into single operators reduces the work per token.",
    "The football match was postponed because of heavy rain.",
)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .. import Embedder, cosine_similarity
    from .common import need_export, print_manifest_summary, progress, progress_bar, quiet_known_noise

    quiet_known_noise()
    export = need_export()
    out: Path = args.out if args.out is not None else Path("artifacts") / Path(args.model).name
    print(f"== 1. build {args.model} into {out} (skipped when up to date; --force rebuilds)", flush=True)
    result = export.build_model(args.model, out, variants=args.variants, force=args.force, progress=progress)
    print(f"{result.status} {result.out} in {result.seconds:.1f} s" + (f" ({result.reason})" if result.reason else ""))
    print_manifest_summary(result.out)

    if not args.no_bench:
        from ..bench import bench

        print("\n== 2. fp32 vs this CPU's int8 file, measured now (onnxembed bench --quick)", flush=True)
        res = bench(result.out, quick=True, threads=args.threads, progress=progress_bar())
        print(res.format_table())

    print("\n== 3. embed an example (Embedder.load(folder, variant='auto'))", flush=True)
    emb = Embedder.load(result.out, variant="auto", threads=args.threads)
    print(f"variant {emb.variant} on {', '.join(emb.providers)}; dim {emb.dim}")
    q = emb.encode_queries([args.query])
    p = emb.encode_passages(list(EXAMPLE_PASSAGES))
    sims = cosine_similarity(q, p)[0]
    print(f"query: {args.query}")
    for i in np.argsort(-sims):
        print(f"  {sims[i]:+.4f}  {EXAMPLE_PASSAGES[i]}")
    if emb.variant != "fp32" and "fp32" in emb.manifest.variants:
        ref = Embedder.load(result.out, variant="fp32", threads=args.threads, verify=False)
        both = [args.query, *EXAMPLE_PASSAGES]
        cos = np.diag(cosine_similarity(emb.encode(both), ref.encode(both)))
        print(f"{emb.variant} vs fp32 on these {len(both)} texts: min cosine {float(cos.min()):.5f}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand to the ``onnxembed`` parser."""
    p = subparsers.add_parser("demo", help="build the embedded default model, compare fp32 vs int8, embed an example")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registry name, hub id or folder (default {DEFAULT_MODEL})")
    p.add_argument("--out", type=Path, default=None, help="artifact folder (default artifacts/MODEL)")
    p.add_argument("--variants", default="all", help="variants to build (default all)")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--threads", type=positive_int, default=None, help="onnxruntime intra-op threads (default: one per core)")
    p.add_argument("--no-bench", action="store_true", help="skip the fp32 vs int8 timing")
    p.add_argument("--query", default=EXAMPLE_QUERY, help="the example query")
    p.set_defaults(func=_cmd_demo)
