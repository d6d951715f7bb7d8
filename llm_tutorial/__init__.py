"""llm_tutorial: the helpers the llm-tutorial notebooks share, one idea a module.

In the order the notebooks meet them:

- ``tokens``: a text's tokens, shown with their ids; token counts (notebook 01).
- ``chat``: prompts through the tokenizer's chat template (01).
- ``models``, ``embedded``, ``measure``: loading a model, the offline model, its bytes and
  parameters (02).
- ``timing``: wall-clock seconds of a block, of one ``generate`` call, of interleaved runs (02, 07).
- ``compare``: how far two models' next-token distributions are apart: KL, top-1 agreement (02).
- ``forward``: texts into one padded batch, one forward pass (03).
- ``next_token``: the next-token distribution as a top-k table; its entropy (03).
- ``logprobs``: a text's token log-probabilities and perplexity (03).
- ``surprise``: each token of a text coloured by its surprise ``-log p`` (03).
- ``logit_lens``: every layer's guess for the next token (03).
- ``steps``, ``generation``: the four steps of generating text, and the loop behind
  ``model.generate`` built from them (04).
- ``sampling``: temperature, top-k, top-p, min-p, repetition penalty, and their chain (05).
- ``repetition``: how much a text repeats itself (distinct n-grams) (05, 06).
- ``capture``: warnings, logs and expected errors caught for a notebook to show (06).
- ``stable``: printing numbers that come out the same on every CPU (all notebooks).
- ``roofline``: the bytes and FLOPs of a forward pass, counted; memory bandwidth and matmul
  speed, measured; the speed limits they set (07).
- ``speculative``: the same greedy tokens in fewer forward passes: guesses copied from the
  text (prompt lookup) or made by a draft model, checked in one pass (07).
- ``constrain``: logits processors for structured output: a regular expression by hand, a
  regular expression or a JSON schema with llguidance; the tokens each allows (08).
- ``conversation``: a multi-turn chat that feeds only each turn's new tokens over its KV cache (08).
- ``bench``: generation speed ratios, for ``python -m llm_tutorial bench``.
- ``arguments``: the argument checks every module shares; ``notebook``: a notebook's first cell.

Every public name is an attribute of the package: ``lt.surprise``, ``lt.top_p_filter``, ...

>>> import llm_tutorial
>>> callable(llm_tutorial.load_model) and callable(llm_tutorial.surprise)
True
"""

import importlib as _importlib
import os as _os

_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# torch's OpenMP threads spin while they wait for work by default. On a laptop that is busy with
# anything else (a browser, the Jupyter server) spinning threads fight over the cores. Measured
# on 2 cores with one core kept busy: 40 cached generation steps took 7.1 s spinning and 2.9 s
# passive; on an idle machine the difference was within run-to-run noise (about 15%), for both
# generation steps and long forward passes. Takes effect only when torch is not yet
# imported (notebooks import llm_tutorial first); an OMP_WAIT_POLICY you set yourself wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# ``surprise`` and ``logit_lens`` name both a module and the function it holds: imported here, the
# package's attribute is the function (``lt.surprise(model, tok, text)``), whatever imports later.
from .capture import Captured, capture  # noqa: E402
from .chat import ask, chat_inputs  # noqa: E402
from .embedded import (  # noqa: E402
    EmbeddedModelError,
    cache_dir,
    embedded_model_dir,
    find_embedded_gguf,
    prepare_embedded_model,
)
from .logit_lens import logit_lens  # noqa: E402
from .logprobs import perplexity, text_logprob, token_logprobs  # noqa: E402
from .models import (  # noqa: E402
    ModelNotFoundError,
    default_device,
    describe_model,
    load_model,
    load_tokenizer,
    model_name,
    parse_dtype,
    quantization_config,
    resolve_model,
)
from .notebook import set_seed, setup_notebook, version_banner  # noqa: E402
from .surprise import surprise  # noqa: E402
from .tokens import Token, TokenView, count_tokens, show_tokens, token_bytes, tokenize  # noqa: E402

__all__ = [
    "Captured",
    "capture",
    "logit_lens",
    "perplexity",
    "surprise",
    "text_logprob",
    "token_logprobs",
    "EmbeddedModelError",
    "ModelNotFoundError",
    "Token",
    "TokenView",
    "ask",
    "cache_dir",
    "chat_inputs",
    "count_tokens",
    "default_device",
    "describe_model",
    "embedded_model_dir",
    "find_embedded_gguf",
    "load_model",
    "load_tokenizer",
    "model_name",
    "parse_dtype",
    "prepare_embedded_model",
    "quantization_config",
    "resolve_model",
    "set_seed",
    "setup_notebook",
    "show_tokens",
    "token_bytes",
    "tokenize",
    "version_banner",
]

# Modules whose public names (their ``__all__``) are re-exported lazily, on first use:
# ``llm_tutorial.generate`` imports ``llm_tutorial.generation`` only when you ask for it.
_LAZY_MODULES = ("stable", "bench", "forward", "logprobs", "next_token", "surprise", "logit_lens", "repetition",
                 "measure", "timing", "compare", "steps", "generation", "sampling", "capture", "tokens", "chat",
                 "roofline", "constrain", "conversation", "speculative")


def __getattr__(name: str):
    for module_name in _LAZY_MODULES:
        try:
            module = _importlib.import_module(f".{module_name}", __name__)
        except ModuleNotFoundError as error:
            if error.name == f"{__name__}.{module_name}":
                continue
            raise
        if name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
