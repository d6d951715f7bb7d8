"""Tests for llm_tutorial.timing: the block timer, one timed generation, interleaved runs. No
wall-clock time is asserted: the clock is faked, or only counts and token ids are checked."""

import math

import pytest
import torch

import llm_tutorial as lt
from llm_tutorial import timing

# --- timer -------------------------------------------------------------------------------------

def test_timer_measures_the_block(monkeypatch):
    clock = iter([10.0, 10.25])  # a fake perf_counter: start, end
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    with lt.timer() as t:
        assert math.isnan(t.seconds)
    assert t.seconds == 0.25


def test_timer_sets_seconds_even_when_the_block_raises():
    with pytest.raises(KeyError), lt.timer() as t:
        raise KeyError("x")
    assert not math.isnan(t.seconds)  # set (no wall-clock value is asserted)


# --- time_generation ---------------------------------------------------------------------------

def test_time_generation_matches_generate(model, tok):
    inputs = lt.chat_inputs(tok, "What is the capital of France?")
    timing = lt.time_generation(model, inputs, max_new_tokens=12)
    with torch.inference_mode():
        expected = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert torch.equal(timing.sequences, expected)
    new = expected[0, inputs["input_ids"].shape[1]:].tolist()
    assert timing.prompt_length == inputs["input_ids"].shape[1]
    assert timing.new_token_ids() == new
    stop = new.index(tok.eos_token_id) + 1 if tok.eos_token_id in new else len(new)
    assert timing.new_tokens == stop
    rate = timing.tokens_per_second  # consistent with the counts, whatever the time was
    assert rate * timing.seconds == pytest.approx(timing.new_tokens)


def test_time_generation_counts_each_row_up_to_its_end(tiny_llama):
    tok_left = lt.load_tokenizer(padding_side="left")
    batch = tok_left(["Hello", "Write a long story about a dragon and a knight"], return_tensors="pt",
                     padding=True)
    free = lt.time_generation(tiny_llama, batch, max_new_tokens=6, eos_token_id=None)
    assert free.new_tokens == 12
    eos = int(free.sequences[0, -4])  # row 0's third new token: that row stops early
    timing = lt.time_generation(tiny_llama, batch, max_new_tokens=6, eos_token_id=eos, warmup=True)
    expected = 0
    for row in timing.sequences[:, batch["input_ids"].shape[1]:].tolist():
        expected += row.index(eos) + 1 if eos in row else len(row)
    assert timing.new_tokens == expected < 12


def test_time_generation_accepts_a_tensor(model, tok):
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    timing = lt.time_generation(model, ids, max_new_tokens=2, min_new_tokens=2)
    assert timing.new_tokens == 2 and timing.sequences.shape == (1, ids.shape[1] + 2)


@pytest.mark.parametrize(("bad", "error"), [(0, ValueError), (-1, ValueError), (2.5, TypeError),
                                            (True, TypeError), ("8", TypeError)])
def test_time_generation_rejects_bad_max_new_tokens(model, tok, bad, error):
    with pytest.raises(error, match="max_new_tokens"):
        lt.time_generation(model, tok("Hi", return_tensors="pt"), max_new_tokens=bad)


def test_time_generation_rejects_bad_inputs(model):
    with pytest.raises(TypeError, match="inputs"):
        lt.time_generation(model, [1, 2, 3])
    with pytest.raises(ValueError, match="2-D"):
        lt.time_generation(model, torch.tensor([1, 2, 3]))


# --- time_runs ---------------------------------------------------------------------------------

def test_time_runs_rejects_bad_arguments():
    with pytest.raises(TypeError, match="runs"):
        lt.time_runs({})
    with pytest.raises(ValueError, match="repeats"):
        lt.time_runs({"x": lambda: 1}, repeats=0)
