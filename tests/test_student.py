"""The student edition (``make student``): solutions replaced by stubs, nothing else changed.

Cheap checks on every notebook (no kernel): no line of any solution, nor of its output, is left
in the student edition; every other cell is unchanged; each stub says what to write and raises
NotImplementedError. Running every student notebook top to bottom takes as long as the series
itself: ``make student-check`` does it; here the runner is tried on a small notebook.
"""

import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import student  # noqa: E402

TEACHER = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    student.build(out)
    return out


def pairs(edition):
    for path in TEACHER:
        yield (path.stem, nbformat.read(path, as_version=4), nbformat.read(edition / path.name, as_version=4))


def output_text(cell) -> str:
    texts = []
    for output in cell.get("outputs", []):
        texts.append(output.get("text", ""))
        texts += [str(value) for value in output.get("data", {}).values()]
        texts += [output.get("evalue", ""), *output.get("traceback", [])]
    return "\n".join(texts)


def test_every_notebook_is_in_the_edition(edition):
    assert TEACHER and sorted(p.name for p in edition.glob("*.ipynb")) == [p.name for p in TEACHER]
    assert not list(edition.glob("*.py")), "the percent scripts carry the solutions"


def test_no_solution_source_or_output_leaks(edition):
    for name, teacher, pupil in pairs(edition):
        solutions = [c for c in teacher.cells if student.is_solution(c)]
        others = [c for c in teacher.cells if not student.is_solution(c)]
        shown = "\n".join(c.source + "\n" + output_text(c) for c in others)
        secret = {line.strip() for c in solutions for line in (c.source + "\n" + output_text(c)).splitlines()}
        # what also stands elsewhere in the notebook (code shown earlier, a printed name) is not the solution's
        secret = {line for line in secret if line and line not in shown}
        assert secret, f"{name}: its solutions have lines of their own"
        text = "\n".join(c.source + "\n" + output_text(c) for c in pupil.cells) + json.dumps(pupil.metadata)
        lines = {line.strip() for line in text.splitlines()}
        leaked = [line for line in secret if line in lines or (len(line) >= 25 and line in text)]
        assert not leaked, f"{name}: solution lines in the student edition: {leaked[:5]}"


def test_every_other_cell_and_the_metadata_are_unchanged(edition):
    for name, teacher, pupil in pairs(edition):
        assert pupil.metadata == teacher.metadata and len(pupil.cells) == len(teacher.cells), name
        for index, (mine, theirs) in enumerate(zip(teacher.cells, pupil.cells)):
            if not student.is_solution(mine):
                assert mine == theirs, f"{name}: cell {index} changed"


def test_each_stub_says_what_to_write_and_raises(edition):
    for name, teacher, pupil in pairs(edition):
        questions = student.exercise_questions(teacher)
        stubs = [(m, p) for m, p in zip(teacher.cells, pupil.cells) if student.is_solution(m)]
        assert len(questions) == len(stubs), (
            f"{name}: {len(stubs)} solutions but {len(questions)} numbered exercises; number each "
            "exercise after '## Exercises' ('1. ...' or '**1.** ...'), one per solution cell")
        for number, (_, stub) in enumerate(stubs, start=1):
            assert stub.metadata.get("tags") == ["exercise"] and "jupyter" not in stub.metadata, name
            assert stub.outputs == [] and stub.execution_count is None
            assert f"Exercise {number}" in stub.source
            assert questions[number].splitlines()[0] in stub.source, "the question is repeated"
            with pytest.raises(NotImplementedError, match=f"exercise {number} of {name}"):
                exec(compile(stub.source, f"{name} exercise {number}", "exec"), {})


def test_the_glossary_goes_along(edition):
    for linked in (ROOT / "notebooks").glob("*.md"):
        assert (edition / linked.name).read_text() == linked.read_text()


def test_questions_are_read_in_both_list_styles():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Recap\n1. not an exercise\n\n## Exercises\n1. First line\n   second line"
                                      "\n2. **Bold.** Other\n### A sub-heading"),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("**3.** Third one"),
        nbformat.v4.new_markdown_cell("## Appendix\n1. not an exercise either"),
    ])
    assert student.exercise_questions(nb) == {1: "First line\nsecond line", 2: "**Bold.** Other", 3: "Third one"}


def test_a_student_notebook_runs_with_only_its_exercises_failing(tmp_path):
    """The runner of ``make student-check``, on a small notebook: the stub raises NotImplementedError
    (not a problem), the cells after it still run, and a failing cell that is no exercise is reported."""
    cells = [nbformat.v4.new_markdown_cell("## Exercises\n1. Make x twice as big."),
             nbformat.v4.new_code_cell("x = 21"),
             nbformat.v4.new_code_cell("x = 2 * x\nassert x == 42", metadata={"tags": ["solution"]}),
             nbformat.v4.new_code_cell("assert x == 21"),
             nbformat.v4.new_code_cell("print(y)")]
    path = tmp_path / "99_small.ipynb"
    nbformat.write(student.student_notebook(nbformat.v4.new_notebook(cells=cells), path.stem), path)
    problems, stubs, _ = student.run(path)
    assert stubs == 1 and len(problems) == 1 and "cell 4: NameError" in problems[0], problems
