"""``manifest.json``: what an artifact folder holds and how to use it.

The manifest is the contract between the build (``onnxembed.export``) and the runtime: pooling,
normalization, prefixes, input names and one entry per model file (variant) with its sha256.
Reading it needs only the standard library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from pathlib import PurePosixPath
from typing import Any, Sequence

from ._files import sha256_file as sha256_file
from .errors import IntegrityError, ManifestError
from .pooling import POOLERS
from .scores import ACTIVATIONS

__all__ = ["Manifest", "Variant", "load_manifest", "sha256_file", "MANIFEST_NAME", "FORMAT_VERSION"]

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
POOLING_MODES = tuple(POOLERS)
ALLOWED_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")  # position_ids: decoders (Qwen3)
TASKS = ("embed", "rerank")


def variant_entry(root: str | Path, rel: str, precision: str, device: str, *, data_files: Sequence[str] = (),
                  **info: Any) -> dict[str, Any]:
    """The manifest entry of a model file written under ``root``: file, sha256, size, precision, device, and ``info``.

    ``data_files`` are the model's external data files (weights kept beside a model over 2 GB), relative
    to the model file's folder; each is recorded as ``data_files: [{file, sha256, size}]`` with its path
    relative to ``root``.
    """
    p = Path(root) / rel
    entry = {"file": rel, "sha256": sha256_file(p), "size": p.stat().st_size, "precision": precision, "device": device, **info}
    if data_files:
        folder = PurePosixPath(rel).parent
        entry["data_files"] = [{"file": (folder / d).as_posix(), "sha256": sha256_file(p.parent / d), "size": (p.parent / d).stat().st_size}
                               for d in data_files]
    return entry


@dataclass(frozen=True)
class Variant:
    """One model file of an artifact folder.

    Attributes:
        name: variant key, e.g. ``fp32``, ``O2``, ``O4``, ``qint8_avx512_vnni``.
        file: path relative to the artifact folder, e.g. ``onnx/model_O2.onnx``.
        sha256: hex digest of the file.
        size: size in bytes.
        precision: ``fp32``, ``fp16`` or ``int8``.
        device: ``cpu``, ``cuda`` or ``any``.
        info: everything else recorded for it (validation figures, fused op counts, recipe).
    """

    name: str
    file: str
    sha256: str
    size: int
    precision: str
    device: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def total_size(self) -> int:
        """Bytes of the model file and its external data files (the weights of a model over 2 GB)."""
        return self.size + sum(int(d["size"]) for d in self.info.get("data_files") or ())


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of an artifact folder."""

    root: Path
    name: str
    dim: int
    max_length: int
    pooling: str
    normalize: bool
    prefixes: dict[str, str]
    input_names: tuple[str, ...]
    output_name: str
    vocab_size: int
    tokenizer_file: str
    variants: dict[str, Variant]
    raw: dict[str, Any]
    # Named prompts as sentence-transformers stores them (``config_sentence_transformers.json``): a kind
    # or prompt name -> the text put before the input (e.g. Qwen3's "Instruct: ...\nQuery:"). Optional.
    prompts: dict[str, str] = field(default_factory=dict)
    # Output sizes the model was trained to be truncated to (Matryoshka), largest first; () = only ``dim``.
    dimensions: tuple[int, ...] = ()
    # ``embed`` (pooled vectors, the Embedder) or ``rerank`` (a cross-encoder's logits, the Reranker;
    # ``dim`` is then its number of labels and ``activation`` turns logits into scores).
    task: str = "embed"
    activation: str = ""

    @property
    def accepted_dimensions(self) -> tuple[int, ...]:
        """The output sizes a caller may ask for, largest first: the Matryoshka sizes and ``dim``."""
        return tuple(sorted({self.dim, *self.dimensions}, reverse=True))

    def dimensions_refusal(self, dimensions: int) -> str | None:
        """None when ``dimensions`` is one of :attr:`accepted_dimensions`, else why not (names the sizes)."""
        if dimensions in self.accepted_dimensions:
            return None
        if self.dimensions:
            return f"{self.name} was trained for {list(self.accepted_dimensions)}"
        return (f"{self.name} gives {self.dim}-d vectors and was not trained for shorter embeddings "
                "(its manifest lists no Matryoshka dimensions)")

    @property
    def refused(self) -> dict[str, Any]:
        """The int8 variants the build made and its accuracy gates refused: not in :attr:`variants`, their
        files not in the folder; per variant the failing gates and figures (``docs/manifest.md``)."""
        r = self.raw.get("refused")
        return dict(r) if isinstance(r, dict) else {}

    def refusal(self, name: str) -> str | None:
        """Why ``name`` is not in the folder when its build refused it (None otherwise)."""
        r = self.refused.get(name)
        if r is None:
            return None
        why = "; ".join(r.get("failures") or []) if isinstance(r, dict) else ""
        return (f"variant {name!r} was refused by its int8 accuracy gates when {self.root} was built ({why or 'see refused in its manifest'}), "
                f"so its file is not in the folder; present: {sorted(self.variants)}")

    def data_files(self, name: str) -> list[dict[str, Any]]:
        """The external data files of a variant (``{file, sha256, size}``, paths relative to the folder);
        empty for a self-contained model file."""
        return list(self.variant(name).info.get("data_files") or ())

    def path_of(self, variant: str) -> Path:
        """Absolute path of a variant's file."""
        return self.root / self.variant(variant).file

    def variant(self, name: str) -> Variant:
        """The named variant, or ManifestError naming the ones present."""
        try:
            return self.variants[name]
        except KeyError:
            why = self.refusal(name)
            if why:
                raise ManifestError(why) from None
            raise ManifestError(
                f"variant {name!r} is not in {self.root / MANIFEST_NAME}; present: {sorted(self.variants)}"
            ) from None

    def verify_file(self, name: str) -> None:
        """Check a variant's file exists and matches the recorded size and sha256.

        Raises:
            IntegrityError: the file is missing, truncated or altered.
        """
        v = self.variant(name)
        for rel, want_size, want_sha in [(v.file, v.size, v.sha256)] + [(d["file"], d["size"], d["sha256"]) for d in self.data_files(name)]:
            what = "file" if rel == v.file else "external data file"
            p = self.root / rel
            if not p.is_file():
                raise IntegrityError(f"variant {name!r}: {what} {p} is missing; rebuild the folder or download it again")
            size = p.stat().st_size
            if size != want_size:
                raise IntegrityError(
                    f"variant {name!r}: {what} {p} has {size} bytes, manifest says {want_size}; the file is truncated or replaced"
                )
            digest = sha256_file(p)
            if digest != want_sha:
                raise IntegrityError(
                    f"variant {name!r}: sha256 of {what} {p} is {digest}, manifest says {want_sha}; the file is corrupt or"
                    " was changed after the build (rebuild or re-download it; to skip this check: verify=False, or --no-verify on the command line)"
                )


