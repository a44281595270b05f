"""The README's promises: its first two commands, `onnxembed demo`, and its Python examples run as written."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block and README.index(first_block.group(0)) < README.index("\n## ")
    commands = [c for c in first_block.group(1).splitlines() if c.strip()]
    assert len(commands) == 2
    assert commands[0].endswith("onnxembed demo")
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci


def test_demo_on_a_built_folder_skips_the_build_compares_and_ranks(default_artifacts: Path, tmp_path: Path) -> None:
    out = tmp_path / "artifacts" / "all-minilm-l6-v2"
    shutil.copytree(default_artifacts, out)
    proc = run_cli("demo", "--out", str(out), timeout=600)
    text = proc.stdout
    assert "skipped" in text and "inputs unchanged" in text  # same inputs: no rebuild
    assert "qint8_avx512_vnni" in text and "vs fp32" in text  # the manifest summary and the comparison table
    # The real model ranks the passage about int8 speed first for the example query, the cake recipe last.
    ranking = [line.strip() for line in text.split("query: ", 1)[1].splitlines()[1:5]]
    assert "int8" in ranking[0], ranking
    assert any(w in ranking[-1] for w in ("flour", "football")), ranking
    scores = [float(r.split()[0]) for r in ranking]
    assert scores == sorted(scores, reverse=True)


SERVER_URL = "http://127.0.0.1:8080"  # the Serve section's examples talk to a running server
RERANK_DIR = "artifacts/ms-marco-minilm-l6"  # the Rerankers section's examples run in test_rerank.py


def _python_blocks() -> list[str]:
    """The examples that run on their own; those for a running server run in test_serve.py."""
    return [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if SERVER_URL not in b and RERANK_DIR not in b]


def test_readme_python_examples_run(default_artifacts: Path, tmp_path: Path) -> None:
    blocks = _python_blocks()
    assert blocks, "the README has no Python example"
    for i, code in enumerate(blocks):
        code = code.replace("artifacts/all-minilm-l6-v2", default_artifacts.as_posix())
        script = tmp_path / f"readme_{i}.py"
        script.write_text(code, encoding="utf-8")
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, f"README Python block {i} failed:\n{code}\n{proc.stderr[-3000:]}"


def _onnxembed_commands(text: str) -> list[list[str]]:
    """Every `onnxembed ...` command line in a text (shell-split, comments, variables and loops removed)."""
    import shlex

    out = []
    for line in text.splitlines():
        line = line.split(" #")[0].strip().lstrip("-").strip()
        if "onnxembed " not in line or line.startswith(("pip", "python")):
            continue
        cmd = line[line.index("onnxembed ") :].split(";")[0].split("&&")[0]
        out.append(shlex.split(cmd.replace('"$d"', "dir"))[1:])
    return out


def test_every_onnxembed_command_in_the_readme_and_workflow_parses() -> None:
    """The documented commands use subcommands and flags that exist (argparse exits on unknown ones)."""
    import yaml

    from onnxembed.cli import build_parser

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "build-artifacts.yml").read_text(encoding="utf-8"))
    steps = "\n".join(str(s.get("run", "")) for s in workflow["jobs"]["build"]["steps"])
    bash_blocks = "\n".join(re.findall(r"```bash\n(.*?)```", README, re.S))
    commands = _onnxembed_commands(bash_blocks) + _onnxembed_commands(steps)
    assert len(commands) >= 10 and any(c[:2] == ["build", "--all"] for c in commands) and any(c[0] == "verify" for c in commands)
    parser = build_parser()
    for words in commands:
        args, extra = parser.parse_known_args(words)
        assert not extra or (args.command == "embed" and not any(e.startswith("-") for e in extra)), (words, extra)
