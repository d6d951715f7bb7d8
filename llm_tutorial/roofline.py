"""The speed limits of decoding: what one forward pass must read and compute, counted, and how
fast this machine reads memory and multiplies matrices, measured (notebook 07).

A forward pass cannot take less time than reading its bytes at the machine's memory bandwidth,
nor less than computing its FLOPs at the machine's matmul rate: its *roofline* time is the larger
of the two. One decoding step reads every weight to compute a single position, so it is limited
by the bandwidth; a prefill over many positions reads the same weights once for all of them, so it
is limited by arithmetic.

- ``memory_bandwidth``: bytes per second this machine reads (best of a few sums of a large tensor).
- ``matmul_flops``: FLOPs per second of a square matrix multiplication.
- ``attention_shape``: layers, query heads, key/value heads and head size, from ``model.config``.
- ``kv_cache_bytes_per_token``: bytes one token adds to the KV cache (notebook 04 measures it).
- ``weight_bytes_read``: bytes of weights one forward pass reads.
- ``forward_bytes``, ``forward_flops``: bytes read and FLOPs computed by one forward pass over
  ``new_tokens`` positions a row, after ``past_tokens`` cached ones.
- ``roofline_seconds``: the lower bound on a pass's time, from its bytes and FLOPs.

Counted are the weights and the KV cache (bytes) and the matrix multiplications (FLOPs): the
activations, norms, softmax and other elementwise work are small next to them and left out.
"""

from __future__ import annotations

from .arguments import check_int, check_number
from .timing import time_runs

__all__ = [
    "attention_shape",
    "forward_bytes",
    "forward_flops",
    "kv_cache_bytes_per_token",
    "matmul_flops",
    "memory_bandwidth",
    "roofline_seconds",
    "weight_bytes_read",
]


