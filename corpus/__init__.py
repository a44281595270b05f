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

from onnxembed.extras import require_extra

require_extra("corpus", "onnxembed corpus", modules=("pyarrow",))

from .errors import CorpusInputError as CorpusInputError
from .errors import CorpusMismatchError as CorpusMismatchError
from .errors import CorpusOutputError as CorpusOutputError
from .job import CorpusSummary as CorpusSummary
from .job import JobProgress as JobProgress
from .job import embed_corpus as embed_corpus
from .job import job_status as job_status

__all__ = ["CorpusInputError", "CorpusMismatchError", "CorpusOutputError", "CorpusSummary", "JobProgress", "embed_corpus", "job_status"]
