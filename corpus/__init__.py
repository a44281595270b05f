"""onnxembed.corpus: embed a whole corpus into parquet shards, resumably, on this machine or a Ray cluster.

``embed_corpus(model_dir, inputs, out)`` cuts the inputs into deterministic shards (file and row
range), embeds each shard with the runtime's public stages (tokenize, plan batches, embed batch) and
writes it as one parquet file that appears only when complete. A rerun skips finished shards and
refuses to mix outputs of another model, variant, inputs or options.

Needs the ``corpus`` extra (pyarrow); the Ray executor needs the ``ray`` extra.

>>> from onnxembed.corpus import embed_corpus                     # doctest: +SKIP
>>> embed_corpus("artifacts/all-minilm-l6-v2", ["texts.txt"], "vectors/").texts  # doctest: +SKIP
1000
"""

from __future__ import annotations

try:
    import pyarrow  # noqa: F401
except ImportError:  # pragma: no cover (exercised by the cpu-only install test's pattern)
    raise ImportError("onnxembed corpus needs pyarrow: pip install 'onnxembed[corpus]'") from None

from .errors import CorpusInputError as CorpusInputError
from .errors import CorpusMismatchError as CorpusMismatchError
from .job import CorpusSummary as CorpusSummary
from .job import JobProgress as JobProgress
from .job import embed_corpus as embed_corpus

__all__ = ["CorpusInputError", "CorpusMismatchError", "CorpusSummary", "JobProgress", "embed_corpus"]
