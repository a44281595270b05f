"""Prometheus metrics of one server: requests by status, queue depth, batch sizes, real vs padded
tokens, and tokenize / queue / inference time.

Each app has its own registry (several apps in one process do not collide).
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "ModelObserver"]

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The metric families of one app; :meth:`observer` gives the batcher's view for one model."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("onnxembed_requests", "HTTP requests answered, by endpoint and status", ["endpoint", "status"], registry=r)
        self.texts = Counter("onnxembed_texts", "Texts embedded", ["model"], registry=r)
        self.truncated = Counter("onnxembed_truncated_texts", "Texts longer than the model's max length, truncated", ["model"], registry=r)
        self.dropped = Counter("onnxembed_dropped_texts", "Texts dropped before they ran because their client went away", ["model"], registry=r)
        self.tokens = Counter("onnxembed_tokens", "Tokens run through the model: real, and padded (rows x longest)", ["model", "kind"], registry=r)
        self.batch_rows = Histogram("onnxembed_batch_size", "Texts per onnxruntime run", ["model"], buckets=_ROWS, registry=r)
        self.tokenize_seconds = Histogram("onnxembed_tokenize_seconds", "Time to tokenize one request", ["model"], buckets=_SECONDS, registry=r)
        self.queue_seconds = Histogram("onnxembed_queue_seconds", "Time from arrival to the start of its round", ["model"], buckets=_SECONDS, registry=r)
        self.inference_seconds = Histogram("onnxembed_inference_seconds", "Time of one onnxruntime run (pad, run, pool)", ["model"], buckets=_SECONDS, registry=r)
        self.queue_depth = Gauge("onnxembed_queue_depth", "Texts waiting to run", ["model"], registry=r)
        self.in_flight = Gauge("onnxembed_requests_in_flight", "Requests accepted and not yet answered", registry=r)
        self.ready = Gauge("onnxembed_ready", "1 when the model is loaded and warm", ["model"], registry=r)
        self._counters: dict[tuple[str, int], Callable[[], None]] = {}

    def count(self, endpoint: str, status: int) -> None:
        """One answered request."""
        key = (endpoint, status)
        inc = self._counters.get(key)
        if inc is None:
            inc = self._counters[key] = self.requests.labels(endpoint, str(status)).inc
        inc()

    def observer(self, model: str, depth: Callable[[], int]) -> ModelObserver:
        self.queue_depth.labels(model).set_function(depth)
        return ModelObserver(self, model)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ModelObserver:
    """The batcher's :class:`~onnxembed.serve.batcher.Observer` for one model."""

    def __init__(self, m: Metrics, model: str) -> None:
        self._texts = m.texts.labels(model)
        self._truncated = m.truncated.labels(model)
        self._dropped = m.dropped.labels(model)
        self._real = m.tokens.labels(model, "real")
        self._padded = m.tokens.labels(model, "padded")
        self._rows = m.batch_rows.labels(model)
        self._tok_s = m.tokenize_seconds.labels(model)
        self._queue_s = m.queue_seconds.labels(model)
        self._run_s = m.inference_seconds.labels(model)

    def tokenized(self, seconds: float, texts: int, truncated: int = 0) -> None:
        self._tok_s.observe(seconds)
        if truncated:
            self._truncated.inc(truncated)

    def batch(self, rows: int, real_tokens: int, padded_tokens: int, seconds: float) -> None:
        self._rows.observe(rows)
        self._texts.inc(rows)
        self._real.inc(real_tokens)
        self._padded.inc(padded_tokens)
        self._run_s.observe(seconds)

    def queued(self, seconds: float) -> None:
        self._queue_s.observe(seconds)

    def dropped(self, texts: int) -> None:
        self._dropped.inc(texts)
