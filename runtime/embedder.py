"""The :class:`Embedder`: an artifact folder's model on an onnxruntime session, texts in, vectors out.

``tokenize -> plan length-sorted batches -> run -> pool -> normalize -> restore order``. The Embedder
is the only stateful object of the runtime: it owns the session, the tokenizer and a truncation
counter; every stage it calls is a pure function.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from ._session import SessionModel, as_list
from .batching import Tokens, check_batch_size, chunked
from .pooling import cosine_similarity, pool, truncate_dimensions
from .progress import Progress, progress_reporter

__all__ = ["Embedder"]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
KINDS = ("query", "passage")


class Embedder(SessionModel):
    """Sentence embeddings from an onnxembed artifact folder, with onnxruntime only.

    Build one with :meth:`load`. ``encode`` is safe to call from several threads at once.

    >>> emb = Embedder.load("artifacts/all-minilm-l6-v2")  # doctest: +SKIP
    >>> emb.encode(["A man is playing a guitar."]).shape  # doctest: +SKIP
    (1, 384)
    """

    TASK = "embed"
    _log = logger

    # --------------------------------------------------------------------------------- properties

    @property
    def dim(self) -> int:
        """Embedding size."""
        return self._manifest.dim

    def __repr__(self) -> str:
        return (
            f"Embedder({self._manifest.name!r}, variant={self._variant!r}, providers={self.providers}, "
            f"dim={self.dim}, max_length={self.max_length})"
        )

    # ----------------------------------------------------------------------------------- encoding

    def encode(
        self,
        texts: str | Iterable[str],
        kind: str | None = None,
        batch_size: int = 32,
        show_progress: Progress = False,
        *,
        max_tokens: int | None | str = "default",
        prompt: str | None = None,
        dimensions: int | None = None,
    ) -> F32:
        """Embed texts: :meth:`tokenize`, :meth:`plan_batches`, :meth:`embed_batch` per batch.

        Args:
            texts: a string or an iterable of strings.
            kind: ``"query"`` or ``"passage"`` to add the manifest's prefix (e5 needs it), or the name
                of one of the manifest's :attr:`prompts`; None embeds the text as given.
            prompt: a free text put before every input instead of a kind's (a task instruction, e.g.
                ``"Instruct: Given a web search query, retrieve relevant passages\nQuery:"``).
            batch_size: most texts per onnxruntime run.
            show_progress: True draws a progress bar on stderr when it is a terminal (else logs at
                INFO level); a callable gets ``(done, total)``.
            max_tokens: padded-token budget per batch; ``"default"`` is the one given to
                :meth:`load`, None means no budget.
            dimensions: keep the first ``dimensions`` values of each embedding (then L2-normalize again
                when the model normalizes); only sizes the manifest lists in ``dimensions`` (models
                trained for it, Matryoshka), else ValueError.

        Returns:
            float32 array of shape ``(len(texts), dimensions or dim)``, always 2-D (a single string gives
            ``(1, dim)``, an empty list ``(0, dim)``), rows in input order.

        Raises:
            TypeError: ``texts`` is bytes, an item is not a string (the message names its index),
                or ``batch_size`` is not an int.
            ValueError: unknown ``kind``, both ``kind`` and ``prompt``, or ``dimensions`` the model
                was not trained for.

        >>> emb.encode(["hello", "world"]).shape  # doctest: +SKIP
        (2, 384)
        """
        items = as_list(texts)
        self.check_dimensions(dimensions)
        prefix = self._prefix(kind, prompt)
        return self._encode_list(items, prefix, batch_size, self._budget(max_tokens), show_progress, offset=0, dimensions=dimensions)

    def encode_queries(self, texts: str | Iterable[str], **kwargs: Any) -> F32:
        """``encode(texts, kind="query")``."""
        return self.encode(texts, kind="query", **kwargs)

    def encode_passages(self, texts: str | Iterable[str], **kwargs: Any) -> F32:
        """``encode(texts, kind="passage")``."""
        return self.encode(texts, kind="passage", **kwargs)

    def encode_iter(
        self,
        texts: Iterable[str],
        kind: str | None = None,
        batch_size: int = 32,
        *,
        chunk_size: int | None = None,
        max_tokens: int | None | str = "default",
        prompt: str | None = None,
        dimensions: int | None = None,
    ) -> Iterator[F32]:
        """Embed a stream of texts with bounded memory.

        Reads ``chunk_size`` texts at a time (default ``32 * batch_size``), sorts them by length
        within the chunk, and yields one ``(k, dim)`` array per chunk; concatenated, the arrays are
        in input order. Memory holds one chunk, whatever the stream's length.

        >>> for block in emb.encode_iter(open("corpus.txt")):  # doctest: +SKIP
        ...     index.add(block)
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"encode_iter expects an iterable of str, found a single {type(texts).__name__}; pass [text]")
        size = chunk_size or 32 * batch_size
        budget = self._budget(max_tokens)
        self.check_dimensions(dimensions)
        prefix = self._prefix(kind, prompt)
        done = 0
        for chunk in chunked(texts, size):
            yield self._encode_list(chunk, prefix, batch_size, budget, False, offset=done, dimensions=dimensions)
            done += len(chunk)

    def similarity(self, a: npt.ArrayLike, b: npt.ArrayLike) -> F32:
        """Cosine similarity matrix of two sets of embeddings, shape ``(len(a), len(b))``."""
        return cosine_similarity(a, b)

    # ------------------------------------------------------------- the stages, for servers and jobs

    def tokenize(self, texts: str | Iterable[str], kind: str | None = None, *, prompt: str | None = None) -> Tokens:
        """Stage 1: texts -> token ids (with the kind's prefix), truncated to :attr:`max_length`.

        Thread-safe and independent of the session, so a server can tokenize the next batch while
        the current one runs. Truncated texts are added to :attr:`truncated`; ``Tokens`` reports
        them per text, with each text's real token count (what ``usage`` should report).

        Raises:
            TypeError: an item is not a string (the message names its index).
            ValueError: unknown ``kind``.

        >>> toks = emb.tokenize(["hello world"], kind="query")  # doctest: +SKIP
        >>> toks.counts, toks.n_truncated  # doctest: +SKIP
        ([5], 0)
        """
        return self._tokenize(as_list(texts), self._prefix(kind, prompt), offset=0)

    def embed_batch(self, ids: Sequence[Sequence[int]], *, normalize: bool | None = None, dimensions: int | None = None) -> F32:
        """Stage 3: one onnxruntime run over one batch: pad, run, pool, normalize.

        ``ids`` are rows of :attr:`Tokens.ids` (for example ``tokens.select(batch).ids``). Returns a
        ``(len(ids), dim)`` float32 array in the same order. Thread-safe: onnxruntime allows
        concurrent ``run`` calls on one session and releases the GIL while it runs.

        ``normalize`` None follows the manifest (what :meth:`encode` does); True or False forces
        L2 normalization on or off (a server's per-request ``normalize`` option). ``dimensions`` keeps
        the first values of each row (see :meth:`encode`; checked by :meth:`check_dimensions`).
        """
        if not ids:
            return np.empty((0, dimensions or self.dim), dtype=np.float32)
        arrays = self._tokenizer.pad(ids, input_names=self._pad_names)
        hidden = self._session.run([self._manifest.output_name], self._feed(arrays))[0]
        norm = self._manifest.normalize if normalize is None else bool(normalize)
        pooled = pool(hidden, arrays["attention_mask"], self._manifest.pooling, norm and not dimensions)
        return truncate_dimensions(pooled, dimensions, norm) if dimensions else pooled

    def embed_tokens(
        self,
        tokens: Tokens,
        batch_size: int = 32,
        *,
        max_tokens: int | None | str = "default",
        normalize: bool | None = None,
        show_progress: Progress = False,
        dimensions: int | None = None,
    ) -> F32:
        """Stages 2 and 3 over all of ``tokens``: :meth:`plan_batches`, then :meth:`embed_batch` per batch.

        Returns a ``(len(tokens.ids), dim)`` float32 array in the order of ``tokens``. ``encode`` is
        :meth:`tokenize` followed by this; a job that needs the token counts (``tokens.n_tokens``,
        ``tokens.n_truncated``) calls the two itself.
        """
        check_batch_size(batch_size)
        self.check_dimensions(dimensions)
        out = np.empty((len(tokens.ids), dimensions or self.dim), dtype=np.float32)
        if not tokens.ids:
            return out
        report = progress_reporter(show_progress, len(tokens.ids))

        def run(batch: npt.NDArray[np.int64]) -> None:
            out[batch] = self.embed_batch([tokens.ids[i] for i in batch], normalize=normalize, dimensions=dimensions)

        try:
            self.run_batches(self.plan_batches(tokens, batch_size, max_tokens=max_tokens, run_cost="measured"), run, report)
        finally:
            report(-1)
        return out

    def _cost_probe(self, words: int, rows: int) -> tuple[Callable[[], Any], int]:
        ids = self.tokenize(["warm " * words]).ids[0]
        return (lambda: self.embed_batch([ids] * rows)), len(ids)

    # ---------------------------------------------------------------------------------- internals

    @property
    def prompts(self) -> dict[str, str]:
        """The text each ``kind`` puts before an input: ``query``/``passage`` and the manifest's named prompts."""
        return {**{k: self._manifest.prefixes.get(k, "") for k in KINDS}, **self._manifest.prompts}

    @property
    def dimensions(self) -> tuple[int, ...]:
        """The output sizes ``encode(dimensions=)`` accepts: the manifest's Matryoshka sizes and :attr:`dim`."""
        return self._manifest.accepted_dimensions

    def check_dimensions(self, dimensions: int | None) -> None:
        """Raise ValueError (naming the accepted sizes) unless ``dimensions`` is None or one of :attr:`dimensions`."""
        if dimensions is None:
            return
        if not isinstance(dimensions, int) or isinstance(dimensions, bool):
            raise TypeError(f"dimensions must be an int or None, found {type(dimensions).__name__} {dimensions!r}")
        why = self._manifest.dimensions_refusal(dimensions)
        if why is not None:
            raise ValueError(f"dimensions={dimensions} is not supported ({why}); omit it for {self.dim}")

    def _prefix(self, kind: str | None, prompt: str | None = None) -> str:
        if prompt is not None:
            if kind is not None:
                raise ValueError(f"give kind ({kind!r}) or prompt, not both: prompt replaces the kind's text")
            if not isinstance(prompt, str):
                raise TypeError(f"prompt must be a string, found {type(prompt).__name__}")
            return prompt
        if kind is None:
            return ""
        prompts = self.prompts
        if kind not in prompts:
            raise ValueError(f"kind must be None or one of {sorted(prompts)}, found {kind!r}")
        return prompts[kind]

    def _tokenize(self, items: list[Any], prefix: str, offset: int) -> Tokens:
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise TypeError(f"texts[{offset + i}] is {type(t).__name__} {t!r:.60}, expected str")
        if prefix:
            items = [prefix + t for t in items]
        ids, full = self._tokenizer.encode_batch(items, max_length=self.max_length)
        tokens = Tokens(ids, full, self.max_length)
        self._count_truncated(tokens.n_truncated, len(items))
        return tokens

    def _encode_list(
        self, items: list[Any], prefix: str, batch_size: int, max_tokens: int | None, progress: Progress, offset: int,
        dimensions: int | None = None,
    ) -> F32:
        check_batch_size(batch_size)  # before tokenizing: a bad batch_size fails before the work
        return self.embed_tokens(self._tokenize(items, prefix, offset), batch_size, max_tokens=max_tokens, show_progress=progress,
                                 dimensions=dimensions)

    def _count_truncated(self, n: int, total: int) -> None:
        self._truncation.add(n, "%s: %d of %d texts were longer than max_length=%d tokens and were truncated "
                             "(logged once; Embedder.truncated keeps the count)", self._manifest.name, n, total, self.max_length)
