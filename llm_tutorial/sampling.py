"""Decoding by hand: temperature, top-k, top-p, min-p and repetition penalty on ``[batch, vocab]`` logits.

Each filter returns new logits (the input is never modified) with removed entries set to
``filter_value`` (``-inf``), and gives the same result, bit for bit, as its transformers
counterpart with the same arguments (``TemperatureLogitsWarper``, ``TopKLogitsWarper``,
``TopPLogitsWarper``, ``MinPLogitsWarper``, ``RepetitionPenaltyLogitsProcessor``).
``process_logits`` chains them in the order ``generate()`` uses when ``do_sample=True``.

>>> import torch
>>> logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
>>> top_k_filter(logits, 2)
tensor([[2., 1., -inf, -inf]])
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch

__all__ = [
    "apply_temperature",
    "top_k_filter",
    "top_p_filter",
    "min_p_filter",
    "apply_repetition_penalty",
    "process_logits",
    "sample_top_p",
    "entropy",
    "distinct_ngram_ratio",
]

NEG_INF = float("-inf")


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def _check_logits(logits, name: str = "logits") -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [batch, vocab], not {type(logits).__name__}")
    if logits.dim() != 2:
        raise ValueError(
            f"{name} must be 2-D [batch, vocab], got shape {tuple(logits.shape)}; "
            "for one row use logits[None, :], for model output use logits[:, -1, :]"
        )
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, not {logits.dtype}")
    if logits.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one vocabulary entry, got shape {tuple(logits.shape)}")


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return value


def _int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return int(value)


def _min_tokens(min_tokens_to_keep) -> int:
    n = _int(min_tokens_to_keep, "min_tokens_to_keep")
    if n < 1:
        raise ValueError(f"min_tokens_to_keep must be >= 1, got {n}")
    return n


# ---------------------------------------------------------------------------------------------
# the five processors
# ---------------------------------------------------------------------------------------------
def apply_temperature(logits, temperature):
    """Divide logits by ``temperature`` (> 0): below 1 sharpens the distribution, above 1 flattens it.

    ``temperature=0`` is a ValueError, as in transformers: the limit T -> 0 is greedy decoding,
    which you ask for with ``do_sample=False`` (or argmax), not by dividing by zero.

    >>> import torch
    >>> apply_temperature(torch.tensor([[2.0, 1.0]]), 0.5)
    tensor([[4., 2.]])
    """
    _check_logits(logits)
    t = _real(temperature, "temperature")
    if not (t > 0) or math.isinf(t):
        hint = " For greedy decoding use do_sample=False (argmax) instead of temperature=0." if t == 0 else ""
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}.{hint}")
    return logits / t


def top_k_filter(logits, k, *, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
    """Keep the ``k`` highest logits of each row, set the rest to ``filter_value``.

    Like ``TopKLogitsWarper``: a value tied with the k-th largest is kept too (so a row can keep
    more than k entries when there are ties), ``k >= vocab`` keeps everything, and at least
    ``min_tokens_to_keep`` entries survive.

    >>> import torch
    >>> top_k_filter(torch.tensor([[0.1, 3.0, 2.0], [5.0, 4.0, 6.0]]), 1)
    tensor([[-inf, 3., -inf],
            [-inf, -inf, 6.]])
    """
    _check_logits(logits)
    k = _int(k, "k")
    if k < 1:
        raise ValueError(f"k must be a positive int (the number of tokens to keep), got {k}")
    k = min(max(k, _min_tokens(min_tokens_to_keep)), logits.shape[-1])
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, filter_value)


def top_p_filter(logits, p, *, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability adds up to
    at least ``p`` (0 <= p <= 1); set the rest to ``filter_value``.

    Computed exactly as ``TopPLogitsWarper`` does, so that the same tokens survive even at the
    boundary: sort the logits ascending, softmax, cumulative sum from the least likely token, and
    drop every token whose cumulative (tail) mass is ``<= 1 - p``. Mathematically that is the same
    as "sort descending, keep tokens until their mass reaches p", but when a token sits exactly
    on the boundary the float32 rounding of softmax and cumsum decides. Example: probabilities
    (0.3, 0.3, 0.2, 0.2) and ``p = 0.3``: one 0.3 token already reaches 0.3, yet transformers
    keeps two, because the float32 tail mass 0.2 + 0.2 + 0.3 comes out as 0.70000005, which is
    not ``<= 1 - 0.3 = 0.7``. This function repeats the same operations in the same order
    (same sort, softmax, cumsum and comparison with ``1 - p`` as a Python float) and so makes the
    same decision; a descending-sort rewrite does not always.
    ``p = 1`` keeps every token with non-zero float32 probability (generate() skips the step
    then); ``p = 0`` (or any tiny p) keeps only the top token (``min_tokens_to_keep`` of them).

    >>> import torch
    >>> logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    >>> top_p_filter(logits, 0.7).isfinite()
    tensor([[ True,  True, False, False]])
    """
    _check_logits(logits)
    p = _real(p, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    keep = _min_tokens(min_tokens_to_keep)
    sorted_logits, sorted_indices = torch.sort(logits, descending=False)
    tail_mass = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = tail_mass <= (1 - p)
    remove_sorted[..., -keep:] = False  # the most likely tokens sit at the end of an ascending sort
    remove = remove_sorted.scatter(1, sorted_indices, remove_sorted)
    return logits.masked_fill(remove, filter_value)


def min_p_filter(logits, min_p, *, filter_value: float = NEG_INF, min_tokens_to_keep: int = 1):
    """Keep tokens whose probability is at least ``min_p`` times the top token's probability.

    The cut scales with the model's confidence: when the top token has 0.9, ``min_p=0.1`` keeps
    only tokens above 0.09; when it has 0.05, tokens above 0.005 survive. ``min_p=0`` keeps all.

    >>> import torch
    >>> logits = torch.tensor([[0.6, 0.3, 0.07, 0.03]]).log()
    >>> min_p_filter(logits, 0.1).isfinite()
    tensor([[ True,  True,  True, False]])
    """
    _check_logits(logits)
    min_p = _real(min_p, "min_p")
    if not 0.0 <= min_p <= 1.0:
        raise ValueError(f"min_p must be in [0, 1] (a fraction of the top probability), got {min_p}")
    keep = min(_min_tokens(min_tokens_to_keep), logits.shape[-1])
    probs = torch.softmax(logits, dim=-1)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)
    remove = probs < threshold
    remove.scatter_(-1, torch.topk(probs, keep, dim=-1).indices, False)
    return logits.masked_fill(remove, filter_value)


