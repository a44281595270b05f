"""The ``onnxembed`` command: the parser, ``build``, ``models`` and ``verify``; the other
subcommands live in their own modules of this package.

Subcommands whose extra is not installed print the ``pip install`` line that fixes it and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from .common import CliError, need_export, print_manifest_summary, progress, quiet_known_noise

__all__ = ["REFUSED_EXIT", "build_parser", "main"]

REFUSED_EXIT = 3  # a variant the build made was refused by its int8 gates; the folder is written with the others


def _print_build_table(results: list[Any]) -> None:
    print(f"{'model':<28} {'status':<8} {'time s':>7}  variants (size MB)")
    for r in results:
        variants = ", ".join(f"{k} ({v['size'] / 1e6:.1f})" for k, v in r.variants.items())
        variants += "".join(f", {k} REFUSED" for k in r.refused)
        print(f"{r.model:<28} {r.status:<8} {r.seconds:>7.1f}  {variants or r.reason.splitlines()[0] if r.reason else variants}")


def _refusal_message(results: list[Any]) -> str:
    """What the build refused, that the folders were written without it, and the ways on."""
    lines = []
    for r in results:
        for v, rec in r.refused.items():
            failed = ", ".join(f"{g} {f['figure']:.6g} (needs {f['rule']} {f['threshold']:g})" for g, f in rec["failed_gates"].items())
            judged = ", ".join(f"{n:,} {unit}" for unit, n in rec.get("judged_on", {}).items() if n)
            lines.append(f"onnxembed build: {r.model}: {v} REFUSED by its int8 gates: {failed}" + (f" on {judged}" if judged else ""))
    for r in results:
        if r.refused:
            kept = ", ".join(r.variants)
            lines.append(f"{r.out} was written with the variants that passed ({kept}); the refused files are not in it "
                         "(their figures are in manifest.json under 'refused').")
    lines.append("To go on: calibrate on your own texts (--calibration FILE), or judge on data closer to your use (--gate-data FILE); "
                 "loosen the model's gates in a models.yaml you pass with --registry if its figures are good enough for your use; "
                 "--skip-gates writes the int8 files unjudged (for timing only); or leave the variant out (--variants). "
                 f"A re-run with the same inputs is up to date and repeats this (exit status {REFUSED_EXIT}); --force rebuilds.")
    return "\n".join(lines)


def _cmd_build(args: argparse.Namespace) -> int:
    export = need_export()
    quiet_known_noise()
    common = dict(variants=args.variants, force=args.force, opset=args.opset, registry=args.registry, progress=progress,
                  calibration=args.calibration, gate_data=args.gate_data, skip_gates=args.skip_gates,
                  external_threshold=args.external_threshold)
    if args.all or args.models:
        if args.model:
            raise SystemExit("onnxembed build: give either MODEL or --all/--models, not both")
        names = list(export.load_registry(args.registry)) if args.all else [m.strip() for m in args.models.split(",") if m.strip()]
        results = export.build_models(names, args.out, fail_fast=args.fail_fast, **common)
        _print_build_table(results)
        failed = [r for r in results if r.status == "failed"]
        for r in failed:
            print(f"FAILED {r.model}: {r.reason}", file=sys.stderr)
        print(f"report: {Path(args.out) / 'build-report.json'}")
        if failed or len(results) < len(names):
            return 1
        return _refused_status(results)
    if not args.model:
        raise SystemExit("onnxembed build: give MODEL, or --all / --models a,b with --out OUTROOT")
    result = export.build_model(args.model, args.out, revision=args.revision, **common)
    print(f"{result.status} {result.out}" + (f" ({result.reason})" if result.reason else ""))
    print_manifest_summary(result.out)
    return _refused_status([result])


def _refused_status(results: list[Any]) -> int:
    """0, or :data:`REFUSED_EXIT` with the refusals on stderr when a build's gates refused a variant."""
    if not any(r.refused for r in results):
        return 0
    print(_refusal_message(results), file=sys.stderr)
    return REFUSED_EXIT


