"""How fast does this machine generate? Per-token times of three decoding loops, and their ratios.

Speed is measured here and shown, never asserted in the test suite: on a shared 2-core machine a
wall-clock time swings by 15 % or more from one run to the next. ``python -m llm_tutorial bench``
prints the ratios the notebooks talk about (the hand-written cached loop against ``generate``,
no cache against a cache); notebook 04 draws the same measurement.

- ``time_decoding``: cumulative seconds at which each new token came out, for the no-cache loop,
  the cached hand loop (``lt.stream_tokens``) and ``model.generate`` (through a streamer); each
  run ``repeats`` times, interleaved, keeping the fastest duration of every step.
- ``speed_ratios``: tokens per second of one loop over another, from those times.
- ``time_batched_steps``: seconds of one decoding step for several batch sizes (notebook 07).
- ``time_speedups``: tokens per second of prompt-lookup and speculative decoding over greedy
  ``generate`` on one prompt, with their counted work; ``COPY_TASK``, a prompt whose answer
  copies it (notebook 07 §4).

``time_speedups`` times its runs with ``lt.time_runs``, which is in ``timing`` with the other
timing helpers.
"""

from __future__ import annotations

import math
import time

from .timing import _synchronize, time_runs

__all__ = ["COPY_TASK", "LOOPS", "speed_ratios", "time_batched_steps", "time_decoding", "time_speedups"]

LOOPS = ("no cache", "hand loop, cache", "generate()")
COPY_TASK = ("Repeat this text exactly, word for word: Water boils at 100 degrees Celsius at sea level. At higher "
             "altitudes the air pressure is lower, so water boils at a lower temperature, and food takes longer to "
             "cook. This is why pasta cooked in the mountains needs a few more minutes.")
"""A chat prompt whose greedy answer copies most of it: where prompt lookup guesses right."""


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


def time_batched_steps(model, input_ids, batch_sizes=(1, 2, 4, 8, 16, 32), *, steps: int = 4) -> dict[int, float]:
    """Seconds of one greedy decoding step of a batch, for each of ``batch_sizes``: the prompt
    ``input_ids`` ``[1, length]`` is prefilled once, its KV cache copied into every row
    (``batch_repeat_interleave``), and ``steps`` steps are timed after an untimed first one;
    the fastest step is kept. Every row holds the same text: the arithmetic does not depend on
    the values. Throughput is ``batch / seconds`` tokens a second; latency, ``seconds`` a token.

    >>> step = time_batched_steps(model, tok("Hi", return_tensors="pt").input_ids, (1, 2), steps=1)
    >>> sorted(step), all(s > 0 for s in step.values())
    ([1, 2], True)
    """
    import copy

    import torch

    from .arguments import check_input_ids, check_int

    check_input_ids(input_ids)
    if input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must hold one prompt ([1, length]), got batch size {input_ids.shape[0]}")
    check_int(steps, "steps", low=1)
    if not batch_sizes:
        raise ValueError("batch_sizes must be a non-empty sequence of positive ints")
    for batch in batch_sizes:
        check_int(batch, "batch_sizes", low=1)
    seconds = {}
    with torch.inference_mode():
        prefill = model(input_ids.to(model.device), use_cache=True)
        first = prefill.logits[:, -1:].argmax(dim=-1)
        for batch in batch_sizes:
            cache = copy.deepcopy(prefill.past_key_values)
            cache.batch_repeat_interleave(batch)
            ids, best = first.repeat(batch, 1), math.inf
            for step in range(steps + 1):
                _synchronize(model.device)
                start = time.perf_counter()
                ids = model(ids, past_key_values=cache, use_cache=True).logits[:, -1:].argmax(dim=-1)
                _synchronize(model.device)
                if step:  # the first step of each size is untimed: memory for the larger batch
                    best = min(best, time.perf_counter() - start)
            seconds[batch] = best
    return seconds


def time_speedups(model, inputs, *, max_new_tokens: int = 32, repeats: int = 2, drafts=None) -> dict[str, dict]:
    """Greedy ``model.generate``, ``lt.prompt_lookup_generate`` and ``lt.speculative_generate``
    with each draft of ``drafts`` (name -> draft model) on one prompt (``inputs``: a mapping with
    ``input_ids`` and ``attention_mask`` of batch size 1), timed with ``time_runs``. Returns, for
    ``"prompt lookup"`` and each draft's name: ``speedup`` (greedy's seconds over its seconds),
    ``stats`` (its ``SpeculationStats``) and ``same_tokens`` (whether its tokens equal greedy's;
    they should, up to near-ties). The generation's end-of-sequence token stops all of them.

    >>> result = time_speedups(model, tok("1, 2, 3, 1, 2, 3,", return_tensors="pt"), max_new_tokens=4, repeats=1)
    >>> result["prompt lookup"]["same_tokens"], result["prompt lookup"]["stats"].new_tokens
    (True, 4)
    """
    import torch

    from .arguments import check_int
    from .speculative import prompt_lookup_generate, speculative_generate

    check_int(max_new_tokens, "max_new_tokens", low=1)
    if not hasattr(inputs, "keys") or "input_ids" not in inputs or inputs["input_ids"].shape[0] != 1:
        raise ValueError("inputs must be a mapping with 'input_ids' of batch size 1 (one prompt)")
    ids = inputs["input_ids"].to(model.device)
    mask = inputs.get("attention_mask")
    mask = mask.to(model.device) if mask is not None else torch.ones_like(ids)
    eos = model.generation_config.eos_token_id
    pad = eos[0] if isinstance(eos, list) else eos
    options = {"max_new_tokens": max_new_tokens, "eos_token_id": eos, "return_stats": True}
    runs = {"greedy": lambda: model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                             do_sample=False, eos_token_id=eos, pad_token_id=pad),
            "prompt lookup": lambda: prompt_lookup_generate(model, ids, mask, **options)}
    for name, draft in (drafts or {}).items():
        runs[name] = lambda draft=draft: speculative_generate(model, draft, ids, mask, **options)
    seconds, results = time_runs(runs, repeats=repeats)
    greedy = results.pop("greedy")
    return {name: {"speedup": seconds["greedy"] / seconds[name], "stats": stats,
                   "same_tokens": torch.equal(sequences, greedy)}
            for name, (sequences, stats) in results.items()}
