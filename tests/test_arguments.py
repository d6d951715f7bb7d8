"""The shared argument checks (llm_tutorial.arguments): what they accept, and what their messages say."""

import math

import pytest
import torch

from llm_tutorial.arguments import (
    check_bool,
    check_input_ids,
    check_int,
    check_logits,
    check_number,
    check_texts,
)


def test_check_int_accepts_ints_in_range():
    assert check_int(3, "k") == 3
    assert check_int(torch.tensor(3).item(), "k", low=1, high=3) == 3


@pytest.mark.parametrize(("value", "kwargs", "error", "message"), [
    (True, {}, TypeError, "k must be an int, not bool"),
    (2.0, {}, TypeError, "k must be an int, not float"),
    ("3", {}, TypeError, "k must be an int, not str"),
    (0, {"low": 1}, ValueError, "k must be an int >= 1, got 0"),
    (9, {"low": 1, "high": 8}, ValueError, r"k must be an int in \[1, 8\], got 9"),
    (9, {"high": 8}, ValueError, "k must be an int <= 8, got 9"),
    (0, {"low": 1, "hint": "; k counts tokens"}, ValueError, "got 0; k counts tokens$"),
])
def test_check_int_refuses(value, kwargs, error, message):
    with pytest.raises(error, match=message):
        check_int(value, "k", **kwargs)


def test_check_number_accepts_reals_in_range():
    assert check_number(1, "t") == 1.0 and isinstance(check_number(1, "t"), float)
    assert check_number(1.0, "p", low=0, high=1, low_open=True) == 1.0
    assert check_number(0.0, "p", low=0, high=1) == 0.0


@pytest.mark.parametrize(("value", "kwargs", "error", "message"), [
    (True, {}, TypeError, "x must be a real number, not bool"),
    (None, {}, TypeError, "x must be a real number, not NoneType"),
    (math.nan, {}, ValueError, "x must be a finite number, got nan"),
    (math.inf, {"low": 0}, ValueError, "x must be a finite number >= 0, got inf"),
    (0, {"low": 0, "low_open": True}, ValueError, "x must be a finite number > 0, got 0$"),
    (0.0, {"low": 0, "high": 1, "low_open": True}, ValueError, r"x must be a number in \(0, 1\], got 0.0"),
    (1.5, {"low": 0, "high": 1, "what": "a probability"}, ValueError, r"a probability in \[0, 1\], got 1.5"),
    (0, {"low": 0, "low_open": True, "hint": ". Try 1"}, ValueError, r"got 0\. Try 1$"),
])
def test_check_number_refuses(value, kwargs, error, message):
    with pytest.raises(error, match=message):
        check_number(value, "x", **kwargs)


def test_check_bool():
    assert check_bool(False, "flag") is False
    with pytest.raises(TypeError, match="flag must be True or False, not 1"):
        check_bool(1, "flag")


def test_check_logits():
    check_logits(torch.zeros(2, 5))
    for bad, error in (([[1.0]], TypeError), (torch.zeros(5), ValueError), (torch.zeros(1, 2, 3), ValueError),
                       (torch.zeros(2, 5, dtype=torch.long), TypeError), (torch.zeros(2, 0), ValueError)):
        with pytest.raises(error, match="probs"):
            check_logits(bad, "probs")


def test_check_input_ids_accepts_a_padded_batch():
    ids = torch.tensor([[0, 5, 6], [7, 8, 9]])
    check_input_ids(ids, torch.tensor([[0, 1, 1], [1, 1, 1]]))
    check_input_ids(ids, torch.tensor([[False, True, True], [True, True, True]]))
    check_input_ids(torch.zeros(1, 0, dtype=torch.long), min_len=0)


@pytest.mark.parametrize(("ids", "mask", "error", "phrase"), [
    ([[5, 6]], None, TypeError, "input_ids must be a torch.Tensor"),
    (torch.tensor([5, 6]), None, ValueError, "2-D"),
    (torch.tensor([[5.0, 6.0]]), None, TypeError, "integer token ids"),
    (torch.tensor([[True]]), None, TypeError, "integer token ids"),
    (torch.zeros(1, 0, dtype=torch.long), None, ValueError, r"at least 1 token\(s\) per row"),
    (torch.tensor([[5, -1]]), None, ValueError, ">= 0"),
    (torch.tensor([[5, 6]]), [[1, 1]], TypeError, "attention_mask must be a torch.Tensor"),
    (torch.tensor([[5, 6]]), torch.ones(1, 3, dtype=torch.long), ValueError, "shape of input_ids"),
    (torch.tensor([[5, 6]]), torch.tensor([[0, 2]]), ValueError, "only 0 .padding. and 1"),
    (torch.tensor([[5, 6]]), torch.ones(1, 2), ValueError, "only 0 .padding. and 1"),
    (torch.tensor([[5, 6]]), torch.tensor([[0, 0]]), ValueError, "no real token"),
])
def test_check_input_ids_refuses(ids, mask, error, phrase):
    with pytest.raises(error, match=phrase):
        check_input_ids(ids, mask)


def test_check_input_ids_minimum_length():
    with pytest.raises(ValueError, match=r"at least 2 token\(s\)"):
        check_input_ids(torch.tensor([[5]]), min_len=2)


def test_check_texts():
    assert check_texts("a", "text") == (["a"], False)
    assert check_texts(("a", "b"), "text") == (["a", "b"], True)
    with pytest.raises(ValueError, match="text must not be an empty string"):
        check_texts(["a", ""], "text")
    with pytest.raises(ValueError, match="empty list"):
        check_texts([], "text")
    with pytest.raises(TypeError, match="text must be a str or a list of str, not bytes"):
        check_texts(b"a", "text")
    with pytest.raises(TypeError, match="found a int"):
        check_texts(["a", 1], "text")
