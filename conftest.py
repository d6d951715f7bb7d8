"""Test-wide settings: never touch the network, keep tokenizers quiet, fix the thread count.

These are set before any test module imports transformers, and the notebook kernels that
nbval starts inherit them.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LLM_TUTORIAL_THREADS", "2")
# Stored outputs are for the embedded model: a model chosen for exploring must not leak in.
os.environ.pop("LLM_TUTORIAL_MODEL", None)
