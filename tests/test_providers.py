"""CPU features, variant/provider choice and silent-fallback detection, without a GPU.

The pure choice functions are checked over every combination of files, CPU and installed providers.
The Embedder is checked with ``onnxruntime.get_available_providers`` and ``InferenceSession`` faked:
whatever provider is asked for, every session here is a real session of the CPU onnxruntime on the
CPU provider (``_Recorder`` records the request, then opens a CPU session, and a "working" CUDA or
OpenVINO is only a session that reports that provider). So these tests prove onnxembed's decisions
(which file and providers it asks for, what it does when a session comes up elsewhere or raises), not
that CUDA or OpenVINO behave as modelled: ``tests/test_gpu_fallback.py`` runs the real
onnxruntime-openvino (and onnxruntime-gpu where a venv for it is given) for that. Provider logic needs
no real weights, so the tiny model's folder (every variant) stands in for a real one.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from onnxembed import ManifestError, ProviderUnavailableError
from onnxembed.embedder import Embedder
from onnxembed.manifest import Variant, load_manifest
from onnxembed.providers import (
    CPU,
    CUDA,
    OPENVINO,
    CpuFeatures,
    auto_plans,
    detect_cpu_features,
    explicit_plan,
    fallen_back,
    int8_variants_for_cpu,
    normalize_providers,
    parse_cpu_flags,
    resolve_variant,
)

SPR_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8
"""
ZEN4_CPUINFO = "processor : 0\nflags : fpu sse avx avx2 avx512f avx512_vnni avx512_bf16\n"
HASWELL_CPUINFO = "processor : 0\nflags : fpu sse avx avx2 fma\n"
OLD_CPUINFO = "processor : 0\nflags : fpu sse sse2 sse4_2 avx\n"
GRAVITON_CPUINFO = "processor : 0\nBogoMIPS : 243.75\nFeatures : fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp\n"

SPR = CpuFeatures("x86_64", parse_cpu_flags(SPR_CPUINFO))
ZEN4 = CpuFeatures("x86_64", parse_cpu_flags(ZEN4_CPUINFO))
HASWELL = CpuFeatures("x86_64", parse_cpu_flags(HASWELL_CPUINFO))
OLD = CpuFeatures("x86_64", parse_cpu_flags(OLD_CPUINFO))
GRAVITON = CpuFeatures("aarch64", parse_cpu_flags(GRAVITON_CPUINFO))
APPLE = CpuFeatures("arm64", frozenset())

_KINDS = {
    "fp32": ("fp32", "any"), "O1": ("fp32", "cpu"), "O2": ("fp32", "cpu"), "O3": ("fp32", "cpu"), "O4": ("fp16", "cuda"),
    "qint8_avx512_vnni": ("int8", "cpu"), "quint8_avx2": ("int8", "cpu"), "qint8_arm64": ("int8", "cpu"),
}
ALL = tuple(_KINDS)


def variants(*names: str) -> dict[str, Variant]:
    return {n: Variant(n, f"onnx/{n}.onnx", "0" * 64, 1, *_KINDS[n]) for n in names}


# ------------------------------------------------------------------------------------ CPU features


def test_cpu_flags_are_parsed_on_x86_and_arm() -> None:
    assert SPR.amx and SPR.avx512_vnni and SPR.avx2 and SPR.int8_preset == "avx512_vnni"
    assert not ZEN4.amx and ZEN4.int8_preset == "avx512_vnni"
    assert HASWELL.int8_preset == "avx2" and not HASWELL.avx512_vnni
    assert OLD.int8_preset is None
    assert GRAVITON.arm64 and GRAVITON.int8_preset == "arm64" and "asimddp" in GRAVITON.flags
    assert APPLE.arm64 and APPLE.int8_preset == "arm64"
    assert parse_cpu_flags("") == frozenset()


