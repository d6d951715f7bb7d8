"""Structured output: logits processors that allow only the tokens that keep the answer on track.

- ``regex_processor(tokenizer, pattern)``: written by hand with the ``regex`` package's partial
  matching. Each step it tries every token of the vocabulary after the text generated so far and
  keeps those after which the text can still become a full match of ``pattern``; EOS only once
  the text is a full match.
- ``grammar_processor(tokenizer, regex=... | json_schema=...)``: the same job done by llguidance,
  a library made for it (a Rust parser that walks a prefix tree of the vocabulary), for a
  regular expression or a JSON schema.
- ``allowed_tokens(processor, input_ids)``: the tokens a processor allows next, as a bool mask, so
  that two processors can be compared step by step.

Both processors work on what is generated after the prompt (its length is recorded at the first
call of a generation: a call that is not the previous call's sequence one token longer, with the
same prompt, starts a new generation), each row of a batch on its own; a row that has produced EOS is left
alone (``generate`` pads it). Use one processor per ``generate`` call, or call its ``reset()``
between calls: a new call whose prompt is the previous call's output, one token longer, cannot be
told from the next step of the same generation. The text is the generated tokens' bytes decoded as UTF-8, which is
``tokenizer.decode(ids, clean_up_tokenization_spaces=False)``.

Where the two differ, by design (the tests check both):

- Forced text. Where the pattern leaves only one way to go for the next few characters (``maybe``
  after ``m``; ``{"name": "`` at the start of a JSON object), llguidance allows only the first
  token of their usual tokenization (``aybe`` -> ``ay``; its "fast-forward" tokens), so that the
  model reads the text as it was trained to; the hand-written processor allows every token that
  fits (``a``, ``ay``). Where the next character is the only forced one, or where a token could
  run past the forced text, they agree.
- Fragments of a character. The hand-written processor reasons on characters, so it never allows
  a token that ends inside a multi-byte UTF-8 character (``token_texts`` gives them no text);
  llguidance reasons on bytes and allows them where the pattern admits
  such a character. A character with no token of its own (``𝔸``) is out of the hand-written
  processor's reach: ValueError.

For a pattern that forces no two characters in a row and admits only ASCII characters, the two
allow exactly the same tokens at every step, EOS included.

>>> inputs = tok("Pick a number:", return_tensors="pt")
>>> out = model.generate(**inputs, max_new_tokens=5, do_sample=False,
...                      logits_processor=[regex_processor(tok, r"[0-9]{1,3}")])
>>> text = tok.decode(out[0, inputs.input_ids.shape[1]:], skip_special_tokens=True)
>>> import re
>>> re.fullmatch(r"[0-9]{1,3}", text) is not None
True
"""

from __future__ import annotations

import contextlib
import json
import weakref

import numpy as np
import torch
from transformers import LogitsProcessor

from .arguments import check_input_ids, check_int, check_logits
from .tokens import SENTENCEPIECE_SPACE, token_bytes

__all__ = ["RegexProcessor", "GrammarProcessor", "regex_processor", "grammar_processor",
           "allowed_tokens", "token_texts"]

NEG_INF = float("-inf")
CACHE_SIZE = 4096  # masks kept per processor, keyed by the generated text (a few MB at most)


# ---------------------------------------------------------------------------------------------
# the vocabulary as text
# ---------------------------------------------------------------------------------------------
def _special_ids(tokenizer) -> set[int]:
    special = set(tokenizer.all_special_ids)
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            special.add(int(token_id))
    return special


