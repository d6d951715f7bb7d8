"""The four steps of the generation loop, each a function (the loop itself is ``generation``).

1. **prefill**: run the whole prompt once; keep the key/value cache and the logits of the last
   position, the model's guess for the next token.
2. **choose**: one token per row from those logits: argmax (greedy), or filter and draw.
3. **stop**: a row that produced an end-of-sequence (EOS) token is finished; from then on it
   gets padding.
4. **step**: feed only the new token, at its position, with the cache; get the next logits.

Positions count from each row's first real token (``position_ids_from_mask``), so a
left-padded prompt starts at position 0 as an unpadded one does.

>>> ids = tok("The cat sat", return_tensors="pt").input_ids
>>> logits, cache = prefill(model, ids)  # 1. the whole prompt, once
>>> token = choose_next_token(logits)  # 2. greedy: the argmax
>>> ids = torch.cat([ids, token[:, None]], dim=1)
>>> positions = position_ids_from_mask(torch.ones_like(ids))
>>> logits, cache = decode_step(model, ids, None, positions, cache)  # 4. only the new token is fed
>>> cache.get_seq_length() == ids.shape[1]
True
"""

from __future__ import annotations

import inspect

import torch

from .sampling import process_logits

__all__ = ["choose_next_token", "decode_step", "position_ids_from_mask", "prefill", "update_finished"]


def position_ids_from_mask(attention_mask):
    """Position of each token in its own row: real tokens count 0, 1, 2, ... from the first
    non-padding token; padding gets 0 (it is masked anyway). This is how ``generate`` numbers a
    left-padded batch, so that every prompt starts at position 0.

    >>> import torch
    >>> position_ids_from_mask(torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]))
    tensor([[0, 0, 0, 1],
            [0, 1, 2, 3]])
    """
    positions = attention_mask.long().cumsum(-1) - 1  # count the real tokens seen so far
    return positions.masked_fill(attention_mask == 0, 0)  # padding: any position, it is masked


def _accepts(model, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


@torch.no_grad()
def _forward(model, input_ids, attention_mask, position_ids, cache, use_cache):
    """One forward pass; returns the last position's logits in float32 and the cache."""
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask,
              "position_ids": position_ids, "use_cache": use_cache}
    if cache is not None:
        kwargs["past_key_values"] = cache
    if _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = 1  # only the last position's logits: all we need (generate does this)
    out = model(**kwargs)
    logits = out.logits[:, -1].float()  # generate decides on float32 logits, whatever the model's dtype
    return logits, (out.past_key_values if use_cache else None)


def prefill(model, input_ids, attention_mask=None, position_ids=None, *, use_cache=True):
    """Run the whole prompt once. Returns ``(logits, cache)``: the float32 logits ``[batch, vocab]``
    of the last position (the next-token guess) and the key/value cache (``None`` without cache).

    ``attention_mask=None`` means "no padding"; ``position_ids`` default to the mask's.

    >>> logits, cache = prefill(model, tok("Hello", return_tensors="pt").input_ids)
    >>> logits.shape, cache.get_seq_length()
    (torch.Size([1, 49152]), 1)
    """
    if position_ids is None:
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        position_ids = position_ids_from_mask(mask)
    return _forward(model, input_ids, attention_mask, position_ids, None, use_cache)


def decode_step(model, input_ids, attention_mask, position_ids, cache):
    """Logits for the next token after ``input_ids`` (the whole sequence so far, ``[batch, len]``).

    With a ``cache`` holding every token but the last, only the last token is fed, at its own
    position: the keys and values of the earlier ones are read from the cache. With
    ``cache=None`` the whole sequence is run again (the slow way, same tokens).
    ``attention_mask`` covers the whole sequence (or is ``None`` when nothing is padded);
    ``position_ids`` too. Returns ``(logits, cache)`` like ``prefill``.

    >>> ids = tok("The cat sat", return_tensors="pt").input_ids
    >>> positions = position_ids_from_mask(torch.ones_like(ids))
    >>> logits, cache = prefill(model, ids)
    >>> ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)  # the chosen next token
    >>> positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)  # at the next position
    >>> logits, cache = decode_step(model, ids, None, positions, cache)
    >>> logits.shape, cache.get_seq_length() == ids.shape[1]
    (torch.Size([1, 49152]), True)
    """
    if cache is None:  # no memory of the past: recompute everything
        return _forward(model, input_ids, attention_mask, position_ids, None, False)
    # only the newest token is new to the model; the cache holds the keys/values of the others
    return _forward(model, input_ids[:, -1:], attention_mask, position_ids[:, -1:], cache, True)


def choose_next_token(logits, input_ids=None, *, do_sample=False, temperature=1.0, top_k=None,
                      top_p=None, min_p=None, repetition_penalty=None, penalty_mask=None):
    """One token id per row from next-token ``logits`` ``[batch, vocab]``, as ``generate`` picks it.

    The scores are ``process_logits``'s (generate's order, unset steps skipped): the repetition
    penalty over the tokens of ``input_ids`` (where ``penalty_mask`` is not 0); then, only when
    sampling, temperature, top-k, top-p, min-p. Then argmax (greedy) or ``torch.multinomial`` over
    the softmax of the whole vocabulary, in vocabulary order (so a seeded draw matches generate's).

    >>> import torch
    >>> choose_next_token(torch.tensor([[0.1, 2.0, 0.3], [5.0, 1.0, 0.0]]))
    tensor([1, 0])
    """
    if not do_sample:  # greedy: the single most likely token, after the penalty only
        scores = process_logits(logits, input_ids, repetition_penalty=repetition_penalty,
                                attention_mask=penalty_mask)
        return scores.argmax(dim=-1)
    scores = process_logits(logits, input_ids, temperature=temperature, top_k=top_k, top_p=top_p,
                            min_p=min_p, repetition_penalty=repetition_penalty, attention_mask=penalty_mask)
    probs = torch.softmax(scores, dim=-1)  # filtered tokens (-inf) get probability 0
    return torch.multinomial(probs, num_samples=1).squeeze(1)


def update_finished(next_tokens, logprobs, finished, eos_ids, pad_id):
    """The stopping rule, per row: a row that is already ``finished`` gets ``pad_id`` instead of
    its token (and log-prob 0); a row whose token is one of ``eos_ids`` is finished from now on
    (its EOS is kept). Returns ``(next_tokens, logprobs, finished)``. This is Llama's
    ``eos_reached``; the loop ends when every row is finished.

    >>> import torch
    >>> update_finished(torch.tensor([2, 7, 9]), torch.tensor([-0.1, -0.2, -0.3]),
    ...                 torch.tensor([False, False, True]), torch.tensor([2]), 0)
    (tensor([2, 7, 0]), tensor([-0.1000, -0.2000,  0.0000]), tensor([ True, False,  True]))
    """
    next_tokens = torch.where(finished, pad_id, next_tokens)  # finished rows only get padding
    logprobs = logprobs.masked_fill(finished, 0.0)  # padding is certain: log 1 = 0
    finished = finished | torch.isin(next_tokens, eos_ids)  # saying EOS ends the row
    return next_tokens, logprobs, finished
