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

import torch

from .arguments import check_input_ids, check_int, check_logits, check_number

__all__ = [
    "apply_temperature",
    "top_k_filter",
    "top_p_filter",
    "min_p_filter",
    "apply_repetition_penalty",
    "process_logits",
    "sample_top_p",
]

NEG_INF = float("-inf")


def _min_tokens(min_tokens_to_keep) -> int:
    return check_int(min_tokens_to_keep, "min_tokens_to_keep", low=1)


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
    check_logits(logits)
    greedy = ". For greedy decoding use do_sample=False (argmax) instead of temperature=0."
    t = check_number(temperature, "temperature", low=0, low_open=True, hint=greedy if temperature == 0 else "")
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
    check_logits(logits)
    k = check_int(k, "k", low=1, hint="; k is the number of tokens to keep")
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
    check_logits(logits)
    p = check_number(p, "p", low=0, high=1, what="a probability")
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
    check_logits(logits)
    min_p = check_number(min_p, "min_p", low=0, high=1, what="a fraction of the top probability")
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
    check_logits(logits)
    if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 1:
        input_ids = input_ids[None, :]
    check_input_ids(input_ids, attention_mask, min_len=0)
    if input_ids.shape[0] != logits.shape[0]:
        raise ValueError(f"input_ids must have the same batch as logits {tuple(logits.shape)}, "
                         f"got shape {tuple(input_ids.shape)}")
    penalty = check_number(penalty, "penalty", low=0, low_open=True, hint="; 1.0 means no penalty")
    vocab = logits.shape[-1]
    ids = input_ids.to(logits.device).long().clamp(max=vocab)  # out-of-vocab ids -> spare column
    if attention_mask is not None:
        ids = ids.masked_fill(attention_mask.to(ids.device) == 0, vocab)
    seen = torch.zeros(logits.shape[0], vocab + 1, dtype=torch.bool, device=logits.device)
    seen.scatter_(1, ids, True)
    seen = seen[:, :vocab]
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def _is_set(value, neutral, name: str) -> bool:
    """Whether a step of the chain runs: not when its value is None or its neutral value."""
    return value is not None and check_number(value, name) != neutral


def process_logits(logits, input_ids=None, *, temperature: float | None = 1.0, top_k: int | None = None,
                   top_p: float | None = None, min_p: float | None = None,
                   repetition_penalty: float | None = None, attention_mask=None, min_tokens_to_keep: int = 1):
    """All of the above in ``generate()``'s order for ``do_sample=True``: repetition penalty,
    then temperature, top-k, top-p, min-p. A step left unset (None) or at its neutral value is
    skipped, as generate() skips it: ``temperature=1``, ``top_k=0``, ``top_p=1``,
    ``repetition_penalty=1``. Unlike generate(), there is no implicit ``top_k=50``: pass it.
    ``attention_mask`` marks the tokens of ``input_ids`` the penalty counts (0: padding).

    >>> import torch
    >>> process_logits(torch.tensor([[4.0, 2.0, 0.0]]), temperature=2.0, top_k=2)
    tensor([[2., 1., -inf]])
    """
    check_logits(logits)
    if _is_set(repetition_penalty, 1.0, "repetition_penalty"):
        if input_ids is None:
            raise ValueError("repetition_penalty needs input_ids (the tokens seen so far)")
        logits = apply_repetition_penalty(logits, input_ids, repetition_penalty, attention_mask=attention_mask)
    if _is_set(temperature, 1.0, "temperature"):
        logits = apply_temperature(logits, temperature)
    if top_k is not None and check_int(top_k, "top_k") != 0:
        logits = top_k_filter(logits, top_k, min_tokens_to_keep=min_tokens_to_keep)
    if _is_set(top_p, 1.0, "top_p"):
        logits = top_p_filter(logits, top_p, min_tokens_to_keep=min_tokens_to_keep)
    if min_p is not None:
        logits = min_p_filter(logits, min_p, min_tokens_to_keep=min_tokens_to_keep)
    return logits


# ---------------------------------------------------------------------------------------------
# Llama-style sampling
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
    check_logits(probs, "probs")
    p = check_number(p, "p", low=0, high=1, what="a probability")
    if bool((probs < 0).any()) or not bool(probs.isfinite().all()):
        raise ValueError("probs must be finite and non-negative (softmax output, not logits)")
    probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
    probs_sum = torch.cumsum(probs_sort, dim=-1)
    mask = probs_sum - probs_sort > p
    probs_sort = probs_sort.masked_fill(mask, 0.0)
    probs_sort = probs_sort / probs_sort.sum(dim=-1, keepdim=True)
    next_sorted = torch.multinomial(probs_sort, num_samples=1, generator=generator)
    return torch.gather(probs_idx, -1, next_sorted)
