# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Tokenization
# **What does the model actually see when you type a prompt, and what does a prompt cost?**
#
# A language model never reads text. It reads a list of integers, the ids of
# [*tokens*](glossary.md#token), made by a *tokenizer*, and it writes token ids that the tokenizer
# turns back into text. This notebook opens that step up:
#
# 1. loading a tokenizer (`AutoTokenizer.from_pretrained`, local folders, `revision`, being offline);
# 2. text to ids: `encode` vs `tokenizer(...)`, [special tokens](glossary.md#special-token) added or
#    not, tensors, padding and the attention mask, truncation;
# 3. ids to text: `decode` / `batch_decode`, with and without `skip_special_tokens`;
# 4. special tokens, read from the tokenizer;
# 5. subwords and byte-level [BPE](glossary.md#bpe): the merges applied by hand, and how
#    「こんにちは」 becomes byte tokens;
# 6. token cost per language, measured: English vs Japanese vs code;
# 7. the round trip `decode(encode(x)) == x`;
# 8. the [chat template](glossary.md#chat-template), compared with a hand-written Llama-2
#    `[INST] <<SYS>>` prompt, and a Llama-2-style tokenizer that adds `<s>` by itself.
#
# The stored outputs are for the embedded model (SmolLM2-135M-Instruct). Facts that hold only
# for it are asserted under `if EMBEDDED:`; with another model (`LLM_TUTORIAL_MODEL`) those cells
# print that model's values and move on. The seed articles this series started from are quoted
# where they are right and corrected, with evidence, where they are not.

# %%
import llm_tutorial as lt

banner = lt.setup_notebook(seed=0)
EMBEDDED = lt.model_name() == "embedded"  # the stored outputs and model-specific asserts are for it

# %% [markdown]
# ## 1. Loading a tokenizer
#
# `AutoTokenizer.from_pretrained(name_or_path)` takes either a Hub id (`"org/name"`, downloaded
# once into a cache) or a local folder, the kind `save_pretrained()` writes. The embedded model is
# such a folder; `lt.resolve_model()` gives its path (converting it on first use).

# %%
from pathlib import Path

from transformers import AutoTokenizer

model_dir = Path(lt.resolve_model())
print(model_dir.name)
print(sorted(p.name for p in model_dir.iterdir()))

tokenizer = AutoTokenizer.from_pretrained(model_dir)
print(type(tokenizer).__name__, "| vocabulary size:", len(tokenizer))

# %% [markdown]
# The tokenizer lives in `tokenizer.json` (the vocabulary and the merge rules), `tokenizer_config.json`
# (which tokens are special, and the tokenizer class) and `chat_template.jinja`. `lt.load_tokenizer()`
# is the same call on the same folder, which every later notebook uses:

# %%
library_tokenizer = lt.load_tokenizer()
sample = "Tokenizers turn text into integers."
assert library_tokenizer.get_vocab() == tokenizer.get_vocab()
assert library_tokenizer.encode(sample) == tokenizer.encode(sample)
print(tokenizer.encode(sample))

# %% [markdown]
# **`revision`** chooses *which version* of a Hub repository to download: a branch (`"main"`),
# a tag, or a commit hash. Pinning a commit hash is how you make a notebook reproducible when the
# model's authors later push a changed tokenizer. A local folder has no versions: `revision` is
# ignored there, silently, even when it names nothing that exists.

# %%
with lt.capture() as got:
    same = AutoTokenizer.from_pretrained(model_dir, revision="no-such-revision")
print("messages:", got)
assert same.encode(sample) == tokenizer.encode(sample) and not got.messages

# %% [markdown]
# This machine has no network, so a Hub id only works if it is already in the local cache. Here it
# is not: transformers says so with an `OSError`, and `lt.load_tokenizer` turns that into one error
# that says what was tried and how to fix it. (Online, or with the model cached, both calls would
# simply load it.)

# %%
from huggingface_hub import constants, try_to_load_from_cache

hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
cached = isinstance(try_to_load_from_cache(hub_id, "tokenizer_config.json"), str)
print("HF_HUB_OFFLINE =", constants.HF_HUB_OFFLINE, "| in the local cache:", cached)
try:
    AutoTokenizer.from_pretrained(hub_id, revision="main")
    hub_reachable = True
except OSError as error:
    hub_reachable = False
    print("OSError:", str(error).splitlines()[0])

# %%
try:
    lt.load_tokenizer(hub_id)
except lt.ModelNotFoundError as error:
    lines = str(error).splitlines()
    fix = lines.index("How to fix it:")
    print("\n".join([lines[0], "...", *lines[fix:]]))  # (the lines in between name local paths)
if constants.HF_HUB_OFFLINE:
    assert hub_reachable == cached  # offline, the cache is all there is

# %% [markdown]
# ## 2. Text to ids: `encode` vs `tokenizer(...)`
#
# `tokenizer.encode(text)` returns a plain list of ids. Calling the tokenizer itself,
# `tokenizer(text)`, returns a `BatchEncoding` (a dict) with the same ids as `input_ids`, plus an
# `attention_mask`: 1 for every real token. The model's `generate` and `forward` take that dict.

# %%
text = "Hello world! Tokenizers are fun."
ids = tokenizer.encode(text)
encoding = tokenizer(text)
print("encode:    ", ids)
print("tokenizer():", dict(encoding))
assert encoding["input_ids"] == ids
assert encoding["attention_mask"] == [1] * len(ids)

# %% [markdown]
# Each id is a row of the vocabulary. `convert_ids_to_tokens` shows the vocabulary strings: the
# `Ġ` is how this vocabulary writes a space (section 5 explains why). `lt.show_tokens` shows the
# same as coloured spans with their ids (hover a span to see its vocabulary string); `print`
# gives the plain-text form, with spaces drawn as `·`.

# %%
print(tokenizer.convert_ids_to_tokens(ids))
view = lt.show_tokens(tokenizer, text)
assert view.ids == ids
print(view)
view

# %% [markdown]
# ### `add_special_tokens`
# The seed article says `add_special_tokens=True` (the default) "adds bos and eos automatically":
# a beginning-of-sequence token and an [end-of-sequence token](glossary.md#eos). What it really
# does is run the tokenizer's *post-processor*, which adds whatever the model was trained with, if
# anything. Measure it for this tokenizer:

# %%
with_special = tokenizer.encode(text, add_special_tokens=True)
without = tokenizer.encode(text, add_special_tokens=False)
added = [tokenizer.convert_ids_to_tokens(i) for i in with_special if i in tokenizer.all_special_ids]
print("tokens added by add_special_tokens=True:", added)
extra = len(with_special) - len(without)
assert any(with_special[k: k + len(without)] == without for k in range(extra + 1))  # the text's ids, untouched
if EMBEDDED:
    assert with_special == without  # this tokenizer adds nothing: no bos, no eos

# %% [markdown]
# So for this model the seed's claim is wrong: nothing is added, not even a beginning-of-sequence
# token. The seed's own model, a Llama 2, adds a BOS `<s>` and no EOS (section 8 builds a tokenizer
# of that kind and shows it). What is added depends on the tokenizer, so never assume: encode a
# text with and without and compare, as above.
#
# ### Tensors, batches and padding
# `return_tensors="pt"` returns torch tensors with a batch dimension, shape `(batch, length)`.

