"""What several subcommands share: the export-extra check, progress output, the manifest summary,
and reading texts for ``--input``. Only the CLI prints."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable

from onnxembed._files import json_object, read_lines
from onnxembed._logfilter import drop_messages
from onnxembed.progress import LineDisplay, bar

__all__ = ["CliError", "need_export", "positive_float", "positive_int", "print_manifest_summary", "progress", "progress_bar",
           "quiet_known_noise", "read_input"]


class CliError(Exception):
    """A user error the CLI reports as ``onnxembed CMD: error: MESSAGE`` with exit status 2."""


def need_export() -> Any:
    """``onnxembed.export``, or a one-line ``pip install`` hint and exit 2 when its extra is missing."""
    try:
        import onnxembed.export as export
    except ImportError as e:
        print(f"onnxembed: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return export


# Messages the export prints that a user can do nothing about and that do not affect the result,
# matched exactly (by logger or module and message start), so any other warning still shows.
# The build validates the exported graph against PyTorch, which is what would catch a bad trace.
KNOWN_NOISE_LOGS: dict[str, tuple[str, ...]] = {
    # optimum-onnx passes torch_dtype= to transformers, which renamed it to dtype (4.56).
    "transformers.configuration_utils": ("`torch_dtype` is deprecated! Use `dtype` instead!",),
    "transformers.modeling_utils": ("`torch_dtype` is deprecated! Use `dtype` instead!",),
    # accelerate only checks tied weights; BERT-family encoders export without duplicated weights.
    "optimum.exporters.onnx.base": ("Weight deduplication check in the ONNX export requires accelerate",),
}
# (module, message start): transformers builds the inverted mask from the constant 1.0 while tracing.
KNOWN_NOISE_WARNINGS: tuple[tuple[str, str], ...] = (
    (r"transformers\.modeling_attn_mask_utils", r"torch\.tensor results are registered as constants in the trace"),
)


def quiet_known_noise() -> None:
    """Silence, in this CLI process only, the third-party messages in :data:`KNOWN_NOISE_LOGS` and
    :data:`KNOWN_NOISE_WARNINGS`; every other warning and log record still shows."""
    for name, starts in KNOWN_NOISE_LOGS.items():
        drop_messages(name, starts)
    for module, message in KNOWN_NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)


def progress(msg: str) -> None:
    """A build's progress line on stderr."""
    print(f"[onnxembed] {msg}", file=sys.stderr, flush=True)


def progress_bar(stream: Any = sys.stderr, width: int = 30) -> Callable[[int, int, str], None]:
    """A plain-text progress bar redrawn in place (one line per update when stderr is not a terminal)."""
    display = LineDisplay(stream)
    started = time.monotonic()

    def draw(done: int, total: int, msg: str) -> None:
        display(f"{bar(done, total, width)} {time.monotonic() - started:5.0f}s {msg}", final=done >= total)

    return draw


def _fmt_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _figures(info: dict[str, Any]) -> list[str]:
    """The recorded figures of a variant (or a refused one's record), short."""
    figs = []
    val = info.get("validation") or {}
    if "max_abs_diff" in val:
        figs.append(f"max|diff| vs {val.get('reference', '?')} {val['max_abs_diff']:.2e}")
    if "crossencoder_max_abs_diff" in val:
        figs.append(f"vs CrossEncoder {val['crossencoder_max_abs_diff']:.2e}")
    if "min_cosine" in val:
        figs.append(f"min cos {val['min_cosine']:.6f}")
    acc = info.get("accuracy") or {}
    if acc.get("gates_run") is False:
        figs.append("accuracy gates NOT run (--skip-gates)")
    if "mean_cosine" in acc:
        n = acc.get("heldout_sentences")
        on = f" on {n:,} held-out sentences" if n else " on held-out sentences"
        figs.append(f"mean/min cos vs fp32 {acc['mean_cosine']:.4f}/{acc.get('min_cosine', float('nan')):.4f}{on}")
    if acc.get("q001_cosine") is not None:
        figs.append(f"0.1% quantile {acc['q001_cosine']:.4f}")
    if acc.get("stsb_spearman") is not None:
        figs.append(f"STS-B {acc['stsb_spearman']:.2f} (fp32 {acc.get('stsb_spearman_fp32', float('nan')):.2f})")
    if "batch_stability_min_cosine" in acc:
        figs.append(f"batch stability {acc['batch_stability_min_cosine']:.6f}")
    if "score_spearman" in acc:  # a cross-encoder's int8 gates
        figs.append(f"score Spearman vs fp32 {acc['score_spearman']:.4f} on {acc.get('heldout_pairs')} held-out pairs")
        figs.append(f"Cranfield nDCG@10 {acc['ndcg10']:.4f} (fp32 {acc['ndcg10_fp32']:.4f})" if acc.get("ndcg10") is not None
                    else "Cranfield nDCG@10 gate not run")
        figs.append(f"batch stability {acc['batch_stability']:.5f}")
    if info.get("same_as"):
        figs.append(f"same bytes as {info['same_as']}")
    return figs


