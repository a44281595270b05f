"""What the Embedder and the Reranker share (:class:`SessionModel`): opening an artifact folder's model
on an onnxruntime session (variant and provider choice, sha256 check, silent-fallback detection), the
token budget argument and the thread-safe truncation counter. Each class logs under its own logger.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from .batching import Tokens, check_max_tokens, plan_batches, position_ids
from .errors import ManifestError, ProviderUnavailableError
from .manifest import Manifest, load_manifest
from .providers import (
    CPU,
    CpuFeatures,
    default_max_tokens,
    Plan,
    ProviderSpec,
    auto_plans,
    check_installed,
    detect_cpu_features,
    explicit_plan,
    fallen_back,
    normalize_providers,
    with_openvino_cache,
)
from .tokenizer import Tokenizer

_Owner = TypeVar("_Owner", bound="SessionModel")

__all__ = ["SessionModel", "TruncationCounter", "as_list", "check_graph", "load_tokenizer", "resolve_budget"]

_OWNER = {"embed": "onnxembed.Embedder", "rerank": "onnxembed.Reranker"}
# Batches side by side on the CPU provider, by default (see SessionModel.load's ``parallel``).
DEFAULT_CPU_PARALLEL = 2
MAX_AUTO_PARALLEL = 8


def spread(batches: Sequence[Any], k: int) -> list[Any]:
    """At least ``k`` batches where rows allow: the largest batch is halved until there are ``k`` (an input
    of one 32-row batch runs as two 16-row halves side by side, each on its share of the cores)."""
    out = list(batches)
    while len(out) < k:
        i = max(range(len(out)), key=lambda j: len(out[j]), default=None)
        if i is None or len(out[i]) < 2:
            break
        b = out.pop(i)
        h = (len(b) + 1) // 2
        out[i:i] = [b[:h], b[h:]]
    return out


def check_parallel(parallel: int | str) -> None:
    if parallel != "auto" and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
        raise ValueError(f"parallel must be 'auto' or an int >= 1, found {parallel!r}")


def split_threads(providers: Sequence[str], threads: int | None, parallel: int | str, cores: int | None = None) -> tuple[int | None, int]:
    """``(intra-op threads per run, batches in flight)`` for a session on ``providers``.

    On the CPU provider alone the cores are split between batches side by side and threads per batch:
    ``parallel="auto"`` with ``threads=None`` gives 2 batches of ``cores // 2`` threads (measured on 2
    cores, benchmarks/PARALLEL.md: 1 thread x 2 batches 1.3x one 2-thread batch at a time on 10,000 STS
    sentences and no slower on 32 x 128 batches); with ``threads`` given, ``cores // threads`` batches (at
    most 8); with ``parallel`` given, ``cores // parallel`` threads. On CUDA and OpenVINO, which batch
    inside the device, one batch at a time (``threads`` as given)."""
    n = cores if cores is not None else (os.cpu_count() or 1)
    if list(providers) != [CPU]:
        return threads, 1 if parallel == "auto" else int(parallel)
    if parallel == "auto":
        p = min(DEFAULT_CPU_PARALLEL, n) if threads is None else min(MAX_AUTO_PARALLEL, n // threads)
    else:
        p = int(parallel)
    p = max(1, p)
    return (max(1, n // p) if threads is None else threads), p


_WHAT = {"embed": "a sentence embedder (task embed)", "rerank": "a cross-encoder (task rerank)"}


def resolve_budget(max_tokens: int | None | str, default: int | None) -> int | None:
    """A call's ``max_tokens``: ``"default"`` is the owner's, else an int or None."""
    if max_tokens == "default":
        return default
    if isinstance(max_tokens, str):
        raise ValueError(f"max_tokens must be an int, None or 'default', found {max_tokens!r}")
    return max_tokens


class TruncationCounter:
    """How many inputs were truncated over an owner's life; the first time is logged (once), with the count."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._count = 0
        self._warned = False

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def add(self, n: int, message: str, *args: Any) -> None:
        """Count ``n`` truncated inputs; log ``message % args`` at WARNING the first time only."""
        if not n:
            return
        with self._lock:
            self._count += n
            first = not self._warned
            self._warned = True
        if first:
            self._log.warning(message, *args)


