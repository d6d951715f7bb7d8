"""How long a block of code or a ``generate`` call takes: wall-clock time, measured.

Speed is shown, never asserted in the test suite: a wall-clock time swings from one run to the
next. Notebook 02 times loading and generation with these; notebook 07 and
``python -m llm_tutorial bench`` time their runs with ``time_runs``.

- ``timer``: wall-clock seconds of a ``with`` block (a ``Timer``).
- ``time_generation``: one timed ``generate`` call and how many tokens it made (a
  ``GenerationTiming``, with tokens per second).
- ``time_runs``: the fastest of a few interleaved runs of each of several calls.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .arguments import check_int

__all__ = ["GenerationTiming", "Timer", "time_generation", "time_runs", "timer"]


@dataclass
class Timer:
    """Wall-clock seconds of a ``timer()`` block (``seconds`` is set when the block ends)."""

    seconds: float = math.nan


@contextmanager
def timer():
    """Time a block with ``time.perf_counter``.

    >>> with timer() as t:
    ...     _ = sum(range(1000))
    >>> 0 <= t.seconds < 1
    True
    """
    result = Timer()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start


@dataclass
class GenerationTiming:
    """One timed ``generate`` call: ``new_tokens`` generated (summed over the batch, up to and
    including each row's end-of-sequence token) in ``seconds`` of wall-clock time, prompt
    processing included. ``sequences`` is what ``generate`` returned."""

    new_tokens: int
    seconds: float
    sequences: Any = field(repr=False)
    prompt_length: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else math.inf

    def new_token_ids(self, row: int = 0) -> list[int]:
        """The ids generated after the prompt for one row (padding after its end included)."""
        return self.sequences[row, self.prompt_length:].tolist()


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _synchronize_all() -> None:
    """Wait for every kernel queued on the GPU (nothing to do without CUDA): a timed call that
    launched GPU work is over only when its kernels are."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_generation(model, inputs, *, max_new_tokens: int = 32, warmup: bool = False,
                    **generate_kwargs) -> GenerationTiming:
    """Run ``model.generate`` once (greedy unless ``generate_kwargs`` say otherwise) and time it.

    ``inputs`` is what a tokenizer or ``lt.chat_inputs`` returns (a mapping with ``input_ids``)
    or a 2-D tensor of token ids; it is moved to ``model.device``. ``warmup=True`` first runs a
    one-token generation (untimed), so one-time costs (memory allocation, kernel selection) are
    left out. On a GPU the clock stops after ``torch.cuda.synchronize``.

    >>> t = time_generation(model, tok("Hello", return_tensors="pt"), max_new_tokens=8)
    >>> t.new_tokens <= 8, t.tokens_per_second > 0
    (True, True)
    """
    import torch

    check_int(max_new_tokens, "max_new_tokens", low=1)
    if isinstance(inputs, torch.Tensor):
        inputs = {"input_ids": inputs}
    if not hasattr(inputs, "keys") or "input_ids" not in inputs:
        raise TypeError("inputs must be a 2-D tensor of token ids or a mapping with 'input_ids'")
    inputs = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    if inputs["input_ids"].dim() != 2:
        raise ValueError("inputs['input_ids'] must be 2-D [batch, seq_len]")
    options = {"do_sample": False, **generate_kwargs}
    config = model.generation_config
    if "pad_token_id" not in options and config.pad_token_id is None and config.eos_token_id is not None:
        eos = config.eos_token_id
        options["pad_token_id"] = eos[0] if isinstance(eos, list) else eos
    with torch.inference_mode():
        if warmup:
            model.generate(**inputs, **{**options, "max_new_tokens": 1})
        _synchronize(model.device)
        start = time.perf_counter()
        sequences = model.generate(**inputs, max_new_tokens=max_new_tokens, **options)
        _synchronize(model.device)
        seconds = time.perf_counter() - start
    prompt_length = inputs["input_ids"].shape[1]
    eos = options.get("eos_token_id", config.eos_token_id)
    eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    new_tokens = 0
    for row in sequences[:, prompt_length:].tolist():
        ends = [i for i, token in enumerate(row) if token in eos_ids]
        new_tokens += ends[0] + 1 if ends else len(row)
    return GenerationTiming(new_tokens, seconds, sequences, prompt_length)


def time_runs(runs: dict, *, repeats: int = 2) -> tuple[dict[str, float], dict]:
    """Call each zero-argument function of ``runs`` (name -> function) ``repeats`` times,
    interleaved so that all see the same load, and return ``(seconds, results)``: the fastest
    wall-clock seconds of each, and what its last call returned. On a GPU each timed call ends
    when its kernels have finished, not when they were queued.

    >>> seconds, results = time_runs({"sum": lambda: sum(range(100))}, repeats=1)
    >>> results["sum"], seconds["sum"] >= 0
    (4950, True)
    """
    check_int(repeats, "repeats", low=1)
    if not isinstance(runs, dict) or not runs or not all(callable(f) for f in runs.values()):
        raise TypeError("runs must be a non-empty dict of name -> function with no arguments")
    seconds = dict.fromkeys(runs, math.inf)
    results = {}
    for _ in range(repeats):
        for name, run in runs.items():
            _synchronize_all()
            start = time.perf_counter()
            results[name] = run()
            _synchronize_all()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return seconds, results