def token_texts(tokenizer) -> list[str | None]:
    """The text of every token of ``tokenizer`` (``len(tokenizer)`` entries), each decoded once:
    None for a special token and for a fragment of a multi-byte character (bytes that are not
    whole UTF-8).

    Byte-level vocabularies (``"Ġworld"``) go through their byte alphabet, SentencePiece ones
    read ``▁`` as a space. Concatenated, the texts give the decoded text of a token sequence.

    >>> texts = token_texts(tok)
    >>> texts[tok.convert_tokens_to_ids("Ġworld")], texts[tok.eos_token_id]
    (' world', None)
    """
    special = _special_ids(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    texts: list[str | None] = []
    for token_id, piece in enumerate(pieces):
        if token_id in special or piece is None:
            texts.append(None)
            continue
        raw = token_bytes(piece)
        if raw is None:
            raw = piece.replace(SENTENCEPIECE_SPACE, " ").encode("utf-8")
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(None)  # part of a character: never allowed by the hand-written processor
    return texts


_CACHES: dict[str, weakref.WeakKeyDictionary] = {}


def _per_tokenizer(kind: str, tokenizer, build):
    """``build()``, computed once per tokenizer (and again if its vocabulary grows)."""
    cache = _CACHES.setdefault(kind, weakref.WeakKeyDictionary())
    try:
        size, value = cache[tokenizer]
        if size == len(tokenizer):
            return value
    except (KeyError, TypeError):
        pass
    value = build()
    with contextlib.suppress(TypeError):  # a tokenizer that cannot be weakly referenced: no cache
        cache[tokenizer] = (len(tokenizer), value)
    return value


def _vocabulary(tokenizer):
    """(token texts, the tokens grouped by first character) of ``tokenizer``, built once."""
    def build():
        texts = token_texts(tokenizer)
        groups: dict[str, list[int]] = {}
        for token_id, text in enumerate(texts):
            if text:
                groups.setdefault(text[0], []).append(token_id)
        return texts, [(first, ids, [texts[i] for i in ids]) for first, ids in groups.items()]

    return _per_tokenizer("vocabulary", tokenizer, build)


def _eos_ids(tokenizer, eos_token_id) -> list[int]:
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if not ids:
        raise ValueError("eos_token_id: the tokenizer has no eos_token_id; pass eos_token_id=...")
    for token_id in ids:
        check_int(token_id, "eos_token_id", low=0, high=len(tokenizer) - 1)
    return ids


# ---------------------------------------------------------------------------------------------
# what both processors share: one state per row, the prompt left out
# ---------------------------------------------------------------------------------------------
class _PerRowProcessor(LogitsProcessor):
    """Masks each row of the scores with ``self._mask(row, generated_ids)`` (a bool array over the
    tokenizer's vocabulary); rows that have produced EOS are left as they are."""

    def __init__(self, vocab_size: int, eos_ids: list[int]):
        self.vocab_size = vocab_size
        self.eos_token_ids = eos_ids
        self.reset()

    def reset(self, prompt_length: int | None = None) -> None:
        """Forget the generation: the next call records the prompt length (or ``prompt_length``)."""
        self.prompt_length = prompt_length
        self._last_length = None
        self._prompt_ids = None

    def _continues(self, ids) -> bool:
        """Whether ``ids`` is the next step of the last call: one token longer, same prompt."""
        return (self._last_length is not None and ids.shape[1] == self._last_length + 1
                and ids.shape[0] == self._prompt_ids.shape[0]
                and torch.equal(ids[:, : self.prompt_length], self._prompt_ids))

    def _generated(self, input_ids) -> list[list[int]]:
        ids = input_ids.cpu()
        pinned = self._last_length is None and self.prompt_length is not None  # set by reset()
        if not (pinned or self._continues(ids)):
            self.prompt_length = ids.shape[1]  # a new generation starts here
        if ids.shape[1] < self.prompt_length:
            raise ValueError(f"input_ids has {ids.shape[1]} positions, fewer than the prompt's {self.prompt_length}")
        self._prompt_ids = ids[:, : self.prompt_length].clone()
        self._last_length = ids.shape[1]
        return ids[:, self.prompt_length:].tolist()

    def __call__(self, input_ids, scores):
        check_input_ids(input_ids)
        check_logits(scores, "scores")
        if scores.shape[1] < self.vocab_size:
            raise ValueError(f"scores has {scores.shape[1]} columns, fewer than the tokenizer's "
                             f"{self.vocab_size} tokens: is it the model that goes with this tokenizer?")
        allowed = torch.zeros(scores.shape, dtype=torch.bool)
        for row, ids in enumerate(self._generated(input_ids)):
            if any(token_id in self.eos_token_ids for token_id in ids):
                allowed[row] = True  # finished: generate() replaces its token with padding
                continue
            allowed[row, : self.vocab_size] = torch.tensor(self._mask(row, ids))
        return scores.masked_fill(~allowed.to(scores.device), NEG_INF)

    def _mask(self, row: int, ids: list[int]) -> np.ndarray:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# by hand: partial matching with the regex package
# ---------------------------------------------------------------------------------------------
class RegexProcessor(_PerRowProcessor):
    """Allows the tokens that keep the generated text a possible prefix of a full match of
    ``pattern``; EOS only when the text is a full match (and then EOS alone if no token can extend
    it). Build it with ``regex_processor``."""

    def __init__(self, tokenizer, pattern: str, *, eos_token_id=None):
        import regex

        if not isinstance(pattern, str):
            raise TypeError(f"pattern must be a str (a regular expression), not {type(pattern).__name__}")
        try:
            self.regex = regex.compile(pattern)
        except regex.error as error:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {error}") from None
        super().__init__(len(tokenizer), _eos_ids(tokenizer, eos_token_id))
        self.pattern = pattern
        # the vocabulary grouped by first character: one failed test rules out a whole group
        self.texts, self._groups = _vocabulary(tokenizer)
        self._cache: dict[str, np.ndarray] = {}
        self.tests = 0  # partial-match tests run (the work a step costs), over the processor's life
        if self.regex.fullmatch("", partial=True) is None:
            raise ValueError(f"pattern {pattern!r} can match nothing (not even the start of a text)")
        self.allowed_after("")  # ValueError if no token can start a match

    def state(self, text: str) -> str:
        """``"full"`` (a full match), ``"prefix"`` (can still become one) or ``"dead"``."""
        match = self.regex.fullmatch(text, partial=True)
        return "dead" if match is None else "prefix" if match.partial else "full"

    def allowed_after(self, text: str) -> np.ndarray:
        """Bool mask over the vocabulary (read-only, cached): the tokens allowed after the generated
        ``text``. ``tests`` grows by the partial-match tests it took (none when cached)."""
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        state = self.state(text)
        if state == "dead":
            raise ValueError(f"the generated text {text!r} cannot become a match of {self.pattern!r}")
        mask = np.zeros(self.vocab_size, dtype=bool)
        match = self.regex.fullmatch
        tests = len(self._groups)
        for first, ids, texts in self._groups:
            if match(text + first, partial=True) is None:
                continue  # no token that starts with this character can fit
            tests += len(ids)
            for token_id, token_text in zip(ids, texts):
                if match(text + token_text, partial=True) is not None:
                    mask[token_id] = True
        self.tests += tests
        if state == "full":
            mask[self.eos_token_ids] = True
        elif not mask.any():
            where = f"continue {text!r} towards" if text else "start"
            raise ValueError(f"no token of the vocabulary can {where} a match of {self.pattern!r} (the next "
                             "character has no token of its own: this processor never splits a character)")
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        mask.flags.writeable = False  # shared by every later call with the same text
        self._cache[text] = mask
        return mask

    def text_of(self, ids: list[int]) -> str:
        """The text of generated token ids (only tokens this processor can allow)."""
        texts = [self.texts[i] if i < self.vocab_size else None for i in ids]
        if None in texts:
            bad = ids[texts.index(None)]
            raise ValueError(f"token {bad} is special or part of a character: this processor never allows "
                             "it (is the prompt length right? see reset)")
        return "".join(texts)

    def _mask(self, row: int, ids: list[int]) -> np.ndarray:
        return self.allowed_after(self.text_of(ids))


def regex_processor(tokenizer, pattern: str, *, eos_token_id=None) -> RegexProcessor:
    """A logits processor for ``model.generate(logits_processor=[...])``, written by hand: the text
    generated before EOS is a full match of ``pattern`` (a ``regex``-package regular expression),
    whatever the prompt and the sampling seed.

    Each step tests the whole vocabulary (grouped by first character) with partial matching,
    ``regex.fullmatch(pattern, text + token, partial=True)``; the mask of each text is cached.
    ValueError for an invalid pattern, a pattern that can match nothing, or a vocabulary that
    cannot start a match. If ``max_new_tokens`` runs out first, the text is only a prefix. One
    processor per ``generate`` call (or ``reset()`` between calls): see the module's docstring.

    >>> proc = regex_processor(tok, r"(yes|no)")
    >>> [tok.decode(i) for i in proc.allowed_after("").nonzero()[0]]
    ['n', 'y', 'no', 'ye', 'yes']
    >>> regex_processor(tok, r"(unclosed")
    Traceback (most recent call last):
    ValueError: pattern '(unclosed' is not a valid regular expression: missing ) at position 9
    """
    return RegexProcessor(tokenizer, pattern, eos_token_id=eos_token_id)


# ---------------------------------------------------------------------------------------------
# the library: llguidance
# ---------------------------------------------------------------------------------------------
# JSON written on one line with a space after ',' and ':' (as json.dumps writes it): no free
# whitespace, so that a small model cannot wander into endless newlines
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def _ll_tokenizer(tokenizer):
    """llguidance's view of a fast Hugging Face tokenizer (about 0.5 s to build: cached)."""
    import llguidance.hf

    return _per_tokenizer("llguidance", tokenizer,
                          lambda: llguidance.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer)))


