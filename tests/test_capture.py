"""Tests of llm_tutorial.capture: warnings, log records, printed text and expected errors."""

import importlib
import logging
import sys
import uuid
import warnings

import pytest
import torch

import llm_tutorial as lt
from llm_tutorial.capture import Captured, CaughtError, capture, expect_error, short_error

# ``llm_tutorial.capture`` is the function (re-exported by the package); the module lives here:
capture_module = importlib.import_module("llm_tutorial.capture")


def _logger_state(name):
    logger = logging.getLogger(name)
    return logger.propagate, logger.level, list(logger.handlers)


# ---------------------------------------------------------------- capture


def test_package_exports_every_public_name():
    for name in capture_module.__all__:
        assert getattr(lt, name) is getattr(capture_module, name)


def test_warning_is_recorded_even_after_it_was_shown_once():
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        with pytest.warns(UserWarning):
            warnings.warn("shown once", UserWarning, stacklevel=2)
        with capture() as got:
            warnings.warn("shown once", UserWarning, stacklevel=2)
            warnings.warn("shown once", UserWarning, stacklevel=2)
    assert got.warnings == ["shown once", "shown once"]
    assert got.logs == [] and got.messages == got.warnings


def test_log_records_of_the_named_loggers_at_the_level():
    child = logging.getLogger("transformers.generation.test_capture")
    with capture() as got:
        child.warning("a %s", "warning")
        child.info("an info")
        logging.getLogger("some.other.library").warning("not ours")
    assert got.logs == ["a warning"]
    with capture(level="INFO") as verbose:
        child.info("an info")
    assert verbose.logs == ["an info"]
    with capture(loggers="some.other.library") as one:
        logging.getLogger("some.other.library").error("ours now")
    assert one.logs == ["ours now"]


def test_transformers_warning_once_is_captured_the_first_time_only():
    from transformers.utils import logging as hf_logging

    logger = hf_logging.get_logger("transformers.generation.utils")
    message = f"warned once {uuid.uuid4()}"
    with capture() as first:
        logger.warning_once(message)
    with capture() as second:
        logger.warning_once(message)
    assert first.logs == [message] and second.logs == []


def test_logger_state_is_restored_also_when_the_block_raises():
    names = ("transformers", "accelerate", "bitsandbytes")
    before = {n: _logger_state(n) for n in names}
    hf_handlers = [(h, h.level) for h in logging.getLogger("transformers").handlers]
    with pytest.raises(KeyError), capture():
        raise KeyError("boom")
    with capture():
        pass
    assert {n: _logger_state(n) for n in names} == before
    assert [(h, h.level) for h in logging.getLogger("transformers").handlers] == hf_handlers


def test_warnings_raised_before_an_exception_are_kept():
    with pytest.raises(RuntimeError), capture() as got:
        warnings.warn("first this", stacklevel=2)
        raise RuntimeError("then this")
    assert got.warnings == ["first this"]


def test_streams_are_captured_only_when_asked(capsys):
    with capture(streams=True) as got:
        print("to stdout")
        sys.stderr.write("to stderr\n")
    assert got.stdout == "to stdout\n" and got.stderr == "to stderr\n"
    assert capsys.readouterr() == ("", "")
    with capture() as plain:
        print("left alone")
    assert plain.stdout == "" and capsys.readouterr().out == "left alone\n"
    assert got.contains("to stderr") and "stdout: to stdout" in str(got)


def test_contains_count_find():
    got = Captured(warnings=["right-padding was detected!"], logs=["cast to float16", "cast to float16"])
    assert got.contains("right-padding") and not got.contains("left-padding")
    assert got.count("float16") == 2
    assert got.find("cast") == "cast to float16"
    with pytest.raises(LookupError, match="nothing captured contains 'missing'"):
        got.find("missing")
    with pytest.raises(TypeError, match="phrase must be a str"):
        got.contains(3)


def test_str_lists_everything_and_summary_collapses_repeats():
    got = Captured(warnings=["w"], logs=["cast", "cast", "other"])
    assert str(got) == "warning: w\nlog: cast\nlog: cast\nlog: other"
    assert got.summary() == "warning: w\nlog: cast  (x2)\nlog: other"
    assert str(Captured()) == Captured().summary() == "(nothing captured)"


@pytest.mark.parametrize(
    ("kwargs", "error", "phrase"),
    [
        ({"loggers": 5}, TypeError, "loggers must be"),
        ({"loggers": ("transformers", 1)}, TypeError, "loggers must be"),
        ({"level": "LOUD"}, ValueError, "level must be a logging level"),
        ({"level": True}, TypeError, "level must be an int"),
        ({"level": 1.5}, TypeError, "level must be an int"),
    ],
)
def test_capture_rejects_bad_arguments(kwargs, error, phrase):
    with pytest.raises(error, match=phrase), capture(**kwargs):
        pass
    with pytest.raises(error, match=phrase), expect_error(**kwargs):
        raise ValueError


