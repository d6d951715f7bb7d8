# The two commands in the README are `make lab` and `make test`; both set up first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup lab test test-fast test-profile lint execute html site site-check bundle bundle-check check-notebooks clean

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
	$(PY) -m pytest -n auto --dist loadfile --durations=15

test-fast: setup  ## unit tests only, no notebooks
	$(PY) -m pytest llm_tutorial tests

test-profile: setup  ## the notebooks under another CPU profile (x86-64): make test-profile PROFILE=default
	$(PY) scripts/cpu_profiles.py --run $(PROFILE) -- $(PY) -m pytest -p no:cacheprovider notebooks

lint: setup
	$(VENV)/bin/ruff check .

execute: setup  ## re-execute every notebook in place (or NB=notebooks/01_tokenization.py)
	$(PY) scripts/notebooks.py execute $(NB)

site: setup  ## the static site of the series, from the stored outputs (no re-execution), offline: site/index.html
	$(PY) scripts/docsite.py build

html: site  ## the same as make site

# The site in a real browser: headless Chromium opens every page from file:// (as from a USB stick)
# and fails on a failed request, a request to another host, a script error or untypeset math;
# screenshots of two pages go to build/site/screenshots/. Chromium comes from Debian's packages
# (installed here when missing, as root). `make test` runs tests/test_site.py, not this.
site-check: site
	$(PY) scripts/docsite.py check
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "site-check: needs Chromium (Debian/Ubuntu: sudo apt-get install chromium)"; exit 1; fi; }
	$(PY) scripts/docsite.py browser --screenshots build/site/screenshots

# A workshop with no network: one archive per platform and Python, built here (with network), set
# up there with `bash setup-offline.sh` (pip and uv with no index, only the bundle's wheelhouse).
bundle: setup  ## dist/llm-tutorial-offline-<os>-<machine>-py3XX.tar: project + wheelhouse + model
	$(PY) scripts/bundle.py build

bundle-check:  ## unpack the bundle into a new folder, set up with no network, run the check and a notebook
	$(PY) scripts/bundle.py check

# Is this machine ready? One [OK]/[WARN]/[FAIL] line per check, each failure with its fix; exit
# status 1 when something failed. Not after setup on purpose: it reports the state as it is.
.PHONY: check student student-check
check:
	$(PY) -m llm_tutorial check

# The student edition: every notebook with its exercise solutions replaced by stubs that say what
# to write and raise NotImplementedError, the solutions' outputs removed, everything else unchanged.
student: setup  ## student/*.ipynb (ignored by git; hand it out, or attach it to a release)
	$(PY) scripts/student.py build

student-check: student  ## run every student notebook: only the exercise stubs may fail (long: the whole series)
	$(PY) scripts/student.py check

clean:
	rm -rf site build/site .pytest_cache .ruff_cache