# %%
pt_ids = tokenizer.encode(text, return_tensors="pt")
pt_encoding = tokenizer(text, return_tensors="pt")
print(type(pt_ids).__name__, tuple(pt_ids.shape), "|", {k: tuple(v.shape) for k, v in pt_encoding.items()})
assert pt_ids.shape == (1, len(ids)) and pt_ids[0].tolist() == ids
assert pt_encoding["input_ids"].equal(pt_ids)

# %% [markdown]
# A batch of texts of different lengths cannot become one rectangular tensor...

# %%
texts = ["Hello world!", "Hi", "Tokenizers turn text into integers."]
try:
    tokenizer(texts, return_tensors="pt")
    message = None
except ValueError as error:
    message = str(error)
    print("ValueError:", message[: message.index(" to have batched")])
assert message is not None and "padding=True" in message  # it raised, and it names the fix

# %% [markdown]
# ...until it is *padded*: `padding=True` fills the shorter rows up to the longest with the pad
# token, and the attention mask marks the filler with 0 so the model ignores it. The pad token and
# the side it goes on ([`padding_side`](glossary.md#padding-side)) are read from the tokenizer.

# %%
batch = tokenizer(texts, padding=True, return_tensors="pt")
print("pad token:", repr(tokenizer.pad_token), tokenizer.pad_token_id, "| padding_side:", tokenizer.padding_side)
print(batch["input_ids"])
print(batch["attention_mask"])
for row, mask, single in zip(batch["input_ids"], batch["attention_mask"], texts):
    n = len(tokenizer.encode(single))
    assert mask.sum().item() == n  # one 1 per real token
    real = row[mask.bool()].tolist()
    assert real == tokenizer.encode(single)  # the real tokens are untouched
    assert (row[~mask.bool()] == tokenizer.pad_token_id).all()  # the rest is padding

# %% [markdown]
# Padding goes on the right by default. For generation you want it on the **left**, so that every
# row ends with its last real token, where the new tokens are appended (notebooks 04 and 06 show
# what goes wrong otherwise). Ask for it per call, or load the tokenizer with `padding_side="left"`:

# %%
left = tokenizer(texts, padding=True, padding_side="left", return_tensors="pt")
print(left["input_ids"])
assert (left["input_ids"][:, -1] != tokenizer.pad_token_id).all()  # every row ends with real text
assert left["attention_mask"].sum().item() == batch["attention_mask"].sum().item()

# %% [markdown]
# `padding="max_length"` pads to a fixed length instead. The seed lists `padding` as an argument of
# `encode`: for one text `padding=True` does nothing (one text is already "the longest"), only
# `"max_length"` pads it.

# %%
print(tokenizer.encode("Hi", padding=True), tokenizer.encode("Hi", padding="max_length", max_length=4))
assert tokenizer.encode("Hi", padding=True) == tokenizer.encode("Hi")
assert tokenizer.encode("Hi", padding="max_length", max_length=4)[1:] == [tokenizer.pad_token_id] * 3

# %% [markdown]
# ### Truncation and `max_length`
# `max_length` alone truncates: when `padding` is off and `truncation` is not given, the tokenizer
# switches truncation on by itself. That is old behaviour, kept for backward compatibility (the
# library's source says so): transformers 4 did the same and logged a warning ("Truncation was not
# explicitly activated but `max_length` is provided..."); transformers 5 does it silently. With
# padding on it does not: `padding="max_length", max_length=3` leaves a longer text whole.
#
# `truncation=True` alone falls back to `tokenizer.model_max_length`, which for this tokenizer is a
# huge placeholder: nothing is cut. The real context limit is the model's `max_position_embeddings`,
# in its config ([notebook 02, §1](02_loading.ipynb#1.-A-model-is-a-folder)). And `max_length` with
# `padding=True` but no truncation is ignored, with a warning.

# %%
from transformers import AutoConfig

long_text = "one two three four five six seven eight"
full = tokenizer.encode(long_text)
with lt.capture() as got:
    cut = tokenizer.encode(long_text, max_length=3)
print("max_length=3:                        ", cut, "| messages:", got)
print("padding='max_length', max_length=3:  ", len(tokenizer.encode(long_text, padding="max_length", max_length=3)),
      "of", len(full), "tokens")
print("truncation=True alone:               ", len(tokenizer.encode(long_text, truncation=True)), "of", len(full), "tokens")
context = getattr(AutoConfig.from_pretrained(model_dir), "max_position_embeddings", None)
print("model_max_length:", tokenizer.model_max_length, "| the model's max_position_embeddings:", context)
assert cut == full[:3] and not got.messages  # truncated, silently
assert cut == tokenizer.encode(long_text, max_length=3, truncation=True)
assert tokenizer.encode(long_text, padding="max_length", max_length=3) == full  # padding on: no truncation
if tokenizer.model_max_length > 10**12:
    assert tokenizer.encode(long_text, truncation=True) == full
if EMBEDDED:
    assert context is not None and context < tokenizer.model_max_length

with lt.capture() as got:
    ignored = tokenizer([long_text, "Hi"], padding=True, max_length=3)
print(got)
assert got.contains("`max_length` is ignored") and len(ignored["input_ids"][0]) == len(tokenizer.encode(long_text))

# %% [markdown]
# Truncation keeps the start (`truncation_side="right"`, the default) and cuts the end: cutting a
# chat prompt that way removes the question you asked. Unlike `padding_side`, `truncation_side`
# cannot be given per call: the call accepts it and **silently ignores** it, as it silently ignores
# any keyword it does not know, typos included. Set it on the tokenizer instead:

# %%
print("truncation_side:", tokenizer.truncation_side)
with lt.capture() as got:
    per_call = tokenizer(long_text, max_length=3, truncation_side="left")["input_ids"]
    typo = tokenizer(texts, paddding=True)["input_ids"]  # three d's: no padding, no error
print("per call:         ", tokenizer.decode(per_call), "| messages:", got)
print("typo'd padding:   ", [len(row) for row in typo])
assert per_call == tokenizer.encode(long_text)[:3] and not got.messages
assert len({len(row) for row in typo}) > 1

left_tokenizer = lt.load_tokenizer(truncation_side="left")
cut_left = left_tokenizer(long_text, max_length=3)["input_ids"]
print("on the tokenizer: ", left_tokenizer.decode(cut_left))
assert cut_left == tokenizer.encode(long_text)[-3:]

# %% [markdown]
# ## 3. Ids to text: `decode` and `batch_decode`
# `decode` turns one sequence of ids into text; `batch_decode` does it per row. Special tokens are
# kept unless you pass `skip_special_tokens=True`. In the padded batch above they are the padding:

# %%
print(tokenizer.batch_decode(batch["input_ids"]))
print(tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True))
assert tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True) == texts
assert tokenizer.decode(batch["input_ids"][1]) == tokenizer.batch_decode(batch["input_ids"])[1]

# %% [markdown]
# With this tokenizer the pad token *is* the end-of-sequence token (see the next section), so a
# pad and a real eos are the same id: only the attention mask tells them apart.
# `skip_special_tokens=True` removes every special token, wherever it is. That is what you want for
# showing an answer (the seed recommends it, rightly), and what you must avoid when you need the
# exact text back (section 7).
#
# ## 4. Special tokens
# Special tokens are vocabulary entries that BPE never builds from ordinary words: each is matched
# only as its exact string. They mark the beginning or end of a sequence, padding, or roles in a
# chat. Read them from the tokenizer, never hard-code them: they differ from model to model.

