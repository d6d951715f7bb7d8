"""Look at tokens: each token as a coloured span with its id, and token counts per text.

- ``tokenize(tokenizer, text_or_ids)``: the ``Token``s of one text (or one sequence of ids).
- ``show_tokens(tokenizer, text_or_ids)``: the same as a ``TokenView``, which Jupyter shows as
  coloured spans with ids (HTML) and ``print`` shows as ``[text|id]`` pairs.
- ``token_bytes(piece)``: the raw bytes behind a byte-level vocabulary string (``"Ġworld"``).
- ``count_tokens(tokenizer, text)``: characters, words, UTF-8 bytes and tokens of a text.

A token of a byte-level vocabulary may hold only part of a character (a Japanese character is 3
UTF-8 bytes, an emoji 4). Such a *fragment* cannot be shown as text: it is shown as its bytes,
``\\xe3\\x81``, after any whole characters it holds (``·\\xf0\\x9f`` is a space, then two bytes).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Token", "TokenView", "count_tokens", "show_tokens", "token_bytes", "tokenize"]

PALETTE = ("#fde2a7", "#c7e9c0", "#c6dbef", "#fcc5c0", "#dadaeb", "#ffffb2", "#d9f0d3", "#fdd0a2")
SPECIAL_COLOUR = "#d0d0d0"
# how whitespace is drawn so that it can be seen (and counted) in a token
VISIBLE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍"}
# SentencePiece marks a leading space with this character ("▁Hello" is " Hello")
SENTENCEPIECE_SPACE = "\u2581"


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """The GPT-2 byte-level BPE alphabet: one printable character for each of the 256 bytes.

    Printable bytes stand for themselves; the others (controls, space, 0x7f-0xa0, 0xad) are
    shifted to chr(256 + n), which is why a space shows as ``Ġ`` (chr(288)) in the vocabulary.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def token_bytes(token: str) -> bytes | None:
    """The raw bytes behind a byte-level token string, or None if it is not byte-level.

    Handles the GPT-2 byte alphabet (``"Ġworld"``, ``"ãģ"``) and SentencePiece byte-fallback
    pieces (``"<0xE3>"``).

    >>> token_bytes("Ġworld")
    b' world'
    >>> token_bytes("ãģ«").decode("utf-8")
    'に'
    >>> token_bytes("<0xE3>")
    b'\\xe3'
    >>> token_bytes("▁Hello") is None
    True
    """
    if not isinstance(token, str):
        raise TypeError(f"token must be a str (a vocabulary piece), not {type(token).__name__}")
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        try:
            return bytes([int(token[3:5], 16)])
        except ValueError:
            return None
    decoder = _byte_decoder()
    if token and all(ch in decoder for ch in token):
        return bytes(decoder[ch] for ch in token)
    return None


@dataclass(frozen=True)
class Token:
    """One token.

    - ``id``: its id in the vocabulary;
    - ``piece``: the vocabulary string (``"Ġworld"``, ``"ãģ"``, ``"<|im_start|>"``);
    - ``text``: what it stands for, readable (``" world"``; a fragment of a character as bytes,
      ``"\\xe3\\x81"``);
    - ``special``: True for the tokenizer's special tokens (bos, eos, pad, unk, ...);
    - ``fragment``: True when the token is not whole UTF-8 text (part of a character).
    """

    id: int
    piece: str
    text: str
    special: bool
    fragment: bool = False


def _readable(tokenizer, token_id: int, piece: str) -> tuple[str, bool]:
    """(text, fragment) for one token: its decoded text, or its bytes when it is not whole text."""
    text = tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
    if "\ufffd" in text:
        raw = token_bytes(piece)
        if raw is not None:
            try:
                return raw.decode("utf-8"), False  # a real U+FFFD character, not a fragment
            except UnicodeDecodeError:
                # whole characters as text, the bytes of a cut character as \xNN
                return raw.decode("utf-8", errors="backslashreplace"), True
        return text, True
    if piece.startswith(SENTENCEPIECE_SPACE) and not text.startswith(" "):
        text = " " + text  # SentencePiece decoders drop the leading space of a lone token
    return text, False


def _ids(tokenizer, text_or_ids, add_special_tokens: bool) -> list[int]:
    if not all(hasattr(tokenizer, name) for name in ("encode", "decode", "convert_ids_to_tokens")):
        raise TypeError(
            "tokenizer must be a Hugging Face tokenizer (with encode, decode and "
            f"convert_ids_to_tokens), not {type(tokenizer).__name__}"
        )
    if isinstance(text_or_ids, str):
        return tokenizer.encode(text_or_ids, add_special_tokens=add_special_tokens)
    if isinstance(text_or_ids, Mapping):
        if "input_ids" not in text_or_ids:
            raise TypeError("text_or_ids as a mapping must hold 'input_ids' (what a tokenizer returns)")
        text_or_ids = text_or_ids["input_ids"]
    if isinstance(text_or_ids, (bytes, bytearray)):
        raise TypeError("text_or_ids must be a str or a sequence of int token ids, not bytes")
    ids = text_or_ids.tolist() if hasattr(text_or_ids, "tolist") else text_or_ids
    if isinstance(ids, int):
        raise TypeError("text_or_ids must be a str or a sequence of int token ids, not a single int")
    try:
        ids = list(ids)
    except TypeError:
        raise TypeError(
            f"text_or_ids must be a str or a sequence of int token ids, not {type(text_or_ids).__name__}"
        ) from None
    if ids and all(isinstance(row, (list, tuple)) for row in ids):
        if len(ids) != 1:
            raise ValueError(
                f"text_or_ids must be one text or one sequence of ids, not a batch of {len(ids)}; "
                "pass one row, e.g. ids[0]"
            )
        ids = list(ids[0])  # a batch of one, e.g. from return_tensors="pt"
    bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool)]
    if bad:
        raise TypeError(
            "text_or_ids must be a str or a sequence of int token ids; "
            f"found {type(bad[0]).__name__} {bad[0]!r}"
        )
    size = len(tokenizer)
    out_of_range = [i for i in ids if not 0 <= i < size]
    if out_of_range:
        raise ValueError(
            f"token ids must be in range(0, {size}) for this tokenizer; got {out_of_range[0]}"
        )
    return ids


