"""The ``onnxembed`` command: a thin argparse layer over the public functions.

Subcommands whose extra is not installed say which ``pip install`` fixes it. Only this module and
the ``cli_*`` modules print.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable

__all__ = ["main"]

EXPORT_EXTRA_HINT = (
    "this command needs the export extra: pip install torch==2.13.0 && pip install 'onnxembed[export,cpu]'"
)


def _need_export() -> Any:
    try:
        import onnxembed.export as export
    except ImportError as e:
        raise SystemExit(f"onnxembed: {EXPORT_EXTRA_HINT}\n  (import failed: {e})") from e
    return export


def _fmt_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def print_manifest_summary(folder: Path) -> None:
    """One line per variant: file, size, and the figures the build recorded."""
    from .manifest import load_manifest

    m = load_manifest(folder)
    print(f"{m.name}: {m.dim}-d, pooling={m.pooling}, normalize={m.normalize}, max_length={m.max_length}")
    print(f"{'variant':<20} {'file':<36} {'size':>9}  figures")
    for v in m.variants.values():
        figs = []
        val = v.info.get("validation") or {}
        if "max_abs_diff" in val:
            figs.append(f"max|diff| vs {val.get('reference', '?')} {val['max_abs_diff']:.2e}")
        if "min_cosine" in val:
            figs.append(f"min cos {val['min_cosine']:.6f}")
        acc = v.info.get("accuracy") or {}
        if "mean_cosine" in acc:
            figs.append(f"mean/min cos vs fp32 {acc['mean_cosine']:.4f}/{acc.get('min_cosine', float('nan')):.4f}")
        if "stsb_spearman" in acc:
            figs.append(f"STS-B {acc['stsb_spearman']:.2f} (fp32 {acc.get('stsb_spearman_fp32', float('nan')):.2f})")
        print(f"{v.name:<20} {v.file:<36} {_fmt_size(v.size):>9}  {'; '.join(figs)}")


def _cmd_build(args: argparse.Namespace) -> int:
    export = _need_export()
    out = export.build_model(
        args.model,
        args.out,
        variants=args.variants,
        force=args.force,
        revision=args.revision,
        opset=args.opset,
        registry=args.registry,
    )
    print(f"built {out}")
    print_manifest_summary(out)
    return 0


def _add_build(sub: Any) -> None:
    p = sub.add_parser("build", help="export a checkpoint to a validated ONNX artifact folder")
    p.add_argument("model", help="registry name (models.yaml), local checkpoint folder, or hub id")
    p.add_argument("--out", required=True, type=Path, help="artifact folder to create")
    p.add_argument("--variants", default="all", help="'all' or comma-separated: fp32,O1,O2,O3,O4,qint8_avx512_vnni,quint8_avx2,qint8_arm64")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument("--revision", default=None, help="hub revision (overrides models.yaml)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--registry", default=None, type=Path, help="another models.yaml (default: the packaged one)")
    p.set_defaults(func=_cmd_build)


def _cmd_models(args: argparse.Namespace) -> int:
    export = _need_export()
    reg = export.load_registry(args.registry)
    if args.json:
        print(json.dumps({k: v.as_dict() for k, v in reg.items()}, indent=2))
        return 0
    print(f"{'name':<28} {'architecture':<11} {'dim':>4} {'layers':>6} {'max_len':>7} {'pooling':<7} {'norm':<5} source")
    for s in reg.values():
        print(f"{s.name:<28} {s.architecture:<11} {s.embedding_dim:>4} {s.num_layers:>6} {s.max_length:>7} {s.pooling:<7} {str(s.normalize):<5} {s.id}@{s.revision}")
    return 0


def _add_models(sub: Any) -> None:
    p = sub.add_parser("models", help="list the model registry")
    p.add_argument("--registry", default=None, help="another models.yaml")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_models)


def _registrars() -> list[Callable[[Any], None]]:
    regs: list[Callable[[Any], None]] = [_add_build, _add_models]
    try:
        from .cli_embed import register as embed_register
    except ImportError:  # pragma: no cover - only while the runtime is incomplete
        pass
    else:
        regs.append(embed_register)
    return regs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnxembed", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v for info logs, -vv for debug")
    sub = parser.add_subparsers(dest="command", required=True)
    for reg in _registrars():
        reg(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``onnxembed`` console script."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM unwinds like Ctrl-C, so an interrupted build removes its temporary folder.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as e:
        print(f"onnxembed {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