def apply_repetition_penalty(logits, input_ids, penalty, *, attention_mask=None):
    """Make every token already present in ``input_ids`` (prompt included) less likely.

    A seen token's logit is divided by ``penalty`` when positive and multiplied by it when
    negative (CTRL's rule, as in ``RepetitionPenaltyLogitsProcessor``), once per token however
    often it occurred. ``penalty > 1`` discourages repeats, ``< 1`` encourages them, ``1`` changes
    nothing. Positions where ``attention_mask`` is 0 (padding) are ignored, as generate() does for
    left padding. Ids ``>= vocab`` are ignored (they cannot be generated anyway).

    Mind the prompt: a chat prompt contains the end-of-turn token, so a strong penalty also
    pushes down the token that lets the model stop.

    >>> import torch
    >>> apply_repetition_penalty(torch.tensor([[2.0, -1.0, 3.0]]), torch.tensor([[0, 1, 1]]), 2.0)
    tensor([[ 1., -2.,  3.]])
    """
    _check_logits(logits)
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor of token ids, not {type(input_ids).__name__}")
    if input_ids.dim() == 1:
        input_ids = input_ids[None, :]
    if input_ids.dim() != 2 or input_ids.shape[0] != logits.shape[0]:
        raise ValueError(
            f"input_ids must be [batch, seq_len] with the same batch as logits {tuple(logits.shape)}, "
            f"got shape {tuple(input_ids.shape)}"
        )
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integer token ids, not {input_ids.dtype}")
    if input_ids.numel() and int(input_ids.min()) < 0:
        raise ValueError(f"input_ids must be >= 0 (token ids), got {int(input_ids.min())}")
    penalty = _real(penalty, "penalty")
    if not (penalty > 0) or math.isinf(penalty):
        raise ValueError(f"penalty must be a finite number > 0 (1.0 = no penalty), got {penalty}")
    vocab = logits.shape[-1]
    ids = input_ids.to(logits.device).long().clamp(max=vocab)  # out-of-vocab ids -> spare column
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must be a tensor shaped like input_ids {tuple(input_ids.shape)}"
            )
        ids = ids.masked_fill(attention_mask.to(ids.device) == 0, vocab)
    seen = torch.zeros(logits.shape[0], vocab + 1, dtype=torch.bool, device=logits.device)
    seen.scatter_(1, ids, True)
    seen = seen[:, :vocab]
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def process_logits(logits, input_ids=None, *, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float = 1.0, min_p: float | None = None, repetition_penalty: float = 1.0,
                   attention_mask=None, min_tokens_to_keep: int = 1):
    """All of the above in ``generate()``'s order for ``do_sample=True``: repetition penalty,
    then temperature, top-k, top-p, min-p. Steps left at their neutral value are skipped, as
    generate() skips them (``temperature=1``, ``top_k=None`` or 0, ``top_p=1``, ``min_p=None``,
    ``repetition_penalty=1``). Unlike generate(), there is no implicit ``top_k=50``: pass it.

    >>> import torch
    >>> process_logits(torch.tensor([[4.0, 2.0, 0.0]]), temperature=2.0, top_k=2)
    tensor([[2., 1., -inf]])
    """
    _check_logits(logits)
    if _real(repetition_penalty, "repetition_penalty") != 1.0:
        if input_ids is None:
            raise ValueError("repetition_penalty needs input_ids (the tokens seen so far)")
        logits = apply_repetition_penalty(logits, input_ids, repetition_penalty, attention_mask=attention_mask)
    if _real(temperature, "temperature") != 1.0:
        logits = apply_temperature(logits, temperature)
    if top_k is not None and _int(top_k, "top_k") != 0:
        logits = top_k_filter(logits, top_k, min_tokens_to_keep=min_tokens_to_keep)
    if _real(top_p, "top_p") < 1.0:
        logits = top_p_filter(logits, top_p, min_tokens_to_keep=min_tokens_to_keep)
    if min_p is not None:
        logits = min_p_filter(logits, min_p, min_tokens_to_keep=min_tokens_to_keep)
    return logits


