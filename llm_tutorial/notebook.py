"""Make a notebook reproducible and quiet, and say what it runs on."""

from __future__ import annotations

import os
import platform
import random

from .arguments import check_int

ENV_THREADS = "LLM_TUTORIAL_THREADS"
DEFAULT_THREADS = 2


def set_seed(seed: int = 0) -> None:
    """Seed Python's, NumPy's and torch's random generators (CPU and every GPU).

    >>> import torch; set_seed(1); a = torch.rand(1); set_seed(1); bool(torch.equal(a, torch.rand(1)))
    True
    """
    import numpy as np
    import torch

    check_int(seed, "seed")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (seeds the global RNG that user code calls)
    torch.manual_seed(seed)


def thread_count() -> int:
    """Threads torch should use: ``$LLM_TUTORIAL_THREADS`` or 2 (fixed, so numbers are stable).

    >>> thread_count() >= 1
    True
    """
    value = os.environ.get(ENV_THREADS, "").strip()
    if not value:
        return DEFAULT_THREADS
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{ENV_THREADS} must be a positive integer, not {value!r}")
    return int(value)


def quiet_libraries() -> None:
    """Turn off download/loading progress bars and the tokenizers fork warning."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    disable_progress_bars()


def version_banner(model: str | None = None) -> str:
    """One line naming the versions, device, thread count and model a notebook ran with.

    >>> "transformers" in version_banner()
    True
    """
    import torch
    import transformers

    from . import __version__
    from .models import default_device, describe_model

    parts = [
        f"llm-tutorial {__version__}",
        f"Python {platform.python_version()}",
        f"torch {torch.__version__}",
        f"transformers {transformers.__version__}",
        f"device {default_device()}",
        f"threads {torch.get_num_threads()}",
        f"model {describe_model(model)}",
    ]
    return " | ".join(parts)


def setup_notebook(seed: int = 0, threads: int | None = None, model: str | None = None) -> str:
    """Seed everything, fix the thread count, silence progress bars, print and return a banner.

    Call it in the first code cell of every notebook.

    >>> banner = setup_notebook(seed=0)
    llm-tutorial 0.1.0 | Python 3.11.7 | torch 2.13.0+cpu | ... | model SmolLM2-135M-Instruct (embedded)
    """
    import torch

    if threads is None:
        threads = thread_count()
    check_int(threads, "threads", low=1)
    torch.set_num_threads(threads)
    quiet_libraries()
    set_seed(seed)
    banner = version_banner(model)
    print(banner)
    return banner
