"""What the framework classes share: loading the Embedder or Reranker, the install hint, vectors as lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from onnxembed import Embedder, Reranker
from onnxembed.extras import install_hint
from onnxembed.providers import ProviderSpec

__all__ = ["check_options", "embed_as_lists", "load_embedder", "load_reranker", "missing_extra_message"]


def missing_extra_message(module: str, extra: str, error: ImportError) -> str:
    """The one-line ImportError message: what is missing and the command, from the package's extras
    metadata in the form that works for this install (:func:`onnxembed.extras.install_hint`)."""
    return f"{module} needs the {extra} extra ({error}); install it with: {install_hint(extra)}"


def load_embedder(
    model: str | Path | Embedder | Reranker,
    *,
    variant: str,
    providers: str | Sequence[ProviderSpec] | None,
    threads: int | None,
    load_kwargs: dict[str, Any],
    cls: type[Embedder] | type[Reranker] = Embedder,
) -> Any:
    """``model`` as a ``cls`` (Embedder or Reranker): an artifact folder is loaded with the options, a loaded
    object is used as it is."""
    if isinstance(model, cls):
        given = [k for k, v in (("variant", variant != "auto"), ("providers", providers is not None), ("threads", threads is not None)) if v]
        given += sorted(load_kwargs)
        if given:
            raise TypeError(f"{', '.join(given)} apply when loading an artifact folder; the {cls.__name__} passed in is already loaded: pass its folder instead")
        return model
    if not isinstance(model, (str, Path)):
        raise TypeError(f"model must be an artifact folder (str or Path) or an onnxembed.{cls.__name__}, found {type(model).__name__}")
    return cls.load(model, variant=variant, providers=providers, threads=threads, **load_kwargs)


def check_options(embedder: Embedder, kinds: dict[str, str | None], dimensions: int | None) -> None:
    """Fail at construction, not at the first call, on a kind or a size the Embedder does not accept."""
    for name, kind in kinds.items():
        try:
            embedder.tokenize([], kind=kind)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from e
    embedder.check_dimensions(dimensions)


def embed_as_lists(embedder: Embedder, texts: Sequence[str], kind: str | None, batch_size: int, dimensions: int | None) -> list[list[float]]:
    """``Embedder.encode(texts, kind=kind, dimensions=dimensions)`` as lists of Python floats (exactly the float32 values)."""
    return embedder.encode(list(texts), kind=kind, batch_size=batch_size, dimensions=dimensions).tolist()  # type: ignore[no-any-return]


def load_reranker(model: str | Path | Reranker, *, variant: str, providers: str | Sequence[ProviderSpec] | None, threads: int | None,
                  load_kwargs: dict[str, Any], top_n: int | None) -> Reranker:
    """``model`` as a one-label Reranker (see :func:`load_embedder`), with ``top_n`` checked."""
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise ValueError(f"top_n must be None or an int >= 1, found {top_n!r}")
    rr: Reranker = load_embedder(model, variant=variant, providers=providers, threads=threads, load_kwargs=load_kwargs, cls=Reranker)
    if rr.num_labels != 1:
        raise ValueError(f"{rr.manifest.name} has {rr.num_labels} labels; reranking needs a one-label cross-encoder")
    return rr
