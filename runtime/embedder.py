"""The :class:`Embedder`: an artifact folder's model on an onnxruntime session, texts in, vectors out.

``tokenize -> plan length-sorted batches -> run -> pool -> normalize -> restore order``. The Embedder
is the only stateful object of the runtime: it owns the session, the tokenizer and a truncation
counter; every stage it calls is a pure function.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from .batching import Tokens, check_batch_size, check_max_tokens, chunked, plan_batches, position_ids
from .errors import ManifestError, ProviderUnavailableError
from .manifest import Manifest, load_manifest
from .pooling import cosine_similarity, pool, truncate_dimensions
from .progress import Progress, progress_reporter
from .providers import (
    CPU,
    CpuFeatures,
    Plan,
    ProviderSpec,
    auto_plans,
    check_installed,
    default_max_tokens,
    detect_cpu_features,
    explicit_plan,
    fallen_back,
    normalize_providers,
    with_openvino_cache,
)
from .tokenizer import Tokenizer

__all__ = ["Embedder"]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
KINDS = ("query", "passage")


class Embedder:
    """Sentence embeddings from an onnxembed artifact folder, with onnxruntime only.

    Build one with :meth:`load`. ``encode`` is safe to call from several threads at once.

    >>> emb = Embedder.load("artifacts/all-minilm-l6-v2")  # doctest: +SKIP
    >>> emb.encode(["A man is playing a guitar."]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        manifest: Manifest,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        variant: str,
        *,
        max_tokens: int | None | str = "auto",
        reason: str = "",
    ) -> None:
        self._manifest = manifest
        self._session = session
        self._tokenizer = tokenizer
        self._variant = variant
        self._reason = reason
        check_max_tokens(max_tokens)
        self.max_tokens: int | None = default_max_tokens(session.get_providers()) if max_tokens == "auto" else max_tokens  # type: ignore[assignment]
        self._input_names = tuple(i.name for i in session.get_inputs())
        self._int32_inputs = {i.name for i in session.get_inputs() if i.type == "tensor(int32)"}
        self._pad_names = tuple(dict.fromkeys((*(n for n in self._input_names if n != "position_ids"), "attention_mask")))
        self._lock = threading.Lock()
        self._truncated = 0
        self._warned_truncation = False
        _check_graph(manifest, session)

    # ------------------------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        folder: str | Path,
        variant: str = "auto",
        providers: str | Sequence[ProviderSpec] | None = None,
        threads: int | None = None,
        verify: bool = True,
        *,
        max_tokens: int | None | str = "auto",
        cpu_mem_arena: bool = True,
        session_options: ort.SessionOptions | None = None,
        cpu_features: CpuFeatures | None = None,
        cache_dir: str | Path | None = None,
    ) -> Embedder:
        """Load an artifact folder built by ``onnxembed build``.

        Args:
            folder: the artifact folder (with ``manifest.json``).
            variant: ``"auto"`` (best file for this machine), a manifest key such as ``"fp32"``,
                ``"O2"``, ``"O4"``, ``"qint8_avx512_vnni"``, or ``"int8"`` for this CPU's int8 file.
            providers: onnxruntime execution providers, names or ``(name, options)`` pairs. None
                chooses automatically. Explicit providers must really be used: a session that
                silently fell back to the CPU raises :class:`ProviderUnavailableError`.
            threads: ``intra_op_num_threads`` (None: onnxruntime's default, one per core).
            verify: check the chosen file's sha256 against the manifest (False skips it, faster).
            max_tokens: most padded tokens per batch, rows x longest (None: only ``batch_size``
                limits a batch). ``"auto"``: by the provider that runs, 1,024 on the CPU provider
                (faster per text than large batches: the activations stay in cache), 8,192 on CUDA and
                OpenVINO (:func:`onnxembed.providers.default_max_tokens`).
            cpu_mem_arena: onnxruntime's CPU memory arena (faster; False returns memory after
                each run, for long-lived processes with rare large batches).
            session_options: a full ``onnxruntime.SessionOptions`` (``threads`` and
                ``cpu_mem_arena`` are applied on top of it).
            cpu_features: override the detected CPU features (tests, benchmarks).
            cache_dir: a folder for OpenVINO's compiled-model cache: the first load compiles and
                saves there, later loads (other processes too) start from it. Ignored by other providers.

        Raises:
            ManifestError: missing folder or manifest, unknown variant, tokenizer or graph that does
                not match the manifest. IntegrityError (a ManifestError) for a corrupt file.
            ProviderUnavailableError: an explicit provider is missing or silently fell back.
        """
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, found {threads}")
        check_max_tokens(max_tokens)
        m = load_manifest(folder)
        features = cpu_features or detect_cpu_features()
        available = ort.get_available_providers()
        requested = normalize_providers(providers) if providers is not None else None
        if variant == "auto" and requested is None:
            plans, strict = auto_plans(m.variants, available, features), False
        else:
            plans, strict = [explicit_plan(variant, requested, m.variants, features)], True
            check_installed(plans[0].providers, available)
        if cache_dir is not None:
            plans = [with_openvino_cache(p, cache_dir) for p in plans]
        tokenizer = _load_tokenizer(m)
        opts = _session_options(session_options, threads, cpu_mem_arena)
        verified: set[str] = set()
        for i, plan in enumerate(plans):
            if verify and plan.variant not in verified:
                m.verify_file(plan.variant)
                verified.add(plan.variant)
            last = i == len(plans) - 1
            session = _create_session(m, plan, opts, strict=strict, last=last)
            if session is None:
                continue
            level = logging.WARNING if plan.last_resort else logging.INFO
            logger.log(level, "%s: variant %s on %s (%s)", m.name, plan.variant, session.get_providers(), plan.reason)
            return cls(m, session, tokenizer, plan.variant, max_tokens=max_tokens, reason=plan.reason)
        raise RuntimeError("no plan produced a session")  # pragma: no cover (the last plan raises)

    # --------------------------------------------------------------------------------- properties

    @property
    def dim(self) -> int:
        """Embedding size."""
        return self._manifest.dim

    @property
    def variant(self) -> str:
        """The manifest key of the model file in use."""
        return self._variant

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses (``session.get_providers()``)."""
        return list(self._session.get_providers())

    @property
    def max_length(self) -> int:
        """Tokens per text, [CLS] and [SEP] included; longer texts are truncated."""
        return self._manifest.max_length

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def session(self) -> ort.InferenceSession:
        """The onnxruntime session (for benchmarks and inspection)."""
        return self._session

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def truncated(self) -> int:
        """How many texts were longer than ``max_length`` and truncated, over this Embedder's life."""
        with self._lock:
            return self._truncated

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
        items = _as_list(texts)
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
        return self._tokenize(_as_list(texts), self._prefix(kind, prompt), offset=0)

    def plan_batches(
        self, tokens: Tokens | Sequence[int], batch_size: int = 32, *, max_tokens: int | None | str = "default"
    ) -> list[npt.NDArray[np.int64]]:
        """Stage 2: group texts into length-sorted batches under the padded-token budget.

        A batch holds at most ``batch_size`` texts and ``rows x longest <= max_tokens`` padded
        tokens (one text longer than the budget gets a batch of its own). Pure; thread-safe.

        Args:
            tokens: the output of :meth:`tokenize`, or each text's token count.
            batch_size: most texts per batch.
            max_tokens: ``"default"`` (the Embedder's :attr:`max_tokens`), an int, or None.

        Returns:
            Index arrays into ``tokens``, longest batch first; together they cover every text once.
        """
        lengths = tokens.counts if isinstance(tokens, Tokens) else list(tokens)
        return plan_batches(lengths, batch_size, self._budget(max_tokens))

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
        if "position_ids" in self._input_names:  # a decoder graph (Qwen3)
            arrays["position_ids"] = position_ids(arrays["attention_mask"])
        feed = {
            name: arrays[name].astype(np.int32) if name in self._int32_inputs else arrays[name]
            for name in self._input_names
        }
        hidden = self._session.run([self._manifest.output_name], feed)[0]
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
        done = 0
        try:
            for batch in plan_batches(tokens.counts, batch_size, self._budget(max_tokens)):
                out[batch] = self.embed_batch([tokens.ids[i] for i in batch], normalize=normalize, dimensions=dimensions)
                done += len(batch)
                report(done)
        finally:
            report(-1)
        return out

    # ---------------------------------------------------------------------------------- internals

    def _budget(self, max_tokens: int | None | str) -> int | None:
        if max_tokens == "default":
            return self.max_tokens
        if isinstance(max_tokens, str):
            raise ValueError(f"max_tokens must be an int, None or 'default', found {max_tokens!r}")
        return max_tokens

    @property
    def prompts(self) -> dict[str, str]:
        """The text each ``kind`` puts before an input: ``query``/``passage`` and the manifest's named prompts."""
        return {**{k: self._manifest.prefixes.get(k, "") for k in KINDS}, **self._manifest.prompts}

    @property
    def dimensions(self) -> tuple[int, ...]:
        """The output sizes ``encode(dimensions=)`` accepts: the manifest's Matryoshka sizes and :attr:`dim`."""
        return tuple(sorted({self.dim, *self._manifest.dimensions}, reverse=True))

    def check_dimensions(self, dimensions: int | None) -> None:
        """Raise ValueError (naming the accepted sizes) unless ``dimensions`` is None or one of :attr:`dimensions`."""
        if dimensions is None:
            return
        if not isinstance(dimensions, int) or isinstance(dimensions, bool):
            raise TypeError(f"dimensions must be an int or None, found {type(dimensions).__name__} {dimensions!r}")
        if dimensions not in self.dimensions:
            why = ("this model was not trained for shorter embeddings (its manifest lists no Matryoshka dimensions)"
                   if not self._manifest.dimensions else f"the model was trained for {list(self.dimensions)}")
            raise ValueError(f"dimensions={dimensions} is not supported by {self._manifest.name}: {why}; omit it for {self.dim}")

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
        if not n:
            return
        with self._lock:
            self._truncated += n
            first = not self._warned_truncation
            self._warned_truncation = True
        if first:
            logger.warning(
                "%s: %d of %d texts were longer than max_length=%d tokens and were truncated "
                "(logged once; Embedder.truncated keeps the count)",
                self._manifest.name, n, total, self.max_length,
            )


