"""Measure a loaded model: how many bytes it holds and where, what its parameters are for, how fast
it generates, and how far its next-token distributions are from another model's.

Shared by the notebooks that compare loading options (dtype, quantization, device_map) and
decoding settings. Every function works on any causal LM (quantized or not); nothing here knows
about one particular model.
"""

from __future__ import annotations

import math
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .arguments import check_int

__all__ = [
    "GenerationTiming",
    "NextTokenComparison",
    "Timer",
    "bytes_by_device",
    "compare_next_token",
    "decoder_layers",
    "linear_layers",
    "next_token_logprobs",
    "parameter_counts",
    "quantization_constant_bytes",
    "time_generation",
    "timer",
    "weight_bytes",
]

COMPONENTS = ("embeddings", "attention", "cross_attention", "mlp", "norms", "head", "other")

# Submodule names and class names that say what a parameter is for (lower case, searched in the
# module path from the model down to the parameter's owner). Cross-attention is tested first.
_CROSS = re.compile(r"encdecattention|encoder_attn|crossattention|cross_attn")
_ATTENTION = re.compile(r"attn|attention")
_MLP = re.compile(r"mlp|ffn|feed_?forward|densereludense|layerff|^fc\d$")


@dataclass
class Timer:
    """Wall-clock seconds of a ``timer()`` block (``seconds`` is set when the block ends)."""

    seconds: float = math.nan


@contextmanager
def timer():
    """Time a block with ``time.perf_counter``.

    >>> with timer() as t:
    ...     _ = sum(range(1000))
    >>> 0 <= t.seconds < 1
    True
    """
    result = Timer()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start


