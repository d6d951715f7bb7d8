"""How far one model's next-token distributions are from another's on the same text: the
log-probabilities of every next token, and their KL divergence, top-1 agreement and perplexity.

Notebook 02 compares each way of loading a model (half precision, 8-bit, 4-bit) with float32 this
way. Works on any causal LM, quantized or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["NextTokenComparison", "compare_next_token", "next_token_logprobs"]


def next_token_logprobs(model, input_ids):
    """Log-softmax of the model's logits for one sequence: a float32 CPU tensor
    ``[seq_len, vocab]``, where row ``t`` is the distribution of the token after position ``t``.

    ``input_ids``: a 1-D tensor, a ``[1, seq_len]`` tensor, or a mapping with ``input_ids``.

    >>> lp = next_token_logprobs(model, tok("Hello world", return_tensors="pt"))
    >>> lp.shape
    torch.Size([2, 49152])
    """
    import torch

    if hasattr(input_ids, "keys"):
        input_ids = input_ids["input_ids"]
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a tensor of token ids, not {type(input_ids).__name__}")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must hold one sequence ([seq_len] or [1, seq_len]), not {tuple(input_ids.shape)}")
    with torch.inference_mode():
        logits = model(input_ids=input_ids.to(model.device)).logits[0]
    return torch.log_softmax(logits.float(), dim=-1).cpu()


@dataclass
class NextTokenComparison:
    """How two models' next-token distributions differ over the positions of one text.

    - ``top1_agreement``: fraction of positions where both models rank the same token first;
    - ``mean_kl`` / ``max_kl``: KL(reference || other) in nats, averaged / worst over positions;
    - ``max_abs_logprob_diff``: largest difference in the log-probability of the text's own next
      tokens (None when no target ids were available);
    - ``perplexity`` / ``reference_perplexity``: of the text under each model (None likewise).
    """

    positions: int
    top1_agreement: float
    mean_kl: float
    max_kl: float
    max_abs_logprob_diff: float | None = None
    perplexity: float | None = None
    reference_perplexity: float | None = None


def _as_logprobs(value, input_ids, name: str):
    import torch

    if isinstance(value, torch.nn.Module):
        if input_ids is None:
            raise ValueError(f"input_ids is needed to run the model given as {name}")
        return next_token_logprobs(value, input_ids)
    if isinstance(value, torch.Tensor) and value.dim() == 2 and value.is_floating_point():
        return value.float().cpu()
    raise TypeError(f"{name} must be a model or a [seq_len, vocab] float tensor of log-probs, "
                    f"not {type(value).__name__}")


def compare_next_token(reference, other, input_ids=None) -> NextTokenComparison:
    """Compare the next-token distributions of ``other`` with those of ``reference`` on one text.

    ``reference`` and ``other`` are models (run on ``input_ids``) or the ``[seq_len, vocab]``
    log-prob tensors that ``next_token_logprobs`` returns (compute the reference once and reuse
    it). With ``input_ids``, the text's own next tokens are scored too (perplexity, max abs
    log-prob difference); the last position has no target and only enters the distribution
    measures.

    >>> import torch
    >>> a = torch.log_softmax(torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]), -1)
    >>> c = compare_next_token(a, a)
    >>> c.top1_agreement, c.mean_kl
    (1.0, 0.0)
    """
    import torch

    if hasattr(input_ids, "keys"):
        input_ids = input_ids["input_ids"]
    if input_ids is not None:
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a tensor of token ids, not {type(input_ids).__name__}")
        input_ids = input_ids.reshape(-1) if input_ids.dim() == 2 and input_ids.shape[0] == 1 else input_ids
        if input_ids.dim() != 1:
            raise ValueError("input_ids must hold one sequence ([seq_len] or [1, seq_len])")
    ref = _as_logprobs(reference, input_ids, "reference")
    new = _as_logprobs(other, input_ids, "other")
    if ref.shape != new.shape:
        raise ValueError(f"the two log-prob tensors differ in shape: {tuple(ref.shape)} vs {tuple(new.shape)}")
    if input_ids is not None and input_ids.shape[0] != ref.shape[0]:
        raise ValueError(f"input_ids has {input_ids.shape[0]} tokens but the log-probs {ref.shape[0]} positions")
    kl = (ref.exp() * (ref - new)).nan_to_num().sum(-1).clamp_min(0)
    result = NextTokenComparison(
        positions=ref.shape[0],
        top1_agreement=float((ref.argmax(-1) == new.argmax(-1)).float().mean()),
        mean_kl=float(kl.mean()),
        max_kl=float(kl.max()),
    )
    if input_ids is not None and ref.shape[0] >= 2:
        targets = input_ids[1:].cpu()[:, None]
        ref_t = ref[:-1].gather(-1, targets).squeeze(-1)
        new_t = new[:-1].gather(-1, targets).squeeze(-1)
        result.max_abs_logprob_diff = float((ref_t - new_t).abs().max())
        result.perplexity = math.exp(-float(new_t.mean()))
        result.reference_perplexity = math.exp(-float(ref_t.mean()))
    return result
