"""Look at tokens: each token as a coloured span with its id, and token counts per text."""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import lru_cache

PALETTE = ("#fde2a7", "#c7e9c0", "#c6dbef", "#fcc5c0", "#dadaeb", "#ffffb2", "#d9f0d3", "#fdd0a2")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """The GPT-2 byte-level BPE alphabet: one printable character for each of the 256 bytes."""
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

    >>> token_bytes("Ġworld")
    b' world'
    >>> token_bytes("<0xE3>")
    b'\\xe3'
    """
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
    """One token: its id, the vocabulary string, and a readable form of the text it stands for."""

    id: int
    piece: str
    text: str
    special: bool


def _readable(tokenizer, token_id: int, piece: str) -> str:
    text = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text
    raw = token_bytes(piece)  # a fragment of a multi-byte character: show its bytes
    return "".join(f"\\x{b:02x}" for b in raw) if raw is not None else text


def tokenize(tokenizer, text_or_ids, *, add_special_tokens: bool = False) -> list[Token]:
    """Split a text (or a list of ids) into ``Token``s.

    >>> [t.text for t in tokenize(tok, "Hello world")]  # doctest: +SKIP
    ['Hello', ' world']
    """
    if isinstance(text_or_ids, str):
        ids = tokenizer.encode(text_or_ids, add_special_tokens=add_special_tokens)
    elif hasattr(text_or_ids, "tolist"):
        ids = text_or_ids.tolist()
    else:
        ids = list(text_or_ids)
    if ids and isinstance(ids[0], list):
        raise ValueError("text_or_ids must be one text or one sequence of ids, not a batch")
    if not all(isinstance(i, int) for i in ids):
        raise TypeError("text_or_ids must be a str or a sequence of int token ids")
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    return [Token(i, p, _readable(tokenizer, i, p), i in special) for i, p in zip(ids, pieces)]


def _visible(text: str) -> str:
    return text.replace(" ", "·").replace("\n", "↵").replace("\t", "→")


class TokenView:
    """Tokens of one text, shown as coloured spans with ids (HTML in Jupyter, text elsewhere)."""

    def __init__(self, tokens: list[Token]):
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def __str__(self) -> str:
        return " ".join(f"[{_visible(t.text)}|{t.id}]" for t in self.tokens)

    def __repr__(self) -> str:
        return f"{len(self.tokens)} tokens: {self}"

    def _repr_html_(self) -> str:
        spans = []
        for n, t in enumerate(self.tokens):
            colour = "#e0e0e0" if t.special else PALETTE[n % len(PALETTE)]
            weight = "bold" if t.special else "normal"
            spans.append(
                f'<span title="{html.escape(t.piece)}" style="display:inline-block;margin:1px;'
                f'padding:1px 3px;border-radius:3px;background:{colour};color:#111;font-weight:{weight};'
                f'font-family:monospace;text-align:center">{html.escape(_visible(t.text))}'
                f'<br><span style="font-size:70%;color:#555">{t.id}</span></span>'
            )
        return f"<div><b>{len(self.tokens)} tokens</b><br>{''.join(spans)}</div>"


def show_tokens(tokenizer, text_or_ids, *, add_special_tokens: bool = False) -> TokenView:
    """Display how ``tokenizer`` splits a text: coloured spans with ids in Jupyter,
    ``[piece|id]`` pairs as plain text (spaces shown as ``·``, newlines as ``↵``).

    >>> print(show_tokens(tok, "Hello world"))  # doctest: +SKIP
    [Hello|19556] [·world|905]
    """
    return TokenView(tokenize(tokenizer, text_or_ids, add_special_tokens=add_special_tokens))


def count_tokens(tokenizer, text: str) -> dict[str, float]:
    """Characters, words, UTF-8 bytes and tokens of ``text``, with tokens per character.

    >>> count_tokens(tok, "Hello world")["tokens"]  # doctest: +SKIP
    2
    """
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty string")
    tokens = len(tokenizer.encode(text, add_special_tokens=False))
    chars = len(text)
    return {
        "chars": chars,
        "words": len(text.split()),
        "bytes": len(text.encode("utf-8")),
        "tokens": tokens,
        "tokens_per_char": tokens / chars,
    }
