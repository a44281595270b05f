"""``onnxembed bench DIR``: the variants of an artifact folder, timed on this machine.

A thin layer over :func:`onnxembed.bench.bench`: flags map to its keyword arguments; this module
only parses, draws the progress bar on stderr and prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import number, positive_int, progress_bar, read_input

__all__ = ["register"]


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,8,32, found {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return vals


def _pair_shapes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        shapes = tuple((int(q), int(d)) for q, d in (x.lower().split("x") for x in text.split(",") if x.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected QUERIESxDOCUMENTS shapes such as 1x100,32x32, found {text!r}") from None
    if not shapes or any(q < 1 or d < 1 for q, d in shapes):
        raise argparse.ArgumentTypeError(f"expected at least one shape, each >= 1x1, found {text!r}")
    return shapes


def _cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import bench, plot_result

    texts = [t for t in read_input(args.input) if t.strip()] if args.input else None
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    kwargs: dict[str, Any] = {}
    if args.batch_sizes is not None:
        kwargs["batch_sizes"] = args.batch_sizes
    if args.seq_lens is not None:
        kwargs["seq_lens"] = args.seq_lens
    if args.pairs is not None:
        kwargs["pair_shapes"] = args.pairs
    if args.no_memory:
        kwargs["memory"] = False
    result = bench(
        args.dir, variants=variants, texts=texts, threads=args.threads, rounds=args.rounds, min_seconds=args.min_seconds,
        include_gpu_formats=args.include_gpu_formats, quick=args.quick,
        progress=None if args.no_progress else progress_bar(), **kwargs,
    )
    print(result.format_table())
    if args.json:
        args.json.write_text(result.to_json(), encoding="utf-8")
        print(f"json: {args.json}")
    if args.plot:
        try:
            print(f"plot: {plot_result(result, args.plot)}")
        except ImportError as e:
            print(f"onnxembed bench: {e}", file=sys.stderr)
            return 1
    return 0


def register(subparsers: Any) -> None:
    """Add the ``bench`` subcommand to the ``onnxembed`` parser."""
    p = subparsers.add_parser("bench", help="time and compare the variants of an artifact folder on this machine")
    p.add_argument("dir", type=Path, help="artifact folder built by `onnxembed build`")
    p.add_argument("--variants", default=None, help="comma-separated variants (default: all but int8 files for another CPU; fp32 is always the reference)")
    p.add_argument("--batch-sizes", type=_ints, default=None, help="comma-separated batch sizes (default 1,8,32)")
    p.add_argument("--seq-lens", type=_ints, default=None, help="comma-separated tokens per text (default 16,128,512)")
    p.add_argument("--pairs", type=_pair_shapes, default=None,
                   help="a reranker folder: QUERIESxDOCUMENTS workloads scored per call (default 1x100,32x32; pairs/s, fp32 vs int8)")
    p.add_argument("--input", type=Path, default=None, help="real texts instead of fixed shapes: .txt (one per line; blank lines skipped), .jsonl, or - for stdin")
    p.add_argument("--threads", type=positive_int, default=None, help="onnxruntime intra-op threads (default: one per core)")
    p.add_argument("--rounds", type=positive_int, default=None, help="interleaved rounds per workload (default 5, --quick 3)")
    p.add_argument("--min-seconds", type=number(float, 0, what="a number of seconds"), default=None,
                   help="seconds per variant and workload (default 1.0, --quick 0.3; 0: one call per round)")
    p.add_argument("--include-gpu-formats", action="store_true", help="time fp16 (CUDA) files on the CPU too")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS measurement (one subprocess per variant)")
    p.add_argument("--quick", action="store_true", help="fp32 vs this CPU's int8 file at 1x128 and 32x128, a few seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", type=Path, default=None, help="also write the full result as JSON")
    p.add_argument("--plot", type=Path, default=None, help="also draw p50 latency per workload and variant (needs matplotlib)")
    p.set_defaults(func=_cmd_bench)