# %%
for role in ("bos", "eos", "pad", "unk"):
    token, token_id = getattr(tokenizer, f"{role}_token"), getattr(tokenizer, f"{role}_token_id")
    print(f"{role}: {token!r:16} id {token_id}")
    if token is not None:
        assert tokenizer.convert_tokens_to_ids(token) == token_id
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]  # one token, even inside text
print("pad is eos:", tokenizer.pad_token_id == tokenizer.eos_token_id)
if EMBEDDED:
    assert tokenizer.pad_token_id == tokenizer.eos_token_id

# %% [markdown]
# Besides these four roles a tokenizer can hold more *added* tokens, matched whole in the text
# before anything else happens. This one has a few more, named after markup for code, GitHub and
# Jupyter data:

# %%
added_tokens = {i: t.content for i, t in tokenizer.added_tokens_decoder.items()}
print(len(added_tokens), "added tokens:", added_tokens)
assert set(tokenizer.all_special_ids) <= set(added_tokens)

# %% [markdown]
# The *unknown* token is for text the vocabulary cannot represent. A byte-level vocabulary (next
# section) spells text from byte tokens, so it has no use for `unk`, even on text like this:

# %%
odd = "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ☃ ∮ \x00 \u200b 한국어 العربية"
odd_ids = tokenizer.encode(odd, add_special_tokens=False)
print(len(odd), "characters ->", len(odd_ids), "tokens; unk among them:", tokenizer.unk_token_id in odd_ids)
if EMBEDDED:
    assert tokenizer.unk_token_id not in odd_ids and tokenizer.decode(odd_ids) == odd

# %% [markdown]
# ## 5. Subwords and byte-level BPE
# The vocabulary was built by **BPE** (byte-pair encoding): start from single symbols and
# repeatedly merge the most frequent adjacent pair in the training data into a new token. Frequent
# words end up as one token; rare words are spelled from pieces.

# %%
for word in ["the", "tokenization", "photosynthesis", "antidisestablishmentarianism", "Tokyo", "Yokohama"]:
    print(f"{word:>29}:", lt.show_tokens(tokenizer, " " + word))
assert len(tokenizer.encode(" the")) == 1
assert len(tokenizer.encode(" antidisestablishmentarianism")) > 3

# %% [markdown]
# This BPE works on **bytes**, not characters: text is first encoded as UTF-8, and every byte is
# written as one printable character, so that the vocabulary can be stored as strings. Bytes that
# are printable stand for themselves; the others (space, newline, control bytes, ...) are shifted to
# characters from 256 on. That is why a space shows as `Ġ` and a newline as `Ċ`. The whole table in
# a few lines:

