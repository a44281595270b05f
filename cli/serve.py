"""``onnxembed serve DIR [DIR ...]``: the OpenAI- and TEI-compatible HTTP server.

A thin layer over :func:`onnxembed.serve.serve`; its flags are that function's keyword arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import number, positive_int

__all__ = ["register"]


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from onnxembed.serve import serve
    except ImportError as e:
        print(f"onnxembed serve: {e}", file=sys.stderr)
        return 2
    where = f"http://{args.host}:{args.port}"
    print(
        f"onnxembed serve: {len(args.dirs)} model(s) on {where} (POST /v1/embeddings, POST /embed); "
        f"GET {where}/ready answers 200 once they are loaded and warm; SIGTERM or Ctrl-C drains and stops",
        file=sys.stderr,
        flush=True,
    )
    return serve(
        args.dirs,
        host=args.host,
        port=args.port,
        workers=args.workers,
        names=args.name,
        api_key=args.api_key,
        max_payload=args.max_payload,
        max_concurrent_requests=args.max_concurrent_requests,
        max_client_batch=args.max_client_batch,
        max_tokens=args.max_tokens,
        max_batch_size=args.max_batch_size,
        batch_window_ms=args.batch_window_ms,
        threads=args.threads,
        variant=args.variant,
        parallel=args.parallel,
        max_length=args.max_length,
    )


def _parallel(text: str) -> int | str:
    if text == "auto":
        return text
    return positive_int(text)


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to the ``onnxembed`` parser."""
    p = subparsers.add_parser("serve", help="serve artifact folders over HTTP (OpenAI /v1/embeddings, TEI /embed)")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="artifact folders built by `onnxembed build`, one model each")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=number(int, 0, 65535, what="a port number"), default=8080, help="port (default 8080)")
    p.add_argument("--workers", type=positive_int, default=1, help="processes sharing the port, each with its own model copy and queue (default 1; give each --threads cores/workers)")
    p.add_argument("--name", action="append", default=None, help="the model's name in requests (default: the manifest's); once per DIR, in order")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (health, ready and metrics stay open)")
    p.add_argument("--max-payload", type=positive_int, default=2_000_000, help="largest request body in bytes (default 2000000; 413 above)")
    p.add_argument("--max-concurrent-requests", type=positive_int, default=512, help="requests in flight at once (default 512; 429 above)")
    p.add_argument("--max-client-batch", type=positive_int, default=256, help="texts of one request queued at once; larger requests are split (default 256)")
    p.add_argument("--max-tokens", type=positive_int, default=None, help="padded tokens per batch, rows x longest (default: the runtime's: 1024 on the CPU provider, 8192 on CUDA and OpenVINO)")
    p.add_argument("--max-batch-size", type=positive_int, default=32, help="most texts per onnxruntime run (default 32)")
    p.add_argument("--batch-window-ms", type=number(float, 0, what="milliseconds"), default=2.0, help="under concurrent load, wait up to this long for a fuller batch (default 2; 0: never)")
    p.add_argument("--threads", type=positive_int, default=None, help="onnxruntime intra-op threads per batch (default: the cores split with --parallel)")
    p.add_argument("--parallel", type=_parallel, default="auto",
                   help="batches run side by side per model (default auto: 2 batches of cores/2 threads on the CPU provider, "
                        "or cores/--threads batches; with --workers N give --threads 1 --parallel 1 on N = cores)")
    p.add_argument("--max-length", type=number(int, 2, what="a token count"), default=None,
                   help="tokens per text at most, below a model's window (default: each model's window); longer texts are "
                        "truncated and counted. Bounds one long text's memory: one 8,192-token Qwen3 text passes 20 GB on the CPU provider")
    p.add_argument("--variant", default="auto", help="auto (default: the best file for this machine), fp32, O2, int8, ...")
    p.set_defaults(func=_cmd_serve)