def _tensors(model, include_buffers: bool):
    """Every distinct parameter (and buffer) tensor of ``model``: tied weights count once."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    seen = set()
    items = list(model.parameters())
    if include_buffers:
        items += list(model.buffers())
    for tensor in items:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        yield tensor


def bytes_by_device(model, *, include_buffers: bool = True) -> dict[str, int]:
    """Bytes of parameters (and buffers) per device type, e.g. ``{"cpu": ..., "meta": ...}``.

    ``"meta"`` tensors hold no data: with ``device_map`` offloading, accelerate leaves offloaded
    weights on the meta device and loads them (from CPU memory or disk) at each forward pass.

    >>> import torch
    >>> bytes_by_device(torch.nn.Linear(4, 2))
    {'cpu': 40}
    """
    result: dict[str, int] = {}
    for tensor in _tensors(model, include_buffers):
        device = tensor.device.type
        result[device] = result.get(device, 0) + tensor.numel() * tensor.element_size()
    return dict(sorted(result.items()))


def weight_bytes(model, *, include_buffers: bool = True) -> int:
    """Bytes the model's parameters (and buffers) really occupy: tied weights once, offloaded
    (``meta``) tensors not at all.

    For a model fully in memory this equals ``model.get_memory_footprint()``. Neither counts the
    quantization constants of bitsandbytes layers: see ``quantization_constant_bytes``.

    >>> import torch
    >>> weight_bytes(torch.nn.Linear(4, 2, bias=False).half())
    16
    """
    return sum(n for device, n in bytes_by_device(model, include_buffers=include_buffers).items()
               if device != "meta")


def quantization_constant_bytes(model) -> int:
    """Bytes of the bitsandbytes quantization constants, which are not parameters or buffers and
    so are counted neither by ``get_memory_footprint()`` nor by ``weight_bytes``:

    - 4-bit (``Params4bit``): ``quant_state.absmax`` (one scale per block of ``blocksize``
      weights), the 16-value code book, and with double quantization the 8-bit-quantized absmax's
      own scales (``state2.absmax``), its 256-value code book and the offset;
    - 8-bit (``Int8Params``): ``SCB``, one float32 scale per output row (held by the weight
      until the first forward pass, then by the layer's ``state``).

    Each layer keeps its own code books; a tensor reachable twice counts once. A model without
    bitsandbytes layers gives 0.

    Call it right after loading for the checkpoint's layout: on CPUs with AVX512-BF16,
    bitsandbytes repacks each 4-bit layer the first time it runs (``absmax`` becomes bfloat16 and
    double quantization is undone), so the count changes then.

    >>> import torch
    >>> quantization_constant_bytes(torch.nn.Linear(4, 2))
    0
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    seen: set[tuple[int, int]] = set()
    total = 0

    def add(tensor) -> None:
        nonlocal total
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            return
        key = (tensor.data_ptr(), tensor.numel() * tensor.element_size())
        if key in seen:
            return
        seen.add(key)
        total += key[1]

    for module in model.modules():
        for param in module.parameters(recurse=False):
            state = getattr(param, "quant_state", None)
            if state is not None:
                for name in ("absmax", "code", "offset"):
                    add(getattr(state, name, None))
                nested = getattr(state, "state2", None)
                if nested is not None:
                    for name in ("absmax", "code"):
                        add(getattr(nested, name, None))
            add(getattr(param, "SCB", None))
        # after the first forward pass, an 8-bit layer moves SCB from its weight to its state
        add(getattr(getattr(module, "state", None), "SCB", None))
    return total


def _logical_numel(param) -> int:
    """Number of weights a parameter stands for: a packed 4-bit tensor holds two per byte."""
    state = getattr(param, "quant_state", None)
    if state is not None and getattr(state, "shape", None) is not None:
        return math.prod(state.shape)
    return param.numel()


def parameter_counts(model) -> dict[str, int]:
    """Parameters by what they are for: ``embeddings``, ``attention``, ``cross_attention``,
    ``mlp``, ``norms``, ``head`` (the output projection when it is *not* tied to the input
    embeddings), ``other``, and the ``total``.

    A parameter shared by two modules (tied input/output embeddings) counts once, where it is
    first met (the input embeddings). The component is read from module class names and
    attribute names (``self_attn``, ``mlp``, ``EncDecAttention``, ``...Norm``), so Llama, GPT-2,
    T5 and BART style models are all split. 4-bit weights count as the weights they stand for.

    >>> import torch
    >>> parameter_counts(torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.LayerNorm(4)))
    {'embeddings': 40, 'attention': 0, 'cross_attention': 0, 'mlp': 0, 'norms': 8, 'head': 0, 'other': 0, 'total': 48}
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    counts = dict.fromkeys(COMPONENTS, 0)
    seen: set[int] = set()
    modules = dict(model.named_modules())
    for path, module in modules.items():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        if not own:
            continue
        seen.update(id(p) for p in own)
        parts = path.split(".") if path else []
        trail = [part.lower() for part in parts]
        trail += [type(modules[".".join(parts[:i])]).__name__.lower() for i in range(len(parts) + 1)]
        if "norm" in type(module).__name__.lower():
            component = "norms"
        elif any(_CROSS.search(t) for t in trail):
            component = "cross_attention"
        elif any(_ATTENTION.search(t) for t in trail):
            component = "attention"
        elif any(_MLP.search(t) for t in trail):
            component = "mlp"
        elif isinstance(module, torch.nn.Embedding):
            component = "embeddings"
        elif output is not None and module is output:
            component = "head"
        else:
            component = "other"
        counts[component] += sum(_logical_numel(p) for p in own)
    counts["total"] = sum(counts[c] for c in COMPONENTS)
    return counts


def decoder_layers(model):
    """The stack of repeated blocks of a transformer: the outermost ``nn.ModuleList`` (the longest,
    if two are equally deep). Llama, Qwen, Mistral: ``model.model.layers``; GPT-2, Falcon, Bloom:
    ``model.transformer.h``; OPT: ``model.model.decoder.layers``; GPT-NeoX: ``model.gpt_neox.layers``.
    Lists nested inside a block (mixture-of-experts ``experts``) are deeper, so never chosen.

    >>> import torch
    >>> blocks = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(3))
    >>> len(decoder_layers(torch.nn.Sequential(torch.nn.Embedding(5, 2), blocks)))
    3
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    lists = [(name.count("."), -len(module), name, module) for name, module in model.named_modules()
             if isinstance(module, torch.nn.ModuleList) and len(module) > 0]
    if not lists:
        raise ValueError(f"model ({type(model).__name__}) has no nn.ModuleList of layers")
    return min(lists, key=lambda item: item[:3])[3]


