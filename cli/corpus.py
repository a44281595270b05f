"""``onnxembed corpus DIR INPUT ... --out OUT``: embed a corpus into parquet shards, resumably.

A thin layer over :func:`onnxembed.corpus.embed_corpus`; its flags are its keyword arguments.
Progress (texts/s, shards done, ETA) and the summary go to stderr.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from onnxembed.progress import LineDisplay

from .common import CliError, positive_float, positive_int

__all__ = ["register"]


def _cmd_corpus(args: argparse.Namespace) -> int:
    try:
        from onnxembed.corpus import embed_corpus, job_status
    except ImportError as e:
        raise CliError(str(e)) from None
    display = LineDisplay(sys.stderr, every=1.0)
    try:
        summary = embed_corpus(
            args.dir, args.inputs, args.out,
            text_column=args.text_column, id_column=args.id_column, kind=args.kind, dimensions=args.dimensions, max_length=args.max_length, input_format=args.input_format,
            executor=args.executor, workers=args.workers, threads=args.threads, ray_address=args.ray_address,
            cpus_per_actor=args.cpus_per_actor, storage=args.storage, variant=args.variant, batch_size=args.batch_size,
            max_tokens=args.max_tokens, shard_rows=args.shard_rows, overwrite=args.overwrite, strict=args.strict,
            progress=_progress_printer(display),
        )
    except ImportError as e:  # the ray extra
        raise CliError(str(e)) from None
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C, or SIGTERM (main turns it into SystemExit(143))
        code = 130 if isinstance(e, KeyboardInterrupt) else e.code if isinstance(e.code, int) else 143
        status = job_status(args.out)
        done = f"{status[0]} of {status[1]} shards done in {args.out}" if status else "no shard written yet"
        # --overwrite would start again: the resuming command is the same one without it
        again = shlex.join(["onnxembed", *[a for a in getattr(args, "argv", sys.argv[1:]) if a != "--overwrite"]])
        display.close()
        print(f"onnxembed corpus: stopped ({'Ctrl-C' if code == 130 else 'SIGTERM'}): {done}; resume with: {again}", file=sys.stderr, flush=True)
        return code
    s = summary
    print(
        f"{s.texts} texts ({s.texts_embedded} embedded now, {s.shards_skipped} of {s.shards} shards already done), "
        f"{s.tokens} tokens, {s.truncated} truncated, {s.empty_texts} empty, {s.duplicate_ids} repeated ids, "
        f"{s.wall_seconds:.1f}s wall, {s.texts_per_second:,.0f} texts/s; "
        f"{s.model} {s.variant} dim {s.dim} {s.storage}, {s.executor} x{s.workers} -> {s.out}",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(s.as_dict()))
    return 0


def _progress_printer(display: LineDisplay) -> Any:
    """The job's progress as one line on ``display`` (shards, texts, texts/s, ETA)."""

    def show(p: Any) -> None:
        eta = "?" if p.eta_seconds is None else f"{p.eta_seconds:,.0f}s"
        line = f"[onnxembed corpus] {p.shards_done}/{p.shards_total} shards, {p.texts_done:,}/{p.texts_total:,} texts, {p.texts_per_second:,.0f} texts/s, ETA {eta}"
        display(line, final=p.shards_done == p.shards_total)

    return show


def _max_tokens(text: str) -> int | None | str:
    if text in ("default", "none"):
        return None if text == "none" else "default"
    return positive_int(text)


def register(subparsers: Any) -> None:
    """Add the ``corpus`` subcommand to the ``onnxembed`` parser."""
    p = subparsers.add_parser("corpus", help="embed a corpus (parquet, jsonl, text) into resumable parquet shards")
    p.add_argument("dir", help="artifact folder built by `onnxembed build` (on a Ray cluster: visible to every node)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders: .parquet, .jsonl, or text (one text per line); local or s3://, gs://")
    p.add_argument("--out", required=True, help="output folder (local or s3://, gs://): part-NNNNN.parquet, _manifest.json, _SUCCESS")
    p.add_argument("--text-column", default="text", help="the text column (parquet) or field (jsonl); default: text")
    p.add_argument("--id-column", default=None, help="the id column or field; default: FILE:LINE (text, jsonl) or FILE:ROW (parquet)")
    p.add_argument("--kind", default=None, help="query, passage, or a prompt name of the model's manifest: put that text before each input")
    p.add_argument("--dimensions", type=positive_int, default=None, help="keep the first N values (Matryoshka models: a size the manifest lists)")
    p.add_argument("--max-length", type=positive_int, default=None,
                   help="tokens per text at most, 2 to the model's window (default: the window); longer texts are truncated and counted")
    p.add_argument("--input-format", choices=("auto", "parquet", "jsonl", "text"), default="auto", help="default: by file suffix, other files as text")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="local worker processes (default) or Ray actors")
    p.add_argument("--workers", type=positive_int, default=None, help="local: processes (default one per core); ray: actors (default cluster CPUs / --cpus-per-actor)")
    p.add_argument("--threads", type=positive_int, default=None, help="local: onnxruntime threads per worker (default cores / workers)")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (auto, ray://head:10001); default: start Ray on this machine")
    p.add_argument("--cpus-per-actor", type=positive_float, default=1, help="CPUs per Ray actor, also its onnxruntime threads (default 1)")
    p.add_argument("--storage", choices=("float32", "float16", "int8"), default="float32", help="embedding storage (int8 adds a per-row scale column)")
    p.add_argument("--variant", default="auto", help="auto (default, resolved once by the driver), fp32, O2, int8, or any variant of the manifest")
    p.add_argument("--batch-size", type=positive_int, default=32, help="most texts per onnxruntime run (default 32)")
    p.add_argument("--max-tokens", type=_max_tokens, default="default", help="padded tokens per batch: a number, default, or none")
    p.add_argument("--shard-rows", type=positive_int, default=10_000, help="texts per shard: the unit of work, of resumption and of output files (default 10000)")
    p.add_argument("--overwrite", action="store_true", help="remove a previous job's files from --out and start again")
    p.add_argument("--strict", action="store_true", help="refuse empty texts and repeated ids (default: embed them, count them in the summary and _manifest.json)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=_cmd_corpus)