# ---------------------------------------------------------------------------------------------
# Llama-style sampling, and measurements
# ---------------------------------------------------------------------------------------------
def sample_top_p(probs, p, generator=None):
    """Llama's reference ``sample_top_p``: sort probabilities descending, cumulative sum, zero
    every token whose preceding mass already exceeds ``p``, renormalise, draw one token per row,
    and map the sorted position back to a vocabulary id. Returns ``[batch, 1]`` ids.

    It keeps the same set as ``top_p_filter`` except exactly at the boundary (see there), but it
    does not draw the same token as ``generate()`` for a given seed: ``torch.multinomial`` runs
    over the sorted vector here and over the vocabulary order there.

    >>> import torch
    >>> sample_top_p(torch.tensor([[0.1, 0.7, 0.2]]), 0.5)
    tensor([[1]])
    """
    _check_logits(probs, "probs")
    p = _real(p, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    if bool((probs < 0).any()) or not bool(probs.isfinite().all()):
        raise ValueError("probs must be finite and non-negative (softmax output, not logits)")
    probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
    probs_sum = torch.cumsum(probs_sort, dim=-1)
    mask = probs_sum - probs_sort > p
    probs_sort = probs_sort.masked_fill(mask, 0.0)
    probs_sort = probs_sort / probs_sort.sum(dim=-1, keepdim=True)
    next_sorted = torch.multinomial(probs_sort, num_samples=1, generator=generator)
    return torch.gather(probs_idx, -1, next_sorted)


def entropy(logits):
    """Shannon entropy (nats) of ``softmax(logits)`` for each row; ``-inf`` entries count as 0.

    >>> import torch, math
    >>> round(float(entropy(torch.zeros(1, 4))[0]), 4) == round(math.log(4), 4)
    True
    """
    _check_logits(logits)
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    return -(p * logp.masked_fill(p == 0, 0.0)).sum(dim=-1)


def distinct_ngram_ratio(tokens, n: int = 2) -> float:
    """Distinct n-grams / all n-grams in a token sequence: 1.0 means no n-gram repeats, values
    near 0 mean the text loops. Accepts a list/tuple of ids or strings, or a 1-D tensor.

    >>> distinct_ngram_ratio([1, 2, 1, 2, 1, 2], n=2)
    0.4
    """
    n = _int(n, "n")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if isinstance(tokens, torch.Tensor):
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be a 1-D sequence, got shape {tuple(tokens.shape)}")
        tokens = tokens.tolist()
    if isinstance(tokens, str) or not isinstance(tokens, (list, tuple)):
        raise TypeError(f"tokens must be a list/tuple of tokens or a 1-D tensor, not {type(tokens).__name__}")
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        raise ValueError(f"need at least n={n} tokens, got {len(tokens)}")
    return len(set(grams)) / len(grams)
