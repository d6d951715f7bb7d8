"""Output that prints the same on every CPU: numbers with a margin, choices with a gap.

A float32 forward pass gives slightly different numbers on different CPUs (AVX2, AVX-512 or AMX
kernels, MKL or oneDNN paths, ARM): up to about 3e-5 relative here, measured between CPU
profiles by ``scripts/cpu_profiles.py`` (see ``RTOL``). Rounding does not hide that: 11.2415
prints as 11.242 on one CPU and 11.241 on another, whatever the number of digits. Two tools make
a stored output hold on any CPU:

- ``fmt(x, digits)``: ``x`` rounded to ``digits`` significant digits (or ``decimals=``), but only
  where every value within twice the tolerance around ``x`` prints the same; otherwise with one
  digit fewer, and so on.
- ``top2_gap`` / ``greedy_gap`` / ``scores_gap`` / ``ranking_gap`` and ``check_gap``: a greedy text, a top-k list
  or a ranking flips when two logits are nearly tied; these measure the closest call (in logits)
  and, in checking mode, refuse to let a near-tie into a compared output.

Dropping a digit near a boundary cannot remove every flip: the point where fmt starts to drop
it is a boundary too. So in checking mode (``LLM_TUTORIAL_CHECK_STABLE``) fmt also proves that
every value within the tolerance prints the very text it returns, and raises
``UnstableOutputError`` where it does not. ``make execute`` records notebooks with
``LLM_TUTORIAL_CHECK_STABLE=record`` (the full tolerance); the test suite (``conftest.py``, and
the notebook kernels nbval starts) uses ``test``, half of it: a number recorded on one CPU then
passes on any CPU that drifts from it by less than half the tolerance, which covers every
profile measured. One native run is thus the proof for every printed number and compared choice.

>>> fmt(11.2415, 3), fmt(11.2415, 5), fmt(0.123456, decimals=2), fmt(0.25, decimals=1, percent=True)
('11.2', '11.24', '0.12', '25.0%')
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real

__all__ = [
    "ATOL_LOGIT",
    "GAP",
    "KINDS",
    "RTOL",
    "RTOL_PROB",
    "UnstableOutputError",
    "check_gap",
    "check_threshold",
    "checking",
    "fmt",
    "greedy_gap",
    "ranking_gap",
    "scores_gap",
    "top2_gap",
]

# Drift measured between CPU profiles by scripts/cpu_profiles.py (tests/test_cpu_profiles.py runs
# it): native AVX-512 (AMD EPYC), ATen/MKL/oneDNN limited to AVX2, ATen's avx512 kernels with
# oneDNN below AMX, ATen's no-SIMD "default" with MKL at SSE4.2, and MKL's COMPATIBLE path:
#   logits 6.0e-5 and log-probs 2.7e-5 absolute; probabilities 3.2e-5, perplexities 1.0e-5,
#   entropies 9.5e-6 relative; the same top-10 lists and greedy texts.
# Each tolerance is 2.5 times the largest drift of its kind: the test suite checks half of it,
# still 1.25 times what was measured (tests/test_cpu_profiles.py asserts this on every run).
RTOL = 2.5e-5
"""Relative change that must not change the text of a value (``kind="value"``: perplexities,
entropies, norms, ratios: anything computed by summing many terms)."""
RTOL_PROB = 8e-5
"""Relative change that must not change the text of a probability (``kind="prob"``): a
probability moves, relatively, as much as its log-prob moves in absolute terms."""
ATOL_LOGIT = 1.5e-4
"""Absolute change that must not change the text of a logit, a log-prob, a surprise or any
difference of them in nats (``kind="logit"``): their relative change is large near 0."""
GAP = 1e-3
"""Smallest logit gap (top-1 vs top-2, or between neighbours of a ranking) allowed in a compared
output: eight times the largest drift of a logit difference measured between CPU profiles."""
KINDS = {"value": (RTOL, 0.0), "prob": (RTOL_PROB, 0.0), "logit": (0.0, ATOL_LOGIT), "exact": (0.0, 0.0)}
"""``kind`` -> (relative, absolute) tolerance. ``"exact"``: a number no CPU can change (a byte
count, a ratio of integers), printed as it is rounded."""

CHECK_ENV = "LLM_TUTORIAL_CHECK_STABLE"
_CHECK_SHARE = {"record": 1.0, "1": 1.0, "true": 1.0, "yes": 1.0, "test": 0.5}


class UnstableOutputError(ValueError):
    """A printed number or a compared choice could come out differently on another CPU."""


def checking() -> float:
    """The share of the tolerance that checking mode proves: 1.0 when recording notebooks
    (``LLM_TUTORIAL_CHECK_STABLE=record``), 0.5 under the test suite (``test``), 0.0 when off.

    >>> checking() in (0.0, 0.5, 1.0)
    True
    """
    value = os.environ.get(CHECK_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return 0.0
    if value not in _CHECK_SHARE:
        raise ValueError(f"{CHECK_ENV} must be 'record', 'test' or empty, not {value!r}")
    return _CHECK_SHARE[value]


# ---------------------------------------------------------------------------------------------
# numbers


def _number(x, name: str = "x") -> float:
    if isinstance(x, bool):
        raise TypeError(f"{name} must be a number, not bool")
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:  # a 0-d torch or NumPy scalar
        x = x.item()
    if not isinstance(x, Real):
        raise TypeError(f"{name} must be a real number (or a 0-d tensor), not {type(x).__name__}")
    return float(x)


def _count(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, not {value!r}")
    return int(value)


def _plain(x: float, digits: int | None, decimals: int | None, percent: bool) -> str:
    """``x`` rounded, with no margin check: ``digits`` significant digits or ``decimals``."""
    v = 100.0 * x if percent else x
    if decimals is None:
        decimals = digits - 1 - (math.floor(math.log10(abs(v))) if v else 0)
    text = f"{v:.{decimals}f}" if decimals >= 0 else f"{round(v, decimals):.0f}"
    if text.startswith("-") and not text.strip("-0."):
        text = text[1:]  # "-0.00" and "0.00" are the same number
    return text + ("%" if percent else "")


def _levels(digits: int | None, decimals: int | None):
    """(digits, decimals) to try, most precise first, one digit fewer each time."""
    if decimals is None:
        return [(d, None) for d in range(digits, 0, -1)]
    return [(None, d) for d in range(decimals, decimals - 4, -1)]


def _margin(x: float, rtol: float, atol: float) -> float:
    return 2 * (rtol * abs(x) + atol)


def _rounded(x: float, digits, decimals, percent: bool, rtol: float, atol: float):
    """``(text, level)``: the most precise text that every value within twice the tolerance of
    ``x`` prints as, and the index of its level in ``_levels``; ``(None, None)`` if none has one.
    (A digit whose step is below 4 tolerances never qualifies: it is noise.)"""
    margin = _margin(x, rtol, atol)
    for index, (level_digits, level_decimals) in enumerate(_levels(digits, decimals)):
        texts = {_plain(v, level_digits, level_decimals, percent) for v in (x - margin, x, x + margin)}
        if len(texts) == 1:
            return texts.pop(), index
    return None, None


def _step(x: float, digits, decimals, percent: bool) -> float:
    """The rounding step of a level, in units of ``x``."""
    scale = 100.0 if percent else 1.0
    if decimals is None:
        v = scale * x
        decimals = digits - 1 - (math.floor(math.log10(abs(v))) if v else 0)
    return 10.0 ** -decimals / scale


def _holds(x: float, near: float, digits, decimals, percent: bool, rtol: float, atol: float) -> bool:
    """Does ``_rounded`` give the same text for every value in ``[x - near, x + near]``?

    Exact, not sampled: the chosen level must have no rounding boundary within that interval
    widened by the margin, and every finer level must be refused everywhere in it (each of its
    points within a margin of one of that level's boundaries)."""
    low, high = x - near, x + near
    if low * high <= 0 and x != 0 or (decimals is None and low and high and
                                      math.floor(math.log10(abs(low))) != math.floor(math.log10(abs(high)))):
        return False  # a change of sign or of decade: leave it to fewer digits
    _, chosen = _rounded(x, digits, decimals, percent, rtol, atol)
    if chosen is None:
        return False
    m_small = _margin(min(abs(low), abs(high)), rtol, atol)
    m_large = _margin(max(abs(low), abs(high)), rtol, atol)
    for index, (level_digits, level_decimals) in enumerate(_levels(digits, decimals)[: chosen + 1]):
        step = _step(x, level_digits, level_decimals, percent)
        # boundaries sit at (n + 1/2) * step
        first = math.ceil((low - m_large) / step - 0.5)
        if index == chosen:
            return (first + 0.5) * step > high + m_large
        # a finer level: no point of the interval may be farther than m_small from a boundary
        if step <= 2 * m_small:
            continue
        n = math.floor(low / step - 0.5)
        while (n + 0.5) * step - m_small <= high:
            gap_start, gap_end = (n + 0.5) * step + m_small, (n + 1.5) * step - m_small
            if gap_start < high and gap_end > low:
                return False
            n += 1
    return False


def fmt(x, digits: int = 3, *, decimals: int | None = None, kind: str = "value",
        percent: bool = False) -> str:
    """``x`` as text that is the same on every CPU: ``digits`` significant digits (or
    ``decimals`` after the point; ``percent`` shows ``100 * x`` with a ``%``), with fewer
    digits when ``x`` lies too close to a rounding boundary.

    ``kind`` says how much another CPU may move ``x`` (``KINDS``): ``"value"`` (default; sums
    such as perplexities and entropies, relative ``RTOL``), ``"prob"`` (``RTOL_PROB``),
    ``"logit"`` (logits, log-probs and nats, absolute ``ATOL_LOGIT``) or ``"exact"`` (nothing).
    "Too close" means within twice that tolerance: the text printed is the one that every value
    that far from ``x`` also prints; so a digit whose step is below 4 tolerances is never shown
    (it would be noise): with ``kind="logit"``, 2 decimals at most. A number printed with a step
    ``s`` is dropped a digit for about ``4 * tol / s`` of its values (and refused in checking
    mode for as many): print probabilities and logits with few digits.

    Dropping a digit moves the problem rather than removing it: where fmt starts to drop it is
    a boundary of its own. So in checking mode (``checking()``) fmt also proves that every value
    within ``checking()`` times the tolerance prints the very same text, or it raises
    ``UnstableOutputError``. Integers print as they are; NaN and infinities as Python does.

    >>> fmt(145.954), fmt(4831.2), fmt(1.0712), fmt(-0.0004, decimals=2)
    ('146', '4830', '1.07', '0.00')
    >>> fmt(4845.04)  # within 2 * RTOL * 4845 of 4845, where 3 digits would flip: 2 digits
    '4800'
    >>> fmt(-2.0049, decimals=2, kind="logit"), fmt(-2.0049, decimals=2, kind="exact")
    ('-2.0', '-2.00')
    """
    if isinstance(x, Integral) and not isinstance(x, bool):
        return f"{int(x) * (100 if percent else 1)}{'%' if percent else ''}"
    x = _number(x)
    if decimals is None:
        _count(digits, "digits", 1)
    else:
        decimals = _count(decimals, "decimals", 0)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    rtol, atol = KINDS[kind]
    if not math.isfinite(x):
        return str(x)
    text, _ = _rounded(x, digits, decimals, percent, rtol, atol)
    share = checking()
    if share:
        # the choice of digits must not flip either: every value another CPU may compute must
        # print exactly the same text
        near = share * (rtol * abs(x) + atol)
        if text is None or (near > 0 and not _holds(x, near, digits, decimals, percent, rtol, atol)):
            raise UnstableOutputError(
                f"{x!r} printed as {text!r} is too close to where that text changes (another CPU "
                f"may compute a value {near:.1e} away): print it with fewer digits (digits="
                f"{digits}, decimals={decimals} now), in an ignored cell, or choose another example"
            )
    if text is None:  # only with a huge tolerance: show what this CPU computed
        text = _plain(x, digits, decimals, percent)
    return text


# ---------------------------------------------------------------------------------------------
# choices


def top2_gap(logits):
    """Top-1 minus top-2 logit at each position (a tensor of shape ``logits.shape[:-1]``): how
    far greedy decoding was from choosing another token there.

    >>> import torch
    >>> top2_gap(torch.tensor([[1.0, 3.0, 2.5], [0.0, 0.0, -1.0]])).tolist()
    [0.5, 0.0]
    """
    import torch

    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point torch.Tensor, not {type(logits).__name__}")
    if logits.shape[-1] < 2:
        raise ValueError(f"logits need at least 2 entries in the last dimension, got {tuple(logits.shape)}")
    top = logits.float().topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def ranking_gap(values, k: int | None = None) -> float:
    """Smallest difference between neighbours among the ``k`` largest ``values`` and the one
    after them (all of them when ``k`` is None): how close a top-k list came to another order
    or to another member. ``values`` is 1-D (logits, or log-probs).

    >>> import torch
    >>> ranking_gap(torch.tensor([5.0, 1.0, 4.5, 0.9]), k=2)
    0.5
    >>> ranking_gap(torch.tensor([5.0, 1.0, 4.5, 0.75]))
    0.25
    """
    import torch

    values = torch.as_tensor(values).detach().float().cpu()
    if values.dim() != 1 or values.numel() < 2:
        raise ValueError(f"values must be 1-D with at least 2 entries, not shape {tuple(values.shape)}")
    n = values.numel() if k is None else min(_count(k, "k", 1) + 1, values.numel())
    top = values.topk(n).values
    finite = top[torch.isfinite(top)]  # entries removed by a filter (-inf) cannot swap
    return float((finite[:-1] - finite[1:]).min()) if finite.numel() > 1 else math.inf


def greedy_gap(model, sequences, prompt_length: int, attention_mask=None, *, eos_token_id=None) -> float:
    """The closest call of a greedy generation: the smallest top-1/top-2 logit gap over the
    positions that chose ``sequences[:, prompt_length:]``, from one forward pass over the whole
    sequence (teacher forcing). Pass the generation's ``attention_mask`` (prompt mask plus ones,
    or ``sequences != pad`` style) for a left-padded batch. Finished rows (pads after EOS) count
    only up to their EOS: ``eos_token_id`` (an int or a list), as passed to ``generate``, or the
    model's ``generation_config`` one. The gap is that of the raw logits: for a generation with
    logits processors (``repetition_penalty``...) use ``top2_gap`` on the scores ``generate``
    returns (``output_scores=True, return_dict_in_generate=True``) instead.

    >>> ids = tok("The capital of France is", return_tensors="pt").input_ids
    >>> out = model.generate(ids, max_new_tokens=3, do_sample=False)
    >>> greedy_gap(model, out, ids.shape[1]) > GAP
    True
    """
    import torch

    from .generation import position_ids_from_mask

    if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2:
        raise TypeError("sequences must be a 2-D torch.Tensor [batch, length] (generate's output)")
    if getattr(model.config, "is_encoder_decoder", False):
        raise TypeError("greedy_gap takes a decoder-only model; for an encoder-decoder, apply top2_gap "
                        "to the decoder's logits (one pass with decoder_input_ids)")
    start = _count(prompt_length, "prompt_length", 1)
    if start >= sequences.shape[1]:
        raise ValueError(f"prompt_length ({start}) must be shorter than the sequences ({sequences.shape[1]})")
    extra = {}
    if attention_mask is not None:
        if attention_mask.shape[1] < sequences.shape[1]:  # the prompt's mask: generated tokens count
            ones = attention_mask.new_ones(attention_mask.shape[0], sequences.shape[1] - attention_mask.shape[1])
            attention_mask = torch.cat([attention_mask, ones], dim=1)
        attention_mask = attention_mask.to(model.device)
        extra = {"attention_mask": attention_mask, "position_ids": position_ids_from_mask(attention_mask)}
    with torch.inference_mode():
        logits = model(input_ids=sequences.to(model.device), **extra).logits[:, start - 1:-1]
    gaps = top2_gap(logits)
    eos = eos_token_id
    if eos is None and model.generation_config is not None:
        eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if eos:
        chosen = sequences[:, start:].to(gaps.device)
        done = torch.isin(chosen, torch.tensor(eos, device=gaps.device)).long().cumsum(-1)
        after_eos = (done - torch.isin(chosen, torch.tensor(eos, device=gaps.device)).long()) > 0
        gaps = gaps.masked_fill(after_eos, math.inf)
    return float(gaps.min())


def scores_gap(output, eos_token_id=None) -> float:
    """The closest call of a greedy ``generate(..., output_scores=True, return_dict_in_generate=True)``:
    the smallest top-1/top-2 gap among the scores each step chose from (after its logits
    processors: a repetition penalty, a ban, a bias, a constraint), each row counted up to its
    first ``eos_token_id`` (an int or a list, as passed to ``generate``; None counts every step).
    Unlike ``greedy_gap`` it needs no second forward pass.

    >>> ids = tok("The capital of France is", return_tensors="pt").input_ids
    >>> out = model.generate(ids, max_new_tokens=3, do_sample=False, output_scores=True,
    ...                      return_dict_in_generate=True)
    >>> scores_gap(out, tok.eos_token_id) > GAP
    True
    """
    import torch

    scores = getattr(output, "scores", None)
    if not scores:
        raise ValueError("output must come from generate(..., output_scores=True, return_dict_in_generate=True)")
    gaps = top2_gap(torch.stack(scores, dim=1))  # [batch, steps]
    eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    if eos:
        chosen = output.sequences[:, -gaps.shape[1]:].to(gaps.device)
        is_eos = torch.isin(chosen, torch.tensor(eos, device=gaps.device)).long()
        gaps = gaps.masked_fill(is_eos.cumsum(-1) - is_eos > 0, math.inf)  # pads after a row's EOS
    return float(gaps.min())


def check_gap(gap, what: str = "this choice", *, tolerance: float = GAP) -> float:
    """Return ``gap``; in checking mode, raise ``UnstableOutputError`` when it is below
    ``tolerance`` (half of it under the test suite, where the recorded gap may have shrunk by a
    CPU's drift): the choice could flip on another CPU, so show it in an ignored cell instead.

    >>> check_gap(0.8, "the greedy answer")
    0.8
    """
    gap = _number(gap, "gap")
    share = checking()
    if share and not gap >= share * tolerance:
        raise UnstableOutputError(
            f"{what} has a logit gap of {gap:.2e} < {tolerance:g}: two candidates are nearly tied, "
            "so another CPU may choose the other one. Show it in a # NBVAL_IGNORE_OUTPUT cell "
            "(assert on it there), or choose another example"
        )
    return gap


def check_threshold(values, threshold: float, what: str = "a count at a threshold", *,
                    kind: str = "prob") -> float:
    """For a result that counts or keeps the ``values`` on one side of ``threshold`` (the tokens
    inside top-p's nucleus, above min-p's cut, over a probability): the smallest distance of a
    value to the threshold. In checking mode, raise ``UnstableOutputError`` when a value is within
    the tolerance of ``kind`` of it (half of it under the test suite): another CPU could put
    it on the other side.

    >>> import torch
    >>> check_threshold(torch.tensor([0.25, 0.5, 0.875]), 0.75)
    0.125
    """
    import torch

    share = checking()
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    values = (values.detach().double() if isinstance(values, torch.Tensor)
              else torch.tensor(values, dtype=torch.float64)).flatten().cpu()
    threshold = _number(threshold, "threshold")
    rtol, atol = KINDS[kind]
    distance = (values - threshold).abs()
    if share and bool((distance < share * (rtol * values.abs() + atol)).any()):
        raise UnstableOutputError(
            f"{what}: a value lies within the {kind} tolerance of the threshold {threshold} (distance "
            f"{float(distance.min()):.1e}), so another CPU may put it on the other side; choose "
            "another threshold or example, or show the result in a # NBVAL_IGNORE_OUTPUT cell"
        )
    return float(distance.min())
