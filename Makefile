# The two commands in the README are `make lab` and `make test`; both set up first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup lab test test-fast test-profile lint execute html check-notebooks clean

# Another kind of CPU, imitated: the notebooks again with PyTorch (ATen), MKL and oneDNN limited to
# other instruction sets (PROFILE=avx2, avx512, default or mkl-compatible; scripts/cpu_profiles.py).
# `make test` needs none of this: every printed number and compared choice proves its own margin
# there, and tests/test_cpu_profiles.py measures the drift between all the profiles. Use it after
# re-recording notebooks, as a second opinion (each profile takes as long as the notebooks).
PROFILE ?= avx2

setup:
	@bash scripts/setup.sh

lab: setup  ## as root (a container), Jupyter refuses to start without --allow-root
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

test: setup  ## everything CI runs: unit tests, doctests, cross-CPU drift, hygiene, every notebook
	$(PY) -m pytest --durations=15

test-fast: setup  ## unit tests only, no notebooks
	$(PY) -m pytest llm_tutorial tests

test-profile: setup  ## the notebooks under another CPU profile (x86-64): make test-profile PROFILE=default
	$(PY) scripts/cpu_profiles.py --run $(PROFILE) -- $(PY) -m pytest -p no:cacheprovider notebooks

lint: setup
	$(VENV)/bin/ruff check .

execute: setup  ## re-execute every notebook in place (or NB=notebooks/01_tokenization.py)
	$(PY) scripts/notebooks.py execute $(NB)

html: setup  ## execute every notebook headless and render it to site/*.html
	$(PY) scripts/notebooks.py html

clean:
	rm -rf site .pytest_cache .ruff_cache