# ------------------------------------------------------------------------------------------ helpers


def _load_tokenizer(m: Manifest) -> Tokenizer:
    path = m.root / m.tokenizer_file
    if not path.is_file():
        raise ManifestError(f"tokenizer file {path} named by the manifest is missing; rebuild or re-download the folder")
    tok = Tokenizer.from_file(path)
    if tok.vocab_size != m.vocab_size:
        raise ManifestError(
            f"{path} has a vocabulary of {tok.vocab_size} tokens but the model expects vocab_size={m.vocab_size} "
            "(manifest.json); the tokenizer belongs to another model: rebuild the folder"
        )
    return tok


def _session_options(base: ort.SessionOptions | None, threads: int | None, arena: bool) -> ort.SessionOptions:
    so = base if base is not None else ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
    so.enable_cpu_mem_arena = arena
    return so


def _create_session(m: Manifest, plan: Plan, opts: ort.SessionOptions, *, strict: bool, last: bool) -> ort.InferenceSession | None:
    """A session for the plan, or None (auto mode, not the last plan) when its provider did not come up."""
    path = m.path_of(plan.variant)
    if not path.is_file():
        raise ManifestError(f"variant {plan.variant!r}: file {path} is missing; rebuild the folder or download it again")
    providers = [(name, opts_) if opts_ else name for name, opts_ in plan.providers]
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidArgument types
        if plan.provider_names == [CPU]:
            raise
        if strict or last:
            raise ProviderUnavailableError(f"{plan.provider_names[0]} failed to create a session for {path}: {e}") from e
        logger.warning("%s: %s failed (%s); trying the next choice", m.name, plan.provider_names[0], e)
        return None
    missing = fallen_back(plan.provider_names, session.get_providers())
    if not missing:
        return session
    msg = (
        f"{', '.join(missing)} was requested for {m.name} ({plan.variant}) but the session runs on "
        f"{session.get_providers()}: onnxruntime fell back silently (driver or libraries missing, or "
        "options rejected; its log above says why)"
    )
    if strict:
        raise ProviderUnavailableError(msg + "; pass providers=None for automatic choice")
    logger.warning("%s; using the CPU choice instead", msg)
    return None


def _check_graph(m: Manifest, session: ort.InferenceSession) -> None:
    """The graph must declare the manifest's inputs and output, and the manifest's dimension."""
    graph_inputs = [i.name for i in session.get_inputs()]
    if sorted(graph_inputs) != sorted(m.input_names):
        raise ManifestError(
            f"{m.name}: the model graph declares inputs {graph_inputs}, the manifest says {list(m.input_names)}; "
            "the folder is inconsistent: rebuild it"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    if m.output_name not in outputs:
        raise ManifestError(f"{m.name}: the graph has outputs {list(outputs)}, not {m.output_name!r} named by the manifest")
    last = outputs[m.output_name].shape[-1] if outputs[m.output_name].shape else None
    if isinstance(last, int) and last != m.dim:
        raise ManifestError(f"{m.name}: the graph's {m.output_name} has size {last}, the manifest says dim={m.dim}")


def _as_list(texts: Any) -> list[Any]:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError(f"texts must be str or an iterable of str, found {type(texts).__name__}; decode it first, e.g. texts.decode('utf-8')")
    return list(texts)