# ---------------------------------------------------------------- expect_error


def test_expect_error_keeps_the_error_and_what_came_before():
    with expect_error(RuntimeError, match=r"NCCL built in$") as err:
        warnings.warn("a warning first", stacklevel=2)
        raise RuntimeError("Distributed package doesn't have NCCL built in")
    assert isinstance(err, CaughtError) and isinstance(err, Captured)
    assert err.type_name == "RuntimeError" and err.message.endswith("NCCL built in")
    assert err.warnings == ["a warning first"]
    assert str(err) == ("RuntimeError: Distributed package doesn't have NCCL built in\n"
                        "warning: a warning first")
    assert err.error.__traceback__ is None
    assert err.origin.endswith("test_expect_error_keeps_the_error_and_what_came_before")


def test_expect_error_without_types_catches_any_exception_and_streams():
    with expect_error(streams=True) as err:
        print("partial output")
        {}["missing"]
    assert err.type_name == "KeyError" and err.stdout == "partial output\n"
    assert err.short() == "KeyError: 'missing'"


def test_expect_error_fails_when_nothing_is_raised():
    with pytest.raises(AssertionError, match="expected the block to raise ValueError or TypeError, but it "
                                             "raised nothing"), expect_error(ValueError, TypeError):
        pass


def test_expect_error_fails_when_the_message_does_not_match():
    with pytest.raises(AssertionError, match="matching 'NCCL'") as info, expect_error(RuntimeError, match="NCCL"):
        raise RuntimeError("something else")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_expect_error_lets_other_exceptions_through():
    with pytest.raises(KeyError), expect_error(ValueError):
        raise KeyError("not a ValueError")
    with pytest.raises(SystemExit), expect_error():  # BaseException is not an Exception
        raise SystemExit(3)


def test_expect_error_rejects_bad_arguments():
    with pytest.raises(TypeError, match="exceptions must be exception classes"), expect_error("ValueError"):
        pass
    with pytest.raises(TypeError, match="exceptions must be exception classes"), expect_error(int):
        pass
    with pytest.raises(TypeError, match="match must be a regular expression"), expect_error(match=3):
        pass


def test_caught_error_without_error():
    empty = CaughtError()
    assert empty.type_name == "" and empty.message == "" and empty.short() == "(no error)"


# ---------------------------------------------------------------- short_error


def test_short_error_forms():
    assert short_error(ValueError("first line\n\nsecond")) == "ValueError: first line"
    assert short_error(ValueError("\n  indented first\n")) == "ValueError: indented first"
    assert short_error(AttributeError()) == "AttributeError: (empty message)"
    cut = short_error(RuntimeError("x" * 500), width=40)
    assert len(cut) == 40 and cut.endswith("…") and cut.startswith("RuntimeError: xxx")


@pytest.mark.parametrize(("args", "error", "phrase"), [(("not an exception",), TypeError, "error must be"),
                                                       ((ValueError(), 5), ValueError, "width must be an int >= 20"),
                                                       ((ValueError(), True), TypeError, "width must be an int")])
def test_short_error_rejects_bad_arguments(args, error, phrase):
    with pytest.raises(error, match=phrase):
        short_error(*args)


# ---------------------------------------------------------------- with the real model


def test_generate_errors_and_warnings_are_caught_without_stray_stderr(model, tokenizer, capfd):
    inputs = lt.chat_inputs(tokenizer, "Hi", device=model.device)
    with expect_error(ValueError, match="`max_length` is set to") as err:
        model.generate(**inputs, max_length=inputs["input_ids"].shape[1] - 1)
    assert err.short().startswith("ValueError: Input length of input_ids is")

    right = tokenizer(["Hi", "A longer prompt here"], padding=True, return_tensors="pt").to(model.device)
    assert tokenizer.padding_side == "right"
    with capture() as got, torch.inference_mode():
        model.generate(**right, max_new_tokens=1, do_sample=False)
    assert got.contains("right-padding was detected!")
    assert capfd.readouterr().err == ""


def test_default_length_warning_is_a_python_warning(tiny_llama, tokenizer):
    model = tiny_llama  # generate's own warning, whatever the model (a tiny one: 20 cheap steps)
    inputs = tokenizer("Hi", return_tensors="pt").to(model.device)
    n_prompt = inputs["input_ids"].shape[1]
    with capture() as explicit:
        out = model.generate(**inputs, max_length=n_prompt + 1, do_sample=False)
    assert out.shape[1] == n_prompt + 1 and not explicit.messages  # an explicit length: silent
    with capture() as got:
        out = model.generate(**inputs, do_sample=False)
    assert got.warnings and got.contains("We recommend setting `max_new_tokens`")
    assert out.shape[1] - n_prompt == 20 or out[0, -1] == tokenizer.eos_token_id