def _add_build(sub: Any) -> None:
    p = sub.add_parser("build", help="export checkpoints to validated ONNX artifact folders",
                       epilog=f"exit status: 0 built or up to date; {REFUSED_EXIT} an int8 variant was refused by its accuracy gates "
                              "(the folder is written with fp32 and every variant that passed; its manifest records the refusal); "
                              "1 or 2 a build failed and wrote nothing (with --all/--models the other models are still built)")
    p.add_argument("model", nargs="?", help="registry name (models.yaml), local checkpoint folder, hub id, or modelscope:ORG/NAME")
    p.add_argument("--out", required=True, type=Path, help="artifact folder (or, with --all/--models, the folder of folders)")
    p.add_argument("--all", action="store_true", help="build every registry model into OUT/NAME/")
    p.add_argument("--models", default=None, help="comma-separated registry names to build into OUT/NAME/")
    p.add_argument("--fail-fast", action="store_true", help="with --all/--models: stop at the first failure")
    p.add_argument("--variants", default="all", help="'all' or comma-separated: fp32,O1,O2,O3,O4,qint8_avx512_vnni,quint8_avx2,qint8_arm64")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date; replace a folder that is not an onnxembed build")
    p.add_argument("--revision", default=None, help="hub (or ModelScope) revision (overrides models.yaml)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--registry", default=None, type=Path, help="another models.yaml (default: the packaged one)")
    p.add_argument("--calibration", default=None, type=Path, metavar="FILE",
                   help="int8 calibration texts: .txt (one per line), .jsonl ('text' field) or .parquet ('text' column); "
                        "best: the corpus you will embed (default: $ONNXEMBED_DATA, else STS-B dev from the HF hub cache)")
    p.add_argument("--gate-data", default=None, type=Path, metavar="FILE",
                   help="held-out texts for the int8 gates: .tsv labelled pairs (score, sentence1, sentence2) or plain texts "
                        "(default: $ONNXEMBED_DATA, else STS-B test + STS12-16 from the HF hub cache)")
    p.add_argument("--skip-gates", action="store_true",
                   help="write int8 files without judging them (no gate data needed); the manifest and verify say so")
    p.add_argument("--external-threshold", type=int, default=None, metavar="BYTES",
                   help="model files whose weights pass BYTES keep them in FILE_data beside the .onnx "
                        "(default: 1.8e9, under protobuf's 2 GB limit; 0 puts every weight over 1 KB there)")
    p.set_defaults(func=_cmd_build)


def _cmd_verify(args: argparse.Namespace) -> int:
    from onnxembed.verify import format_report, report_json, verify_artifacts

    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    report = verify_artifacts(args.dir, variants=variants, run=not args.no_run)
    print(report_json(report) if args.json else format_report(report))
    return 0 if report.ok else 1


def _add_verify(sub: Any) -> None:
    p = sub.add_parser("verify", help="check an artifact folder: files, sha256, and each variant's fingerprint")
    p.add_argument("dir", type=Path)
    p.add_argument("--variants", default=None, help="comma-separated variants (default: all)")
    p.add_argument("--no-run", action="store_true", help="check files and hashes only, do not run the models")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=_cmd_verify)


def _cmd_models(args: argparse.Namespace) -> int:
    export = need_export()
    reg = export.load_registry(args.registry)
    if args.json:
        print(json.dumps({k: v.as_dict() for k, v in reg.items()}, indent=2))
        return 0
    print(export.model_table(reg), end="")  # the README's model table is this text
    return 0


def _add_models(sub: Any) -> None:
    p = sub.add_parser("models", help="list the model registry")
    p.add_argument("--registry", default=None, help="another models.yaml")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_models)


def _registrars() -> list[Callable[[Any], None]]:
    from . import bench, corpus, demo, embed, serve

    return [demo.register, _add_build, _add_models, _add_verify, embed.register, bench.register, corpus.register, serve.register]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxembed",
        description="Export sentence-embedding models to ONNX, quantize them to int8 with accuracy gates, "
        "and embed text with onnxruntime only.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v for info logs, -vv for debug")
    sub = parser.add_subparsers(dest="command", required=True)
    for reg in _registrars():
        reg(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``onnxembed`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])  # the command as typed, for "resume with: ..."
    if extra:
        # ``embed DIR --kind query "some text"``: texts may also come after the options.
        if args.command == "embed" and not any(e.startswith("-") for e in extra):
            args.texts = [*args.texts, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM unwinds like Ctrl-C, so an interrupted build removes its temporary folder.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, TypeError, FileExistsError, FileNotFoundError, RuntimeError, ImportError) as e:
        print(f"onnxembed {args.command}: error: {e}", file=sys.stderr)
        return 2

