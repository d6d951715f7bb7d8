"""The student edition: every notebook with its exercise solutions replaced by stubs.

    python scripts/student.py build [--out student]               # write student/NN_name.ipynb
    python scripts/student.py check [--out student] [NOTEBOOK ...]  # run them top to bottom

``build`` copies each ``notebooks/NN_name.ipynb`` to ``student/`` unchanged except for its
solution cells (code cells tagged ``solution``): each becomes a visible stub, tagged ``exercise``,
that repeats the exercise's question, says what to write, and raises ``NotImplementedError`` when
run; the solution's outputs go too. The markdown files the notebooks link to (the glossary) are
copied alongside. The teacher's edition is the repository itself.

``check`` runs every student notebook in a fresh kernel, errors allowed, and fails unless the
exercise stubs, and only they, raised ``NotImplementedError``.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
STUDENT = ROOT / "student"
SOLUTION, EXERCISE = "solution", "exercise"
CELL_TIMEOUT_S = 600
README = """\
# llm-tutorial: student edition

The notebooks of the series, with the exercise solutions taken out. Each exercise cell repeats
its question and raises `NotImplementedError` until you replace it with your code; every other
cell is the same as in the teacher's edition, outputs included, so you can compare your run
with the stored one.

Set up as the project's README says (`make setup`), then open these notebooks with the project's
kernel. Start with `00_check.ipynb`: it checks this machine and this kernel.
"""

# an exercise in the markdown after "## Exercises": "**1.** ...", "1. ...", "**1. Title.** ..."
_ITEM = re.compile(r"^\s*(?:\*\*)?(\d+)\.(?:\*\*)?\s+(.*)$")


def is_solution(cell) -> bool:
    return cell.get("cell_type") == "code" and SOLUTION in cell.get("metadata", {}).get("tags", [])


def exercise_questions(nb) -> dict[int, str]:
    """The numbered exercises of a notebook, by number, each as its markdown lines (unindented)."""
    questions: dict[int, list[str]] = {}
    started, current = False, None
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            current = None
            continue
        for line in cell.source.splitlines():
            heading = re.match(r"^(#{1,6})\s+(.*)", line)
            if heading:  # the exercises run from "## Exercises" to the next heading of that level
                if len(heading.group(1)) <= 2:
                    started = heading.group(2).startswith("Exercises")
                current = None
                continue
            if not started:
                continue
            item = _ITEM.match(line)
            if item:
                current = int(item.group(1))
                questions[current] = [item.group(2).strip()]
            elif current is not None and line.strip():
                questions[current].append(line.strip())
            else:
                current = None
    return {number: "\n".join(lines) for number, lines in questions.items()}


def stub_source(number: int, question: str | None, notebook: str) -> str:
    """The code that replaces solution ``number``: the question, what to write, and a raise."""
    lines = [f"# Exercise {number}: your turn." + (" Write the code that answers:" if question else
                                                   " Write the code that answers the exercise above.")]
    if question:
        lines += ["#   " + line for line in question.splitlines()]
    lines += [
        "# Use what the notebook built above. Print what you find and check it with `assert`, as",
        "# the notebook does. Then delete the line below and run the cell.",
        f'raise NotImplementedError("exercise {number} of {notebook}: write your solution in this cell")',
    ]
    return "\n".join(lines)


def student_notebook(nb, name: str):
    """A copy of ``nb`` with each solution cell replaced by a stub (see ``stub_source``)."""
    questions = exercise_questions(nb)
    student = copy.deepcopy(nb)
    number = 0
    for cell in student.cells:
        if not is_solution(cell):
            continue
        number += 1
        cell.source = stub_source(number, questions.get(number), name)
        cell.outputs, cell.execution_count = [], None
        tags = [EXERCISE if tag == SOLUTION else tag for tag in cell.metadata.get("tags", [])]
        cell.metadata["tags"] = tags
        cell.metadata.pop("jupyter", None)  # the stub is shown: no hidden source or outputs
    return student


def build(out: Path = STUDENT, notebooks: list[Path] | None = None) -> list[Path]:
    """Write the student edition into ``out`` (its old notebooks removed first); return the notebooks."""
    import nbformat

    sources = notebooks or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.ipynb"):
        old.unlink()
    written = []
    for source in sources:
        nb = nbformat.read(source, as_version=4)
        target = out / source.name
        nbformat.write(student_notebook(nb, source.stem), target)
        written.append(target)
    for linked in sorted(NOTEBOOKS.glob("*.md")):  # the glossary the notebooks link to
        shutil.copy2(linked, out / linked.name)
    (out / "README.md").write_text(README)
    return written


def run(path: Path) -> tuple[list[str], int, float]:
    """Run a student notebook top to bottom, errors allowed. Returns (problems, stubs, seconds):
    problems is empty when exactly the exercise cells raised, each a NotImplementedError."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                       "LLM_TUTORIAL_CHECK_STABLE": "test"}.items():
        os.environ[key] = value
    os.environ.pop("LLM_TUTORIAL_MODEL", None)  # the notebooks' asserts are for the embedded model
    started = time.perf_counter()
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - started
    problems, stubs = [], 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        exercise = EXERCISE in cell.metadata.get("tags", [])
        stubs += exercise
        if exercise and [e.get("ename") for e in errors] != ["NotImplementedError"]:
            problems.append(f"{path.name} cell {index}: the exercise stub did not raise NotImplementedError "
                            f"(errors: {[e.get('ename') for e in errors]})")
        elif not exercise and errors:
            problems.append(f"{path.name} cell {index}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
                            f"\n{cell.source[:300]}")
    if stubs == 0:
        problems.append(f"{path.name}: no exercise stubs (build it with: python scripts/student.py build)")
    return problems, stubs, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["build", "check"])
    parser.add_argument("notebooks", nargs="*", help="check: student notebooks to run (default: all)")
    parser.add_argument("--out", default=str(STUDENT), help="the student edition's folder (default: student/)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.command == "build":
        written = build(out)
        print(f"student edition: {len(written)} notebooks in {out}")
        return 0
    paths = [Path(n) if Path(n).exists() else out / Path(n).with_suffix(".ipynb").name for n in args.notebooks]
    paths = paths or sorted(out.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print(f"no student notebooks in {out}; run: python scripts/student.py build", file=sys.stderr)
        return 2
    failed = 0
    for path in paths:
        problems, stubs, seconds = run(path)
        failed += bool(problems)
        verdict = "only its exercise stubs failed" if not problems else "PROBLEMS"
        print(f"{path.name}: {verdict} ({stubs} stubs, NotImplementedError), ran in {seconds:.0f} s", flush=True)
        for problem in problems:
            print("  " + problem.replace("\n", "\n  "), flush=True)
    print(f"{len(paths) - failed} of {len(paths)} student notebooks ran top to bottom with only the exercises failing")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
