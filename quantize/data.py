"""Where the int8 build's texts come from: calibration texts, and the held-out texts that judge the gates.

Each of the two is taken from the first source that has it (the precedence):

1. an explicit option: ``calibration=FILE`` / ``--calibration FILE``, ``gate_data=FILE`` / ``--gate-data FILE``;
2. ``data_dir=DIR`` (Python only), then ``$ONNXEMBED_DATA``: a local folder in the ``sts/*.tsv`` layout
   (see :data:`LOCAL_FILES`). Set but wrong is an error naming the variable, never silently skipped;
3. ``shared/data`` beside a source checkout (a folder with ``pyproject.toml`` whose parent holds
   ``shared/data``): the repository's own tests and CI. An installed package never looks there;
4. the Hugging Face hub, through its cache: STS-B validation from ``mteb/stsbenchmark-sts`` mixed with
   SICK (``mteb/sickr-sts``) calibrates, STS-B test and STS12-16 test (``mteb/sts1X-sts``) judge the
   gates. The cache is read first, with no network call; only files missing from it are downloaded,
   after one short reachability check (no retries); with ``HF_HUB_OFFLINE=1`` the network is never tried;
5. the set shipped inside the package (``sts_data/``: STS Benchmark rows whose text is CC BY-SA, the
   image captions and the SNLI pairs; 2,097 gate sentences in 1,250 scored pairs, 891 calibration
   sentences): the last resort, so a fresh offline machine still builds gated int8 files. It is never used
   when one of the larger sets above is reachable.

A local folder gives the same texts as the hub from ``sts/stsb-dev.tsv``, ``sts/sick-r-train-trial.tsv`` +
``sts/sick-r.tsv`` and the test files.

Calibration texts never overlap the held-out texts: any calibration text equal to a held-out text
(compared lower-cased with punctuation and spaces removed, so MTEB's tokenized copies match the raw
text) is dropped before calibrating, and the count is recorded. The only STS text in the package is the
CC BY-SA set of step 5 (with its licence and attribution in ``sts_data/``); the rest of STS and SICK
(share-alike, non-commercial and other terms) is read from the user's disk or the hub cache only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .textfiles import Pair, _read_jsonl, _sha256_file, read_texts

__all__ = [
    "DATA_ENV", "HUB_CALIBRATION", "HUB_HELDOUT", "HUB_STS_PAIRS", "LOCAL_FILES", "MIN_CALIBRATION_TEXTS", "SHIPPED_DIR",
    "hub_unreachable",
    "GateDataMissing", "QuantData", "TextSet", "read_texts", "resolve_data", "texts_sha256", "text_key",
]

logger = logging.getLogger(__name__)

DATA_ENV = "ONNXEMBED_DATA"
MIN_CALIBRATION_TEXTS = 16

# (repo id, file in the dataset repository, split): the layout of the MTEB STS datasets (gzipped JSON
# lines with ``sentence1``, ``sentence2``, ``score`` 0-5; STS12-16 text is SentEval's tokenized, lower-cased copy).
# Default calibration: STS-B dev sentences (not held out) mixed with as many SICK sentences (see _mixed).
HUB_CALIBRATION: tuple[tuple[str, str, str], ...] = (("mteb/stsbenchmark-sts", "validation.jsonl.gz", "validation"),)
HUB_CALIBRATION_MIX: tuple[tuple[str, str, str], ...] = (("mteb/sickr-sts", "test.jsonl.gz", "test"),)  # SICK train+trial+test
HUB_STS_PAIRS: tuple[str, str, str] = ("mteb/stsbenchmark-sts", "test.jsonl.gz", "test")
HUB_HELDOUT: tuple[tuple[str, str, str], ...] = (
    HUB_STS_PAIRS,
    ("mteb/sts12-sts", "test.jsonl.gz", "test"),
    ("mteb/sts13-sts", "test.jsonl.gz", "test"),
    ("mteb/sts14-sts", "test.jsonl.gz", "test"),
    ("mteb/sts15-sts", "test.jsonl.gz", "test"),
    ("mteb/sts16-sts", "test.jsonl.gz", "test"),
)
HUB_REVISION = "main"

# A local data folder (``$ONNXEMBED_DATA``, ``shared/data``): header ``score<TAB>sentence1<TAB>sentence2``.
LOCAL_CALIBRATION = ("sts/stsb-dev.tsv",)
LOCAL_CALIBRATION_MIX = ("sts/sick-r-train-trial.tsv", "sts/sick-r.tsv")  # = mteb/sickr-sts, in the same order
MIX_SEED = 0
LOCAL_STS_PAIRS = "sts/stsb-test.tsv"
LOCAL_HELDOUT = (LOCAL_STS_PAIRS, "sts/sts12.tsv", "sts/sts13.tsv", "sts/sts14.tsv", "sts/sts15.tsv", "sts/sts16.tsv")
LOCAL_FILES = LOCAL_CALIBRATION + LOCAL_CALIBRATION_MIX + LOCAL_HELDOUT

# The set shipped in the package (CC BY-SA; see sts_data/README.md and sts_data/LICENSE.txt).
SHIPPED_DIR = Path(__file__).parent / "sts_data"
SHIPPED_GATES = "gates.tsv"
SHIPPED_CALIBRATION = "calibration.tsv"
SHIPPED_LABEL = "shipped set (STS Benchmark images + SNLI, CC BY-SA 4.0)"
HUB_PROBE_TIMEOUT = 3.0  # seconds: the one reachability check before a download

class GateDataMissing(FileNotFoundError):
    """No held-out texts were found to judge the int8 gates (and ``skip_gates`` was not given)."""


def texts_sha256(texts: Sequence[str]) -> str:
    """sha256 of the texts as a JSON array (UTF-8, ``ensure_ascii=False``): the identity the manifest records."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def text_key(text: str) -> str:
    """The overlap key: lower-cased, punctuation and whitespace removed (``"Don't"`` and ``"do n't"`` match)."""
    return _NON_WORD.sub("", text.lower())