# %%
def byte_level_alphabet() -> dict[int, str]:
    """The GPT-2 byte-to-character table used by byte-level BPE vocabularies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


byte_to_char = byte_level_alphabet()
char_to_byte = {c: b for b, c in byte_to_char.items()}
print("space ->", byte_to_char[ord(" ")], "| newline ->", byte_to_char[ord("\n")], "| 0xE3 ->", byte_to_char[0xE3])


def piece_bytes(piece: str) -> bytes:
    return bytes(char_to_byte[c] for c in piece)


assert all(piece_bytes(p) == lt.token_bytes(p) for p in ["Ġworld", "Ċ", "ãģ«"])  # hand-written == library

# %% [markdown]
# ### The merges, applied by hand
# The byte table turns text into symbols; the *merges* turn symbols into tokens. Both come from
# the tokenizer's `tokenizer.json`, which the loaded tokenizer gives back as a string
# (`tokenizer.backend_tokenizer.to_str()`). Its `model` entry is the BPE model: the vocabulary, and
# the merges in the order training learnt them. That order is the merge's *rank*: rank 0 was the
# most frequent pair in the training text, and a lower rank always wins.

# %%
import json

spec = json.loads(tokenizer.backend_tokenizer.to_str())
merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["model"].get("merges", [])]
rank = {pair: r for r, pair in enumerate(merges)}
vocab = tokenizer.get_vocab()
print(spec["model"]["type"], "model:", len(spec["model"]["vocab"]), "entries,", len(merges), "merges; ranks 0-4:", merges[:5])
print("normalizer:", spec["normalizer"], "| pre-tokenizer:", spec["pre_tokenizer"])
if (model_dir / "tokenizer.json").exists():  # the same merges as the file in the model's folder
    on_disk = json.loads((model_dir / "tokenizer.json").read_text())["model"].get("merges", [])
    assert [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in on_disk] == merges

# GPT-2's pipeline: no normalizer, the byte-level pre-tokenizer with its regex, plain BPE
pre = spec["pre_tokenizer"] or {}
gpt2_pipeline = (spec["normalizer"] is None and pre.get("type") == "ByteLevel" and pre.get("use_regex")
                 and not pre.get("add_prefix_space") and spec["model"]["type"] == "BPE"
                 and spec["model"].get("dropout") is None and not spec["model"].get("ignore_merges"))
print("GPT-2's byte-level BPE pipeline:", gpt2_pipeline)
if EMBEDDED:
    assert gpt2_pipeline and len(merges) == len(set(merges))

# %% [markdown]
# Before any merge, the *pre-tokenizer* cuts the text into words, and no merge ever crosses a word
# boundary. Here that is GPT-2's regular expression (`ByteLevel` with `use_regex`): contractions
# (`'s`, `'t`, ...), then a run of letters, a run of digits, or a run of other symbols, each with
# at most one space in front; runs of whitespace keep their last space for the next word. Written
# out below with the `regex` module (it knows `\p{L}`, letters, and `\p{N}`, numbers), and checked
# against the tokenizer's own pre-tokenizer (`backend_tokenizer.pre_tokenizer`):

# %%
import regex

GPT2_WORDS = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
sentence = "Tokenizers aren't magic:  they merge 49 pairs in Zürich!"
words = GPT2_WORDS.findall(sentence)
library_words = [word for word, _ in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(sentence)]
print("by hand:", words)
print("library:", library_words)
if gpt2_pipeline:  # the library's words are already in byte-level characters
    assert ["".join(byte_to_char[b] for b in word.encode("utf-8")) for word in words] == library_words

# %% [markdown]
# Then each word, as byte-level characters, is merged: find the adjacent pair with the lowest rank,
# join it into one symbol, and repeat until no adjacent pair has a merge. (When the same pair
# occurs twice, the leftmost goes first.) In plain Python:

# %%
def bpe_word(word: str, steps: list | None = None) -> list[str]:
    """Byte-level BPE of one pre-tokenized word; appends (pair, rank, symbols after) to `steps`."""
    symbols = [byte_to_char[b] for b in word.encode("utf-8")]
    while len(symbols) > 1:
        best, i = min((rank.get(pair, len(rank)), i) for i, pair in enumerate(zip(symbols, symbols[1:])))
        if best == len(rank):
            break  # no adjacent pair has a merge: done
        pair = (symbols[i], symbols[i + 1])
        symbols[i: i + 2] = ["".join(pair)]
        if steps is not None:
            steps.append((pair, best, list(symbols)))
    return symbols


steps = []
bpe_word(" tokenization", steps)
print(f"{'step':>4}  {'merged pair':14} {'rank':>5}  tokens")
for n, ((left, right), best, symbols) in enumerate(steps, start=1):
    print(f"{n:>4}  {left + ' + ' + right:14} {best:>5}  {symbols}")
assert [best for _, best, _ in steps] == sorted(best for _, best, _ in steps)  # ranks only rise: a pair made
# by a merge was learnt after that merge, and a lower-ranked pair already there would have gone first

# %% [markdown]
# The leading space is part of the word (`Ġ`), so ` tokenization` and `tokenization` are different
# words to BPE. Now compare with the library, tokens and ids, on a few words (with and without a
# leading space, and one with a non-ASCII letter: `ü` is two bytes, `Ã¼` as byte-level characters)
# and on the whole sentence:

# %%
for word in ["tokenization", " tokenization", " Zürich", " antidisestablishmentarianism"]:
    by_hand = bpe_word(word)
    by_hand_ids = [vocab[token] for token in by_hand]
    print(f"{word!r:32} {by_hand} {by_hand_ids}")
    if gpt2_pipeline:
        assert by_hand == tokenizer.tokenize(word)
        assert by_hand_ids == tokenizer.encode(word, add_special_tokens=False)
sentence_by_hand = [token for word in words for token in bpe_word(word)]
print(len(sentence_by_hand), "tokens for the sentence:", sentence_by_hand)
if gpt2_pipeline:
    assert sentence_by_hand == tokenizer.tokenize(sentence)
    assert [vocab[t] for t in sentence_by_hand] == tokenizer.encode(sentence, add_special_tokens=False)
digit_merges = [pair for pair in merges if set("".join(pair)) & set("0123456789")]
print("merges that involve an ASCII digit:", len(digit_merges))
if EMBEDDED:
    assert digit_merges == [] and bpe_word(" 49") == ["Ġ", "4", "9"]

# %% [markdown]
# ` 49` stays three tokens: this vocabulary has no merge that involves a digit, so every number
# is spelled digit by digit (and the space before it is a token of its own).
#
# That is the whole of byte-level BPE encoding: a regex, a byte table and a ranked list of pairs.
# (Special tokens are cut out of the text before all this, section 4; other tokenizers add a
# normalizer, another regex, or Llama 3's `ignore_merges`, which takes a word whole when the
# vocabulary has it.)
#
# A byte-level vocabulary *should* hold all 256 single bytes as tokens, so that any text can be
# spelled. Check this one:

# %%
import unicodedata

missing = [b for b, char in byte_to_char.items() if char not in vocab]
print(f"{256 - len(missing)} of 256 bytes are tokens; missing: {' '.join(f'{b:02x}' for b in missing)}")

every_character = "".join(chr(i) for i in range(0x110000) if not 0xD800 <= i < 0xE000)
utf8_bytes = set(every_character.encode("utf-8"))
never_in_utf8 = [b for b in missing if b not in utf8_bytes]
unassigned_planes = [b for b in missing if b in (0xF1, 0xF2)]  # lead bytes of U+40000..U+BFFFF
controls = [b for b in missing if b < 0x20]
print("never in UTF-8:", len(never_in_utf8), "| lead bytes of unassigned planes:", len(unassigned_planes),
      "| ASCII control characters:", [f"{b:02x}" for b in controls])
assert all(unicodedata.category(chr(i)) == "Cn" for i in range(0x40000, 0xC0000))  # nothing assigned there
if EMBEDDED:
    assert len(missing) == 21 and len(never_in_utf8) == 13 and len(unassigned_planes) == 2
    assert sorted(never_in_utf8 + unassigned_planes + controls) == missing

# %% [markdown]
# Not quite: 21 bytes have no token. 13 of them can never occur in UTF-8 text and 2 only start
# characters in planes where Unicode has assigned nothing, so they do not matter. The other 6 are
# ASCII control characters that ordinary text does not contain, and they are **silently dropped**:
# no `unk`, no warning.

# %%
dropped = f"a{chr(controls[0])}b" if controls else "ab"
with lt.capture() as got:
    dropped_ids = tokenizer.encode(dropped, add_special_tokens=False)
print(repr(dropped), "->", tokenizer.convert_ids_to_tokens(dropped_ids), "->", repr(tokenizer.decode(dropped_ids)),
      "| messages:", got)
assert tokenizer.decode(dropped_ids) == "ab" and tokenizer.unk_token_id not in dropped_ids and not got.messages

# %% [markdown]
# Now Japanese. 「こんにちは」 is 5 characters, and each is 3 bytes in UTF-8. This English-centric
# vocabulary has few merges for them, so the 15 bytes become many tokens, and some tokens hold only
# *part* of a character:

# %%
hello_ja = "こんにちは"
hello_ids = tokenizer.encode(hello_ja, add_special_tokens=False)
hello_pieces = tokenizer.convert_ids_to_tokens(hello_ids)
print(len(hello_ja), "characters,", len(hello_ja.encode("utf-8")), "bytes,", len(hello_ids), "tokens")
for token_id, piece in zip(hello_ids, hello_pieces):
    alone = tokenizer.decode([token_id])
    print(f"{token_id:>6}  {piece!r:8} bytes {piece_bytes(piece).hex(' '):9} decoded alone: {alone!r}")
assert b"".join(piece_bytes(p) for p in hello_pieces) == hello_ja.encode("utf-8")
assert all(piece_bytes(p) == lt.token_bytes(p) for p in hello_pieces)  # hand-written == library
assert tokenizer.decode(hello_ids) == hello_ja  # together, the bytes make the text again

# %% [markdown]
# A token that holds part of a character decodes alone to `'�'` (U+FFFD, "replacement character"):
# its bytes are not valid UTF-8 by themselves. `lt.show_tokens` shows such fragments as their bytes
# (`\xe3\x81`) with a dashed border, and whole characters as text:

# %%
hello_view = lt.show_tokens(tokenizer, hello_ja)
print(hello_view)
assert [t.fragment for t in hello_view] == ["\ufffd" in tokenizer.decode([i]) for i in hello_ids]
hello_view

# %% [markdown]
# Which tokens make which character? The tokenizer's `offset_mapping` says, per token, which
# characters it belongs to. The same can be computed by hand from the byte lengths; they agree:

# %%
offsets = tokenizer(hello_ja, return_offsets_mapping=True)["offset_mapping"]  # (start, end) in characters
token_spans, position = [], 0  # (start, end) of each token, in bytes
for piece in hello_pieces:
    token_spans.append((position, position + len(piece_bytes(piece))))
    position += len(piece_bytes(piece))
char_start = 0  # in bytes
for i, char in enumerate(hello_ja):
    char_end = char_start + len(char.encode("utf-8"))
    by_offsets = [k for k, (start, end) in enumerate(offsets) if start <= i < end]
    by_bytes = [k for k, (start, end) in enumerate(token_spans) if start < char_end and char_start < end]
    assert by_offsets == by_bytes
    print(char, char.encode("utf-8").hex(" "), "-> tokens", by_offsets)
    char_start = char_end

# %% [markdown]
# The seed article (about Llama 3's tokenizer) says 「こんにちは」 becomes `['こんに', 'ち', 'わ']`.
# It hedges "strictly it is byte-based", and it is right to: whatever Llama 3 does, a byte-level
# tokenizer's pieces need not be whole characters, as just seen. Its example is also off in the
# text itself: its pieces do not spell the greeting, they end in わ where the text has は (は is
# *pronounced* "wa" in this greeting).

# %%
seed_pieces = ["こんに", "ち", "わ"]
differences = [(seed, text_) for seed, text_ in zip("".join(seed_pieces), tokenizer.decode(hello_ids)) if seed != text_]
print("seed's pieces vs the decoded text, where they differ:", differences)
assert differences == [("わ", "は")]

# %% [markdown]
# The longer request from the seed prompt, against the same meaning in English:

# %%
request_ja = "富士山について教えてください"
request_en = "Please tell me about Mount Fuji"
view_ja, view_en = lt.show_tokens(tokenizer, request_ja), lt.show_tokens(tokenizer, request_en)
print(repr(view_en))
print(repr(view_ja))
request_ratio = len(view_ja) / len(view_en)
print(f"Japanese costs {lt.fmt(request_ratio, decimals=1, kind='exact')}x the tokens of English for the same request")
if EMBEDDED:
    assert len(view_ja) > 3 * len(view_en)
view_ja

# %% [markdown]
# Why so few merges for Japanese? The merges were learnt from the tokenizer's training text, and
# the vocabulary shows how little Japanese that held. Count the entries that contain any kana or
# kanji at all:

# %%
import re

japanese = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")  # hiragana, katakana, CJK ideographs


def piece_text(piece: str) -> str | None:
    raw = lt.token_bytes(piece)
    try:
        return raw.decode("utf-8") if raw is not None else None
    except UnicodeDecodeError:
        return None  # a fragment


japanese_entries = [t for t in map(piece_text, vocab) if t and japanese.search(t)]
print(f"{len(japanese_entries)} of {len(vocab)} vocabulary entries contain a Japanese character "
      f"({lt.fmt(len(japanese_entries) / len(vocab), decimals=2, kind='exact', percent=True)})")
if EMBEDDED:
    assert len(japanese_entries) == 89 and len(vocab) == 49152  # the numbers section 6 quotes

# %% [markdown]
# ## 6. Token cost per language, measured
# Tokens are what a model reads and writes one at a time, what its context window is counted in,
# and what hosted models bill. Measure the cost of the same content in English and in Japanese,
# and of a piece of Python code, with five parallel sentences:

# %%
parallel = [
    ("Hello.", "こんにちは。"),
    ("Please tell me about Mount Fuji.", "富士山について教えてください。"),
    ("Mount Fuji is the highest mountain in Japan, at 3,776 meters.", "富士山は標高3,776メートルで、日本で一番高い山です。"),
    ("The weather is nice today, so let's go for a walk in the park.", "今日は天気がいいので、公園を散歩しましょう。"),
    ("A language model predicts the next token from the tokens before it.", "言語モデルは、前のトークンから次のトークンを予測します。"),
]
code = '''def count_tokens(tokenizer, text):
    """Return how many tokens the text costs."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return len(ids)