class GrammarProcessor(_PerRowProcessor):
    """llguidance's matcher as a logits processor: one matcher per row, fed the new tokens at each
    call (rewound when the row is not a continuation of what it has seen). Build it with
    ``grammar_processor``."""

    def __init__(self, tokenizer, grammar: str, *, eos_token_id=None, description: str = "grammar"):
        import llguidance

        eos = _eos_ids(tokenizer, eos_token_id)
        super().__init__(len(tokenizer), eos)
        self._ll = _ll_tokenizer(tokenizer)
        self.grammar = grammar
        self.description = description
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self._ll)
        if is_error:
            raise ValueError(f"{description} is not valid for llguidance: {messages[0]}")
        self._matchers: dict[int, tuple] = {}
        first = self._new_matcher().compute_bitmask()
        if not _unpack(first, self.vocab_size).any():
            raise ValueError(f"the vocabulary cannot spell {description}: no token can start it")

    def _new_matcher(self):
        import llguidance

        matcher = llguidance.LLMatcher(self._ll, self.grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(f"{self.description}: {matcher.get_error()}")
        return matcher

    def _mask(self, row: int, ids: list[int]) -> np.ndarray:
        matcher, seen = self._matchers.get(row) or (self._new_matcher(), [])
        if seen != ids[: len(seen)]:
            matcher.reset()
            seen = []
        if len(ids) > len(seen) and not matcher.consume_tokens(ids[len(seen):]):
            raise ValueError(f"tokens {ids} do not follow {self.description}: {matcher.get_error()}")
        self._matchers[row] = (matcher, list(ids))
        mask = _unpack(matcher.compute_bitmask(), self.vocab_size)
        if self._ll.eos_token not in self.eos_token_ids and matcher.is_accepting():
            mask[self.eos_token_ids] = True
        return mask


def _unpack(bitmask: bytes, vocab_size: int) -> np.ndarray:
    """llguidance's mask (one bit per token, little-endian words) as a bool array."""
    bits = np.unpackbits(np.frombuffer(bitmask, dtype=np.uint8), bitorder="little")
    return bits[:vocab_size].astype(bool)


def grammar_processor(tokenizer, *, regex: str | None = None, json_schema=None,
                      eos_token_id=None) -> GrammarProcessor:
    """A logits processor that llguidance drives: the text generated before EOS is a full match of
    ``regex`` (Rust ``regex`` syntax: ``\\d`` is any Unicode digit, as in Python), or a JSON
    document valid for ``json_schema`` (a dict or a JSON string), written on one line with
    ``", "`` and ``": "`` as separators. Give exactly one of the two. Works offline: llguidance
    reads the tokenizer object itself. One processor per ``generate`` call (or ``reset()``
    between calls): see the module's docstring.

    >>> proc = grammar_processor(tok, regex=r"(yes|no)")
    >>> [tok.decode(i) for i in allowed_tokens(proc, tok("Q", return_tensors="pt").input_ids)[0].nonzero()[:, 0]]
    ['n', 'y', 'no', 'ye', 'yes']
    """
    import llguidance

    if (regex is None) == (json_schema is None):
        raise ValueError("grammar_processor needs exactly one of regex=... or json_schema=...")
    if regex is not None:
        if not isinstance(regex, str):
            raise TypeError(f"regex must be a str, not {type(regex).__name__}")
        grammar, description = llguidance.LLMatcher.grammar_from_regex(regex), f"regex {regex!r}"
    else:
        if isinstance(json_schema, str):
            try:
                json_schema = json.loads(json_schema)
            except json.JSONDecodeError as error:
                raise ValueError(f"json_schema is not valid JSON: {error}") from None
        if not isinstance(json_schema, dict):
            raise TypeError(f"json_schema must be a dict or a JSON string, not {type(json_schema).__name__}")
        grammar = llguidance.LLMatcher.grammar_from_json_schema(json_schema, overrides=JSON_OPTIONS)
        description = "json_schema"
    return GrammarProcessor(tokenizer, grammar, eos_token_id=eos_token_id, description=description)


# ---------------------------------------------------------------------------------------------
# comparing processors
# ---------------------------------------------------------------------------------------------
def allowed_tokens(processor, input_ids, *, prompt_length: int | None = None) -> torch.Tensor:
    """The tokens ``processor`` allows after ``input_ids``: a bool mask ``[batch, vocab]``.

    ``prompt_length`` says where the generated part starts; without it, the processor's own rule
    applies (the first call of a generation records it). ``processor`` is one of this module's
    processors (it knows its vocabulary size); the mask is where it leaves a finite score.

    >>> ids = tok("Year:", return_tensors="pt").input_ids
    >>> allowed_tokens(regex_processor(tok, r"[0-9]{4}"), ids).sum().item()
    10
    """
    check_input_ids(input_ids)
    if prompt_length is not None:
        check_int(prompt_length, "prompt_length", low=0, high=input_ids.shape[1])
        if hasattr(processor, "reset"):
            processor.reset(prompt_length)
    size = getattr(processor, "vocab_size", None)
    if size is None:
        raise TypeError("processor must be one of this module's processors (it needs a vocab_size)")
    scores = torch.zeros(input_ids.shape[0], size)
    return torch.isfinite(processor(input_ids, scores))
