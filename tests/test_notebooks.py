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
    if number == "00":  # the environment check: a tool, not a lesson (no recap, no exercises)
        return
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
        hidden = cell["metadata"].get("jupyter", {})
        # both: a solution whose output shows prints the answer right under the question
        assert hidden.get("source_hidden") is True and hidden.get("outputs_hidden") is True, (
            f"{path.name}: a solution hides its source and its outputs: "
            '# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}')
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


# ---------------------------------------------------------------------------------------------
# stable outputs: a compared cell prints floats only through lt.fmt (llm_tutorial/stable.py)

# a format spec that rounds a float: {x:.3f}, {p:.1%}, {v:g}, "%.2e" % v
_FLOAT_SPEC = re.compile(r"\{[^{}:!]*(?:![rsa])?:[^{}]*?[efgEFG%]\}")
_PERCENT_SPEC = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?[efgEFG]")
# what a raw float looks like in an output: a repr with many digits, or a float tensor / array
# (six or more significant digits after the point: lt.fmt never prints that many, 0.00000083 is fine)
_RAW_FLOAT = re.compile(r"(?<![\w.])-?\d+\.0*[1-9]\d{5,}(?![\w.])|(?:tensor|array)\(\[[^\])]*\d\.\d")


def compared_code_cells(path):
    """Code cells whose outputs strict nbval compares (executed, not NBVAL_IGNORE_OUTPUT)."""
    for cell in json.loads(path.read_text())["cells"]:
        lines = source(cell).splitlines()
        if (cell["cell_type"] == "code" and cell.get("execution_count") is not None
                and not (lines and lines[0].strip() == "# NBVAL_IGNORE_OUTPUT")):
            yield cell


def _python(text: str) -> str:
    """Cell source with IPython magics and shell escapes commented out, so ``ast`` can read it."""
    return "\n".join("#" + line if line.lstrip().startswith(("%", "!")) else line
                     for line in text.splitlines())


def float_formatting(code: str) -> list[str]:
    """Places in ``code`` that round a float themselves instead of calling ``lt.fmt``."""
    import ast

    found = []
    tree = ast.parse(_python(code))
    printed = set()  # nodes whose value reaches the output: print(...) arguments, the last expression
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("print", "display"):
            printed.update(ast.walk(node))
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        printed.update(ast.walk(tree.body[-1]))
    for node in ast.walk(tree):
        if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            spec = "".join(v.value for v in node.format_spec.values if isinstance(v, ast.Constant))
            if re.search(r"[efgEFG%]$", spec):
                found.append(f"format spec ':{spec}' in an f-string (line {node.lineno})")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node in printed:
            for match in (*_FLOAT_SPEC.finditer(node.value), *_PERCENT_SPEC.finditer(node.value)):
                found.append(f"format spec {match.group()!r} in a printed string (line {node.lineno})")
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "round"
              and node in printed):
            found.append(f"round(...) printed (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_compared_cells_print_floats_through_fmt(path):
    problems = []
    for cell in compared_code_cells(path):
        problems += [f"{cell.get('id')}: {p}" for p in float_formatting(source(cell))]
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            text = text if isinstance(text, str) else "".join(text)
            problems += [f"{cell.get('id')}: raw float in the output: {m.group()!r}"
                         for m in _RAW_FLOAT.finditer(text)]
    assert not problems, (
        f"{path.name}: a compared cell rounds floats itself; print them with lt.fmt(x, digits) "
        "(it keeps a margin from rounding boundaries), or move the cell under "
        "# NBVAL_IGNORE_OUTPUT:\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("code, problem", [
    ('print(f"{x:.3f}")', "':.3f'"),
    ('f"{p:.1%} of {n:,}"', "':.1%'"),
    ('print("%.2e" % x)', "'%.2e'"),
    ('print("{:.2f}".format(x))', "'{:.2f}'"),
    ("print(round(x, 2))", "round"),
    ("round(x, 3)", "round"),
])
def test_float_formatting_is_found(code, problem):
    found = float_formatting(code)
    assert found and problem in found[0], found


@pytest.mark.parametrize("code", [
    'print(f"{lt.fmt(x, 3)} and {n:>4} and {name!r:<10} and {n:,}")',
    "y = round(x, 2)\nassert y == 0.5\nprint(lt.fmt(y))",
    "%matplotlib inline\nprint(lt.fmt(x, decimals=2, percent=True))",
])
def test_float_formatting_allows_fmt(code):
    assert float_formatting(code) == []


def test_raw_float_outputs_are_found():
    assert _RAW_FLOAT.search("perplexity 16.953247")
    assert _RAW_FLOAT.search("tensor([0.1000, 0.9000])")
    assert not _RAW_FLOAT.search("tensor([1, 2, 3]) torch 2.13.0 perplexity 17.0 id 7042")
    assert not _RAW_FLOAT.search("p≈ 0.00000083, 0.0012")
    assert _RAW_FLOAT.search("0.000001234567")
