"""Regenerate the shipped gate and calibration sets from the original STS Benchmark files.

Usage: ``python quantize/sts_data/make.py DIR`` where DIR holds ``sts-train.csv``, ``sts-dev.csv`` and
``sts-test.csv`` from ``Stsbenchmark.tar.gz`` (STS Benchmark, ixa2.si.ehu.eus/stswiki; the copy used is
eduardofv/sts_eval @ b4cd273eb2c6cc0de34ebeffebd12ebf155ecff6 : data/sources/Stsbenchmark.tar.gz).

Only rows whose text is CC BY-SA are kept: the ``images`` file (PASCAL VOC-2008 captions, CC BY-SA)
and ``track5.en-en`` (an SNLI subset, CC BY-SA 4.0); the scores are CC BY-SA 4.0. The split is fixed:

- ``gates.tsv``: every kept row of sts-test and sts-dev, then the first ``TRAIN_GATE_ROWS`` kept rows of
  sts-train (file order): >= 2,000 unique sentences and >= 500 scored pairs judge the int8 gates;
- ``calibration.tsv``: the other kept rows of sts-train, minus any pair with a sentence that is also a
  gate sentence (compared lower-cased without punctuation, as ``onnxembed.quantize.data.text_key``).

Not imported by onnxembed; run by hand, and the test suite checks the shipped files are what it writes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

KEPT_FILES = ("images", "track5.en-en")
TRAIN_GATE_ROWS = 500
HEADER = "score\tsentence1\tsentence2\n"


def _key(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def _rows(path: Path) -> list[tuple[str, str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 7 and cols[1] in KEPT_FILES:
            rows.append((cols[4], cols[5], cols[6]))
    return rows


def make(src: Path, dst: Path) -> dict[str, int]:
    """Write ``gates.tsv`` and ``calibration.tsv`` into ``dst``; returns their counts."""
    train, dev, test = (_rows(src / f"sts-{s}.csv") for s in ("train", "dev", "test"))
    gates = test + dev + train[:TRAIN_GATE_ROWS]
    held = {_key(t) for _, a, b in gates for t in (a, b)}
    calib = [r for r in train[TRAIN_GATE_ROWS:] if _key(r[1]) not in held and _key(r[2]) not in held]
    for name, rows in (("gates.tsv", gates), ("calibration.tsv", calib)):
        (dst / name).write_text(HEADER + "".join(f"{s}\t{a}\t{b}\n" for s, a, b in rows), encoding="utf-8")
    return {"gate_pairs": len(gates), "gate_sentences": len({t for _, a, b in gates for t in (a, b)}),
            "calibration_pairs": len(calib), "calibration_sentences": len({t for _, a, b in calib for t in (a, b)})}


if __name__ == "__main__":
    print(make(Path(sys.argv[1]), Path(__file__).parent))
