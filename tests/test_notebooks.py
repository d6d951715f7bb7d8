"""Notebook hygiene: pairs in sync, outputs stored from one top-to-bottom run, house style.

nbval (strict) re-runs every notebook and compares outputs; these tests make sure that what it
compares is complete (a cell with no stored execution would silently be skipped) and that each
notebook has the shape the series promises.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import notebooks as harness  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def source(cell) -> str:
    return "".join(cell["source"])


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_in_sync_and_fully_executed(path):
    assert harness.check([path.name]) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_house_style(path):
    cells = json.loads(path.read_text())["cells"]
    number = path.name[:2]
    first = source(cells[0])
    assert cells[0]["cell_type"] == "markdown" and first.startswith(f"# {number} · "), "title first"
    assert re.search(r"\*\*[^*]+\?\*\*", first), "the question it answers, in bold, at the top"
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "setup_notebook(" in source(code[0]), "first code cell: lt.setup_notebook(...)"
    banner = "".join(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
                     for o in code[0]["outputs"])
    assert "transformers" in banner and "torch" in banner, "the version banner is printed"
    headings = [source(c) for c in cells if c["cell_type"] == "markdown"]
    def has_heading(text, title):
        return any(line.startswith(f"## {title}") for line in text.splitlines())

    assert any(has_heading(h, "Recap") for h in headings), "a recap"
    exercises = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                 and has_heading(source(c), "Exercises")]
    assert exercises, "exercises at the end"
    solutions = [c for c in cells[exercises[0]:] if c["cell_type"] == "code"
                 and "solution" in c["metadata"].get("tags", [])]
    assert 2 <= len(solutions) <= 6, "2-4 exercises, each with a solution cell"
    for cell in solutions:
        assert cell["metadata"].get("jupyter", {}).get("source_hidden") is True, "solutions are hidden"
        assert "assert" in source(cell), "solutions check their answer"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_ignored_outputs_say_why(path):
    for cell in json.loads(path.read_text())["cells"]:
        lines = source(cell).splitlines()
        if lines and lines[0].strip() == "# NBVAL_IGNORE_OUTPUT":
            assert len(lines) > 1 and lines[1].lstrip().startswith("#"), (
                f"{path.name}: an ignored-output cell must say why on its second line:\n{source(cell)}"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_raw_float_tensors_in_outputs(path):
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            text = output.get("text") or "".join(output.get("data", {}).get("text/plain", []))
            text = text if isinstance(text, str) else "".join(text)
            assert not re.search(r"tensor\(\[?\[?-?\d+\.\d{5,}", text), (
                f"{path.name}: print rounded numbers, not raw float tensors:\n{text[:300]}"
            )


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
