# The two commands in the README are `make lab` and `make test`; both set up first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup lab test test-fast lint execute html check-notebooks clean

setup:
	@bash scripts/setup.sh

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

test: setup
	$(PY) -m pytest

test-fast: setup  ## unit tests only, no notebooks
	$(PY) -m pytest llm_tutorial tests

lint: setup
	$(VENV)/bin/ruff check .

execute: setup  ## re-execute every notebook in place (or NB=notebooks/01_tokenization.py)
	$(PY) scripts/notebooks.py execute $(NB)

html: setup  ## execute every notebook headless and render it to site/*.html
	$(PY) scripts/notebooks.py html

clean:
	rm -rf site .pytest_cache .ruff_cache