def test_amx_int8_without_bf16_does_not_count_as_amx() -> None:
    assert not CpuFeatures("x86_64", frozenset({"amx_tile", "amx_int8", "avx2"})).amx


def test_detect_reads_a_cpuinfo_file_and_the_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONNXEMBED_CPU_FEATURES", raising=False)
    f = tmp_path / "cpuinfo"
    f.write_text(SPR_CPUINFO * 4)  # one block per core: the first flags line is enough
    assert detect_cpu_features(f, machine="x86_64") == SPR
    assert detect_cpu_features(tmp_path / "missing", machine="x86_64").flags == frozenset()
    monkeypatch.setenv("ONNXEMBED_CPU_FEATURES", "AVX2, amx_tile,amx_bf16")
    assert detect_cpu_features(f, machine="x86_64").flags == {"avx2", "amx_tile", "amx_bf16"}
    monkeypatch.setenv("ONNXEMBED_CPU_FEATURES", "none")
    assert detect_cpu_features(f, machine="x86_64").int8_preset is None


def test_this_machine_is_detected_without_error() -> None:
    feats = detect_cpu_features()
    assert isinstance(feats.flags, frozenset) and feats.machine


# ------------------------------------------------------------------------------------------ choice


@pytest.mark.parametrize(
    ("feats", "available", "present", "expected"),
    [
        (ZEN4, [CPU], ALL, [("qint8_avx512_vnni", CPU)]),
        (HASWELL, [CPU], ALL, [("quint8_avx2", CPU)]),
        (GRAVITON, [CPU], ALL, [("qint8_arm64", CPU)]),
        (OLD, [CPU], ALL, [("O2", CPU)]),
        (ZEN4, [CPU], ("fp32", "O1", "quint8_avx2"), [("quint8_avx2", CPU)]),  # VNNI CPU falls back to the AVX2 file
        (HASWELL, [CPU], ("fp32", "O1", "qint8_avx512_vnni"), [("O1", CPU)]),  # never the VNNI file on AVX2 only
        (GRAVITON, [CPU], ("fp32", "quint8_avx2"), [("fp32", CPU)]),
        (HASWELL, [CPU], ("O4", "qint8_avx512_vnni"), [("qint8_avx512_vnni", CPU)]),  # last resort, with a warning
        (ZEN4, [CUDA, CPU], ALL, [("O4", CUDA), ("qint8_avx512_vnni", CPU)]),
        (ZEN4, [CUDA, CPU], ("fp32", "qint8_avx512_vnni"), [("fp32", CUDA), ("qint8_avx512_vnni", CPU)]),
        (SPR, [OPENVINO, CPU], ALL, [("O2", OPENVINO), ("qint8_avx512_vnni", CPU)]),  # AMX: the fused file in bf16
        (SPR, [OPENVINO, CPU], ("fp32", "qint8_avx512_vnni"), [("fp32", OPENVINO), ("qint8_avx512_vnni", CPU)]),
        # No AMX: OpenVINO runs the static int8 file (as int8), not bf16; without that file, the CPU choice.
        (ZEN4, [OPENVINO, CPU], ALL, [("qint8_avx512_vnni", OPENVINO), ("qint8_avx512_vnni", CPU)]),
        (ZEN4, [OPENVINO, CPU], ("fp32", "O2", "quint8_avx2"), [("quint8_avx2", CPU)]),
        (HASWELL, [OPENVINO, CPU], ALL, [("quint8_avx2", CPU)]),  # AVX2 only: its own file, on the CPU provider
        (SPR, [CUDA, OPENVINO, CPU], ALL, [("O4", CUDA), ("O2", OPENVINO), ("qint8_avx512_vnni", CPU)]),
    ],
)
def test_auto_plans(feats: CpuFeatures, available: list[str], present: tuple[str, ...], expected: list[tuple[str, str]]) -> None:
    plans = auto_plans(variants(*present), available, feats)
    assert [(p.variant, p.provider_names[0]) for p in plans] == expected
    assert plans[-1].provider_names == [CPU]


