"""Unit tests of llm_tutorial.tokens: tokenize, show_tokens (text and HTML), token_bytes, count_tokens.

The embedded tokenizer (byte-level BPE) is loaded once; a tiny SentencePiece-style tokenizer
(Metaspace + byte fallback) is built in memory to check the helpers on another kind of vocabulary.
"""

from __future__ import annotations

import math

import pytest
import torch

import llm_tutorial as lt
from llm_tutorial.tokens import Token, TokenView, _byte_decoder


@pytest.fixture(scope="module")
def sp_tok():
    """A tiny Llama-2-style tokenizer: '▁' marks spaces, unknown characters fall back to <0xNN>
    bytes, and <s> is added in front of every text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    merges = [("▁", "H"), ("▁H", "i"), ("▁", "y"), ("▁y", "o")]
    for piece in ["▁", "H", "i", "y", "o", "▁H", "▁Hi", "▁y", "▁yo"]:
        vocab[piece] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


# --- token_bytes -------------------------------------------------------------------------------

def test_byte_alphabet_is_a_bijection_over_256_bytes():
    decoder = _byte_decoder()
    assert sorted(decoder.values()) == list(range(256))
    assert len(set(decoder)) == 256
    assert decoder["Ġ"] == ord(" ") and decoder["Ċ"] == ord("\n") and decoder["A"] == ord("A")


def test_token_bytes_of_byte_level_and_byte_fallback_pieces():
    assert lt.token_bytes("Ġworld") == b" world"
    assert lt.token_bytes("ãģ«") == "に".encode()
    assert lt.token_bytes("<0xE3>") == b"\xe3"
    assert lt.token_bytes("<0x0A>") == b"\n"


def test_token_bytes_returns_none_for_non_byte_pieces():
    assert lt.token_bytes("▁Hello") is None
    assert lt.token_bytes("<0xZZ>") is None
    assert lt.token_bytes("") is None


def test_token_bytes_rejects_non_str():
    with pytest.raises(TypeError, match="token must be a str"):
        lt.token_bytes(b"abc")


def test_token_bytes_matches_every_vocabulary_entry(tok):
    # Every non-added entry of a byte-level vocabulary maps to bytes; joining a text's pieces
    # gives back its UTF-8 encoding.
    text = "Hello 👋 こんにちは\n\tcode()"
    pieces = tok.convert_ids_to_tokens(tok.encode(text))
    assert b"".join(lt.token_bytes(p) for p in pieces) == text.encode("utf-8")
    added = {t.content for t in tok.added_tokens_decoder.values()}
    assert all(lt.token_bytes(p) is not None for p in tok.get_vocab() if p not in added)


# --- tokenize ----------------------------------------------------------------------------------

def test_tokenize_plain_english(tok):
    tokens = lt.tokenize(tok, "Hello world")
    assert [t.text for t in tokens] == ["Hello", " world"]
    assert [t.piece for t in tokens] == ["Hello", "Ġworld"]
    assert [t.id for t in tokens] == tok.encode("Hello world", add_special_tokens=False)
    assert not any(t.special or t.fragment for t in tokens)


def test_tokenize_marks_byte_fragments(tok):
    tokens = lt.tokenize(tok, "こんにちは")
    texts = [t.text for t in tokens]
    assert texts[:2] == ["\\xe3\\x81", "\\x93"]  # こ = e3 81 93, cut in two tokens
    assert "に" in texts  # a whole character stays text
    assert [t.fragment for t in tokens] == ["\ufffd" in tok.decode([t.id]) for t in tokens]
    assert any(t.fragment for t in tokens) and not all(t.fragment for t in tokens)


def test_fragment_after_a_space_shows_the_space_as_text(tok):
    tokens = lt.tokenize(tok, "Hello 👋")
    assert tokens[1].text == " \\xf0\\x9f" and tokens[1].fragment
    assert str(TokenView(tokens)).split()[1] == "[·\\xf0\\x9f|" + str(tokens[1].id) + "]"


def test_a_real_replacement_character_is_not_a_fragment(tok):
    tokens = lt.tokenize(tok, "a\ufffdb")
    assert "".join(t.text for t in tokens) == "a\ufffdb"
    assert not any(t.fragment for t in tokens)


def test_tokenize_marks_special_tokens(tok):
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                  return_dict=False)
    tokens = lt.tokenize(tok, ids)
    assert [t.id for t in tokens if t.special] == [i for i in ids if i in tok.all_special_ids]
    assert any(t.special for t in tokens)
    assert all(t.text == t.piece for t in tokens if t.special)


def test_add_special_tokens_follows_the_tokenizer(tok):
    text = "Hello"
    assert [t.id for t in lt.tokenize(tok, text, add_special_tokens=True)] == tok.encode(text)


def test_tokenize_accepts_lists_tensors_batches_of_one_and_encodings(tok):
    ids = tok.encode("Hello world")
    expected = lt.tokenize(tok, "Hello world")
    assert lt.tokenize(tok, ids) == expected
    assert lt.tokenize(tok, tuple(ids)) == expected
    assert lt.tokenize(tok, torch.tensor(ids)) == expected
    assert lt.tokenize(tok, torch.tensor([ids])) == expected  # shape (1, n)
    assert lt.tokenize(tok, tok("Hello world")) == expected  # a BatchEncoding
    assert lt.tokenize(tok, tok("Hello world", return_tensors="pt")) == expected
    assert lt.tokenize(tok, []) == []


def test_tokenize_sentencepiece_style_vocabulary(sp_tok):
    tokens = lt.tokenize(sp_tok, "Hi yo こ")
    assert [t.piece for t in tokens][:2] == ["▁Hi", "▁yo"]
    # a lone SentencePiece token decodes without its leading space; the helper keeps it
    assert [t.text for t in tokens][:2] == [" Hi", " yo"]
    fragments = [t for t in tokens if t.fragment]
    assert [t.piece for t in fragments] == ["<0xE3>", "<0x81>", "<0x93>"]
    assert [t.text for t in fragments] == ["\\xe3", "\\x81", "\\x93"]
    assert sp_tok.decode([t.id for t in tokens]) == "Hi yo こ"


@pytest.mark.parametrize(
    ("bad", "error", "phrase"),
    [
        (123, TypeError, "not a single int"),
        (None, TypeError, "text_or_ids must be a str or a sequence of int token ids, not NoneType"),
        (b"Hello", TypeError, "not bytes"),
        ([1, "2"], TypeError, "found str '2'"),
        ([1.0], TypeError, "found float"),
        ([True], TypeError, "found bool"),
        ([[1, 2], [3, 4]], ValueError, "not a batch of 2"),
        ([-1], ValueError, r"range\(0, 49152\)"),
        ([49152], ValueError, "got 49152"),
        ({"attention_mask": [1]}, TypeError, "must hold 'input_ids'"),
    ],
)
def test_tokenize_rejects_bad_input(tok, bad, error, phrase):
    with pytest.raises(error, match=phrase):
        lt.tokenize(tok, bad)


def test_tokenize_rejects_a_batch_tensor(tok):
    batch = tok(["Hello world", "Hi"], padding=True, return_tensors="pt")["input_ids"]
    with pytest.raises(ValueError, match=r"pass one row, e\.g\. ids\[0\]"):
        lt.tokenize(tok, batch)


def test_tokenize_rejects_a_non_tokenizer():
    with pytest.raises(TypeError, match="tokenizer must be a Hugging Face tokenizer"):
        lt.tokenize("not a tokenizer", "Hello")


# --- show_tokens / TokenView -------------------------------------------------------------------

def test_show_tokens_plain_text(tok):
    view = lt.show_tokens(tok, "Hello world")
    ids = tok.encode("Hello world")
    assert str(view) == f"[Hello|{ids[0]}] [·world|{ids[1]}]"
    assert repr(view) == f"2 tokens: {view}"
    assert len(view) == 2 and view.ids == ids and view.texts == ["Hello", " world"]
    assert [t.id for t in view] == ids and view[1].text == " world"


def test_show_tokens_makes_whitespace_visible(tok):
    view = lt.show_tokens(tok, "a\n\tb\r")
    shown = str(view)
    assert "↵" in shown and "→" in shown and "␍" in shown
    assert "\n" not in shown and "\t" not in shown and "\r" not in shown


def test_show_tokens_html(tok):
    view = lt.show_tokens(tok, "Hi <b> こ")
    html = view._repr_html_()
    assert html.startswith("<div><b>") and f"{len(view)} tokens" in html
    assert html.count('<span title="') == len(view)
    assert "&lt;" in html and "&gt;" in html and html.count("<b>") == 1  # token text is escaped
    for token in view:
        assert f">{token.id}</span>" in html
    assert html.count("dashed") == sum(t.fragment for t in view) >= 1
    assert "(part of a character)" in html


def test_show_tokens_html_marks_special_tokens(tok):
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], return_dict=False)
    view = lt.show_tokens(tok, ids)
    html = view._repr_html_()
    assert html.count("font-weight:bold") == sum(t.special for t in view) > 0
    assert html.count("(special)") == sum(t.special for t in view)
    assert html.count("&lt;|") >= 1  # the special token's text, escaped


def test_show_tokens_empty_text(tok):
    view = lt.show_tokens(tok, "")
    assert len(view) == 0 and str(view) == "" and "0 tokens" in view._repr_html_()


def test_token_view_without_a_tokenizer():
    view = TokenView([Token(1, "<s>", "<s>", True), Token(7, "ãģ", "\\xe3\\x81", False, True)])
    assert str(view) == "[<s>|1] [\\xe3\\x81|7]"
    html = view._repr_html_()
    assert "font-weight:bold" in html and "dashed" in html


# --- count_tokens ------------------------------------------------------------------------------

def test_count_tokens_english(tok):
    text = "Hello world, how are you?"
    counts = lt.count_tokens(tok, text)
    n = len(tok.encode(text, add_special_tokens=False))
    assert counts["tokens"] == n
    assert counts["chars"] == len(text) == counts["bytes"]
    assert counts["words"] == 5
    assert counts["tokens_per_char"] == n / len(text)
    assert counts["tokens_per_word"] == n / 5
    assert counts["bytes_per_token"] == len(text) / n


def test_count_tokens_japanese_costs_more(tok):
    ja = lt.count_tokens(tok, "富士山について教えてください")
    en = lt.count_tokens(tok, "Please tell me about Mount Fuji")
    assert ja["bytes"] == 3 * ja["chars"]
    assert ja["words"] == 1  # no spaces: the whole sentence is one "word"
    assert ja["tokens"] > 3 * en["tokens"]
    assert ja["tokens_per_char"] > 1 > en["tokens_per_char"]


def test_count_tokens_adds_no_special_tokens(sp_tok):
    assert sp_tok.encode("Hi") != sp_tok.encode("Hi", add_special_tokens=False)  # this one adds <s>
    assert lt.count_tokens(sp_tok, "Hi")["tokens"] == len(sp_tok.encode("Hi", add_special_tokens=False))


def test_count_tokens_whitespace_only_has_no_words(tok):
    counts = lt.count_tokens(tok, "   ")
    assert counts["words"] == 0 and math.isnan(counts["tokens_per_word"]) and counts["tokens"] >= 1


@pytest.mark.parametrize(("bad", "error", "phrase"), [
    ("", ValueError, "text must be a non-empty string"),
    (None, TypeError, "text must be a str, not NoneType"),
    ([1, 2], TypeError, "text must be a str, not list"),
])
def test_count_tokens_rejects_bad_text(tok, bad, error, phrase):
    with pytest.raises(error, match=phrase):
        lt.count_tokens(tok, bad)


def test_names_are_exported():
    import llm_tutorial.tokens as tokens

    assert set(tokens.__all__) == {"Token", "TokenView", "count_tokens", "show_tokens", "token_bytes", "tokenize"}
    for name in tokens.__all__:
        assert getattr(lt, name) is getattr(tokens, name)


def test_special_tokens_of_another_vocabulary(sp_tok):
    tokens = lt.tokenize(sp_tok, "Hi", add_special_tokens=True)
    assert [(t.piece, t.special) for t in tokens] == [("<s>", True), ("▁Hi", False)]
    assert str(lt.show_tokens(sp_tok, "Hi", add_special_tokens=True)) == f"[<s>|1] [·Hi|{tokens[1].id}]"
