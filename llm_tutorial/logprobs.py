"""How likely is a text? Token log-probabilities and perplexity.

One forward pass over the whole text gives, at every position, a distribution over the next
token (teacher forcing: the model reads the real text, not its own guesses). The log-probability
of the token that really came next, summed over the text, is the text's log-probability;
``exp(-mean log-prob)`` is its perplexity, which equals ``exp(loss)`` of
``model(input_ids, labels=input_ids)``.

Log-probabilities are natural logs (nats), computed in float32 whatever the model's dtype.
Scoring starts at the second token: the first token of a text has no logits before it.
Tokenizers that add a BOS token (Llama 3, Gemma) make every real token scored; SmolLM2's adds
none. A text or a list of texts (scored as one padded batch) is accepted; an empty text, or one
longer than the model's context, is a ValueError.

>>> import math
>>> ids = tok("The cat sat on the mat.", return_tensors="pt").input_ids
>>> lp = token_logprobs(model, ids)  # one log-prob per token after the first
>>> lp.shape == (1, ids.shape[1] - 1)
True
>>> math.isclose(text_logprob(model, tok, "The cat sat on the mat."), float(lp.sum()), rel_tol=1e-5)
True
>>> math.isclose(perplexity(model, tok, "The cat sat on the mat."), math.exp(-float(lp.mean())), rel_tol=1e-5)
True
"""

from __future__ import annotations

import math

from .arguments import check_input_ids, check_texts
from .forward import encode_batch, forward

__all__ = ["perplexity", "text_logprob", "token_logprobs"]


def teacher_forcing(model, input_ids, attention_mask=None):
    """``(logprobs, targets)``: the float32 log-softmax at every position but the last
    ``[batch, seq_len - 1, vocab]``, and the tokens that really came next ``[batch, seq_len - 1]``."""
    import torch

    check_input_ids(input_ids, attention_mask, min_len=2)
    logits = forward(model, input_ids, attention_mask).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    return logprobs, input_ids[:, 1:].to(logprobs.device)


def token_logprobs(model, input_ids, attention_mask=None):
    """Log-probability of each token given the ones before it: shape ``[batch, seq_len - 1]``.

    Position ``t`` of the result scores ``input_ids[:, t + 1]`` with the logits at ``t``
    (teacher forcing). Positions whose target is padding (mask 0) are set to 0. Left or right
    padding both work (with left padding, position ids are derived from the mask).

    >>> lp = token_logprobs(model, tok("Hello world", return_tensors="pt").input_ids)
    >>> lp.shape
    torch.Size([1, 1])
    """
    logprobs, targets = teacher_forcing(model, input_ids, attention_mask)
    picked = logprobs.gather(-1, targets[..., None]).squeeze(-1)
    if attention_mask is not None:
        picked = picked * attention_mask[:, 1:].to(picked.device, picked.dtype)
    return picked


def encode_texts(model, tokenizer, text, name: str = "text"):
    """``(texts, is_batch, input_ids, attention_mask, lengths)`` for a text or a list of texts of
    at least 2 tokens each, right-padded into one batch."""
    texts, batch = check_texts(text, name)
    input_ids, mask, lengths = encode_batch(tokenizer, texts, model, min_tokens=2, name=name)
    return texts, batch, input_ids, mask, lengths


def text_logprob(model, tokenizer, text: str | list[str]) -> float | list[float]:
    """Sum of the log-probabilities (natural log) of every token of ``text`` after the first.
    A list of texts gives a list of sums (scored as one padded batch).

    >>> text_logprob(model, tok, "The cat sat on the mat.") < 0
    True
    """
    _, batch, input_ids, mask, _ = encode_texts(model, tokenizer, text)
    sums = token_logprobs(model, input_ids, mask).sum(-1).tolist()
    return sums if batch else sums[0]


def perplexity(model, tokenizer, text: str | list[str]) -> float | list[float]:
    """``exp(-mean log-prob)`` over the predicted tokens of ``text``; equals ``exp(loss)`` of
    ``model(input_ids, labels=input_ids)``. A list of texts gives a list (one value per text).

    >>> perplexity(model, tok, "The cat sat on the mat.") > 1
    True
    """
    _, batch, input_ids, mask, lengths = encode_texts(model, tokenizer, text)
    sums = token_logprobs(model, input_ids, mask).sum(-1).tolist()
    values = [math.exp(-s / (n - 1)) for s, n in zip(sums, lengths)]
    return values if batch else values[0]
