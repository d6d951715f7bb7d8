"""The autoregressive loop behind ``model.generate()``, written out by hand.

Generating text is four small ideas repeated:

1. **prefill**: run the whole prompt through the model once; keep the key/value cache and the
   logits of the last position (the model's guess for the next token).
2. **choose**: turn those logits into one token per row: argmax (greedy), or filter and sample.
3. **stop**: a row that produced an end-of-sequence (EOS) token is finished; from then on it
   only receives padding, and the loop ends when every row is finished.
4. **step**: feed only the new token, at its position, together with the cache; get the next
   logits. Without a cache, run the whole sequence again instead (same tokens, much slower).

``generate`` below returns exactly what ``model.generate`` returns when both are called with
the same explicit arguments (and, when sampling, the same ``torch.manual_seed`` right before
each call). How our unset values map onto ``model.generate``:

==========================  =========================================================================
ours                        what ``model.generate`` does with the same explicit value
==========================  =========================================================================
``top_k=None``              no top-k filter, like ``model.generate(top_k=None)``; note that *omitting*
                            ``top_k`` in ``model.generate(do_sample=True)`` applies ``top_k=50``:
                            pass ``top_k=50`` here to get that.
``temperature=1.0``         no temperature step (dividing by 1); ``None`` means the same.
``top_p=None``              no top-p filter (``top_p=1.0`` is skipped too, as generate skips it).
``min_p=None``              no min-p filter.
``repetition_penalty=None`` no penalty (``1.0`` is skipped too). Applied in greedy mode as well.
``eos_token_id=None``       never stop early: ``model.generate(eos_token_id=None)`` ignores the
                            model's own EOS too. Pass ``tokenizer.eos_token_id`` (or a list).
``pad_token_id=None``       pad finished rows with the first EOS id.
``attention_mask=None``     inferred as generate infers it: ``input_ids != pad`` if the pad id
                            occurs and differs from every EOS id, else all ones. Pass the
                            tokenizer's mask for padded batches.
``max_new_tokens=0``        returns the prompt unchanged (``model.generate`` raises a ValueError).
==========================  =========================================================================

With ``do_sample=False``, temperature, top-k, top-p and min-p are ignored (generate ignores them
too, with a warning); the repetition penalty still applies.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from numbers import Integral, Real
from typing import NamedTuple

import torch

from .sampling import (
    apply_repetition_penalty,
    apply_temperature,
    min_p_filter,
    top_k_filter,
    top_p_filter,
)

__all__ = [
    "generate",
    "stream_tokens",
    "GenerationStep",
    "prefill",
    "decode_step",
    "choose_next_token",
    "update_finished",
    "position_ids_from_mask",
    "answer_tokens",
]


class GenerationStep(NamedTuple):
    """One step of the loop, for every row: the chosen ``tokens`` ``[batch]`` (the pad id for rows
    already finished), their ``logprobs`` ``[batch]`` under the unmodified distribution (0.0 for
    padding), and ``finished`` ``[batch]`` (True once the row has produced an EOS)."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    finished: torch.Tensor


