"""The gate and calibration set shipped in the package, its place at the end of the data chain, and the hub
look-ups: offline means no network call; an unreachable hub costs one short attempt and one line."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from onnxembed.quantize import data as qdata
from onnxembed.quantize.data import resolve_data, text_key


def _rows(path: Path) -> list[tuple[str, str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return [tuple(r) for r in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]  # type: ignore[misc]


GATES = _rows(qdata.SHIPPED_DIR / "gates.tsv")
CALIBRATION = _rows(qdata.SHIPPED_DIR / "calibration.tsv")


def test_the_shipped_set_is_large_enough_disjoint_and_from_the_cc_by_sa_rows(data_dir: Path) -> None:
    gate_sentences = {t for r in GATES for t in r[1:]}
    calib_sentences = {t for r in CALIBRATION for t in r[1:]}
    assert len(gate_sentences) >= 2000 and len(GATES) >= 500
    assert len(calib_sentences) >= 512 + 256  # the calibration draw and the SmoothQuant selection set do not overlap
    assert not {text_key(t) for t in calib_sentences} & {text_key(t) for t in gate_sentences}
    # Provenance: the first 750 gate rows are the STS-B test then dev rows of the images and SNLI (track5) subsets,
    # byte for byte as in the independent copy in shared/data (rows 251-500 and 1001-1125 of each file's captions block).
    shared = {name: _rows(data_dir / "sts" / f"stsb-{name}.tsv") for name in ("test", "dev")}
    expected = []
    for name in ("test", "dev"):
        rows = shared[name]
        expected += rows[250:500] + rows[500:625]  # after MSRvid (250 rows): images (250), track5.en-en (125)
    assert [tuple(r) for r in GATES[:750]] == [tuple(r) for r in expected]
    assert all(0.0 <= float(r[0]) <= 5.0 for r in GATES + CALIBRATION)


@pytest.fixture()
def bare_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An installed package on a fresh machine: no $ONNXEMBED_DATA, no shared/data, an empty hub cache."""
    from huggingface_hub import constants

    monkeypatch.delenv("ONNXEMBED_DATA", raising=False)
    monkeypatch.setattr(qdata, "_repo_data", lambda: None)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(qdata, "_HUB_REACHABLE", {})
    return tmp_path / "hub"


class _NoNetwork:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def head(self, url: str, **kwargs: object) -> None:
        self.calls.append(url)
        raise ConnectionError(f"[Errno -2] Name or service not known: {url}")


def test_offline_uses_the_shipped_set_and_makes_no_network_call(bare_install: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from huggingface_hub import constants, file_download

    net = _NoNetwork()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.utils.get_session", lambda: net)
    monkeypatch.setattr(file_download, "get_session", lambda: net, raising=False)
    with caplog.at_level(logging.WARNING):
        d = resolve_data()
    assert net.calls == []
    assert d.heldout is not None and d.heldout.source.startswith("shipped set") and len(d.heldout.texts) >= 2000
    assert d.sts is d.heldout and len(d.sts.pairs) == len(GATES)
    assert d.calibration.source.startswith("shipped set") and len(d.calibration.texts) == len({t for r in CALIBRATION for t in r[1:]})
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_unreachable_hub_costs_one_attempt_and_one_line(bare_install: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from huggingface_hub import constants

    net = _NoNetwork()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.utils.get_session", lambda: net)
    with caplog.at_level(logging.WARNING):
        first = resolve_data()
        second = resolve_data()  # a later look-up in the same process does not try again
    assert len(net.calls) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "Hugging Face hub not reachable" in warnings[0], warnings
    assert first.heldout is not None and first.heldout.source.startswith("shipped set")
    assert second.heldout is not None and second.heldout.texts == first.heldout.texts


def test_the_shipped_set_is_never_used_when_a_larger_set_is_reachable(bare_install: Path, data_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from onnxembed.quantize.synthetic_data import offline_data_hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline_data_hub(data_dir, bare_install, rows=40)  # the MTEB datasets in the (fake) hub cache
    hub = resolve_data()
    assert hub.heldout is not None and hub.heldout.source.startswith("hf://datasets/mteb/stsbenchmark-sts")
    assert hub.calibration.source.startswith("hf://datasets/mteb/stsbenchmark-sts")
    monkeypatch.setattr(qdata, "_repo_data", lambda: data_dir)  # a source checkout beside shared/data
    local = resolve_data()
    assert local.heldout is not None and local.heldout.source.startswith("shared/data:") and len(local.heldout.texts) == 21166