def test_openvino_plan_asks_for_bf16_through_load_config() -> None:
    plan = auto_plans(variants(*ALL), [OPENVINO, CPU], SPR)[0]
    name, opts = plan.providers[0]
    assert name == OPENVINO and opts["device_type"] == "CPU"
    assert json.loads(opts["load_config"]) == {"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}
    assert "precision" not in opts  # precision="BF16" is rejected and falls back silently
    assert plan.provider_names[-1] == CPU


def test_never_fp16_on_cpu_never_int8_on_cuda_for_every_combination() -> None:
    feats_all = (SPR, ZEN4, HASWELL, OLD, GRAVITON, APPLE)
    provider_sets = ([CPU], [CUDA, CPU], [OPENVINO, CPU], [CUDA, OPENVINO, CPU])
    checked = 0
    for r in range(1, len(ALL) + 1):
        for present in itertools.combinations(ALL, r):
            vs = variants(*present)
            for feats, avail in itertools.product(feats_all, provider_sets):
                try:
                    plans = auto_plans(vs, avail, feats)
                except ManifestError:
                    assert all(vs[k].precision == "fp16" for k in vs), present  # only O4: nothing for the CPU
                    continue
                for p in plans:
                    prec, first = vs[p.variant].precision, p.provider_names[0]
                    assert not (prec == "fp16" and first != CUDA), (present, feats, avail, p)
                    assert not (prec == "int8" and first == CUDA), (present, feats, avail, p)
                    assert p.variant in vs
                assert plans[-1].provider_names == [CPU]
                checked += 1
    assert checked > 5000


def test_only_fp16_file_has_no_cpu_choice() -> None:
    with pytest.raises(ManifestError, match=r"no variant runs on the CPU provider: present \['O4'\]"):
        auto_plans(variants("O4"), [CPU], ZEN4)


def test_int8_alias_resolves_per_cpu_and_unknown_names_the_present_ones() -> None:
    vs = variants(*ALL)
    assert resolve_variant("int8", vs, ZEN4) == "qint8_avx512_vnni"
    assert resolve_variant("int8", vs, HASWELL) == "quint8_avx2"
    assert resolve_variant("int8", vs, APPLE) == "qint8_arm64"
    assert resolve_variant("O2", vs, OLD) == "O2"
    with pytest.raises(ManifestError, match=r"variant 'int8': no int8 file for this CPU.*present: \['O2', 'fp32'\]"):
        resolve_variant("int8", variants("fp32", "O2"), ZEN4)
    with pytest.raises(ManifestError, match=r"unknown variant 'O5'; present in this folder: \['O2', 'fp32'\]"):
        resolve_variant("O5", variants("fp32", "O2"), ZEN4)


def test_explicit_plans_and_their_refusals() -> None:
    vs = variants(*ALL)
    assert explicit_plan("O4", None, vs, ZEN4).provider_names == [CUDA, CPU]
    assert explicit_plan("fp32", None, vs, ZEN4).provider_names == [CPU]
    assert explicit_plan("auto", [(CUDA, {})], vs, ZEN4).variant == "O4"
    assert explicit_plan("auto", [(CPU, {})], vs, HASWELL).variant == "quint8_avx2"
    assert explicit_plan("auto", [(OPENVINO, {})], vs, SPR).variant == "fp32"
    with pytest.raises(ValueError, match="'O4' is fp16 and runs only on a GPU provider, not CPUExecutionProvider"):
        explicit_plan("O4", [(CPU, {})], vs, ZEN4)
    with pytest.raises(ValueError, match="'qint8_avx512_vnni' is int8 for the CPU; on CUDAExecutionProvider"):
        explicit_plan("int8", [(CUDA, {}), (CPU, {})], vs, ZEN4)


def test_provider_arguments_are_normalized() -> None:
    assert normalize_providers("CPUExecutionProvider") == [(CPU, {})]
    assert normalize_providers([CUDA, (CPU, {"arena_extend_strategy": "kSameAsRequested"})]) == [
        (CUDA, {}), (CPU, {"arena_extend_strategy": "kSameAsRequested"})
    ]
    with pytest.raises(TypeError, match=r"providers\[1\] should be a provider name"):
        normalize_providers([CPU, 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="providers is empty"):
        normalize_providers([])


def test_fallen_back() -> None:
    assert fallen_back([CUDA, CPU], [CPU]) == [CUDA]
    assert fallen_back([CUDA, CPU], [CUDA, CPU]) == []
    assert fallen_back([CPU], [CPU]) == []
    assert fallen_back([OPENVINO, CPU], [CPU]) == [OPENVINO]


# ------------------------------------------------------------------------------ Embedder with fakes


class _Recorder:
    """Wraps onnxruntime.InferenceSession, recording what was asked and optionally faking the outcome."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pretend: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.real = ort.InferenceSession
        self.pretend = pretend or {}  # provider name -> "works" | "raises"
        monkeypatch.setattr(ort, "InferenceSession", self)

    def __call__(self, path: str, sess_options: Any = None, providers: Any = None, **kw: Any) -> Any:
        self.calls.append((Path(path).name, list(providers or [])))
        first = providers[0] if isinstance(providers[0], str) else providers[0][0]
        mode = self.pretend.get(first)
        if mode == "raises":
            raise RuntimeError(f"[ONNXRuntimeError] : 1 : FAIL : could not create {first}")
        real = self.real(path, sess_options=sess_options, providers=[CPU])
        if mode == "works":
            return _PretendSession(real, [first, CPU])
        return real


class _PretendSession:
    def __init__(self, real: Any, providers: list[str]) -> None:
        self._real, self._providers = real, providers

    def get_providers(self) -> list[str]:
        return self._providers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _cpu_choice(folder: Path, feats: CpuFeatures) -> str:
    return auto_plans(load_manifest(folder).variants, [CPU], feats)[-1].variant


def test_auto_cuda_listed_but_silently_on_cpu_warns_and_takes_the_cpu_choice(
    tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    rec = _Recorder(monkeypatch)  # the real CPU onnxruntime, asked for CUDA, comes up on the CPU
    with caplog.at_level(logging.WARNING, logger="onnxembed.embedder"):
        emb = Embedder.load(tiny_bert_artifacts, cpu_features=ZEN4, verify=False)
    m = load_manifest(tiny_bert_artifacts)
    assert rec.calls[0][0] == Path(m.path_of("O4")).name  # the folder has every variant
    assert rec.calls[0][1][0] == CUDA
    assert emb.providers == [CPU] and emb.variant == _cpu_choice(tiny_bert_artifacts, ZEN4)
    assert "fell back silently" in caplog.text and "using the CPU choice" in caplog.text
    assert emb.encode(["fallback works"]).shape == (1, emb.dim)


def test_explicit_cuda_that_falls_back_raises(tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    _Recorder(monkeypatch)
    with pytest.raises(ProviderUnavailableError, match=r"CUDAExecutionProvider was requested .* runs on \['CPUExecutionProvider'\]"):
        Embedder.load(tiny_bert_artifacts, providers=[CUDA, CPU], verify=False)


def test_explicit_provider_not_installed_names_the_pip_command(tiny_bert_artifacts: Path) -> None:
    with pytest.raises(ProviderUnavailableError, match=r"'CUDAExecutionProvider' is not available.*pip install onnxruntime-gpu"):
        Embedder.load(tiny_bert_artifacts, providers=["CUDAExecutionProvider"], verify=False)
    assert "O4" in load_manifest(tiny_bert_artifacts).variants
    with pytest.raises(ProviderUnavailableError, match="onnxruntime-gpu"):
        Embedder.load(tiny_bert_artifacts, variant="O4", verify=False)


def test_auto_cuda_that_raises_is_skipped_explicit_cuda_that_raises_is_an_error(
    tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    _Recorder(monkeypatch, pretend={CUDA: "raises"})
    with caplog.at_level(logging.WARNING, logger="onnxembed.embedder"):
        emb = Embedder.load(tiny_bert_artifacts, cpu_features=HASWELL, verify=False)
    assert emb.providers == [CPU] and "CUDAExecutionProvider failed" in caplog.text
    with pytest.raises(ProviderUnavailableError, match="failed to create a session") as info:
        Embedder.load(tiny_bert_artifacts, providers=[CUDA, CPU], verify=False)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_auto_working_cuda_uses_it(tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    _Recorder(monkeypatch, pretend={CUDA: "works"})
    emb = Embedder.load(tiny_bert_artifacts, cpu_features=ZEN4, verify=False)
    m = load_manifest(tiny_bert_artifacts)
    assert emb.providers[0] == CUDA and emb.variant == "O4"
    assert m.variants[emb.variant].precision != "int8"


def test_auto_amx_with_openvino_runs_the_fused_file_with_bf16_options(tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [OPENVINO, CPU])
    rec = _Recorder(monkeypatch, pretend={OPENVINO: "works"})
    emb = Embedder.load(tiny_bert_artifacts, cpu_features=SPR, verify=False, cache_dir=tmp_path / "ov-cache")
    assert emb.variant == "O2" and emb.providers[0] == OPENVINO
    name, opts = rec.calls[0][1][0]
    assert name == OPENVINO and json.loads(opts["load_config"])["CPU"]["INFERENCE_PRECISION_HINT"] == "bf16"
    assert opts["cache_dir"] == str(tmp_path / "ov-cache") and (tmp_path / "ov-cache").is_dir()
    assert rec.calls[0][1][1] == CPU  # the CPU provider keeps no OpenVINO option


def test_auto_openvino_that_falls_back_takes_the_cpu_choice(tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [OPENVINO, CPU])
    _Recorder(monkeypatch)
    emb = Embedder.load(tiny_bert_artifacts, cpu_features=SPR, verify=False)
    assert emb.providers == [CPU] and emb.variant == _cpu_choice(tiny_bert_artifacts, SPR)


def test_auto_on_a_plain_cpu_asks_for_the_cpu_provider_only(tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _Recorder(monkeypatch)
    emb = Embedder.load(tiny_bert_artifacts, cpu_features=OLD, verify=False)
    assert len(rec.calls) == 1 and rec.calls[0][1] == [CPU]
    m = load_manifest(tiny_bert_artifacts)
    assert emb.variant == "O2"  # the folder has every variant: the fused fp32 file
    assert m.variants[emb.variant].precision == "fp32"
    assert np.isfinite(emb.encode("x")).all()


@pytest.mark.parametrize(
    ("feats", "present", "expected"),
    [
        (ZEN4, ALL, ["qint8_avx512_vnni", "quint8_avx2"]),
        (HASWELL, ALL, ["quint8_avx2"]),
        (HASWELL, ("fp32", "qint8_avx512_vnni", "qint8_arm64"), []),  # the VNNI file is not safe on AVX2 alone
        (GRAVITON, ALL, ["qint8_arm64"]),
        (OLD, ALL, []),
    ],
)
def test_int8_variants_for_cpu_is_the_rule_resolve_variant_uses(feats: CpuFeatures, present: tuple[str, ...], expected: list[str]) -> None:
    vs = variants(*present)
    assert int8_variants_for_cpu(vs, feats) == expected
    if expected:
        assert resolve_variant("int8", vs, feats) == expected[0]
    else:
        with pytest.raises(ManifestError, match="no int8 file for this CPU"):
            resolve_variant("int8", vs, feats)
