"""One loader for every notebook: ``load_tokenizer`` and ``load_model``.

A model name is resolved in this order:

1. the ``name`` argument, if given;
2. the environment variable ``LLM_TUTORIAL_MODEL``, if set and non-empty;
3. the embedded default model (SmolLM2-135M-Instruct, converted once from its GGUF file).

A name is a local folder (with a ``config.json``), the word ``"embedded"``, or a Hugging Face
Hub id such as ``"Qwen/Qwen2.5-0.5B-Instruct"`` (used when you are online or have it cached).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .embedded import EMBEDDED_NAME, prepare_embedded_model

ENV_MODEL = "LLM_TUTORIAL_MODEL"
ENV_DEVICE = "LLM_TUTORIAL_DEVICE"
EMBEDDED = "embedded"
QUANTIZATION_CHOICES = (None, "8bit", "nf4", "fp4")
DTYPE_NAMES = ("float32", "bfloat16", "float16", "auto")


class ModelNotFoundError(FileNotFoundError):
    """A model name could be resolved neither as a local folder nor as a Hub id."""


def model_name(name: str | os.PathLike | None = None) -> str:
    """The name that ``load_model(name)`` will use: ``name``, else ``$LLM_TUTORIAL_MODEL``,
    else ``"embedded"``.

    >>> model_name("gpt2")
    'gpt2'
    """
    if name is not None:
        if not isinstance(name, (str, os.PathLike)):
            raise TypeError(f"name must be a str, a path or None, not {type(name).__name__}")
        name = os.fspath(name)
        if not name.strip():
            raise ValueError("name must not be empty; pass None to use the default model")
        return name
    return os.environ.get(ENV_MODEL, "").strip() or EMBEDDED


def describe_model(name: str | os.PathLike | None = None) -> str:
    """A short human label for the model ``name`` resolves to.

    >>> describe_model("embedded")
    'SmolLM2-135M-Instruct (embedded)'
    """
    resolved = model_name(name)
    return f"{EMBEDDED_NAME} (embedded)" if resolved == EMBEDDED else resolved


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _is_hub_id(name: str) -> bool:
    """``"gpt2"`` and ``"org/name"`` are Hub ids; ``"./x"``, ``"/a/b/c"``, ``"~/m"`` are paths."""
    return bool(_HUB_ID.match(name))


def resolve_model(name: str | os.PathLike | None = None) -> str:
    """Turn a model name into what ``from_pretrained`` accepts: a folder path or a Hub id.

    The embedded model is converted on first use. A local folder must contain ``config.json``.

    >>> resolve_model("HuggingFaceTB/SmolLM2-360M")
    'HuggingFaceTB/SmolLM2-360M'
    """
    resolved = model_name(name)
    if resolved == EMBEDDED:
        return str(prepare_embedded_model())
    path = Path(resolved).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path.resolve()} is a folder but has no config.json, so it is not a model folder.\n"
                "A model folder is what save_pretrained() writes (config.json, *.safetensors, "
                "tokenizer files)."
            )
        return str(path.resolve())
    if path.exists() or not _is_hub_id(resolved):
        raise ModelNotFoundError(
            f"Model folder {path.resolve()} does not exist.\n{_how_to_fix(resolved)}"
        )
    return resolved


def _how_to_fix(name: str) -> str:
    return (
        "How to fix it:\n"
        f"  - leave {ENV_MODEL} unset (and pass no name) to use the embedded {EMBEDDED_NAME};\n"
        f"  - or set {ENV_MODEL} / pass name= to a local folder with config.json;\n"
        f"  - or, while online, download it first: hf download {name}  (then it loads offline)."
    )


def _hub_error(name: str, error: BaseException) -> ModelNotFoundError:
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE
    cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelNotFoundError(
        f"Could not load model {name!r}.\n"
        f"Tried: a local folder named {str(Path(name).expanduser().resolve())!r} (none there), then "
        f"the Hugging Face Hub id {name!r} "
        + (
            "from the local cache only (HF_HUB_OFFLINE=1)"
            if offline
            else "online and in the local cache"
        )
        + f" at {constants.HF_HUB_CACHE}.\n"
        f"The Hub said: {cause}\n{_how_to_fix(name)}"
    )


def load_tokenizer(name: str | os.PathLike | None = None, **kwargs: Any):
    """Load the tokenizer for ``name`` (see ``resolve_model``); ``kwargs`` go to
    ``AutoTokenizer.from_pretrained`` (e.g. ``revision=``, ``padding_side="left"``).

    >>> tok = load_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("Hello world")["input_ids"])
    ['Hello', 'Ġworld']
    """
    from transformers import AutoTokenizer

    source = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:
        if Path(source).is_dir():
            raise
        raise _hub_error(source, error) from None


def default_device() -> str:
    """``$LLM_TUTORIAL_DEVICE`` if set, else ``"cuda"`` when a GPU is available, else ``"cpu"``.

    >>> default_device() in {"cpu", "cuda", "mps"} or "LLM_TUTORIAL_DEVICE" in os.environ
    True
    """
    import torch

    env = os.environ.get(ENV_DEVICE, "").strip()
    if env:
        return env
    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_dtype(dtype: Any):
    """Turn ``None``, a name (``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"``) or a
    floating ``torch.dtype`` into what ``from_pretrained(dtype=...)`` accepts.

    >>> parse_dtype("bfloat16")
    torch.bfloat16
    """
    import torch

    if dtype is None or dtype == "auto":
        return dtype
    if isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {DTYPE_NAMES}, a torch dtype or None, not {dtype!r}")
        return getattr(torch, dtype)
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point torch dtype, not {dtype}")
        return dtype
    raise TypeError(f"dtype must be a str, a torch.dtype or None, not {type(dtype).__name__}")


def quantization_config(quantization: Any, dtype: Any = None):
    """Build a ``BitsAndBytesConfig`` from ``"8bit"``, ``"nf4"`` or ``"fp4"`` (or pass one through).

    For 4-bit, the compute dtype is ``dtype`` when it is a floating dtype, else float32.

    >>> quantization_config("nf4").bnb_4bit_quant_type
    'nf4'
    """
    import torch
    from transformers import BitsAndBytesConfig

    if quantization is None or isinstance(quantization, BitsAndBytesConfig):
        return quantization
    if not isinstance(quantization, str):
        raise TypeError(
            "quantization must be None, '8bit', 'nf4', 'fp4' or a BitsAndBytesConfig, "
            f"not {type(quantization).__name__}"
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if quantization in ("nf4", "fp4"):
        compute = parse_dtype(dtype)
        if not isinstance(compute, torch.dtype):
            compute = torch.float32
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=quantization, bnb_4bit_compute_dtype=compute
        )
    raise ValueError(
        f"quantization must be one of {QUANTIZATION_CHOICES} or a BitsAndBytesConfig, not {quantization!r}"
    )


def load_model(
    name: str | os.PathLike | None = None,
    *,
    dtype: Any = None,
    quantization: Any = None,
    device_map: Any = None,
    **kwargs: Any,
):
    """Load a causal language model for inference (``eval()`` mode).

    - ``name``: see ``resolve_model`` (None: ``$LLM_TUTORIAL_MODEL`` or the embedded model).
    - ``dtype``: None (transformers' default: follow ``config.dtype``, float32 for the embedded
      model), ``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch dtype.
    - ``quantization``: None, ``"8bit"``, ``"nf4"``, ``"fp4"`` or a ``BitsAndBytesConfig``.
    - ``device_map``: passed to ``from_pretrained``; None places the whole model on
      ``default_device()`` (a GPU when there is one). A quantized model is placed while loading
      (``device_map={"": device}``: each weight is quantized on the device it will run on).
      transformers 5.23 lets a later ``model.to(device)`` through, and refuses a dtype cast
      (``model.to(torch.float16)``, ``.half()``, ``.float()``) with a ValueError (notebook 02).
    - ``kwargs``: passed to ``AutoModelForCausalLM.from_pretrained`` (e.g. ``revision=``,
      ``attn_implementation="eager"``).

    >>> model = load_model()
    >>> type(model).__name__, model.device.type
    ('LlamaForCausalLM', 'cpu')
    """
    from transformers import AutoModelForCausalLM

    for old in ("torch_dtype", "load_in_8bit", "load_in_4bit"):
        if old in kwargs:
            modern = "dtype=" if old == "torch_dtype" else "quantization='8bit' / 'nf4'"
            raise TypeError(f"load_model() takes {modern} instead of the old {old}=")
    torch_dtype = parse_dtype(dtype)
    config = quantization_config(quantization, dtype)
    if device_map is None and config is not None:
        device_map = {"": default_device()}  # quantize each weight where it will run
    source = resolve_model(name)
    options = dict(kwargs)
    if torch_dtype is not None:
        options["dtype"] = torch_dtype
    if config is not None:
        options["quantization_config"] = config
    if device_map is not None:
        options["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **options)
    except OSError as error:
        if Path(source).is_dir():
            raise
        raise _hub_error(source, error) from None
    if device_map is None:
        model.to(default_device())
    return model.eval()
