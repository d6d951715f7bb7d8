"""Test-wide settings: never touch the network, keep tokenizers quiet, set the thread count.

These are set before any test module imports transformers, and the notebook kernels that
nbval starts inherit them.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as llm_tutorial sets it; see its __init__
# Stable printing in checking mode (llm_tutorial/stable.py): a printed number or a compared choice
# that could come out differently on another CPU raises, here and in every nbval kernel.
os.environ["LLM_TUTORIAL_CHECK_STABLE"] = "test"
# Stored outputs are for the embedded model: a model chosen for exploring must not leak in.
os.environ.pop("LLM_TUTORIAL_MODEL", None)

import pytest  # noqa: E402  (the environment above must be set first)

MAX_WORKERS = 4  # each worker holds the model and a notebook kernel: about 2 GB


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pytest_xdist_auto_num_workers(config):
    """``pytest -n auto`` (make test): one worker a core, at most MAX_WORKERS."""
    return max(1, min(_cores(), MAX_WORKERS))


def pytest_configure(config):
    """Torch threads: 2 in a plain run; under ``pytest -n N`` the cores shared by the N workers.

    One process with 2 threads leaves a 2-core machine partly idle (tokenizing, the Python overhead
    of small decoding steps, kernel start-up and plotting are serial); two workers with 2 threads
    each would fight over the cores. Another thread count moves float results about as much as
    another CPU does, which the stable printing covers (llm_tutorial/stable.py). The notebook
    kernels inherit the variable; a value you set yourself wins.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None and getattr(config.option, "numprocesses", None):
        return  # the xdist controller: it runs no test, its workers decide
    if "LLM_TUTORIAL_THREADS" not in os.environ:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) if worker else 1
        os.environ["LLM_TUTORIAL_THREADS"] = str(max(1, _cores() // workers)) if workers > 1 else "2"
    import torch

    torch.set_num_threads(int(os.environ["LLM_TUTORIAL_THREADS"]))


def pytest_collection_modifyitems(config, items):
    """Notebooks first: under ``pytest -n auto --dist loadfile`` the longest files start first and the
    many short test files fill the gaps, so no worker is left alone with a notebook at the end."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("notebooks/") else 1)


@pytest.fixture(scope="session")
def model():
    """The default model (the embedded one: see above), in eval mode, loaded once per run.

    Tests must not change it in place; one that needs another dtype or device builds its own.
    """
    import llm_tutorial as lt

    return lt.load_model()


@pytest.fixture(scope="session")
def tokenizer():
    """The default model's tokenizer. A test that changes it (e.g. ``padding_side``) restores it."""
    import llm_tutorial as lt

    return lt.load_tokenizer()


@pytest.fixture(scope="session")
def tok(tokenizer):
    """Short alias of ``tokenizer``."""
    return tokenizer


@pytest.fixture(autouse=True)
def _docstring_examples_get_a_model(request, doctest_namespace):
    """The docstring examples of ``llm_tutorial`` use ``model`` and ``tok``: give them the real ones,
    so that every example runs (and is checked) against the embedded model."""
    from _pytest.doctest import DoctestItem

    if isinstance(request.node, DoctestItem):
        doctest_namespace["model"] = request.getfixturevalue("model")
        doctest_namespace["tok"] = request.getfixturevalue("tokenizer")
