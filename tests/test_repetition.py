"""Distinct n-grams (llm_tutorial.repetition): how much a token sequence repeats itself."""

import pytest
import torch

import llm_tutorial as lt


def test_ngrams_in_order():
    assert lt.ngrams([1, 2, 3, 4], 3) == [(1, 2, 3), (2, 3, 4)]
    assert lt.ngrams(torch.tensor([1, 2, 3]), 1) == [(1,), (2,), (3,)]
    assert lt.ngrams(("a", "b"), 3) == []


def test_distinct_ngram_ratio():
    assert lt.distinct_ngram_ratio([1, 2, 3, 4], n=2) == 1.0
    assert lt.distinct_ngram_ratio(torch.tensor([5, 5, 5, 5, 5]), n=1) == 0.2
    assert lt.distinct_ngram_ratio(["a", "b", "a", "b"], n=2) == 2 / 3
    loop = [7, 8, 9] * 10
    assert lt.distinct_ngram_ratio(loop, 3) == 3 / 28  # a loop keeps its 3 n-grams however long it gets


def test_ngram_overlap_is_the_jaccard_index():
    a, b = [1, 2, 3, 4, 5], [3, 4, 5, 6]
    shared, union = {(3, 4), (4, 5)}, {(1, 2), (2, 3), (3, 4), (4, 5), (5, 6)}
    assert lt.ngram_overlap(a, b, 2) == len(shared) / len(union)
    assert lt.ngram_overlap(a, b, 2) == lt.ngram_overlap(b, a, 2)
    assert lt.ngram_overlap(a, [9], 2) == 0.0


@pytest.mark.parametrize(("call", "error", "phrase"), [
    (lambda: lt.distinct_ngram_ratio([1, 2], n=0), ValueError, "n must be an int >= 1"),
    (lambda: lt.distinct_ngram_ratio([1, 2], n=2.0), TypeError, "n must be an int"),
    (lambda: lt.distinct_ngram_ratio([1, 2], n=3), ValueError, "at least n=3 tokens, got 2"),
    (lambda: lt.distinct_ngram_ratio("abc"), TypeError, "tokens must be a list/tuple"),
    (lambda: lt.distinct_ngram_ratio(torch.zeros(2, 3)), ValueError, "1-D"),
    (lambda: lt.ngram_overlap([1], [2], 2), ValueError, "at least n=2 tokens"),
])
def test_bad_arguments(call, error, phrase):
    with pytest.raises(error, match=phrase):
        call()