def _unique(texts: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for t in texts:
        if t.strip():
            seen.setdefault(t, None)
    return list(seen)


@dataclass(frozen=True)
class TextSet:
    """Texts from one source: unique, first-occurrence order; ``pairs`` when the source is labelled.

    Attributes:
        texts: the unique non-blank texts (both sentences of each pair, for a pairs source).
        pairs: ``(score, sentence1, sentence2)`` rows (empty for plain texts).
        source: where they came from (``file:PATH``, ``$ONNXEMBED_DATA:DIR``, ``shared/data:DIR``,
            ``hf://datasets/REPO@COMMIT``; several joined by ``+``).
        split: ``validation``, ``test``, ``user`` (a file the user gave).
        files: sha256 of each file read, by name.
    """

    texts: tuple[str, ...]
    pairs: tuple[Pair, ...] = ()
    source: str = ""
    split: str = ""
    files: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What the manifest records: source, split, count, sha256 (of the texts, see :func:`texts_sha256`)."""
        out: dict[str, Any] = {"source": self.source, "split": self.split, "texts": len(self.texts), "sha256": texts_sha256(self.texts)}
        if self.pairs:
            out["pairs"] = len(self.pairs)
        out["files"] = dict(self.files)
        return out


@dataclass(frozen=True)
class QuantData:
    """The resolved texts of one int8 build.

    Attributes:
        calibration: the calibration texts, already without any held-out text.
        heldout: the texts the cosine gates are judged on (None: gates skipped).
        sts: labelled pairs for the Spearman-drop gate (None: no labelled pairs; that gate is not run).
        overlap_removed: calibration texts dropped because they are also held-out texts.
    """

    calibration: TextSet
    heldout: TextSet | None
    sts: TextSet | None
    overlap_removed: int = 0

    @property
    def key(self) -> str:
        """Identity of the calibration texts (the calibration statistics depend on nothing else)."""
        return texts_sha256(self.calibration.texts)


def _file_set(path: str | Path, split: str) -> TextSet:
    p = Path(path).resolve()
    texts, pairs = read_texts(p)
    return TextSet(tuple(_unique(texts)), tuple(pairs), f"file:{p}", split, {p.name: _sha256_file(p)})


def _merge(sets: Sequence[TextSet], source: str, split: str) -> TextSet:
    files: dict[str, str] = {}
    for s in sets:
        files.update(s.files)
    return TextSet(tuple(_unique(t for s in sets for t in s.texts)), tuple(p for s in sets for p in s.pairs), source, split, files)


# --- local folders -------------------------------------------------------------------------------


def _repo_data() -> Path | None:
    """``shared/data`` beside a source checkout, or None (an installed package never has one)."""
    repo = Path(__file__).resolve().parents[1]
    cand = repo.parent / "shared" / "data"
    if (repo / "pyproject.toml").is_file() and cand.is_dir():
        return cand
    return None


def _check_folder(root: Path, what: str) -> Path:
    if not root.is_dir():
        raise ValueError(f"{what} is {str(root)!r}, which is not a folder; expected a folder holding {', '.join(LOCAL_FILES)} (or unset it)")
    missing = [f for f in LOCAL_FILES if not (root / f).is_file()]
    if missing:
        raise ValueError(f"{what} is {str(root)!r}, which lacks {', '.join(missing)}; expected {', '.join(LOCAL_FILES)} (or unset it)")
    return root


def _local_folder(data_dir: str | Path | None) -> tuple[Path, str] | None:
    """The local data folder and its label, by precedence: ``data_dir``, ``$ONNXEMBED_DATA``, ``shared/data``."""
    if data_dir is not None:
        return _check_folder(Path(data_dir), "data_dir"), "data_dir"
    env = os.environ.get(DATA_ENV)
    if env:
        return _check_folder(Path(env), f"${DATA_ENV}"), f"${DATA_ENV}"
    repo = _repo_data()
    if repo is not None and all((repo / f).is_file() for f in LOCAL_FILES):
        return repo, "shared/data"
    return None


def _local_set(root: Path, label: str, files: Sequence[str], split: str) -> TextSet:
    sets = [_file_set(root / f, split) for f in files]
    sts = _merge(sets, f"{label}:{root.resolve()}", split)
    return TextSet(sts.texts, sts.pairs, sts.source, split, {f: s.files[Path(f).name] for f, s in zip(files, sets)})


# --- the Hugging Face hub ------------------------------------------------------------------------


_HUB_REACHABLE: dict[str, str] = {}  # endpoint -> "" (reachable) or the reason it is not: one check per process


def hub_unreachable() -> str:
    """Why the hub cannot be reached ("" if it can): ``HF_HUB_OFFLINE``, or one short request, no retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = constants.ENDPOINT
    if endpoint not in _HUB_REACHABLE:
        try:
            from huggingface_hub.utils import get_session

            get_session().head(f"{endpoint}/api/datasets/{HUB_HELDOUT[0][0]}", timeout=HUB_PROBE_TIMEOUT)
            _HUB_REACHABLE[endpoint] = ""
        except Exception as e:  # noqa: BLE001 - any failure of the one check means "not reachable now"
            text = str(e)
            cause = next((why for key, why in (("NameResolution", "name resolution failed"), ("Name or service not known", "name resolution failed"),
                                               ("timed out", f"no answer in {HUB_PROBE_TIMEOUT:g} s"), ("Connection refused", "connection refused"))
                          if key in text), (text.strip().splitlines() or [""])[0][:120])
            _HUB_REACHABLE[endpoint] = f"{endpoint} not reachable ({type(e).__name__}: {cause})"
            logger.warning("Hugging Face hub not reachable at %s (%s: %s); using local data only", endpoint, type(e).__name__, cause)
    return _HUB_REACHABLE[endpoint]


def _hub_file(repo: str, filename: str) -> Path:
    """The dataset file from the cache, else downloaded (after :func:`hub_unreachable` says the hub answers)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo, filename, repo_type="dataset", revision=HUB_REVISION, local_files_only=True))
    except LocalEntryNotFoundError:
        why = hub_unreachable()
        if why:
            raise FileNotFoundError(f"{repo}/{filename} is not in the Hugging Face cache and {why}") from None
    return Path(hf_hub_download(repo, filename, repo_type="dataset", revision=HUB_REVISION))


def _commit_of(path: Path) -> str:
    """The snapshot folder's name: the commit the cached file belongs to."""
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else "?"


def _hub_set(entries: Sequence[tuple[str, str, str]], split: str) -> TextSet:
    """Texts of hub dataset files (all of them, or an OSError/ValueError naming the first missing one)."""
    sets, sources = [], []
    for repo, filename, _ in entries:
        path = _hub_file(repo, filename)
        texts, pairs = _read_jsonl(path, "text")
        sets.append(TextSet(tuple(_unique(texts)), tuple(pairs), "", split, {f"{repo}/{filename}": _sha256_file(path)}))
        sources.append(f"hf://datasets/{repo}@{_commit_of(path)}/{filename}")
    return _merge(sets, "+".join(sources), split)


def _try_hub(entries: Sequence[tuple[str, str, str]], split: str, tried: list[str]) -> TextSet | None:
    try:
        return _hub_set(entries, split)
    except (OSError, ValueError) as e:  # offline and not cached, unreachable, or a bad file
        first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
        tried.append(f"the Hugging Face hub ({', '.join(sorted({r for r, _, _ in entries}))}): {type(e).__name__}: {first}")
        logger.info("hub data not available: %s", tried[-1])
        return None


# --- the shipped set -----------------------------------------------------------------------------


def _shipped_set(name: str, split: str) -> TextSet | None:
    """A file of the set shipped in the package (None if this install lacks it)."""
    path = SHIPPED_DIR / name
    if not path.is_file():
        return None
    texts, pairs = read_texts(path)
    return TextSet(tuple(_unique(texts)), tuple(pairs), f"{SHIPPED_LABEL}: onnxembed/quantize/sts_data/{name}", split,
                   {name: _sha256_file(path)})


# --- resolving -----------------------------------------------------------------------------------


def _no_overlap(calibration: TextSet, heldout: TextSet | None) -> tuple[TextSet, int]:
    if heldout is None:
        return calibration, 0
    held = {text_key(t) for t in heldout.texts}
    kept = tuple(t for t in calibration.texts if text_key(t) not in held)
    removed = len(calibration.texts) - len(kept)
    if removed:
        logger.info("dropped %d calibration texts that are also held-out texts", removed)
    if len(kept) < MIN_CALIBRATION_TEXTS:
        raise ValueError(
            f"calibration: {len(kept)} texts left after removing the {removed} that are also held-out gate texts "
            f"(source {calibration.source}); expected at least {MIN_CALIBRATION_TEXTS}; give calibration texts other than the gate texts"
        )
    if {text_key(t) for t in kept} & held:  # an invariant of the filter above, checked where it matters
        raise RuntimeError("calibration texts overlap the held-out gate texts")
    pairs = tuple(p for p in calibration.pairs if text_key(p[1]) not in held and text_key(p[2]) not in held)
    return TextSet(kept, pairs, calibration.source, calibration.split, calibration.files), removed


def _mixed(dev: TextSet, sick: TextSet, heldout: TextSet | None) -> tuple[TextSet, int]:
    """The default calibration pool: STS-B dev sentences that are not held out, plus as many SICK
    sentences (file order), shuffled with a fixed seed.

    STS-B reuses STS12-16 sentences, so only 671 of STS-B dev's 2,910 are not held-out texts; that pool
    alone calibrated worse tails on the 21,166 held-out texts (all-MiniLM-L6-v2, avx512_vnni: min cosine
    0.943, 0.1 % quantile 0.979) than this mix (0.968, 0.982) at the same mean (0.9977 / 0.9975).
    """
    import random

    held = {text_key(t) for t in heldout.texts} if heldout is not None else set()
    kept = [t for t in dev.texts if text_key(t) not in held]
    pool = kept + list(sick.texts[: len(kept)])
    random.Random(MIX_SEED).shuffle(pool)
    # The same mix as scored pairs (a cross-encoder calibrates on pairs): dev pairs with neither side held out,
    # as many SICK pairs, shuffled with the same seed. The texts above are unchanged by this.
    dev_pairs = [p for p in dev.pairs if text_key(p[1]) not in held and text_key(p[2]) not in held]
    pairs = dev_pairs + list(sick.pairs[: len(dev_pairs)])
    random.Random(MIX_SEED).shuffle(pairs)
    files = {**dev.files, **sick.files}
    source = dev.source if dev.source == sick.source else f"{dev.source}+{sick.source}"
    return TextSet(tuple(_unique(pool)), tuple(pairs), source, f"{dev.split}+{sick.split}", files), len(dev.texts) - len(kept)


def resolve_data(
    *,
    calibration: str | Path | None = None,
    gate_data: str | Path | None = None,
    data_dir: str | Path | None = None,
    skip_gates: bool = False,
) -> QuantData:
    """Find the calibration texts and the gate texts, by the precedence in this module's docstring.

    Args:
        calibration: a file of calibration texts (``--calibration``; see :func:`read_texts`).
        gate_data: a file of held-out texts for the gates (``--gate-data``): labelled pairs (``.tsv``
            ``score/sentence1/sentence2``, or jsonl/parquet with those fields) give the cosine gates and
            the Spearman-drop gate; plain texts give the cosine gates only.
        data_dir: a local folder in the ``sts/*.tsv`` layout (takes precedence over ``$ONNXEMBED_DATA``).
        skip_gates: do not look for gate texts (``--skip-gates``); ``heldout`` is then None.

    Raises:
        ValueError: ``$ONNXEMBED_DATA`` (or ``data_dir``) is set but is not a data folder, a file is
            malformed, or too few calibration texts are left.
        FileNotFoundError: no calibration texts anywhere.
        GateDataMissing: no gate texts anywhere and ``skip_gates`` is False.

    >>> d = resolve_data(calibration="corpus.txt")  # doctest: +SKIP
    >>> d.calibration.describe()["texts"], d.heldout.describe()["texts"]  # doctest: +SKIP
    (1200, 21166)
    """
    if skip_gates and gate_data is not None:
        raise ValueError("gate_data (--gate-data) and skip_gates (--skip-gates) contradict each other; give one")
    local = _local_folder(data_dir)  # raises on a set-but-wrong $ONNXEMBED_DATA even when files are given
    tried: list[str] = []

    heldout: TextSet | None = None
    sts: TextSet | None = None
    if not skip_gates:
        if gate_data is not None:
            heldout = _file_set(gate_data, "user")
            sts = heldout if heldout.pairs else None
        elif local is not None:
            heldout = _local_set(local[0], local[1], LOCAL_HELDOUT, "test")
            sts = _local_set(local[0], local[1], (LOCAL_STS_PAIRS,), "test")
        else:
            heldout = _try_hub(HUB_HELDOUT, "test", tried)
            if heldout is not None:
                sts = _hub_set((HUB_STS_PAIRS,), "test")
            else:
                heldout = _shipped_set(SHIPPED_GATES, "gates")
                sts = heldout
        if heldout is None:
            raise GateDataMissing(
                "int8 variants need held-out texts to judge the accuracy gates, and none were found: "
                f"no --gate-data file, no data_dir, ${DATA_ENV} unset, no shared/data beside a source checkout"
                + (f", and {'; '.join(tried)}" if tried else "")
                + f". Fix: pass --gate-data FILE (labelled pairs .tsv, or plain texts), set {DATA_ENV} to a folder with "
                f"{', '.join(LOCAL_HELDOUT)}, put the hub datasets in the cache (run once online), or pass --skip-gates "
                "(the manifest then records that the gates were not run); --variants fp32,O1,O2,O3,O4 builds no int8 file"
            )

    dropped = 0
    if calibration is not None:
        calib = _file_set(calibration, "user")
    elif local is not None:
        calib, dropped = _mixed(_local_set(local[0], local[1], LOCAL_CALIBRATION, "validation"),
                       _local_set(local[0], local[1], LOCAL_CALIBRATION_MIX, "train+trial+test"), heldout)
    else:
        found = _try_hub(HUB_CALIBRATION, "validation", tried)
        mix = _try_hub(HUB_CALIBRATION_MIX, "train+trial+test", tried) if found is not None else None
        shipped = _shipped_set(SHIPPED_CALIBRATION, "calibration") if found is None or mix is None else None
        if shipped is not None:
            calib = shipped
        elif found is None or mix is None:
            raise FileNotFoundError(
                "int8 calibration needs texts, and none were found: no --calibration file, no data_dir, "
                f"${DATA_ENV} unset, no shared/data beside a source checkout, and {'; '.join(tried)}. "
                f"Fix: pass --calibration FILE (your own texts: .txt one per line, .jsonl with a 'text' field, or .parquet "
                f"with a 'text' column), set {DATA_ENV} to a folder with {', '.join(LOCAL_CALIBRATION + LOCAL_CALIBRATION_MIX)}, or put "
                f"{HUB_CALIBRATION[0][0]} and {HUB_CALIBRATION_MIX[0][0]} in the Hugging Face cache (run once online); "
                "--variants fp32,O1,O2,O3,O4 builds no int8 file"
            )
        else:
            calib, dropped = _mixed(found, mix, heldout)
    calib, removed = _no_overlap(calib, heldout)
    return QuantData(calibration=calib, heldout=heldout, sts=sts, overlap_removed=dropped + removed)
