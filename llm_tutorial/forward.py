"""One forward pass over texts: tokenize, right-pad into one batch, check the context, run.

What ``logprobs``, ``next_token``, ``surprise`` and ``logit_lens`` share before each reads the
logits its own way. Texts of different lengths go into one batch padded on the right, with an
attention mask that marks the padding 0; padding is done here, so a tokenizer without a pad
token works, and the tokenizer's ``padding_side`` is untouched. A text longer than the model's
context (``config.max_position_embeddings``) is refused: nothing is truncated silently.

>>> input_ids, mask, lengths = encode_batch(tok, ["The cat sat", "Hi"], model, min_tokens=1, name="text")
>>> lengths, mask.tolist()
([3, 1], [[1, 1, 1], [1, 0, 0]])
>>> forward(model, input_ids, mask).logits.shape  # one score per vocabulary entry, at every position
torch.Size([2, 3, 49152])
"""

from __future__ import annotations

__all__ = ["context_length"]


def context_length(model) -> int | None:
    """The longest sequence the model was built for (``max_position_embeddings``), or None.

    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> context_length(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, n_positions=32)))
    32
    """
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context(model, n_tokens: int, what: str) -> None:
    """Refuse ``n_tokens`` tokens when they do not fit the model's context."""
    ctx = context_length(model)
    if ctx is not None and n_tokens > ctx:
        raise ValueError(
            f"{what} has {n_tokens} tokens, more than the model's context of {ctx} "
            "(config.max_position_embeddings); shorten it, or score it in windows of at most "
            f"{ctx} tokens"
        )


def encode_batch(tokenizer, texts: list[str], model, *, min_tokens: int, name: str):
    """Tokenize each text (with the tokenizer's special tokens), check its length, and right-pad
    them into one batch. Returns ``(input_ids, attention_mask, lengths)`` on ``model.device``."""
    import torch

    rows = [tokenizer(text, add_special_tokens=True)["input_ids"] for text in texts]
    for text, ids in zip(texts, rows):
        if len(ids) < min_tokens:
            raise ValueError(
                f"{name} {text!r} has {len(ids)} token(s); at least {min_tokens} are needed: the "
                "first token has no logits before it, so a text is scored from its 2nd token on"
            )
        check_context(model, len(ids), f"{name} {text[:40]!r}{'...' if len(text) > 40 else ''}")
    width = max(len(ids) for ids in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pad = 0 if pad is None else pad
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, ids in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[r, : len(ids)] = 1
    lengths = [len(ids) for ids in rows]
    return input_ids.to(model.device), mask.to(model.device), lengths


def forward(model, input_ids, attention_mask=None, **kwargs):
    """The model's output on ``input_ids``, in inference mode (no gradients kept). With a mask
    that has left padding, each row's positions count from its first real token, as
    ``generate`` counts them (``position_ids_from_mask``)."""
    import torch

    from .steps import position_ids_from_mask

    check_context(model, input_ids.shape[1], "input_ids")
    input_ids = input_ids.to(model.device)
    extra = dict(kwargs)
    if attention_mask is not None:
        attention_mask = attention_mask.to(model.device)
        if bool((attention_mask[:, 0] == 0).any()):  # left padding
            extra["position_ids"] = position_ids_from_mask(attention_mask)
    with torch.inference_mode():
        return model(input_ids=input_ids, attention_mask=attention_mask, **extra)
