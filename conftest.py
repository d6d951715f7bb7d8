"""Test-wide settings: never touch the network, keep tokenizers quiet, fix the thread count.

These are set before any test module imports transformers, and the notebook kernels that
nbval starts inherit them.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LLM_TUTORIAL_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as llm_tutorial sets it; see its __init__
# Stable printing in checking mode (llm_tutorial/stable.py): a printed number or a compared choice
# that could come out differently on another CPU raises, here and in every nbval kernel.
os.environ["LLM_TUTORIAL_CHECK_STABLE"] = "test"
# Stored outputs are for the embedded model: a model chosen for exploring must not leak in.
os.environ.pop("LLM_TUTORIAL_MODEL", None)

import pytest  # noqa: E402  (the environment above must be set first)


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