def as_list(texts: Any) -> list[Any]:
    """A str as a list of one; bytes refused with the fix; any other iterable as a list."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError(f"texts must be str or an iterable of str, found {type(texts).__name__}; decode it first, e.g. texts.decode('utf-8')")
    return list(texts)


def load_tokenizer(m: Manifest) -> Tokenizer:
    """The folder's tokenizer, checked against the manifest's vocabulary size."""
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


def check_max_length(max_length: int | None, m: Manifest) -> int | None:
    """``max_length`` as given to ``load``: None, or an int from 2 up to the model's own window."""
    if max_length is None:
        return None
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= m.max_length:
        raise ValueError(f"max_length must be an int from 2 to {m.max_length} ({m.name}'s window, manifest.json) or None, "
                         f"found {max_length!r}")
    return max_length


def _session_options(base: ort.SessionOptions | None, threads: int | None, arena: bool) -> ort.SessionOptions:
    so = base if base is not None else ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
    so.enable_cpu_mem_arena = arena
    return so


def _create_session(m: Manifest, plan: Plan, opts: ort.SessionOptions, log: logging.Logger, *, strict: bool,
                    last: bool) -> ort.InferenceSession | None:
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
        log.warning("%s: %s failed (%s); trying the next choice", m.name, plan.provider_names[0], e)
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
    log.warning("%s; using the CPU choice instead", msg)
    return None


def check_graph(m: Manifest, session: ort.InferenceSession) -> None:
    """The graph must declare the manifest's inputs and output, and the manifest's dimension (labels, for a reranker)."""
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


