"""llm_tutorial: the helpers the llm-tutorial notebooks share.

>>> import llm_tutorial
>>> callable(llm_tutorial.load_model)
True
"""

import os as _os

_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"

from .capture import Captured, capture  # noqa: E402
from .chat import ask, chat_inputs  # noqa: E402
from .embedded import (  # noqa: E402
    EmbeddedModelError,
    cache_dir,
    embedded_model_dir,
    find_embedded_gguf,
    prepare_embedded_model,
)
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
from .scoring import perplexity, text_logprob, token_logprobs  # noqa: E402
from .tokens import Token, TokenView, count_tokens, show_tokens, token_bytes, tokenize  # noqa: E402

__all__ = [
    "Captured",
    "capture",
    "perplexity",
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
