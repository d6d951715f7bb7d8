"""Fixtures shared by the unit tests: the default model and its tokenizer, loaded once per run.

Tests must not change them in place (a test that needs another padding side, dtype or device
loads or builds its own, or restores what it changed).
"""

import pytest

import llm_tutorial as lt


@pytest.fixture(scope="session")
def model():
    """The default model (``$LLM_TUTORIAL_MODEL`` or the embedded one), in eval mode."""
    return lt.load_model()


@pytest.fixture(scope="session")
def tokenizer():
    """The default model's tokenizer."""
    return lt.load_tokenizer()


@pytest.fixture(scope="session")
def tok(tokenizer):
    """Short alias of ``tokenizer``."""
    return tokenizer
