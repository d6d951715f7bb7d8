"""The autoregressive loop behind ``model.generate()``, written out by hand.

Generating text is four small ideas repeated, each a function in ``steps``:

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

from collections.abc import Iterator
from typing import NamedTuple

import torch

from .arguments import check_bool, check_input_ids, check_int, check_number
from .forward import context_length
from .steps import choose_next_token, decode_step, position_ids_from_mask, prefill, update_finished

__all__ = ["GenerationStep", "answer_tokens", "generate", "stream_tokens"]


class GenerationStep(NamedTuple):
    """One step of the loop, for every row: the chosen ``tokens`` ``[batch]`` (the pad id for rows
    already finished), their ``logprobs`` ``[batch]`` under the unmodified distribution (0.0 for
    padding), and ``finished`` ``[batch]`` (True once the row has produced an EOS)."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    finished: torch.Tensor


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def _token_ids(value, name: str) -> list[int]:
    """``None`` -> ``[]``; an int or a list/tuple/1-D tensor of ints -> a list of ids."""
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    ids = value if isinstance(value, (list, tuple)) else [value]
    if not ids:
        raise ValueError(f"{name} must not be empty; pass None for none")
    return [check_int(i, name, low=0) for i in ids]


def _check_inputs(model, input_ids, attention_mask):
    if not callable(model) or not hasattr(model, "config"):
        raise TypeError(f"model must be a Hugging Face causal LM, not {type(model).__name__}")
    if getattr(model.config, "is_encoder_decoder", False):
        raise ValueError("model must be a decoder-only causal LM; encoder-decoder models are not supported")
    check_input_ids(input_ids, attention_mask)


def _check_sampling(do_sample, temperature, top_k, top_p, min_p, repetition_penalty):
    """The sampling arguments as generate checks them; temperature only matters when sampling."""
    check_bool(do_sample, "do_sample")
    if temperature is not None:
        greedy = "; for greedy decoding pass do_sample=False instead of temperature=0"
        temperature = (check_number(temperature, "temperature", low=0, low_open=True, hint=greedy)
                       if do_sample else check_number(temperature, "temperature"))
    if top_k is not None:
        check_int(top_k, "top_k", low=0)
    if top_p is not None:
        top_p = check_number(top_p, "top_p", low=0, high=1, low_open=True)
    if min_p is not None:
        min_p = check_number(min_p, "min_p", low=0, high=1)
    if repetition_penalty is not None:
        repetition_penalty = check_number(repetition_penalty, "repetition_penalty", low=0, low_open=True,
                                          hint="; 1.0 means no penalty")
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
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", low=0)
    choice = _check_sampling(do_sample, temperature, top_k, top_p, min_p, repetition_penalty)
    eos_ids = _token_ids(eos_token_id, "eos_token_id")
    pad_id = _token_ids(pad_token_id, "pad_token_id")
    if len(pad_id) > 1:
        raise ValueError(f"pad_token_id must be a single int, got {pad_token_id!r}")
    pad_id = pad_id[0] if pad_id else (eos_ids[0] if eos_ids else None)  # generate's fallback
    check_bool(use_cache, "use_cache")
    limit = context_length(model)
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
    check_bool(return_logprobs, "return_logprobs")
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
    prompt_length = check_int(prompt_length, "prompt_length", low=0)
    batch, total = sequences.shape
    if prompt_length > total:
        raise ValueError(f"prompt_length {prompt_length} is longer than the sequences ({total})")
    eos_ids = set(_token_ids(eos_token_id, "eos_token_id"))
    check_bool(echo, "echo")
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
