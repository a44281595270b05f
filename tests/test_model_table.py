"""The README's model table is what ``onnxembed models`` prints from the registry."""

from __future__ import annotations

from conftest import REPO, run_cli

START, END = "<!-- model table: onnxembed models -->\n", "<!-- end model table -->"


def _readme_table() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, "the README must hold one model table between its markers"
    return text.split(START)[1].split(END)[0]


def test_readme_model_table_is_the_registry() -> None:
    from onnxembed.export import load_registry, model_table

    reg = load_registry()
    assert _readme_table() == model_table(reg), "README model table is stale: paste the output of `onnxembed models`"
    rows = _readme_table().splitlines()[2:]
    assert [r.split(" | ")[0].strip("| `") for r in rows] == list(reg)


def test_models_command_prints_the_readme_table() -> None:
    assert run_cli("models").stdout == _readme_table()