def _best_seconds(work, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls of ``work()`` (GPU kernels waited for), after one
    untimed warm-up call."""
    work()
    return time_runs({"work": work}, repeats=repeats)[0]["work"]


def _device(device):
    import torch

    return torch.device(device if device is not None else "cpu")


def memory_bandwidth(nbytes: int = 2**28, *, repeats: int = 3, device=None) -> float:
    """Bytes per second read from memory: the sum of a float32 tensor of ``nbytes`` bytes (256 MiB
    by default, far larger than any CPU cache), fastest of ``repeats`` runs after a warm-up.
    Summing does one addition per 4 bytes read, so the memory is the limit, not the arithmetic.

    >>> memory_bandwidth(2**20, repeats=1) > 0
    True
    """
    import torch

    check_int(nbytes, "nbytes", low=4)
    check_int(repeats, "repeats", low=1)
    device = _device(device)
    data = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    return data.nbytes / _best_seconds(data.sum, repeats)


def matmul_flops(size: int = 1024, *, repeats: int = 3, dtype=None, device=None) -> float:
    """Floating-point operations per second of a ``size x size`` by ``size x size`` matrix product
    (``2 * size**3`` FLOPs: one multiplication and one addition per term), in ``dtype`` (float32
    by default), fastest of ``repeats`` runs after a warm-up.

    >>> matmul_flops(64, repeats=1) > 0
    True
    """
    import torch

    check_int(size, "size", low=1)
    check_int(repeats, "repeats", low=1)
    device = _device(device)
    a = torch.randn(size, size, dtype=dtype or torch.float32, device=device)
    b = torch.randn(size, size, dtype=dtype or torch.float32, device=device)
    return 2 * size**3 / _best_seconds(lambda: a @ b, repeats)


def attention_shape(config) -> dict[str, int]:
    """``layers``, query ``heads``, ``kv_heads`` (fewer than ``heads`` with grouped-query
    attention) and ``head_dim`` of a decoder, read from its config. GPT-2's ``n_layer``/``n_head``
    are found under the standard names too; a config without ``num_key_value_heads`` has one
    key/value head per query head, and one without ``head_dim`` has ``hidden_size // heads``.

    >>> attention_shape(model.config)
    {'layers': 30, 'heads': 9, 'kv_heads': 3, 'head_dim': 64}
    """
    try:
        layers, heads, hidden = config.num_hidden_layers, config.num_attention_heads, config.hidden_size
    except AttributeError as error:
        raise TypeError(f"config must be a transformers decoder config (num_hidden_layers, "
                        f"num_attention_heads, hidden_size), not {type(config).__name__}") from error
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return {"layers": layers, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim}


def _is_module(value) -> bool:
    import torch

    return isinstance(value, torch.nn.Module)


def _check_model(model) -> None:
    if not _is_module(model) or not hasattr(model, "config"):
        raise TypeError(f"model must be a transformers model (an nn.Module with a config), "
                        f"not {type(model).__name__}")


def kv_cache_bytes_per_token(model_or_config, dtype=None) -> int:
    """Bytes one token adds to the KV cache of one sequence: a key and a value vector for every
    key/value head of every layer, ``2 * layers * kv_heads * head_dim * bytes per value``.

    Given a model, the values have the dtype of its input embeddings (the dtype it computes in,
    also when its weights are quantized); given a config, ``dtype`` (default: the config's
    ``dtype``, else float32). Sliding windows and other cache limits are not taken into account.

    >>> kv_cache_bytes_per_token(model)  # 2 * 30 layers * 3 kv heads * 64 * 4 bytes
    46080
    """
    import torch

    from .models import parse_dtype

    if _is_module(model_or_config):
        _check_model(model_or_config)
        config = model_or_config.config
        default = model_or_config.get_input_embeddings().weight.dtype
    else:
        config = model_or_config
        default = parse_dtype(getattr(config, "dtype", None)) or torch.float32
        if default == "auto":
            default = torch.float32
    dtype = parse_dtype(dtype) if dtype is not None else default
    shape = attention_shape(config)
    value_bytes = torch.empty((), dtype=dtype).element_size()
    return 2 * shape["layers"] * shape["kv_heads"] * shape["head_dim"] * value_bytes


def _lookup_tables(model) -> list:
    """Embedding tables that a pass only looks rows up in (not shared with a matrix layer)."""
    import torch

    from .measure import linear_layers

    matrices = {id(m.weight) for m in linear_layers(model).values()}
    return [m.weight for m in model.modules()
            if isinstance(m, torch.nn.Embedding) and id(m.weight) not in matrices]


def weight_bytes_read(model) -> int:
    """Bytes of weights one forward pass reads, whatever its number of positions: every distinct
    parameter (tied weights once; bitsandbytes' quantization constants included), except lookup
    tables (input and learned position embeddings), of which a pass reads only the rows of its
    tokens (``forward_bytes`` counts those). Tied input/output embeddings are read whole by the
    output layer, so they count.

    >>> from llm_tutorial import weight_bytes
    >>> weight_bytes_read(model) == weight_bytes(model, include_buffers=False)  # tied embeddings
    True
    """
    from .measure import quantization_constant_bytes, weight_bytes

    _check_model(model)
    lookups = sum(t.numel() * t.element_size() for t in _lookup_tables(model))
    return weight_bytes(model, include_buffers=False) + quantization_constant_bytes(model) - lookups


def forward_bytes(model, new_tokens: int = 1, *, past_tokens: int = 0, batch_size: int = 1) -> int:
    """Bytes one forward pass reads from memory: the weights (``weight_bytes_read``) once for the
    whole batch, plus per row the looked-up embedding rows of its ``new_tokens`` and the KV cache
    its attention reads, ``past_tokens + new_tokens`` tokens of it. A decoding step is
    ``new_tokens=1`` after ``past_tokens`` tokens. Activations are not counted.

    >>> forward_bytes(model, past_tokens=10) - forward_bytes(model) == 10 * kv_cache_bytes_per_token(model)
    True
    """
    _check_model(model)
    check_int(new_tokens, "new_tokens", low=1)
    check_int(past_tokens, "past_tokens", low=0)
    check_int(batch_size, "batch_size", low=1)
    row_bytes = sum(t.shape[-1] * t.element_size() for t in _lookup_tables(model))
    per_row = new_tokens * row_bytes + (past_tokens + new_tokens) * kv_cache_bytes_per_token(model)
    return weight_bytes_read(model) + batch_size * per_row


def forward_flops(model, new_tokens: int = 1, *, past_tokens: int = 0, batch_size: int = 1,
                  logits_to_keep: int = 0) -> int:
    """FLOPs of the matrix multiplications of one forward pass over ``new_tokens`` positions a row
    after ``past_tokens`` cached ones: ``2 * weights`` per position for every weight matrix (read
    from the real layers), and for attention ``2 * head_dim`` per query head, per position and per
    token it attends to, twice (scores, then the weighted sum of values). Attention is counted
    over the full ``new_tokens x (past_tokens + new_tokens)`` rectangle, as the kernels compute
    it, causal mask or not. The output layer runs on ``logits_to_keep`` positions (as in
    ``model(..., logits_to_keep=)``; 0, the default, means all; ``generate`` keeps 1).

    These are the FLOPs ``torch.utils.flop_counter.FlopCounterMode`` counts for a pass with
    ``attn_implementation="eager"``.

    >>> from llm_tutorial import linear_layers
    >>> matrices = sum(m.weight.numel() for m in linear_layers(model).values())
    >>> forward_flops(model) == 2 * matrices + 4 * 30 * 9 * 64  # attention: 30 layers, 9 heads of 64
    True
    """
    from .measure import _logical_numel, linear_layers

    _check_model(model)
    check_int(new_tokens, "new_tokens", low=1)
    check_int(past_tokens, "past_tokens", low=0)
    check_int(batch_size, "batch_size", low=1)
    check_int(logits_to_keep, "logits_to_keep", low=0)
    head = model.get_output_embeddings()
    matrices = linear_layers(model).values()
    body = sum(_logical_numel(m.weight) for m in matrices if m is not head)
    head_weights = _logical_numel(head.weight) if head is not None else 0
    kept = new_tokens if logits_to_keep == 0 else min(logits_to_keep, new_tokens)
    shape = attention_shape(model.config)
    attention = 4 * shape["layers"] * shape["heads"] * shape["head_dim"] * new_tokens * (past_tokens + new_tokens)
    return batch_size * (2 * (new_tokens * body + kept * head_weights) + attention)


def roofline_seconds(nbytes: float, flops: float, bandwidth: float, flop_rate: float) -> float:
    """The least time a computation can take on a machine that reads ``bandwidth`` bytes and
    computes ``flop_rate`` FLOPs a second: ``max(nbytes / bandwidth, flops / flop_rate)``
    (reading and computing overlap at best). Below ``flop_rate / bandwidth`` FLOPs per byte (the
    ridge point) the bytes set the time: memory-bound; above it, the FLOPs: compute-bound.

    >>> roofline_seconds(nbytes=2e9, flops=1e9, bandwidth=20e9, flop_rate=100e9)  # memory-bound
    0.1
    """
    check_number(nbytes, "nbytes", low=0)
    check_number(flops, "flops", low=0)
    check_number(bandwidth, "bandwidth", low=0, low_open=True)
    check_number(flop_rate, "flop_rate", low=0, low_open=True)
    return max(nbytes / bandwidth, flops / flop_rate)
