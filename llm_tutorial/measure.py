"""Measure a loaded model: how many bytes it holds and where, what its parameters are for, and
where its layers are.

Shared by the notebooks that compare loading options (dtype, quantization, device_map). Every
function works on any causal LM (quantized or not); nothing here knows about one particular model.
Timings are in ``timing``; comparing two models' next-token distributions, in ``compare``.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "bytes_by_device",
    "decoder_layers",
    "linear_layers",
    "parameter_counts",
    "quantization_constant_bytes",
    "weight_bytes",
]

COMPONENTS = ("embeddings", "attention", "cross_attention", "mlp", "norms", "head", "other")

# Submodule names and class names that say what a parameter is for (lower case, searched in the
# module path from the model down to the parameter's owner). Cross-attention is tested first.
_CROSS = re.compile(r"encdecattention|encoder_attn|crossattention|cross_attn")
_ATTENTION = re.compile(r"attn|attention")
_MLP = re.compile(r"mlp|ffn|feed_?forward|densereludense|layerff|^fc\d$")


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
