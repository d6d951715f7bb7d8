"""Argument checks shared by every module: a wrong argument is refused before any work is done,
with a message that names the parameter, says what is allowed and shows what was given.

A bool is not accepted as a number (``True`` is an ``int`` to Python, but ``top_k=True`` is a
mistake), and a number is not accepted for a bool.

>>> check_int(50, "top_k", low=0)
50
>>> check_number(0.9, "top_p", low=0, high=1, low_open=True)
0.9
>>> check_number(1.5, "top_p", low=0, high=1, low_open=True)
Traceback (most recent call last):
ValueError: top_p must be a number in (0, 1], got 1.5
>>> check_int(True, "top_k")
Traceback (most recent call last):
TypeError: top_k must be an int, not bool
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

__all__ = ["check_bool", "check_input_ids", "check_int", "check_logits", "check_number", "check_texts"]


def check_bool(value, name: str) -> bool:
    """``value`` itself, if it is True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


def check_int(value, name: str, *, low: int | None = None, high: int | None = None, hint: str = "") -> int:
    """``value`` as an int, checked to be in ``[low, high]`` (either end may be None); ``hint``
    ends the message."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = f"in [{low}, {high}]" if low is not None and high is not None else (
            f">= {low}" if low is not None else f"<= {high}")
        raise ValueError(f"{name} must be an int {allowed}, got {value!r}{hint}")
    return int(value)


def _interval(low, high, low_open: bool, what: str | None) -> str:
    if low is not None and high is not None:
        return f"{what or 'a number'} in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{what or 'a finite number'} {'>' if low_open else '>='} {low:g}"
    return what or "a finite number"


def check_number(value, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, what: str | None = None, hint: str = "") -> float:
    """``value`` as a float, checked to be finite and in ``[low, high]`` (``(low, high]`` with
    ``low_open``; either end may be None). ``what`` names the kind of number in the message
    (``"a probability"``), ``hint`` ends it.

    >>> check_number(0, "temperature", low=0, low_open=True, hint=". Use do_sample=False")
    Traceback (most recent call last):
    ValueError: temperature must be a finite number > 0, got 0. Use do_sample=False
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    number = float(value)
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and number > high
    if math.isnan(number) or math.isinf(number) or too_low or too_high:
        raise ValueError(f"{name} must be {_interval(low, high, low_open, what)}, got {value!r}{hint}")
    return number


def _check_2d(value, name: str, axes: str, hint: str) -> None:
    """A torch tensor with two dimensions, named by ``axes`` (``"[batch, vocab]"``)."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {axes}, not {type(value).__name__}")
    if value.dim() != 2:
        raise ValueError(f"{name} must be 2-D {axes}, got shape {tuple(value.shape)}; {hint}")


def check_logits(logits, name: str = "logits") -> None:
    """Next-token scores: a floating-point tensor ``[batch, vocab]`` (one row per sequence)."""
    _check_2d(logits, name, "[batch, vocab]",
              "for one row use logits[None, :], for model output use logits[:, -1, :]")
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, not {logits.dtype}")
    if logits.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one vocabulary entry, got shape {tuple(logits.shape)}")


def check_input_ids(input_ids, attention_mask=None, *, min_len: int = 1) -> None:
    """Token ids ``[batch, seq_len]`` (integers >= 0, at least ``min_len`` per row) and their
    optional attention mask (same shape, 1 for a real token, 0 for padding, a real token in
    every row)."""
    import torch

    _check_2d(input_ids, "input_ids", "[batch, seq_len]",
              "for one prompt use input_ids[None, :] (or the tokenizer's return_tensors='pt')")
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integer token ids, not {input_ids.dtype}")
    if input_ids.shape[0] < 1 or input_ids.shape[1] < min_len:
        raise ValueError(f"input_ids must hold at least {min_len} token(s) per row, got shape "
                         f"{tuple(input_ids.shape)}")
    if input_ids.numel() and int(input_ids.min()) < 0:
        raise ValueError(f"input_ids must be >= 0 (token ids), got {int(input_ids.min())}")
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor or None, not {type(attention_mask).__name__}")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                         f"got {tuple(attention_mask.shape)}")
    if attention_mask.is_floating_point() or not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token), as integers or bools")
    if not bool(attention_mask.any(dim=-1).all()):
        raise ValueError("attention_mask has a row with no real token (all 0): every sequence needs one")


def check_texts(value, name: str) -> tuple[list[str], bool]:
    """``(texts, is_batch)`` from one str or a non-empty list of non-empty str.

    >>> check_texts("Hi", "text"), check_texts(["Hi", "Yo"], "text")
    ((['Hi'], False), (['Hi', 'Yo'], True))
    """
    if isinstance(value, str):
        texts, batch = [value], False
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        texts, batch = list(value), True
        if not texts:
            raise ValueError(f"{name} must be a str or a non-empty list of str, not an empty list")
    else:
        raise TypeError(f"{name} must be a str or a list of str, not {type(value).__name__}")
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str or a list of str; found a {type(text).__name__}")
        if not text:
            raise ValueError(
                f"{name} must not be an empty string: an empty text has no tokens, so there is "
                "nothing to feed the model and nothing to score"
            )
    return texts, batch