def _field(raw: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in raw:
        raise ManifestError(f"{where}: missing field {key!r}")
    val = raw[key]
    if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
        raise ManifestError(f"{where}: field {key!r} should be {typ}, found {type(val).__name__} {val!r}")
    return val


def parse_manifest(raw: dict[str, Any], root: Path) -> Manifest:
    """Validate a manifest dict and turn it into a :class:`Manifest`."""
    where = str(root / MANIFEST_NAME)
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a JSON object, found {type(raw).__name__}")
    fmt = _field(raw, "format", int, where)
    if fmt > FORMAT_VERSION:
        raise ManifestError(f"{where}: format {fmt} is newer than this onnxembed reads ({FORMAT_VERSION}); upgrade onnxembed")
    task = raw.get("task", "embed")
    if task not in TASKS:
        raise ManifestError(f"{where}: unknown task {task!r}; known: {list(TASKS)}")
    activation = ""
    if task == "rerank":
        activation = _field(raw, "activation", str, where)
        if activation not in ACTIVATIONS:
            raise ManifestError(f"{where}: unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
    pooling = _field(raw, "pooling", str, where)
    if pooling not in POOLING_MODES and not (task == "rerank" and pooling == "none"):
        raise ManifestError(f"{where}: unknown pooling {pooling!r}; known: {list(POOLING_MODES)}")
    inputs = tuple(_field(raw, "input_names", list, where))
    bad = [n for n in inputs if n not in ALLOWED_INPUTS]
    if bad or "input_ids" not in inputs:
        raise ManifestError(f"{where}: input_names {list(inputs)} must include input_ids and only {list(ALLOWED_INPUTS)}")
    prefixes = _field(raw, "prefixes", dict, where)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in prefixes.items()):
        raise ManifestError(f"{where}: prefixes must map strings to strings, found {prefixes!r}")
    prompts = raw.get("prompts", {})
    if not isinstance(prompts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        raise ManifestError(f"{where}: prompts must map names to strings, found {prompts!r}")
    dim = _field(raw, "dim", int, where)
    dims = raw.get("dimensions", [])
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= dim for d in dims):
        raise ManifestError(f"{where}: dimensions must be a list of ints from 1 to dim={dim}, found {dims!r}")
    variants: dict[str, Variant] = {}
    for vname, vraw in _field(raw, "variants", dict, where).items():
        vwhere = f"{where}: variants.{vname}"
        if not isinstance(vraw, dict):
            raise ManifestError(f"{vwhere}: expected an object")
        info = {k: v for k, v in vraw.items() if k not in ("file", "sha256", "size", "precision", "device")}
        for i, d in enumerate(info.get("data_files") or ()):  # external data (a model over 2 GB): checked like the file
            if not isinstance(d, dict):
                raise ManifestError(f"{vwhere}.data_files[{i}]: expected an object with file, sha256 and size, found {d!r}")
            for key, typ in (("file", str), ("sha256", str), ("size", int)):
                _field(d, key, typ, f"{vwhere}.data_files[{i}]")
        variants[vname] = Variant(
            name=vname,
            file=_field(vraw, "file", str, vwhere),
            sha256=_field(vraw, "sha256", str, vwhere),
            size=_field(vraw, "size", int, vwhere),
            precision=_field(vraw, "precision", str, vwhere),
            device=_field(vraw, "device", str, vwhere),
            info=info,
        )
    if not variants:
        raise ManifestError(f"{where}: no variants; the build did not finish — rebuild the folder")
    return Manifest(
        root=root,
        name=_field(raw, "name", str, where),
        dim=dim,
        max_length=_field(raw, "max_length", int, where),
        pooling=pooling,
        normalize=_field(raw, "normalize", bool, where),
        prefixes=dict(prefixes),
        input_names=inputs,
        output_name=_field(raw, "output_name", str, where),
        vocab_size=_field(raw, "vocab_size", int, where),
        tokenizer_file=_field(raw, "tokenizer", str, where),
        variants=variants,
        raw=raw,
        prompts=dict(prompts),
        dimensions=tuple(sorted(set(dims), reverse=True)),
        task=task,
        activation=activation,
    )


def load_manifest(folder: str | Path) -> Manifest:
    """Read and validate ``folder/manifest.json`` (``folder`` may also be the manifest file itself).

    >>> m = load_manifest("artifacts/all-minilm-l6-v2")  # doctest: +SKIP
    >>> m.pooling, m.dim
    ('mean', 384)

    Raises:
        ManifestError: the folder or manifest is missing or malformed.
    """
    root = Path(folder)
    if root.name == MANIFEST_NAME and root.is_file():
        root = root.parent  # the manifest file itself was given: its folder is meant
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise ManifestError(f"artifact folder {root} does not exist; build it with `onnxembed build MODEL --out {root}`")
    if not path.is_file():
        raise ManifestError(
            f"{path} is missing: {root} is not a finished onnxembed artifact folder; build it with "
            f"`onnxembed build MODEL --out {root}`"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); the file is damaged: rebuild or re-download the folder") from e
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); rebuild or re-download the folder") from e
    return parse_manifest(raw, root.resolve())
