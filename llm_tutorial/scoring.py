"""How likely is a text under a model? Per-token log-probabilities, total log-prob, perplexity."""

from __future__ import annotations

import math


def _encode(tokenizer, text: str, device):
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=True)["input_ids"]
    if ids.shape[1] < 2:
        raise ValueError(
            f"text must have at least 2 tokens to score (got {ids.shape[1]}): the first token "
            "has no prediction"
        )
    return ids.to(device)


def token_logprobs(model, input_ids, attention_mask=None):
    """Log-probability of each token given the ones before it: shape ``[batch, seq_len - 1]``.

    Position ``t`` of the result scores ``input_ids[:, t + 1]`` with the logits at ``t``
    (teacher forcing). Positions whose target is padding (mask 0) are set to 0.

    >>> lp = token_logprobs(model, tok("Hello world", return_tensors="pt").input_ids)  # doctest: +SKIP
    >>> lp.shape  # doctest: +SKIP
    torch.Size([1, 1])
    """
    import torch

    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError("input_ids must be a 2-D tensor [batch, seq_len]")
    if input_ids.shape[1] < 2:
        raise ValueError("input_ids must have at least 2 positions to score")
    ctx = getattr(model.config, "max_position_embeddings", None)
    if ctx is not None and input_ids.shape[1] > ctx:
        raise ValueError(
            f"input_ids has {input_ids.shape[1]} tokens, more than the model's context of {ctx}; "
            "truncate the text first"
        )
    input_ids = input_ids.to(model.device)
    if attention_mask is not None:
        attention_mask = attention_mask.to(model.device)
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    picked = logprobs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    if attention_mask is not None:
        picked = picked * attention_mask[:, 1:].to(picked.dtype)
    return picked


def text_logprob(model, tokenizer, text: str) -> float:
    """Sum of the log-probabilities (natural log) of every token of ``text`` after the first.

    >>> text_logprob(model, tok, "The cat sat on the mat.") < 0  # doctest: +SKIP
    True
    """
    return float(token_logprobs(model, _encode(tokenizer, text, model.device)).sum())


def perplexity(model, tokenizer, text: str) -> float:
    """``exp(-mean log-prob)`` over the predicted tokens of ``text``; equals ``exp(loss)`` of
    ``model(input_ids, labels=input_ids)``.

    >>> perplexity(model, tok, "The cat sat on the mat.") > 1  # doctest: +SKIP
    True
    """
    lp = token_logprobs(model, _encode(tokenizer, text, model.device))
    return math.exp(-float(lp.mean()))