def _status(info: dict[str, Any]) -> str:
    acc = info.get("accuracy")
    if acc is None:
        return "validated"
    return "passed" if acc.get("gates_passed") else "NOT JUDGED" if acc.get("gates_run") is False else "written"


def print_manifest_summary(folder: Path) -> None:
    """One line per variant: file, size, passed/refused, and the figures the build recorded (with what they
    were measured on); the int8 variants the gates refused (not in the folder) last, with the gates they failed."""
    from onnxembed import load_manifest

    m = load_manifest(folder)
    if m.task == "rerank":
        print(f"{m.name}: cross-encoder (task rerank), {m.dim} label(s), activation={m.activation}, "
              f"pairs as {m.raw.get('pair_template', '?')}, max_length={m.max_length}")
    else:
        print(f"{m.name}: {m.dim}-d, pooling={m.pooling}, normalize={m.normalize}, max_length={m.max_length}")
    print(f"{'variant':<20} {'status':<10} {'file':<36} {'size':>9}  figures")
    for v in m.variants.values():
        print(f"{v.name:<20} {_status(v.info):<10} {v.file:<36} {_fmt_size(v.total_size):>9}  {'; '.join(_figures(v.info))}")
    for name, r in (m.raw.get("refused") or {}).items():
        failed = [f"{g} {f['figure']:.6g} (needs {f['rule']} {f['threshold']:g})" for g, f in r.get("failed_gates", {}).items()]
        print(f"{name:<20} {'REFUSED':<10} {'(not in the folder)':<36} {'-':>9}  FAILED {', '.join(failed)}; {'; '.join(_figures(r))}")


def read_input(path: Path | str, *, stdin: BinaryIO | None = None) -> list[str]:
    """Texts for ``--input``: one rule for every subcommand.

    - ``-``: standard input, one text per line;
    - ``*.jsonl``: one JSON value per line, an object with a string ``"text"`` field or a bare
      string; blank lines are skipped;
    - any other file: one text per line, blank lines kept (so output row *i* is input line *i*).

    Raises:
        CliError: the file is missing or unreadable, not UTF-8, or a .jsonl line is not a text;
            the message names the file and line.
    """
    name = str(path)
    if name == "-":
        return [line for _, line in read_lines(stdin if stdin is not None else sys.stdin.buffer, "<stdin>", CliError)]
    p = Path(path)
    try:
        f = open(p, "rb")
    except OSError as e:
        raise CliError(f"--input {p}: cannot read it ({e.strerror or e})") from None
    with f:
        if p.suffix.lower() != ".jsonl":
            return [line for _, line in read_lines(f, str(p), CliError)]
        out: list[str] = []
        for n, line in read_lines(f, str(p), CliError):
            if not line.strip():
                continue
            obj = json_object(line, f"{p}:{n}", "text", CliError, strings=True)
            text = obj if isinstance(obj, str) else obj.get("text")
            if not isinstance(text, str):
                raise CliError(f'{p}:{n}: expected a JSON string or an object with a string "text" field, found {line.strip()[:80]!r}')
            out.append(text)
        return out


def number(cast: type, low: float, high: float | None = None, *, above: bool = False, what: str = "a number") -> Callable[[str], Any]:
    """An argparse type: ``cast(text)`` within ``[low, high]`` (``(low, ...`` with ``above``), with a message
    in the CLI's words, e.g. ``expected a whole number >= 1, found 0``."""
    rule = f"> {low:g}" if above else (f"{low:g}-{high:g}" if high is not None else f">= {low:g}")
    expected = f"expected {what} {rule}"

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{expected}, found {text!r}") from None
        if (value <= low if above else value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{expected}, found {value}")
        return value

    parse.__name__ = what.replace(" ", "_")  # argparse names the type in some messages
    return parse


positive_int = number(int, 1, what="a whole number")
positive_float = number(float, 0, above=True, what="a number")