class SessionModel:
    """What :class:`~onnxembed.Embedder` and :class:`~onnxembed.Reranker` share: the onnxruntime session
    of an artifact folder of their ``TASK``, its tokenizer, the token budget and the truncation counter.
    Not a class to use by itself: the two public classes are.
    """

    TASK = "embed"
    _log = logging.getLogger(__name__)

    def __init__(
        self,
        manifest: Manifest,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        variant: str,
        *,
        max_tokens: int | None | str = "auto",
        reason: str = "",
        parallel: int | str = "auto",
        max_length: int | None = None,
    ) -> None:
        check_parallel(parallel)
        self._max_length = check_max_length(max_length, manifest)
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
        self._truncation = TruncationCounter(self._log)
        self.parallel: int = split_threads(session.get_providers(), None, parallel)[1]
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._run_cost: float | None = None
        check_graph(manifest, session)

    # ------------------------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls: type[_Owner],
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
        parallel: int | str = "auto",
        max_length: int | None = None,
    ) -> _Owner:
        """Load an artifact folder built by ``onnxembed build`` (a sentence embedder for the Embedder,
        a cross-encoder for the Reranker).

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
            parallel: batches run side by side on the one session when an input makes several
                (onnxruntime's ``run`` is thread-safe and releases the GIL): short texts make small
                batches, whose small operators leave the intra-op threads waiting on each other.
                ``"auto"``: on the CPU provider 2 batches of ``cores // 2`` threads when ``threads`` is
                None (``cores // threads`` batches when it is given); 1 on CUDA and OpenVINO. An int
                with ``threads=None`` gives each batch ``cores // parallel`` threads. Memory holds at
                most this many batches' activations; results keep the input order
                (:func:`split_threads`).
            max_length: tokens per input at most, below the model's own window (None: the manifest's
                ``max_length``); longer inputs are truncated and counted. One text's attention memory grows
                with the square of its length (one 8,192-token Qwen3 text needs over 20 GB on the CPU
                provider), so a CPU worker of a long-window model may cap it, e.g. ``max_length=4096``.

        Raises:
            ManifestError: missing folder or manifest, unknown variant, tokenizer or graph that does
                not match the manifest, or a folder of the other task (the message names the class
                that loads it). IntegrityError (a ManifestError) for a corrupt file.
            ProviderUnavailableError: an explicit provider is missing or silently fell back.
        """
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, found {threads}")
        check_max_tokens(max_tokens)
        check_parallel(parallel)
        m = load_manifest(folder)
        check_max_length(max_length, m)
        if m.task != cls.TASK:
            raise ManifestError(f"{m.root} holds {_WHAT[m.task]}, not {_WHAT[cls.TASK]}: load it with {_OWNER[m.task]}.load({str(folder)!r})")
        features = cpu_features or detect_cpu_features()
        available = ort.get_available_providers()
        requested = normalize_providers(providers) if providers is not None else None
        if variant == "auto" and requested is None:
            plans, strict = auto_plans(m.variants, available, features), False
        else:
            refused = m.refusal(variant)
            if refused:
                raise ManifestError(refused)
            plans, strict = [explicit_plan(variant, requested, m.variants, features)], True
            check_installed(plans[0].providers, available)
        if cache_dir is not None:
            plans = [with_openvino_cache(p, cache_dir) for p in plans]
        tokenizer = load_tokenizer(m)
        given = threads  # threads asked for, here or in the caller's session options (0 there: not set)
        if given is None and session_options is not None and session_options.intra_op_num_threads > 0:
            given = session_options.intra_op_num_threads
        verified: set[str] = set()
        for i, plan in enumerate(plans):
            if verify and plan.variant not in verified:
                m.verify_file(plan.variant)
                verified.add(plan.variant)
            plan_threads, plan_parallel = split_threads([name for name, _ in plan.providers], given, parallel)
            opts = _session_options(session_options, plan_threads, cpu_mem_arena)
            session = _create_session(m, plan, opts, cls._log, strict=strict, last=i == len(plans) - 1)
            if session is None:
                continue
            level = logging.WARNING if plan.last_resort else logging.INFO
            cls._log.log(level, "%s: variant %s on %s (%s)", m.name, plan.variant, session.get_providers(), plan.reason)
            return cls(m, session, tokenizer, plan.variant, max_tokens=max_tokens, reason=plan.reason, parallel=plan_parallel,
                       max_length=max_length)
        raise RuntimeError("no plan produced a session")  # pragma: no cover (the last plan raises)

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
        """Tokens per input (a text, or a reranker's pair), special tokens included; longer inputs are truncated.
        The manifest's ``max_length`` unless ``load(max_length=...)`` lowered it."""
        return self._max_length or self._manifest.max_length

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
        """How many inputs were longer than ``max_length`` and truncated, over this object's life."""
        return self._truncation.count

    def plan_batches(
        self, tokens: Tokens | Sequence[int], batch_size: int = 32, *, max_tokens: int | None | str = "default",
        run_cost: float | str = 0.0,
    ) -> list[npt.NDArray[np.int64]]:
        """Stage 2: group texts into length-sorted batches under the padded-token budget.

        A batch holds at most ``batch_size`` texts and ``rows x longest <= max_tokens`` padded
        tokens (one text longer than the budget gets a batch of its own). Pure; thread-safe.

        Args:
            tokens: the output of :meth:`tokenize`, or each text's token count.
            batch_size: most texts per batch.
            max_tokens: ``"default"`` (this object's :attr:`max_tokens`), an int, or None.
            run_cost: a run's fixed cost in padded tokens: cut where the total is least
                (:func:`onnxembed.plan_batches`; 0: fill each batch; ``"measured"``: :attr:`run_cost`
                when there are several texts, as ``encode`` and ``score`` plan).

        Returns:
            Index arrays into ``tokens``, longest batch first; together they cover every text once.
        """
        lengths = tokens.counts if isinstance(tokens, Tokens) else list(tokens)
        if run_cost == "measured":
            run_cost = self.run_cost if len(lengths) > 1 else 0.0
        return plan_batches(lengths, batch_size, self._budget(max_tokens), run_cost=float(run_cost))

    @property
    def run_cost(self) -> float:
        """A run's fixed cost in padded tokens on this machine and provider: a run is taken to cost
        ``a + b x padded tokens`` and this is ``a / b``. Measured once, at first use (one short row and
        one batch of mid-length rows, best of 3 each; ~0.1 s for MiniLM), then kept. The batch planner
        cuts with it (:func:`~onnxembed.plan_batches`' ``run_cost``): a few long texts get a batch of
        their own instead of padding the short ones (measured on 2,048 STS sentences in takes of 32:
        0.91 against 2.2 ms of CPU per text)."""
        if self._run_cost is None:
            with self._pool_lock:
                if self._run_cost is None:
                    self._run_cost = self._measure_run_cost()
        return self._run_cost

    @run_cost.setter
    def run_cost(self, value: float) -> None:
        """Fix the run cost instead of measuring it (0: fill each batch up to the limits, as before)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"run_cost must be a number of padded tokens >= 0, found {value!r}")
        self._run_cost = float(value)

    def _measure_run_cost(self, repeats: int = 3) -> float:
        def best(words: int, rows: int) -> tuple[float, int]:
            run, length = self._cost_probe(words, rows)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            return min(times), rows * length

        room = max(1, self.max_length - 6)  # no row is cut (that would count as truncated input)
        budget = self.max_tokens or self.max_length * 32
        long_words = min(62, room)
        t_short, p_short = best(min(4, room), 1)
        t_long, p_long = best(long_words, max(1, min(16, budget // (long_words + 4))))
        if p_long <= p_short or t_long <= t_short:
            return 0.0
        per_token = (t_long - t_short) / (p_long - p_short)
        return float(min(max((t_short - per_token * p_short) / per_token, 0.0), budget))

    def _cost_probe(self, words: int, rows: int) -> tuple[Callable[[], Any], int]:
        """A call running ``rows`` identical rows of about ``words`` words, and the row's length in tokens."""
        raise NotImplementedError

    def run_batches(self, batches: Sequence[Any], run: Callable[[Any], None], report: Callable[[int], None] = lambda done: None) -> None:
        """Stage 3 over many batches: ``run(batch)`` for every batch, :attr:`parallel` at a time (side by side
        on the one session; a lone batch is halved to fill them, :func:`spread`), calling ``report(rows
        done)`` as they finish. ``run`` writes its rows into the caller's output (``encode``, a server's
        runner); the first failure is raised after the batches in flight finished, and no new batch
        starts after it."""
        done = 0
        batches = spread(batches, self.parallel)
        if self.parallel <= 1 or len(batches) <= 1:
            for batch in batches:
                run(batch)
                done += len(batch)
                report(done)
            return
        pool = self._executor()
        queue = list(reversed(batches))
        running: dict[Future[None], int] = {}
        error: BaseException | None = None
        while queue or running:
            while queue and error is None and len(running) < self.parallel:
                batch = queue.pop()
                running[pool.submit(run, batch)] = len(batch)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                rows = running.pop(f)
                if f.exception() is not None:
                    error = error or f.exception()
                else:
                    done += rows
                    report(done)
        if error is not None:
            raise error

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix=f"onnxembed-{self._manifest.name}")
            return self._pool

    def _budget(self, max_tokens: int | None | str) -> int | None:
        return resolve_budget(max_tokens, self.max_tokens)

    def _feed(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """The padded arrays as the graph's inputs (int32 where the graph declares int32)."""
        if "position_ids" in self._input_names:  # a decoder graph (Qwen3)
            arrays = {**arrays, "position_ids": position_ids(arrays["attention_mask"])}
        return {name: arrays[name].astype(np.int32) if name in self._int32_inputs else arrays[name] for name in self._input_names}
