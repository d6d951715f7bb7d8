"""setup_notebook, seeding, the banner, the chat helpers and the command line."""

import os
import subprocess
import sys

import pytest
import torch

import llm_tutorial as lt


def test_setup_notebook_prints_a_banner_and_fixes_threads(capsys, monkeypatch):
    monkeypatch.setenv("LLM_TUTORIAL_THREADS", "1")
    before = torch.get_num_threads()
    try:
        banner = lt.setup_notebook(seed=3)
        assert torch.get_num_threads() == 1
        assert capsys.readouterr().out.strip() == banner
        for part in ("llm-tutorial", "torch", "transformers", "threads 1", "model "):
            assert part in banner
    finally:
        torch.set_num_threads(before)


def test_seeding_is_reproducible():
    lt.set_seed(7)
    first = torch.rand(3)
    lt.set_seed(7)
    assert torch.equal(first, torch.rand(3))


@pytest.mark.parametrize(("value", "error"), [("0", ValueError), ("two", ValueError)])
def test_bad_thread_count(monkeypatch, value, error):
    monkeypatch.setenv("LLM_TUTORIAL_THREADS", value)
    with pytest.raises(error, match="LLM_TUTORIAL_THREADS"):
        lt.setup_notebook()


def test_bad_seed_and_threads():
    with pytest.raises(TypeError, match="seed"):
        lt.set_seed("0")
    with pytest.raises(ValueError, match="threads"):
        lt.setup_notebook(threads=0)


def test_chat_inputs_end_where_the_answer_begins(tokenizer):
    inputs = lt.chat_inputs(tokenizer, "Hi", system="Be brief.")
    text = tokenizer.decode(inputs["input_ids"][0])
    assert "Be brief." in text and "Hi" in text
    assert inputs["attention_mask"].shape == inputs["input_ids"].shape
    generation_prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}],
                                                      add_generation_prompt=True, tokenize=False)
    plain_prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    suffix = generation_prompt[len(plain_prompt):]
    assert suffix and text.endswith(suffix)


def test_chat_inputs_reject_bad_questions(tokenizer):
    with pytest.raises(ValueError, match="question"):
        lt.chat_inputs(tokenizer, "   ")
    with pytest.raises(TypeError, match="question"):
        lt.chat_inputs(tokenizer, 42)


def test_ask_rejects_bad_lengths(tokenizer):
    with pytest.raises(ValueError, match="max_new_tokens"):
        lt.ask(None, tokenizer, "Hi", max_new_tokens=0)
    with pytest.raises(TypeError, match="max_new_tokens must be an int, not bool"):
        lt.ask(None, tokenizer, "Hi", max_new_tokens=True)


def test_every_public_name_of_a_module_is_a_package_attribute():
    import importlib

    for module_name in lt._LAZY_MODULES:
        module = importlib.import_module(f"llm_tutorial.{module_name}")
        for name in module.__all__:
            assert getattr(lt, name) is getattr(module, name), f"lt.{name} is not {module_name}.{name}"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_helper'"):
        _ = lt.not_a_helper


def test_command_line_info():
    result = subprocess.run([sys.executable, "-m", "llm_tutorial", "info"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "cache folder:" in result.stdout and "SmolLM2-135M-Instruct" in result.stdout


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_import_sets_a_passive_openmp_wait_policy_unless_told_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, llm_tutorial, torch; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_command_line_bench_prints_the_speed_ratios(capsys):
    from llm_tutorial.__main__ import main

    assert main(["bench", "--tokens", "3", "--repeats", "1", "--prompt", "Hi", "--batch-sizes", "1", "2",
                 "--bandwidth-mib", "8"]) == 0
    out = capsys.readouterr().out
    for loop in ("no cache", "hand loop, cache", "generate()"):
        assert loop in out
    assert "hand loop / generate(): " in out and "cache / no cache: " in out
    assert "memory bandwidth " in out and "speed limit " in out and "batch 2 / batch 1: " in out
    for name in ("prompt lookup, copy task: ", "prompt lookup, this prompt: ",
                 "speculative, bfloat16 draft, this prompt: ", "speculative, early-exit draft ("):
        assert name in out, out


def test_time_decoding_rejects_bad_arguments(model, tok):
    from llm_tutorial.bench import time_decoding

    inputs = tok("Hi", return_tensors="pt")
    with pytest.raises(ValueError, match="max_new_tokens"):
        time_decoding(model, inputs, max_new_tokens=0)
    with pytest.raises(ValueError, match="repeats"):
        time_decoding(model, inputs, repeats=0)
    with pytest.raises(ValueError, match="loops"):
        time_decoding(model, inputs, loops=("beam",))
    with pytest.raises(ValueError, match="batch size 1"):
        time_decoding(model, tok(["Hi", "Yo"], return_tensors="pt", padding=True))


def test_batch_and_speedup_timers_reject_bad_arguments(model, tok):
    from llm_tutorial.bench import time_batched_steps, time_speedups

    ids = tok("Hi", return_tensors="pt").input_ids
    with pytest.raises(ValueError, match="one prompt"):
        time_batched_steps(model, ids.repeat(2, 1))
    with pytest.raises(ValueError, match="batch_sizes"):
        time_batched_steps(model, ids, ())
    with pytest.raises(ValueError, match="batch_sizes"):
        time_batched_steps(model, ids, (1, 0))
    with pytest.raises(ValueError, match="steps"):
        time_batched_steps(model, ids, steps=0)
    with pytest.raises(ValueError, match="batch size 1"):
        time_speedups(model, tok(["Hi", "Yo"], return_tensors="pt", padding=True))
