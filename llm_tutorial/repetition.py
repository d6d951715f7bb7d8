"""How much does a text repeat itself? Distinct n-grams.

An n-gram is a run of ``n`` consecutive tokens. A text that loops (greedy decoding often does)
produces the same n-grams again and again, so the share of distinct ones among all of them
falls: 1.0 means no n-gram repeats, a value near 0 means one phrase over and over. Two samples
that tell the same story share many n-grams: ``ngram_overlap`` is the shared share (Jaccard).

>>> looping = [7, 8, 9] * 4  # a 3-token phrase, four times
>>> ngrams(looping, 3)[:4]
[(7, 8, 9), (8, 9, 7), (9, 7, 8), (7, 8, 9)]
>>> distinct_ngram_ratio(looping, 3)  # 3 distinct 3-grams among 10
0.3
>>> distinct_ngram_ratio([1, 2, 3, 4, 5], 3)
1.0
>>> ngram_overlap([1, 2, 3, 4], [2, 3, 4, 5], 2)  # (2, 3) and (3, 4) of 4 distinct bigrams
0.5
"""

from __future__ import annotations

from .arguments import check_int

__all__ = ["distinct_ngram_ratio", "ngram_overlap", "ngrams"]


def _token_list(tokens, name: str = "tokens") -> list:
    """A list/tuple of tokens (ids or strings) or a 1-D tensor of ids, as a list."""
    if hasattr(tokens, "dim") and hasattr(tokens, "tolist"):  # a tensor
        if tokens.dim() != 1:
            raise ValueError(f"{name} must be a 1-D sequence, got shape {tuple(tokens.shape)}")
        return tokens.tolist()
    if isinstance(tokens, str) or not isinstance(tokens, (list, tuple)):
        raise TypeError(f"{name} must be a list/tuple of tokens or a 1-D tensor, not {type(tokens).__name__}")
    return list(tokens)


def ngrams(tokens, n: int = 2) -> list[tuple]:
    """Every run of ``n`` consecutive tokens, in order (``len(tokens) - n + 1`` of them).

    >>> ngrams(["the", "cat", "sat"], 2)
    [('the', 'cat'), ('cat', 'sat')]
    """
    n = check_int(n, "n", low=1)
    tokens = _token_list(tokens)
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_ngram_ratio(tokens, n: int = 2) -> float:
    """Distinct n-grams / all n-grams in a token sequence: 1.0 means no n-gram repeats, values
    near 0 mean the text loops. Accepts a list/tuple of ids or strings, or a 1-D tensor.

    >>> distinct_ngram_ratio([1, 2, 1, 2, 1, 2], n=2)
    0.4
    """
    grams = ngrams(tokens, n)
    if not grams:
        raise ValueError(f"need at least n={n} tokens, got {len(_token_list(tokens))}")
    return len(set(grams)) / len(grams)


def ngram_overlap(a, b, n: int = 3) -> float:
    """Jaccard overlap of the n-grams of two token sequences: shared distinct n-grams / all
    distinct n-grams of both (1.0: the same n-grams, 0.0: none in common).

    >>> ngram_overlap([1, 2, 3], [1, 2, 3], 2), ngram_overlap([1, 2, 3], [4, 5, 6], 2)
    (1.0, 0.0)
    """
    first, second = set(ngrams(a, n)), set(ngrams(b, n))
    if not first and not second:
        raise ValueError(f"need at least n={n} tokens in one of the sequences")
    return len(first & second) / len(first | second)
