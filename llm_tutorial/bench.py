"""How fast does this machine generate? Per-token times of three decoding loops, and their ratios.

Speed is measured here and shown, never asserted in the test suite: on a shared 2-core machine a
wall-clock time swings by 15 % or more from one run to the next. ``python -m llm_tutorial bench``
prints the ratios the notebooks talk about (the hand-written cached loop against ``generate``,
no cache against a cache); notebook 04 draws the same measurement.

- ``time_decoding``: cumulative seconds at which each new token came out, for the no-cache loop,
  the cached hand loop (``lt.stream_tokens``) and ``model.generate`` (through a streamer); each
  run ``repeats`` times, interleaved, keeping the fastest duration of every step.
- ``speed_ratios``: tokens per second of one loop over another, from those times.
"""

from __future__ import annotations

import time

__all__ = ["LOOPS", "speed_ratios", "time_decoding"]

LOOPS = ("no cache", "hand loop, cache", "generate()")


def _hand_loop(model, inputs, max_new_tokens: int, use_cache: bool):
    from .generation import stream_tokens

    start, times, tokens = time.perf_counter(), [], []
    for step in stream_tokens(model, inputs["input_ids"], inputs.get("attention_mask"),
                              max_new_tokens=max_new_tokens, use_cache=use_cache, eos_token_id=None):
        times.append(time.perf_counter() - start)
        tokens.append(int(step.tokens[0]))
    return times, tokens


def _generate(model, inputs, max_new_tokens: int):
    import torch
    from transformers.generation.streamers import BaseStreamer

    class StepTimer(BaseStreamer):
        """Records when generate() hands out each new token (its first put() is the prompt)."""

        def __init__(self):
            self.start, self.times, self.tokens, self.prompt_seen = time.perf_counter(), [], [], False

        def put(self, value):
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            self.times.append(time.perf_counter() - self.start)
            self.tokens.append(int(value.reshape(-1)[0]))

        def end(self):
            pass

    timer = StepTimer()
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=None,
                       streamer=timer)
    return timer.times, timer.tokens


def _fastest(runs) -> list[float]:
    """Cumulative times built from the fastest of the runs at every step."""
    steps = [[b - a for a, b in zip([0.0, *times], times)] for times, _ in runs]
    best = [min(durations) for durations in zip(*steps)]
    return [sum(best[: k + 1]) for k in range(len(best))]


def time_decoding(model, inputs, *, max_new_tokens: int = 32, repeats: int = 2,
                  loops=LOOPS) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Greedy-generate ``max_new_tokens`` tokens from one prompt (``inputs``: a mapping with
    ``input_ids`` and ``attention_mask`` of batch size 1) with each of ``loops``, ``repeats``
    times, interleaved so that all see the same load. Returns ``(times, tokens)``:
    ``times[loop][k]`` is the cumulative time at which token ``k + 1`` came out (fastest duration
    of every step over the repeats), ``tokens[loop]`` the token ids (the same in every repeat, or
    a ValueError). EOS does not stop the loops: each produces ``max_new_tokens`` tokens.

    >>> times, tokens = time_decoding(model, tok("Hi", return_tensors="pt"), max_new_tokens=3, repeats=1)
    >>> sorted(times) == sorted(LOOPS), tokens["no cache"] == tokens["generate()"]
    (True, True)
    """
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, not {max_new_tokens!r}")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, not {repeats!r}")
    unknown = set(loops) - set(LOOPS)
    if unknown or not loops:
        raise ValueError(f"loops must be a non-empty subset of {LOOPS}, not {loops!r}")
    if not hasattr(inputs, "keys") or "input_ids" not in inputs or inputs["input_ids"].shape[0] != 1:
        raise ValueError("inputs must be a mapping with 'input_ids' of batch size 1 (one prompt)")
    inputs = {k: v.to(model.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
    run = {
        "no cache": lambda: _hand_loop(model, inputs, max_new_tokens, use_cache=False),
        "hand loop, cache": lambda: _hand_loop(model, inputs, max_new_tokens, use_cache=True),
        "generate()": lambda: _generate(model, inputs, max_new_tokens),
    }
    runs = {loop: [] for loop in loops}
    for _ in range(repeats):
        for loop in loops:
            runs[loop].append(run[loop]())
    tokens = {}
    for loop, results in runs.items():
        if any(r[1] != results[0][1] for r in results):
            raise ValueError(f"{loop}: the repeats gave different tokens")
        tokens[loop] = results[0][1]
    return {loop: _fastest(results) for loop, results in runs.items()}, tokens


def speed_ratios(times: dict[str, list[float]], n: int | None = None) -> dict[str, float]:
    """Tokens per second of the cached hand loop over ``generate``, and of the cache over no
    cache (for the first ``n`` tokens; all by default), from ``time_decoding``'s times.

    >>> speed_ratios({"no cache": [1.0, 3.0], "hand loop, cache": [1.0, 1.5], "generate()": [1.0, 2.0]})
    {'hand loop / generate()': 1.3333333333333333, 'cache / no cache': 2.0}
    """
    ratios = {}
    last = {loop: t[(n or len(t)) - 1] for loop, t in times.items()}
    if "hand loop, cache" in last and "generate()" in last:
        ratios["hand loop / generate()"] = last["generate()"] / last["hand loop, cache"]
    if "hand loop, cache" in last and "no cache" in last:
        ratios["cache / no cache"] = last["no cache"] / last["hand loop, cache"]
    return ratios