def linear_layers(module) -> dict[str, Any]:
    """Every weight-matrix layer inside ``module``, by qualified name, in order: ``nn.Linear`` and
    its 8-bit/4-bit bitsandbytes subclasses, and GPT-2's ``Conv1D`` (a linear layer that stores its
    weight transposed, ``(in, out)``). Module names survive quantization, so the same name finds the
    same layer in a float and a quantized copy of one model.

    >>> import torch
    >>> list(linear_layers(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))))
    ['0', '2']
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, not {type(module).__name__}")
    return {name: m for name, m in module.named_modules()
            if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"}


@dataclass
class GenerationTiming:
    """One timed ``generate`` call: ``new_tokens`` generated (summed over the batch, up to and
    including each row's end-of-sequence token) in ``seconds`` of wall-clock time, prompt
    processing included. ``sequences`` is what ``generate`` returned."""

    new_tokens: int
    seconds: float
    sequences: Any = field(repr=False)
    prompt_length: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else math.inf

    def new_token_ids(self, row: int = 0) -> list[int]:
        """The ids generated after the prompt for one row (padding after its end included)."""
        return self.sequences[row, self.prompt_length:].tolist()


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_generation(model, inputs, *, max_new_tokens: int = 32, warmup: bool = False,
                    **generate_kwargs) -> GenerationTiming:
    """Run ``model.generate`` once (greedy unless ``generate_kwargs`` say otherwise) and time it.

    ``inputs`` is what a tokenizer or ``lt.chat_inputs`` returns (a mapping with ``input_ids``)
    or a 2-D tensor of token ids; it is moved to ``model.device``. ``warmup=True`` first runs a
    one-token generation (untimed), so one-time costs (memory allocation, kernel selection) are
    left out. On a GPU the clock stops after ``torch.cuda.synchronize``.

    >>> t = time_generation(model, tok("Hello", return_tensors="pt"), max_new_tokens=8)
    >>> t.new_tokens <= 8, t.tokens_per_second > 0
    (True, True)
    """
    import torch

    check_int(max_new_tokens, "max_new_tokens", low=1)
    if isinstance(inputs, torch.Tensor):
        inputs = {"input_ids": inputs}
    if not hasattr(inputs, "keys") or "input_ids" not in inputs:
        raise TypeError("inputs must be a 2-D tensor of token ids or a mapping with 'input_ids'")
    inputs = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    if inputs["input_ids"].dim() != 2:
        raise ValueError("inputs['input_ids'] must be 2-D [batch, seq_len]")
    options = {"do_sample": False, **generate_kwargs}
    config = model.generation_config
    if "pad_token_id" not in options and config.pad_token_id is None and config.eos_token_id is not None:
        eos = config.eos_token_id
        options["pad_token_id"] = eos[0] if isinstance(eos, list) else eos
    with torch.inference_mode():
        if warmup:
            model.generate(**inputs, **{**options, "max_new_tokens": 1})
        _synchronize(model.device)
        start = time.perf_counter()
        sequences = model.generate(**inputs, max_new_tokens=max_new_tokens, **options)
        _synchronize(model.device)
        seconds = time.perf_counter() - start
    prompt_length = inputs["input_ids"].shape[1]
    eos = options.get("eos_token_id", config.eos_token_id)
    eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    new_tokens = 0
    for row in sequences[:, prompt_length:].tolist():
        ends = [i for i, token in enumerate(row) if token in eos_ids]
        new_tokens += ends[0] + 1 if ends else len(row)
    return GenerationTiming(new_tokens, seconds, sequences, prompt_length)


def next_token_logprobs(model, input_ids):
    """Log-softmax of the model's logits for one sequence: a float32 CPU tensor
    ``[seq_len, vocab]``, where row ``t`` is the distribution of the token after position ``t``.

    ``input_ids``: a 1-D tensor, a ``[1, seq_len]`` tensor, or a mapping with ``input_ids``.

    >>> lp = next_token_logprobs(model, tok("Hello world", return_tensors="pt"))
    >>> lp.shape
    torch.Size([2, 49152])
    """
    import torch

    if hasattr(input_ids, "keys"):
        input_ids = input_ids["input_ids"]
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a tensor of token ids, not {type(input_ids).__name__}")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must hold one sequence ([seq_len] or [1, seq_len]), not {tuple(input_ids.shape)}")
    with torch.inference_mode():
        logits = model(input_ids=input_ids.to(model.device)).logits[0]
    return torch.log_softmax(logits.float(), dim=-1).cpu()


@dataclass
class NextTokenComparison:
    """How two models' next-token distributions differ over the positions of one text.

    - ``top1_agreement``: fraction of positions where both models rank the same token first;
    - ``mean_kl`` / ``max_kl``: KL(reference || other) in nats, averaged / worst over positions;
    - ``max_abs_logprob_diff``: largest difference in the log-probability of the text's own next
      tokens (None when no target ids were available);
    - ``perplexity`` / ``reference_perplexity``: of the text under each model (None likewise).
    """

    positions: int
    top1_agreement: float
    mean_kl: float
    max_kl: float
    max_abs_logprob_diff: float | None = None
    perplexity: float | None = None
    reference_perplexity: float | None = None


def _as_logprobs(value, input_ids, name: str):
    import torch

    if isinstance(value, torch.nn.Module):
        if input_ids is None:
            raise ValueError(f"input_ids is needed to run the model given as {name}")
        return next_token_logprobs(value, input_ids)
    if isinstance(value, torch.Tensor) and value.dim() == 2 and value.is_floating_point():
        return value.float().cpu()
    raise TypeError(f"{name} must be a model or a [seq_len, vocab] float tensor of log-probs, "
                    f"not {type(value).__name__}")


def compare_next_token(reference, other, input_ids=None) -> NextTokenComparison:
    """Compare the next-token distributions of ``other`` with those of ``reference`` on one text.

    ``reference`` and ``other`` are models (run on ``input_ids``) or the ``[seq_len, vocab]``
    log-prob tensors that ``next_token_logprobs`` returns (compute the reference once and reuse
    it). With ``input_ids``, the text's own next tokens are scored too (perplexity, max abs
    log-prob difference); the last position has no target and only enters the distribution
    measures.

    >>> import torch
    >>> a = torch.log_softmax(torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]), -1)
    >>> c = compare_next_token(a, a)
    >>> c.top1_agreement, c.mean_kl
    (1.0, 0.0)
    """
    import torch

    if hasattr(input_ids, "keys"):
        input_ids = input_ids["input_ids"]
    if input_ids is not None:
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a tensor of token ids, not {type(input_ids).__name__}")
        input_ids = input_ids.reshape(-1) if input_ids.dim() == 2 and input_ids.shape[0] == 1 else input_ids
        if input_ids.dim() != 1:
            raise ValueError("input_ids must hold one sequence ([seq_len] or [1, seq_len])")
    ref = _as_logprobs(reference, input_ids, "reference")
    new = _as_logprobs(other, input_ids, "other")
    if ref.shape != new.shape:
        raise ValueError(f"the two log-prob tensors differ in shape: {tuple(ref.shape)} vs {tuple(new.shape)}")
    if input_ids is not None and input_ids.shape[0] != ref.shape[0]:
        raise ValueError(f"input_ids has {input_ids.shape[0]} tokens but the log-probs {ref.shape[0]} positions")
    kl = (ref.exp() * (ref - new)).nan_to_num().sum(-1).clamp_min(0)
    result = NextTokenComparison(
        positions=ref.shape[0],
        top1_agreement=float((ref.argmax(-1) == new.argmax(-1)).float().mean()),
        mean_kl=float(kl.mean()),
        max_kl=float(kl.max()),
    )
    if input_ids is not None and ref.shape[0] >= 2:
        targets = input_ids[1:].cpu()[:, None]
        ref_t = ref[:-1].gather(-1, targets).squeeze(-1)
        new_t = new[:-1].gather(-1, targets).squeeze(-1)
        result.max_abs_logprob_diff = float((ref_t - new_t).abs().max())
        result.perplexity = math.exp(-float(new_t.mean()))
        result.reference_perplexity = math.exp(-float(ref_t.mean()))
    return result
