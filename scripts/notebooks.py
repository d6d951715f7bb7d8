"""Keep the notebooks executed, normalized and in sync with their percent-script pairs.

    python scripts/notebooks.py execute [NOTEBOOK ...]   # re-run in a fresh kernel, store outputs
    python scripts/notebooks.py check                    # pairs in sync, every cell executed in order

Each notebook exists twice: ``notebooks/NN_name.py`` (jupytext percent format, the file you edit
and review) and ``notebooks/NN_name.ipynb`` (the same cells with their stored outputs, which
readers see and ``pytest --nbval`` compares). ``execute`` takes the cells from the ``.py`` file,
keeps nothing of the old outputs, runs them top to bottom in a fresh kernel, and writes both files.
A NOTEBOOK argument may name either file of a pair.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT_S = 600
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
# offline, and stable printing in its strictest checking mode (llm_tutorial/stable.py): what is
# recorded keeps the full tolerance from every boundary, so the suite (half of it) passes anywhere
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "LLM_TUTORIAL_CHECK_STABLE": "record"}


def pairs(names: list[str] | None = None) -> list[tuple[Path, Path]]:
    """(script, notebook) pairs, for the given names or for every ``NN_*.py`` in notebooks/."""
    if names:
        stems = [NOTEBOOKS / Path(n).with_suffix("").name for n in names]
    else:
        stems = [p.with_suffix("") for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))]
    return [(s.with_suffix(".py"), s.with_suffix(".ipynb")) for s in stems]


def normalize(nb) -> None:
    """Drop what changes from run to run without meaning anything: timings, versions, random ids."""
    nb.metadata = {
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
        "jupytext": {"formats": "ipynb,py:percent"},
    }
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index:03d}"
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
        if cell.cell_type == "code":
            for output in cell.get("outputs", []):
                output.get("metadata", {}).pop("execution", None)


def execute(script: Path, notebook: Path):
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(script)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    os.environ.update(OFFLINE_ENV)
    started = time.perf_counter()
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        record_timing=False,
    )
    client.execute()
    seconds = time.perf_counter() - started
    normalize(nb)
    jupytext.write(nb, notebook)
    jupytext.write(nb, script, fmt="py:percent")
    print(f"{notebook.name}: executed in {seconds:.1f} s", flush=True)
    return nb


def check(names: list[str] | None = None) -> list[str]:
    """Problems that make the stored notebooks untrustworthy (empty list: all good)."""
    import jupytext
    import nbformat

    problems = []
    found = pairs(names)
    if not found:
        problems.append("no notebooks found under notebooks/")
    for script, notebook in found:
        if not script.exists() or not notebook.exists():
            problems.append(f"{script.stem}: both {script.name} and {notebook.name} must exist")
            continue
        stored = nbformat.read(notebook, as_version=4)
        paired = jupytext.read(script)
        a = [(c.cell_type, c.source.strip()) for c in stored.cells]
        b = [(c.cell_type, c.source.strip()) for c in paired.cells]
        if a != b:
            diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            problems.append(
                f"{script.stem}: {script.name} and {notebook.name} differ from cell {diff}; "
                f"run: make execute NB={script.name}"
            )
        code = [c for c in stored.cells if c.cell_type == "code" and c.source.strip()]
        counts = [c.execution_count for c in code]
        if counts != list(range(1, len(code) + 1)):
            problems.append(
                f"{notebook.name}: code cells were not executed once, top to bottom, in one fresh "
                f"kernel (execution counts {counts[:8]}...); run: make execute NB={script.name}"
            )
        for cell in code:
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if errors and "raises-exception" not in cell.metadata.get("tags", []):
                problems.append(f"{notebook.name}: a stored error output in cell {cell.get('id')}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["execute", "check"])
    parser.add_argument("notebooks", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "check":
        problems = check(args.notebooks)
        print("\n".join(problems) or "notebooks: all pairs in sync and executed")
        return 1 if problems else 0
    for script, notebook in pairs(args.notebooks):
        if not script.exists():
            print(f"no such notebook script: {script}", file=sys.stderr)
            return 2
        execute(script, notebook)
    return 0


if __name__ == "__main__":
    sys.exit(main())