'''
corpus = {"English": " ".join(en for en, _ in parallel), "Japanese": "".join(ja for _, ja in parallel), "Python code": code}

# %% [markdown]
# By hand for one text first, then `lt.count_tokens` for all (it counts characters, whitespace
# words, UTF-8 bytes and tokens, with no special tokens added):

# %%
english = corpus["English"]
by_hand = len(tokenizer.encode(english, add_special_tokens=False)) / len(english)
counts = {name: lt.count_tokens(tokenizer, t) for name, t in corpus.items()}
assert counts["English"]["tokens_per_char"] == by_hand

# "Words" are whitespace-separated, which means nothing in Japanese (no spaces): for the parallel
# texts, compare tokens per English word *of the same meaning* instead.
english_words = counts["English"]["words"]
print(f"{'':12} {'chars':>5} {'bytes':>5} {'tokens':>6} {'tok/char':>8} {'bytes/tok':>9} {'tok per EN word':>15}")
for name, c in counts.items():
    per_word = c["tokens"] / (english_words if name != "Python code" else c["words"])
    c["tokens_per_meaning_word"] = per_word
    # ratios of integers: exact, the same on every CPU
    print(f"{name:12} {c['chars']:5} {c['bytes']:5} {c['tokens']:6} {lt.fmt(c['tokens_per_char'], decimals=3, kind='exact'):>8} "
          f"{lt.fmt(c['bytes_per_token'], decimals=2, kind='exact'):>9} {lt.fmt(per_word, decimals=2, kind='exact'):>15}")
print("(for Python code the last column is tokens per whitespace-separated word)")

# %%
ratios = [len(tokenizer.encode(ja)) / len(tokenizer.encode(en)) for en, ja in parallel]
print("Japanese / English tokens, per sentence:", ", ".join(lt.fmt(r, decimals=2, kind="exact") for r in ratios))
ja_en = counts["Japanese"]["tokens"] / counts["English"]["tokens"]
per_char = counts["Japanese"]["tokens_per_char"] / counts["English"]["tokens_per_char"]
print(f"all five: {lt.fmt(ja_en, decimals=2, kind='exact')}x the tokens, {lt.fmt(per_char, decimals=1, kind='exact')}x per character")
if EMBEDDED:
    assert all(r > 2 for r in ratios)  # every sentence costs more than twice as much in Japanese
    assert counts["Japanese"]["tokens_per_char"] > 1 > 0.5 > counts["English"]["tokens_per_char"]
    assert counts["Python code"]["tokens_per_char"] < 0.5  # code costs about what English costs per character
    assert counts["Japanese"]["bytes_per_token"] < 2 < 3 < counts["English"]["bytes_per_token"]
    assert round(counts["Japanese"]["tokens_per_char"], 1) == 1.7 and round(counts["English"]["tokens_per_char"], 2) == 0.25

# %%
import matplotlib.pyplot as plt

names = list(counts)
colours = ["#4c72b0", "#dd8452", "#55a868"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].bar(names, [counts[n]["tokens_per_char"] for n in names], color=colours)
axes[0].set_title("tokens per character")
axes[1].bar(names, [counts[n]["tokens_per_meaning_word"] for n in names], color=colours)
axes[1].set_title("tokens per English word of the same text\n(code: per whitespace word)")
for ax in axes:
    for bar in ax.patches:
        ax.annotate(lt.fmt(bar.get_height(), decimals=2, kind="exact"), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom")
    ax.set_ylim(0, max(b.get_height() for b in ax.patches) * 1.2)
fig.suptitle(f"Token cost per language, {lt.describe_model()}")
fig.tight_layout()
plt.show()

# %% [markdown]
# Two ratios, then: the one short request of section 5, and the five parallel sentences. Which one
# is "the" cost of Japanese?

# %%
print(f"Japanese / English tokens: {lt.fmt(request_ratio, decimals=1, kind='exact')}x for the one request of "
      f"section 5 ({len(view_ja)} vs {len(view_en)} tokens), {lt.fmt(ja_en, decimals=2, kind='exact')}x for the five "
      f"sentences ({counts['Japanese']['tokens']} vs {counts['English']['tokens']})")
if EMBEDDED:  # the numbers the text below and the recap quote
    assert lt.fmt(request_ratio, decimals=1, kind="exact") == "3.7" and lt.fmt(ja_en, decimals=2, kind="exact") == "2.86"
    assert [lt.fmt(r, decimals=2, kind="exact") for r in (min(ratios), max(ratios))] == ["2.18", "5.00"]
    assert min(ratios) < ja_en < request_ratio < max(ratios)

# %% [markdown]
# The five sentences are the better measure: **2.86x**. One short text swings with a token or two:
# the single request cost 3.7x, and the five sentences one by one range from 2.18x to 5.00x.
# A model writes one token per generation step ([notebook 04](04_generation_loop.ipynb)), so the
# same answer in Japanese takes this model about 2.86x the generation steps of the English one,
# and fills about 2.86x as much of its context window.
# The cost comes from the vocabulary (89 Japanese entries out of 49152), not from the language:
# every merge a vocabulary has for Japanese spells the same text with fewer tokens, so compare
# tokenizers with `lt.count_tokens` before choosing a model for Japanese.
#
# ## 7. The round trip: `decode(encode(x)) == x`
# Byte-level BPE keeps every byte it has a token for, which (section 5) is every byte ordinary text
# contains, so decoding the ids gives the exact text back: whitespace, emoji, accents and all.
# Check it on texts that break weaker tokenizers:

# %%
round_trip = {
    "English": "Hello, world! How are you?",
    "Japanese": "富士山について教えてください。",
    "emoji": "I ❤️ 🍣 and 🗻! 👩‍👩‍👧",
    "whitespace": "  two leading spaces\n\ttab, two trailing  ",
    "code": code,
    "combining accent": "cafe\u0301 vs caf\u00e9",
    "mixed": "混合 mixed テキスト 123 ½",
    "chat-looking": "[INST] <<SYS>> <s> </s>",
}
for name, original in round_trip.items():
    ids_ = tokenizer.encode(original, add_special_tokens=False)
    back = tokenizer.decode(ids_)
    print(f"{name:17} {len(original):3} chars -> {len(ids_):3} tokens  round trip: {back == original}")
    assert back == original

# %% [markdown]
# The family emoji 👩‍👩‍👧 is one symbol on screen, 5 code points for Python (three people joined by
# two zero-width joiners), 18 bytes, and 13 tokens for this model, not one of them a whole
# character:

# %%
family = "👩‍👩‍👧"
print(len(family), "code points,", len(family.encode("utf-8")), "bytes,", len(tokenizer.encode(family)), "tokens")
family_view = lt.show_tokens(tokenizer, family)
print(family_view)
assert len(family) == 5 and len(family.encode("utf-8")) == 18
if EMBEDDED:
    assert len(family_view) == 13 and all(t.fragment for t in family_view)

# %% [markdown]
# Three ways to lose the round trip anyway:
# - a byte with no token is dropped (section 5: here 6 control characters, e.g. `"a\x04b"` comes
#   back as `"ab"`);
# - `skip_special_tokens=True` also removes special-token text that was part of the input;
# - `clean_up_tokenization_spaces=True` (meant for old WordPiece tokenizers) would delete the space
#   in `"Hello , world"`. transformers 5 refuses to apply it to a BPE tokenizer, with a warning.

# %%
tricky = f"the {tokenizer.eos_token} token"
skipped = tokenizer.decode(tokenizer.encode(tricky), skip_special_tokens=True)
print(repr(skipped))
assert skipped != tricky and tokenizer.eos_token not in skipped

with lt.capture() as got:
    cleaned = tokenizer.decode(tokenizer.encode("Hello , world"), clean_up_tokenization_spaces=True)
print(repr(cleaned), "|", got.messages[0][:80] if got.messages else "(no warning)")
assert cleaned == "Hello , world"
if EMBEDDED:
    assert got.contains("Ignoring clean_up_tokenization_spaces=True for BPE tokenizer")

# %% [markdown]
# ## 8. The chat template
# An instruct model was fine-tuned on conversations written in one exact format. The tokenizer
# carries that format as a Jinja template (`chat_template.jinja` in the folder), and
# `apply_chat_template` writes a list of messages in it:

# %%
messages = [{"role": "user", "content": "Please tell me about Mount Fuji."}]
chat_text = tokenizer.apply_chat_template(messages, tokenize=False)
prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
print(chat_text)
print("--- with add_generation_prompt=True, it continues:")
print(prompt_text[len(chat_text):])
assert prompt_text.startswith(chat_text)
generation_prompt = prompt_text[len(chat_text):]

# %% [markdown]
# `add_generation_prompt=True` appends the header of the assistant's turn, so that the model's
# next tokens are the answer. Without it the model would first have to write that header itself.
#
# We only gave a user message, yet the text has a **system** turn: this template injects a default
# system prompt when the conversation has none. Find it without knowing the format: render the
# same conversation with a known system message, and diff the two renderings.

# %%
import os

marker = "SYSTEM-PROMPT-MARKER"
with_system = tokenizer.apply_chat_template([{"role": "system", "content": marker}, *messages], tokenize=False)
prefix = os.path.commonprefix([chat_text, with_system])
suffix = os.path.commonprefix([chat_text[::-1], with_system[::-1]])[::-1]
injected = chat_text[len(prefix): len(chat_text) - len(suffix)]
if with_system[len(prefix): len(with_system) - len(suffix)] == marker and injected:
    print("default system prompt:", repr(injected))
else:
    print("this template injects no default system prompt")
if EMBEDDED:
    assert injected == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert injected not in with_system  # your own system message replaces it

# %% [markdown]
# That matters: the model is told it is "SmolLM" unless you pass your own system message, and the
# default costs tokens in every prompt. With `tokenize=True` (the default), you get ids; in
# transformers 5 as a `BatchEncoding` with `input_ids` and `attention_mask` (`return_dict=False`
# gives the plain list). The template already contains its special tokens, so text you render
# yourself must be encoded with `add_special_tokens=False`, or a tokenizer that adds a bos would add
# a second one.

# %%
chat_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
print(type(chat_ids).__name__, list(chat_ids))
assert set(chat_ids) == {"input_ids", "attention_mask"}
assert chat_ids["input_ids"] == tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
assert tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False) == chat_ids["input_ids"]
assert lt.chat_inputs(tokenizer, messages)["input_ids"][0].tolist() == chat_ids["input_ids"]  # the package helper
question_tokens = len(tokenizer.encode(messages[0]["content"]))
print(f"prompt: {len(chat_ids['input_ids'])} tokens, of which the question is {question_tokens}")

# %%
lt.show_tokens(tokenizer, chat_ids)

# %% [markdown]
# ### The seed's hand-written Llama-2 prompt
# The first seed article builds its prompt by hand, in the format of Llama-2 chat models, and
# encodes it with `add_special_tokens=False`:

# %%
system_ja = "あなたは誠実で優秀な日本人のアシスタントです。"
user_ja = "富士山について教えてください。"
llama2_prompt = f"<s>[INST] <<SYS>>\n{system_ja}\n<</SYS>>\n\n{user_ja} [/INST]"
llama2_view = lt.show_tokens(tokenizer, llama2_prompt)
print(llama2_prompt)
print(repr(llama2_view))
special_in_llama2 = [t.text for t in llama2_view if t.special]
print("special tokens in it:", special_in_llama2)
same_through_template = tokenizer.apply_chat_template(
    [{"role": "system", "content": system_ja}, {"role": "user", "content": user_ja}],
    add_generation_prompt=True, return_dict=False,
)
print(f"the same conversation through the chat template: {len(same_through_template)} tokens, "
      f"{sum(i in tokenizer.all_special_ids for i in same_through_template)} of them special")

# %% [markdown]
# For this model, every one of those tokens is ordinary text: `<s>`, `[INST]`, `<<SYS>>` are
# spelled out with several plain tokens each, exactly like any other word. The tokens that
# structure *this* model's conversations are the ones its template uses, and each of them is a
# single special token:

# %%
chat_markers = [t for t in tokenizer.all_special_tokens if t in prompt_text]
for text_ in ["<s>", "[INST]", "<<SYS>>", "[/INST]", *chat_markers]:
    pieces = lt.show_tokens(tokenizer, text_)
    print(f"{text_:>14}: {len(pieces)} token(s), special: {[t.special for t in pieces]}   {pieces}")
    if text_ in chat_markers:
        assert len(pieces) == 1 and pieces[0].special
    else:
        assert len(pieces) > 1 and not any(t.special for t in pieces)
assert special_in_llama2 == []
if EMBEDDED:
    assert chat_markers == ["<|im_start|>", "<|im_end|>"]

# %% [markdown]
# Why the difference? Before BPE runs, the tokenizer looks for its *added tokens* (section 4) in
# the text and cuts them out whole; everything else goes through BPE. `<|im_start|>` is in that
# list, `[INST]` is not, so `[INST]` is six ordinary characters to this model, spelled with three
# ordinary tokens. The second seed
# article says "`[INST]` and `[SYS]` are not special tokens (probably)": for this tokenizer,
# confirmed; whether a marker is special is written in each tokenizer's `added_tokens_decoder`, so
# look it up rather than guess.
#
# ### The seed's `<s>`, on a tokenizer of the family it was written for
# The seed wrote its prompt for ELYZA-japanese-Llama-2-7b, a Llama 2 model, and for that family its
# two choices fit together. Llama 2's tokenizer has `<unk>`, `<s>`, `</s>` as ids 0, 1, 2; `<s>` is
# its BOS token, and its post-processor puts `<s>` in front of every text it encodes (no `</s>` at
# the end: the seed's "bos and eos" is half right there). Its chat template writes the `<s>` itself.
# So a prompt that already starts with `<s>` must be encoded with `add_special_tokens=False`, as
# the seed does.
#
# Llama 2's tokenizer cannot be downloaded here, so build one of the same kind with the
# `tokenizers` library: the same three special tokens and ids, `▁` for a space (`Metaspace`), the
# same post-processor (`TemplateProcessing`: `<s> $A`) and Llama 2's chat template (its role checks
# left out). Its vocabulary is just the characters of the texts below, with no merges: the merges
# are not what this is about.

# %%
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}{% set messages = messages[1:] %}"
    "{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + ((system if loop.first else '') + message['content']).strip() + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
llama_specials = ["<unk>", "<s>", "</s>"]
characters = sorted(set(llama2_prompt.replace(" ", "▁") + "Mount▁Fuji"))
backend = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(llama_specials + characters)}, merges=[],
                               unk_token="<unk>"))
backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
llama_style = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                      chat_template=LLAMA2_CHAT_TEMPLATE)
print(f"{len(llama_style)} tokens; bos {llama_style.bos_token!r} ({llama_style.bos_token_id}), "
      f"eos {llama_style.eos_token!r} ({llama_style.eos_token_id})")

plain_ids = llama_style.encode("Mount Fuji")
print("add_special_tokens=True: ", llama_style.convert_ids_to_tokens(plain_ids))
assert plain_ids == [llama_style.bos_token_id, *llama_style.encode("Mount Fuji", add_special_tokens=False)]
assert llama_style.eos_token_id not in plain_ids  # a BOS, and no EOS
assert llama_style.decode(plain_ids, skip_special_tokens=True) == "Mount Fuji"

# %% [markdown]
# Its chat template writes exactly the seed's prompt, `<s>` included. Encode that prompt three ways:
# as the seed does, with the default `add_special_tokens=True`, and through the template:

# %%
seed_conversation = [{"role": "system", "content": system_ja}, {"role": "user", "content": user_ja}]
assert llama_style.apply_chat_template(seed_conversation, tokenize=False) == llama2_prompt
encodings = {
    "the seed's add_special_tokens=False": llama_style.encode(llama2_prompt, add_special_tokens=False),
    "the default add_special_tokens=True": llama_style.encode(llama2_prompt),
    "apply_chat_template(tokenize=True)": llama_style.apply_chat_template(seed_conversation, return_dict=False),
}
for name, ids_ in encodings.items():
    print(f"{name:36} {llama_style.convert_ids_to_tokens(ids_[:4])} ... {ids_.count(llama_style.bos_token_id)} BOS")
seed_way, default_way, template_way = encodings.values()
assert seed_way == template_way and seed_way.count(llama_style.bos_token_id) == 1
assert default_way == [llama_style.bos_token_id, *seed_way]  # the BOS twice
assert llama_style.unk_token_id not in seed_way

# %% [markdown]
# With a Llama 2 tokenizer, the seed's `<s>` plus `add_special_tokens=False` gives one BOS, the one
# the model was trained with; the default adds a second. With this notebook's tokenizer, `<s>` is
# several ordinary tokens and nothing is added (section 2), so the same code that is right for Llama 2
# writes text the model was never trained on. Read the tokenizer, or let `apply_chat_template`
# tokenize (it adds no special tokens of its own), and the question does not arise. What a doubled
# BOS does to a model's answer is [notebook 06, §10](06_pitfalls.ipynb#doubled-bos).
#
# ### Typed special tokens
# Matching special tokens in text has a side effect: a user who *types* `<|im_end|>` produces
# the real special token, and can fake the end of their turn. For text you do not control, pass
# `split_special_tokens=True`, which spells it out as ordinary text:

# %%
typed = f"hi{tokenizer.eos_token}"
as_special = lt.show_tokens(tokenizer, tokenizer(typed, add_special_tokens=False)["input_ids"])
as_text = lt.show_tokens(tokenizer, tokenizer(typed, add_special_tokens=False, split_special_tokens=True)["input_ids"])
print("default:                  ", as_special)
print("split_special_tokens=True:", as_text)
assert tokenizer.eos_token_id in as_special.ids and tokenizer.eos_token_id not in as_text.ids
assert "".join(as_text.texts) == typed

# %% [markdown]
# ### Does the format matter? Ask the model
# The same system message and question, once through the chat template and once in the seed's
# Llama-2 format (in English, which this small model handles far better). Greedy decoding, 34 new
# tokens (generation itself is notebook 04's subject). Both prompts go to the model in one batch,
# padded on the **left** as section 2 advises, so that both rows end where their answer begins.
# The template row is exactly what `lt.chat_inputs` builds, and `lt.ask(model, tokenizer,
# question, system=...)` answers through it in one call (notebook 02 uses it).

# %%
import torch

model = lt.load_model()
system_en = "You are an honest and capable assistant."
user_en = "Please tell me about Mount Fuji."
template_prompt = tokenizer.apply_chat_template(
    [{"role": "system", "content": system_en}, {"role": "user", "content": user_en}],
    add_generation_prompt=True, tokenize=False,
)
llama2_prompt_en = f"<s>[INST] <<SYS>>\n{system_en}\n<</SYS>>\n\n{user_en} [/INST]"
both = tokenizer([template_prompt, llama2_prompt_en], add_special_tokens=False, padding=True,
                 padding_side="left", return_tensors="pt").to(model.device)
template_row = both["input_ids"][0][both["attention_mask"][0].bool()]
assert template_row.tolist() == lt.chat_inputs(tokenizer, user_en, system=system_en)["input_ids"][0].tolist()

with torch.inference_mode():
    generated = model.generate(**both, max_new_tokens=34, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                               return_dict_in_generate=True, output_scores=True)
# generate returns prompt + answer: keep only the new tokens (the seed's `[token_ids.size(1):]`)
prompt_length = both["input_ids"].shape[1]
new_tokens = generated.sequences[:, prompt_length:]
template_answer, llama2_answer = (answer.strip() for answer in
                                  tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
# greedy texts hold on another CPU only if no step was a near-tie: the top-1 vs top-2 gap of the
# scores each token was chosen from (steps after a row's eos only pad it, and do not count)
is_eos = new_tokens == tokenizer.eos_token_id
wrote_answer = (is_eos.long().cumsum(1) - is_eos.long()) == 0
lt.check_gap(float(lt.top2_gap(torch.stack(generated.scores, dim=1))[wrote_answer].min()), "the two answers")

print("chat template:\n ", template_answer)
print("Llama-2 format:\n ", llama2_answer.replace("\n", "\n  "))

# %%
def repeated_lines(answer: str) -> int:
    lines = [line for line in answer.splitlines() if line.strip()]
    return len(lines) - len(set(lines))


print("repeated lines:", {"chat template": repeated_lines(template_answer), "Llama-2 format": repeated_lines(llama2_answer)})
if EMBEDDED:
    assert repeated_lines(template_answer) == 0 and repeated_lines(llama2_answer) >= 2

# %% [markdown]
# Through its own template the model answers in fluent sentences (whose facts a 135M-parameter
# model gets partly wrong: Fuji is one volcano, not a "range"). In a format that is not its own,
# it falls into a loop. The prompt format is part of the model: use `apply_chat_template`,
# never a format copied from another model's tutorial.

# %% [markdown]
# ## Recap
# - `AutoTokenizer.from_pretrained` takes a Hub id or a local folder; `revision` pins a Hub
#   version (branch, tag or commit) and is ignored for folders. Offline, a Hub id loads only from
#   the cache; `lt.load_tokenizer()` loads the embedded model's tokenizer with no network.
# - `encode` returns a list of ids; `tokenizer(...)` returns `input_ids` and `attention_mask`.
#   `add_special_tokens=True` adds what the tokenizer's post-processor says (here: nothing).
#   Batches need `padding=True`; the mask marks real tokens; left padding for generation.
#   `max_length` alone truncates (silently; only with padding off); `truncation=True` alone uses
#   `model_max_length`, here a placeholder far above the model's `max_position_embeddings`.
# - `decode` / `batch_decode` keep special tokens unless `skip_special_tokens=True`.
# - Special tokens (bos, eos, pad, unk and the chat markers) are read from the tokenizer; here pad
#   is eos, and no bos is added.
# - Byte-level BPE spells text from byte tokens plus merges (this vocabulary lacks 21 bytes and
#   silently drops 6 control characters). `tokenizer.json` holds the merges in rank order; a
#   regex, the byte table and "merge the lowest-ranked pair until none is left" give exactly the
#   library's tokens. An English-centric vocabulary has few Japanese merges,
#   so Japanese costs 2.86x the tokens of the same English content over five parallel sentences
#   (3.7x for one short request; 1.7 tokens per character vs 0.25), and a token may hold part of a
#   character.
# - `decode(encode(x)) == x` holds for ordinary text (Japanese and emoji included), but not after
#   `skip_special_tokens=True`, nor for a byte the vocabulary lacks.
# - `apply_chat_template(..., add_generation_prompt=True)` writes the model's own format, here
#   with a default system prompt; `[INST]` is plain text to this model, `<|im_start|>` one special
#   token. The wrong format makes the model loop.
# - A Llama 2 tokenizer adds a BOS `<s>` (and no EOS) and its template writes one too: the seed's
#   `<s>` prompt needs `add_special_tokens=False` there, or the BOS doubles. This one adds none.

# %% [markdown]
# ## Exercises
# **1.** Which of the 46 basic hiragana (あ to ん) is a single token in this vocabulary? What is the
# most tokens one hiragana can cost, and why can it never be more with a byte-level vocabulary?

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
hiragana = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
assert len(hiragana) == 46
cost = {h: len(tokenizer.encode(h, add_special_tokens=False)) for h in hiragana}
single = [h for h, n in cost.items() if n == 1]
print("single tokens:", "".join(single), f"({len(single)} of 46)")
print("most tokens for one hiragana:", max(cost.values()))
# A hiragana is 3 UTF-8 bytes, and the bytes it needs have tokens: never more than 3 tokens.
# Here it is at most 2, because the common first two bytes (e3 81, e3 82) were merged into tokens.
assert all(len(h.encode("utf-8")) == 3 for h in hiragana)
assert max(cost.values()) <= 3
if EMBEDDED:
    assert max(cost.values()) == 2 and all(byte_to_char[0xE3] + byte_to_char[b] in vocab for b in (0x81, 0x82))
    assert single == [h for h in hiragana if h in japanese_entries]

# %% [markdown]
# **2.** Truncate 「富士山について教えてください」 to `max_length=n` tokens for n = 1...10 and decode
# each. Some results end in `'�'`: why? Which n give clean text?

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
clean = []
for n in range(1, 11):
    cut = tokenizer(request_ja, max_length=n, truncation=True)["input_ids"]
    decoded = tokenizer.decode(cut)
    print(n, repr(decoded))
    if "\ufffd" not in decoded:
        clean.append(n)
        assert request_ja.startswith(decoded)
print("clean cuts at n =", clean)
# Truncation counts tokens, not characters: a cut between two tokens of one character keeps
# only that character's first bytes, which decode to U+FFFD. The cut is clean exactly when the
# kept bytes are whole UTF-8 characters.
request_pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode(request_ja, add_special_tokens=False))


def whole_characters(n: int) -> bool:
    try:
        b"".join(lt.token_bytes(p) for p in request_pieces[:n]).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


assert clean == [n for n in range(1, 11) if whole_characters(n)]
assert len(clean) < 10

# %% [markdown]
# **3.** Write the prompt for this conversation by hand, as one f-string in the embedded model's
# format (read it off the outputs above), and check it equals `apply_chat_template(...,
# add_generation_prompt=True, tokenize=False)`, string and ids:
# a system message "You answer in one sentence.", the user's "What is the capital of France?", the
# assistant's "Paris.", then the user's "And of Japan?".

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
conversation = [
    {"role": "system", "content": "You answer in one sentence."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Japan?"},
]
if EMBEDDED:
    start, end = "<|im_start|>", "<|im_end|>"  # ChatML markers: each one special token
    by_hand = (
        f"{start}system\nYou answer in one sentence.{end}\n"
        f"{start}user\nWhat is the capital of France?{end}\n"
        f"{start}assistant\nParis.{end}\n"
        f"{start}user\nAnd of Japan?{end}\n"
        f"{start}assistant\n"
    )
    library = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert by_hand == library
    assert tokenizer.encode(by_hand, add_special_tokens=False) == tokenizer.apply_chat_template(
        conversation, add_generation_prompt=True, return_dict=False
    )
    print(by_hand)
else:
    print("this solution writes the embedded model's format (ChatML); read your model's template instead")