def tokenize(tokenizer, text_or_ids, *, add_special_tokens: bool = False) -> list[Token]:
    """Split a text (or one sequence of ids) into ``Token``s.

    ``text_or_ids``: a str (encoded with ``add_special_tokens``), a list or 1-D tensor of ids,
    a batch of exactly one row (shape ``(1, n)``), or what a tokenizer returns (``input_ids``).

    >>> [t.text for t in tokenize(tok, "Hello world")]
    ['Hello', ' world']
    """
    ids = _ids(tokenizer, text_or_ids, add_special_tokens)
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    tokens = []
    for token_id, piece in zip(ids, pieces):
        text, fragment = _readable(tokenizer, token_id, piece)
        tokens.append(Token(token_id, piece, text, token_id in special, fragment))
    return tokens


def _visible(text: str) -> str:
    """Whitespace drawn as visible marks.

    >>> _visible(" a\\n")
    '·a↵'
    """
    for char, mark in VISIBLE.items():
        text = text.replace(char, mark)
    return text


class TokenView:
    """Tokens of one text, shown as coloured spans with ids (HTML in Jupyter, text elsewhere).

    In text, each token is ``[text|id]``; spaces are ``·``, newlines ``↵``, tabs ``→``, and a
    fragment of a character is its bytes (``\\xe3\\x81``). In HTML, special tokens are grey and
    bold, fragments have a dashed border, and hovering shows the vocabulary piece.

    >>> print(TokenView([Token(19556, "Hello", "Hello", False), Token(905, "Ġworld", " world", False)]))
    [Hello|19556] [·world|905]
    """

    def __init__(self, tokens: list[Token]):
        self.tokens = list(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __iter__(self):
        return iter(self.tokens)

    def __getitem__(self, index):
        return self.tokens[index]

    @property
    def ids(self) -> list[int]:
        """The token ids."""
        return [t.id for t in self.tokens]

    @property
    def texts(self) -> list[str]:
        """The readable text of each token (fragments as ``\\xNN`` bytes)."""
        return [t.text for t in self.tokens]

    def __str__(self) -> str:
        return " ".join(f"[{_visible(t.text)}|{t.id}]" for t in self.tokens)

    def __repr__(self) -> str:
        return f"{len(self.tokens)} tokens: {self}"

    def _repr_html_(self) -> str:
        spans = []
        for n, t in enumerate(self.tokens):
            colour = SPECIAL_COLOUR if t.special else PALETTE[n % len(PALETTE)]
            weight = "bold" if t.special else "normal"
            border = "1px dashed #777" if t.fragment else "1px solid transparent"
            title = t.piece + (" (special)" if t.special else "") + (" (part of a character)" if t.fragment else "")
            spans.append(
                f'<span title="{html.escape(title)}" style="display:inline-block;margin:1px;'
                f"padding:1px 3px;border-radius:3px;border:{border};background:{colour};color:#111;"
                f'font-weight:{weight};font-family:monospace;text-align:center;white-space:pre">'
                f"{html.escape(_visible(t.text))}"
                f'<br><span style="font-size:70%;color:#555">{t.id}</span></span>'
            )
        return f"<div><b>{len(self.tokens)} tokens</b><br>{''.join(spans)}</div>"


def show_tokens(tokenizer, text_or_ids, *, add_special_tokens: bool = False) -> TokenView:
    """Display how ``tokenizer`` splits a text: coloured spans with ids in Jupyter,
    ``[text|id]`` pairs as plain text (spaces shown as ``·``, newlines as ``↵``).

    >>> print(show_tokens(tok, "Hello world"))
    [Hello|19556] [·world|905]
    """
    return TokenView(tokenize(tokenizer, text_or_ids, add_special_tokens=add_special_tokens))


def count_tokens(tokenizer, text: str) -> dict[str, float]:
    """Characters, whitespace-separated words, UTF-8 bytes and tokens of ``text`` (no special
    tokens added), with ``tokens_per_char``, ``tokens_per_word`` (nan when there is no word)
    and ``bytes_per_token``.

    Words are what ``str.split()`` finds: fine for English or code, meaningless for Japanese,
    which puts no spaces between words (a whole sentence is one "word").

    >>> count_tokens(tok, "Hello world")["tokens"]
    2
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    if not text:
        raise ValueError("text must be a non-empty string")
    tokens = len(_ids(tokenizer, text, add_special_tokens=False))
    chars = len(text)
    words = len(text.split())
    nbytes = len(text.encode("utf-8"))
    return {
        "chars": chars,
        "words": words,
        "bytes": nbytes,
        "tokens": tokens,
        "tokens_per_char": tokens / chars,
        "tokens_per_word": tokens / words if words else math.nan,
        "bytes_per_token": nbytes / tokens if tokens else math.nan,
    }