# ---------------------------------------------------------------------------------------------
# the four ideas
# ---------------------------------------------------------------------------------------------
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

    In generate's order: repetition penalty over the tokens of ``input_ids`` (where
    ``penalty_mask`` is not 0); then, only when sampling, temperature, top-k, top-p, min-p;
    then argmax (greedy) or ``torch.multinomial`` over the softmax of the whole vocabulary, in
    vocabulary order (so a seeded draw matches generate's). Unset steps are skipped.

    >>> import torch
    >>> choose_next_token(torch.tensor([[0.1, 2.0, 0.3], [5.0, 1.0, 0.0]]))
    tensor([1, 0])
    """
    scores = logits
    if repetition_penalty is not None and repetition_penalty != 1.0:
        scores = apply_repetition_penalty(scores, input_ids, repetition_penalty, attention_mask=penalty_mask)
    if not do_sample:
        return scores.argmax(dim=-1)  # greedy: the single most likely token
    if temperature is not None and temperature != 1.0:
        scores = apply_temperature(scores, temperature)
    if top_k is not None and top_k != 0:
        scores = top_k_filter(scores, top_k)
    if top_p is not None and top_p < 1.0:
        scores = top_p_filter(scores, top_p)
    if min_p is not None:
        scores = min_p_filter(scores, min_p)
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


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def _int_arg(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return int(value)


def _real_arg(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def _bool_arg(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


def _token_ids(value, name: str) -> list[int]:
    """``None`` -> ``[]``; an int or a list/tuple/1-D tensor of ints -> a list of ids."""
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    ids = value if isinstance(value, (list, tuple)) else [value]
    if not ids:
        raise ValueError(f"{name} must not be empty; pass None for none")
    return [_int_arg(i, name, 0) for i in ids]


def _check_inputs(model, input_ids, attention_mask):
    if not callable(model) or not hasattr(model, "config"):
        raise TypeError(f"model must be a Hugging Face causal LM, not {type(model).__name__}")
    if getattr(model.config, "is_encoder_decoder", False):
        raise ValueError("model must be a decoder-only causal LM; encoder-decoder models are not supported")
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor [batch, seq_len], not {type(input_ids).__name__}")
    if input_ids.dim() != 2:
        raise ValueError(
            f"input_ids must be 2-D [batch, seq_len], got shape {tuple(input_ids.shape)}; "
            "for one prompt use input_ids[None, :] (or the tokenizer's return_tensors='pt')"
        )
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integer token ids, not {input_ids.dtype}")
    if input_ids.shape[0] < 1 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must hold at least one token per row, got shape {tuple(input_ids.shape)}")
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor or None, not {type(attention_mask).__name__}")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
            f"got {tuple(attention_mask.shape)}"
        )
    if attention_mask.is_floating_point() or not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token), as integers or bools")
    if not bool(attention_mask.any(dim=-1).all()):
        raise ValueError("attention_mask has a row with no real token (all 0): every prompt needs one")


def _check_sampling(do_sample, temperature, top_k, top_p, min_p, repetition_penalty):
    _bool_arg(do_sample, "do_sample")
    if temperature is not None:
        temperature = _real_arg(temperature, "temperature")
        if do_sample and temperature <= 0:
            raise ValueError(
                f"temperature must be > 0 when sampling, got {temperature}; "
                "for greedy decoding pass do_sample=False instead of temperature=0"
            )
    if top_k is not None:
        _int_arg(top_k, "top_k", 0)
    if top_p is not None:
        top_p = _real_arg(top_p, "top_p")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if min_p is not None:
        min_p = _real_arg(min_p, "min_p")
        if not 0.0 <= min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
    if repetition_penalty is not None:
        repetition_penalty = _real_arg(repetition_penalty, "repetition_penalty")
        if repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 = no penalty), got {repetition_penalty}")
    return {"do_sample": do_sample, "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "min_p": min_p, "repetition_penalty": repetition_penalty}


def _default_mask(input_ids, pad_id, eos_ids):
    """What ``generate`` assumes when no mask is passed: padding is where the pad id is, but only
    if the pad id occurs and is not also an EOS id (else it cannot tell padding from text)."""
    if pad_id is not None and pad_id not in eos_ids and bool((input_ids == pad_id).any()):
        return (input_ids != pad_id).long()
    return torch.ones_like(input_ids)


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def stream_tokens(model, input_ids, attention_mask=None, *, max_new_tokens, do_sample=False,
                  temperature=1.0, top_k=None, top_p=None, min_p=None, repetition_penalty=None,
                  eos_token_id=None, pad_token_id=None, use_cache=True) -> Iterator[GenerationStep]:
    """The loop of ``generate``, one ``GenerationStep`` at a time (for streaming). Arguments as in
    ``generate``; they are checked when you call this, before the first step.

    >>> from llm_tutorial import chat_inputs
    >>> ids = chat_inputs(tok, "What is the capital of France?")["input_ids"]
    >>> for step in stream_tokens(model, ids, max_new_tokens=5):
    ...     print(tok.decode(step.tokens[0]), end="|")
    The| capital| of| France| is|
    """
    _check_inputs(model, input_ids, attention_mask)
    max_new_tokens = _int_arg(max_new_tokens, "max_new_tokens", 0)
    choice = _check_sampling(do_sample, temperature, top_k, top_p, min_p, repetition_penalty)
    eos_ids = _token_ids(eos_token_id, "eos_token_id")
    pad_id = _token_ids(pad_token_id, "pad_token_id")
    if len(pad_id) > 1:
        raise ValueError(f"pad_token_id must be a single int, got {pad_token_id!r}")
    pad_id = pad_id[0] if pad_id else (eos_ids[0] if eos_ids else None)  # generate's fallback
    _bool_arg(use_cache, "use_cache")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and input_ids.shape[1] + max_new_tokens > limit:
        raise ValueError(
            f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
            f"model's {limit} positions; shorten one of them"
        )
    device = model.device
    input_ids = input_ids.to(device)
    mask = (attention_mask.to(device).long() if attention_mask is not None
            else _default_mask(input_ids, pad_id, eos_ids))
    return _loop(model, input_ids, mask, max_new_tokens, choice, eos_ids, pad_id, use_cache)


def _loop(model, tokens, mask, max_new_tokens, choice, eos_ids, pad_id, use_cache):
    device = tokens.device
    positions = position_ids_from_mask(mask)  # each prompt starts at position 0
    padded = not bool(mask.all())  # no padding at all: the model needs no mask (generate drops it too)
    # the repetition penalty skips the left padding of each prompt (as generate does)
    leading_pads = (mask != 0).int().argmax(dim=1)
    eos = torch.tensor(eos_ids, device=device)
    finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=device)
    if max_new_tokens == 0:
        return

    # 1. prefill: the whole prompt at once
    logits, cache = prefill(model, tokens, mask if padded else None, positions, use_cache=use_cache)
    for step in range(max_new_tokens):
        # 2. choose one token per row (penalty, filters, argmax or a draw)
        seen = torch.arange(tokens.shape[1], device=device)[None, :] >= leading_pads[:, None]
        next_tokens = choose_next_token(logits, tokens, penalty_mask=seen, **choice)
        logprobs = torch.log_softmax(logits, dim=-1).gather(1, next_tokens[:, None]).squeeze(1)
        # 3. stop: finished rows get padding (log-prob 0), a row that says EOS is finished
        if eos_ids:
            next_tokens, logprobs, finished = update_finished(next_tokens, logprobs, finished, eos, pad_id)
        yield GenerationStep(next_tokens, logprobs, finished.clone())
        if bool(finished.all()) or step == max_new_tokens - 1:
            return
        # 4. step: append the token, one position further, a mask entry of 1; run the model again
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)
        positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        logits, cache = decode_step(model, tokens, mask if padded else None, positions, cache)


def generate(model, input_ids, attention_mask=None, *, max_new_tokens, do_sample=False,
             temperature=1.0, top_k=None, top_p=None, min_p=None, repetition_penalty=None,
             eos_token_id=None, pad_token_id=None, use_cache=True, return_logprobs=False):
    """Generate up to ``max_new_tokens`` tokens after each prompt of ``input_ids`` ``[batch, len]``.

    Returns a ``LongTensor`` like ``model.generate``: prompt + new tokens, rows that finished
    early padded with the pad id; the loop ends early when every row has finished. With
    ``return_logprobs=True`` returns ``(sequences, logprobs)``, ``logprobs[b, t]`` being the
    log-probability of new token ``t`` of row ``b`` under the model's unmodified distribution
    (before penalty, temperature or filters), 0.0 for padding after EOS.

    The tokens equal ``model.generate(input_ids, attention_mask=..., max_new_tokens=...,
    do_sample=..., temperature=..., top_k=..., top_p=..., min_p=..., repetition_penalty=...,
    eos_token_id=..., pad_token_id=...)`` with the same explicit arguments (and the same
    ``torch.manual_seed`` before each call when sampling). See the module docstring for what
    unset values mean; in short, ``top_k=None`` is no top-k (``model.generate(do_sample=True)``
    alone applies 50) and ``eos_token_id=None`` never stops (pass ``tokenizer.eos_token_id``).
    ``use_cache=False`` reruns the whole sequence at every step.

    >>> from llm_tutorial import chat_inputs
    >>> ids = chat_inputs(tok, "What is the capital of France?")["input_ids"]
    >>> out = generate(model, ids, max_new_tokens=20, eos_token_id=tok.eos_token_id)
    >>> tok.decode(out[0, ids.shape[1]:])
    'The capital of France is Paris.<|im_end|>'
    """
    _bool_arg(return_logprobs, "return_logprobs")
    steps = stream_tokens(model, input_ids, attention_mask, max_new_tokens=max_new_tokens,
                          do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                          min_p=min_p, repetition_penalty=repetition_penalty, eos_token_id=eos_token_id,
                          pad_token_id=pad_token_id, use_cache=use_cache)
    prompt = input_ids.to(model.device)
    new_tokens, logprobs = [], []
    for step in steps:
        new_tokens.append(step.tokens[:, None])
        logprobs.append(step.logprobs[:, None])
    sequences = torch.cat([prompt, *new_tokens], dim=1)  # a new tensor even when nothing was added
    if not return_logprobs:
        return sequences
    return sequences, torch.cat([prompt.new_zeros(prompt.shape[0], 0, dtype=torch.float32), *logprobs], dim=1)


def answer_tokens(sequences, prompt_length, eos_token_id=None, *, echo=False, attention_mask=None,
                  logprobs=None):
    """Llama-style post-processing: one list of ids per row, cut before the first EOS of the answer,
    without the prompt (``echo=False``) or with it (``echo=True``; the prompt's padding, where
    ``attention_mask`` is 0, is left out). With ``logprobs`` ``[batch, new]`` (from
    ``generate(..., return_logprobs=True)``) returns ``(tokens, logprobs)``, the log-probs of the
    answer tokens cut the same way (for the prompt's own tokens see ``token_logprobs``).

    >>> import torch
    >>> answer_tokens(torch.tensor([[5, 6, 7, 2, 2], [5, 6, 8, 9, 4]]), 2, eos_token_id=2)
    [[7], [8, 9, 4]]
    >>> answer_tokens(torch.tensor([[0, 6, 7, 2]]), 2, 2, echo=True, attention_mask=torch.tensor([[0, 1]]))
    [[6, 7]]
    """
    if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2:
        raise ValueError("sequences must be a 2-D tensor [batch, prompt + new], as generate returns")
    prompt_length = _int_arg(prompt_length, "prompt_length", 0)
    batch, total = sequences.shape
    if prompt_length > total:
        raise ValueError(f"prompt_length {prompt_length} is longer than the sequences ({total})")
    eos_ids = set(_token_ids(eos_token_id, "eos_token_id"))
    _bool_arg(echo, "echo")
    if attention_mask is not None and tuple(attention_mask.shape) != (batch, prompt_length):
        raise ValueError(f"attention_mask must be the prompt's mask {(batch, prompt_length)}, "
                         f"got {tuple(attention_mask.shape)}")
    if logprobs is not None and tuple(logprobs.shape) != (batch, total - prompt_length):
        raise ValueError(f"logprobs must be [batch, new tokens] = {(batch, total - prompt_length)}, "
                         f"got {tuple(logprobs.shape)}")
    out_tokens, out_logprobs = [], []
    for row, ids in enumerate(sequences.tolist()):
        answer = ids[prompt_length:]
        stop = next((i for i, t in enumerate(answer) if t in eos_ids), len(answer))  # first EOS
        prompt = ids[:prompt_length]
        if attention_mask is not None:
            prompt = [t for t, m in zip(prompt, attention_mask[row].tolist(), strict=True) if m]  # drop padding
        out_tokens.append((prompt if echo else []) + answer[:stop])
        if logprobs is not None:
            out_logprobs.append(logprobs[row, :stop].tolist())
    return (out_tokens, out_logprobs) if logprobs is not None else out_tokens
