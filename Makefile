# The two commands in the README are `make lab` and `make test`; both set up first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup lab test test-fast test-portable lint execute html check-notebooks clean

# A CPU of another kind: PyTorch, MKL and oneDNN limited to AVX2, bitsandbytes without its
# AVX512-BF16 path (scripts/portable/sitecustomize.py). Stored outputs must hold there too.
PORTABLE_ENV := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \
	PYTHONPATH=$(CURDIR)/scripts/portable
PORTABLE_TEST = if [ "$$(uname -m)" = x86_64 ]; then \
	  echo "test-portable: notebooks with CPU kernels limited to AVX2"; \
	  $(PORTABLE_ENV) $(PY) -m pytest -p no:cacheprovider notebooks; \
	else echo "test-portable: skipped (the AVX2 limits apply to x86-64 only)"; fi

setup:
	@bash scripts/setup.sh

lab: setup  ## as root (a container), Jupyter refuses to start without --allow-root
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

test: setup
	$(PY) -m pytest
	@$(PORTABLE_TEST)

test-fast: setup  ## unit tests only, no notebooks
	$(PY) -m pytest llm_tutorial tests

test-portable: setup  ## the notebooks again, on x86-64 with the CPU kernels limited to AVX2
	@$(PORTABLE_TEST)

lint: setup
	$(VENV)/bin/ruff check .

execute: setup  ## re-execute every notebook in place (or NB=notebooks/01_tokenization.py)
	$(PY) scripts/notebooks.py execute $(NB)

html: setup  ## execute every notebook headless and render it to site/*.html
	$(PY) scripts/notebooks.py html

clean:
	rm -rf site .pytest_cache .ruff_cache
