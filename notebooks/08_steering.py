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
# # 08 · Steering the output
# **How do you make a model stop at a string, never say a word, answer in valid JSON, or carry on
# a conversation without recomputing it, and what does `generate` do for each?**
#
# Each of these is a small addition to the loop of [notebook 04](04_generation_loop.ipynb): a test
# after each step (stop strings), an edit of the [logits](glossary.md#logit) before the choice
# (banning, biasing, structured output), or a [KV cache](glossary.md#kv-cache) kept between two
# calls (a chat). Each is written by hand first, then done by the library, and the two are
# asserted equal:
#
# 1. stop strings; 2. banning and biasing tokens; 3. structured output: a regular expression by
# hand, then a JSON schema with a library; 4. a chat that reuses its cache.

# %%
import llm_tutorial as lt

banner = lt.setup_notebook(seed=0)

# %%
import copy
import json
import math
import time

import regex
import torch
from transformers import (
    LogitsProcessor,
    NoBadWordsLogitsProcessor,
    SequenceBiasLogitsProcessor,
    StopStringCriteria,
)

model = lt.load_model()
tokenizer = lt.load_tokenizer()
EOS = tokenizer.eos_token_id
print(type(model).__name__, "| EOS", EOS, repr(tokenizer.decode(EOS)), "| vocabulary:", len(tokenizer), "tokens")


def tokens_of(ids):
    """Each token of ``ids`` as its text: where the token boundaries fall."""
    return [tokenizer.decode(token) for token in ids]


def closest_call(out, what):
    """Check the smallest top-1/top-2 gap of the scores each step chose from (after every
    processor), up to each row's EOS (``lt.scores_gap``): the printed choices hold on any CPU."""
    return lt.check_gap(lt.scores_gap(out, EOS), what)


# %% [markdown]
# ## 1. Stop strings
#
# `generate` stops at an [EOS](glossary.md#eos) token; often you want it to stop at a piece of
# *text* instead, a [stop string](glossary.md#stop-string): the end of a line, a closing brace,
# the next `"Q:"`. Text and [tokens](glossary.md#token) do not line up, though. Here is a short
# answer, token by token:

# %%
TIPS = "Give me two tips for sleeping well, briefly."
tips = lt.chat_inputs(tokenizer, TIPS, device=model.device)
P_TIPS = tips["input_ids"].shape[1]
with torch.inference_mode():
    tips_out = model.generate(**tips, max_new_tokens=20, do_sample=False, return_dict_in_generate=True)
tips_ids = tips_out.sequences
lt.check_gap(lt.greedy_gap(model, tips_ids, P_TIPS), "the tips answer")
print(tokens_of(tips_ids[0, P_TIPS:]))

# %% [markdown]
# The blank line after the first sentence is **one** token, `"\n\n"`. Stop at the first line break,
# `stop_strings="\n"`, and the stop string ends in the middle of that token: `generate` has to keep
# the whole token, so the text it returns runs one character past the stop string. Cut it yourself:

# %%
with torch.inference_mode():
    stopped = model.generate(**tips, max_new_tokens=20, do_sample=False, stop_strings="\n", tokenizer=tokenizer)
text = tokenizer.decode(stopped[0, P_TIPS:])
print(f"{stopped.shape[1] - P_TIPS} tokens, last {tokens_of(stopped[0, -1:])}: {text!r}")
print("cut at the stop string:", repr(text[:text.index("\n")]))
assert torch.equal(stopped, tips_ids[:, :stopped.shape[1]])  # the same answer, stopped early
assert text.endswith("\n\n") and text.index("\n") == len(text) - 2  # one character past the stop string

# %% [markdown]
# `generate` needs `tokenizer=` to know the text of each token. By hand, in the loop of notebook
# 04 (`lt.stream_tokens`, as in its exercise 3): after each token, decode the **tail** of the
# sequence and look for a stop string that *ends inside the last token* (one that ended earlier
# would have stopped the loop already). A stop string can span several tokens, so the tail must be
# long enough: as many tokens as the stop string has bytes (every token holds at least one byte).
# Decoding the whole answer at every step would also work, but its cost grows with the answer.

# %%
def ends_with_stop(ids, stop):
    """Does ``stop`` end inside the last token of ``ids``? Decodes only the tail."""
    window = ids[-len(stop.encode("utf-8")):]  # enough tokens to hold the stop string
    tail = tokenizer.decode(window)
    last = len(tokenizer.decode(window[-1:]))
    return stop in tail[max(len(tail) - last - len(stop) + 1, 0):]  # must end after the earlier tokens


def generate_until(inputs, stops, max_new_tokens):
    ids = inputs["input_ids"][0].tolist()
    for step in lt.stream_tokens(model, inputs["input_ids"], inputs["attention_mask"],
                                 max_new_tokens=max_new_tokens, eos_token_id=EOS):
        ids.append(step.tokens[0].item())
        if any(ends_with_stop(ids, stop) for stop in stops):
            break
    return torch.tensor([ids], device=model.device)


with torch.inference_mode():
    stopped_2 = model.generate(**tips, max_new_tokens=20, do_sample=False, stop_strings=["\n1."], tokenizer=tokenizer)
for stops, library in ((["\n"], stopped), (["\n1."], stopped_2)):
    by_hand = generate_until(tips, stops, max_new_tokens=20)
    print(f"stop at {stops}: the last tokens {tokens_of(by_hand[0, -3:])}")
    assert torch.equal(by_hand, library)

# %% [markdown]
# `"\n1."` starts in the middle of the `"\n\n"` token and spans three tokens. transformers does
# the same test with `StopStringCriteria`, precomputed from the vocabulary (which token can end,
# continue or start which stop string) rather than decoded. Both agree at every length of the
# answer, for stop strings that end inside a token, span several, or both:

# %%
STOPS = ["\n", "\n1.", "two tips", "tip", "ps that"]
print(f"{'stop string':<14} stops after token  its last tokens")
for stop in STOPS:
    criteria = StopStringCriteria(tokenizer, [stop])
    fires = [bool(criteria(tips_ids[:, :n], None)[0]) for n in range(P_TIPS + 1, tips_ids.shape[1] + 1)]
    by_hand = [ends_with_stop(tips_ids[0, :n].tolist(), stop) for n in range(P_TIPS + 1, tips_ids.shape[1] + 1)]
    assert fires == by_hand and any(fires)
    first = fires.index(True) + 1
    print(f"{stop!r:<14} {first:>17}  {tokens_of(tips_ids[0, P_TIPS + first - 2:P_TIPS + first])}")

# %% [markdown]
# `"tip"` fires at `" tips"`, in the middle of a word: a stop string matches text, not words. (The
# prompt says "tips" too, but only a match that ends in a generated token counts.) And `generate`
# stops a row but keeps what it generated, the stop string and the rest of its last token
# included: cutting the text is up to you.
#
# ## 2. Banning and biasing tokens
#
# Three `generate` arguments change the logits before the choice (notebook 05 §10 shows where
# such [logits processors](glossary.md#logits-processor) run): `bad_words_ids` forbids token
# sequences, `sequence_bias` adds to their logits, `no_repeat_ngram_size` forbids repeating any
# *n* tokens in a row. Our test case asks for JSON:

# %%
capital = lt.chat_inputs(tokenizer, 'What is the capital of France? Answer in JSON, like {"capital": "..."}.',
                         device=model.device)
P_CAP = capital["input_ids"].shape[1]


def ids_of(text):
    return tokenizer.encode(text, add_special_tokens=False)


def answer(inputs, max_new_tokens=12, **kwargs):
    """Greedy, with the raw logits and the scores after the processors of every step."""
    with torch.inference_mode():
        return model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, output_logits=True,
                              output_scores=True, return_dict_in_generate=True, **kwargs)


plain = answer(capital)
closest_call(plain, "the JSON answer")
print(tokens_of(plain.sequences[0, P_CAP:]))

# %% [markdown]
# Ban `" Paris"` (with its space, the way a word usually appears mid-sentence) and nothing changes:

# %%
banned = answer(capital, bad_words_ids=[ids_of(" Paris")])
closest_call(banned, "the answer without ' Paris'")
print(tokens_of(banned.sequences[0, P_CAP:]))
print(f"' Paris' is token {ids_of(' Paris')}, 'Paris' is token {ids_of('Paris')}")
assert torch.equal(banned.sequences, plain.sequences)

# %% [markdown]
# Inside the quotes there is no space, so the model writes the other token, `"Paris"`: a ban is on
# token ids, not on a word. What does a ban do to the logits? `bad_words_ids` is a special case of
# `sequence_bias`: a bias of −∞ (transformers' `NoBadWordsLogitsProcessor` is a
# `SequenceBiasLogitsProcessor`). A sequence of one token gets its bias at every step; a longer
# one only on its last token, and only when the text so far ends with the rest of it. In plain
# tensor code:

# %%
def add_sequence_bias(scores, input_ids, biases):
    """``biases``: a list of [token ids, bias]. Adds the bias to the logit of each sequence's last
    token, in the rows whose ids end with the sequence's other tokens."""
    scores = scores.clone()
    for sequence, bias in biases:
        *before, last = sequence
        rows = torch.tensor([ids[len(ids) - len(before):] == before for ids in input_ids.tolist()],
                            device=scores.device)
        scores[rows, last] += bias
    return scores


def ban(scores, input_ids, bad_words):
    return add_sequence_bias(scores, input_ids, [[word, -math.inf] for word in bad_words])


# the library, on the logits of the step that chose "Paris" ...
step = plain.sequences[0, P_CAP:].tolist().index(ids_of("Paris")[0])
seen, logits = plain.sequences[:, :P_CAP + step], plain.logits[step]
both = [ids_of(" Paris"), ids_of("Paris")]
assert torch.equal(ban(logits, seen, both), NoBadWordsLogitsProcessor(both, eos_token_id=EOS)(seen, logits))
# ... and inside generate: the scores it chose from at every step, from the raw logits
for t, (raw, scores) in enumerate(zip(banned.logits, banned.scores, strict=True)):
    assert torch.equal(ban(raw, banned.sequences[:, :P_CAP + t], [ids_of(" Paris")]), scores)
assert issubclass(NoBadWordsLogitsProcessor, SequenceBiasLogitsProcessor)
print("ban by hand == NoBadWordsLogitsProcessor == generate(bad_words_ids=...), at every step")

# %% [markdown]
# To ban a word, ban **every form** it can take: with and without a leading space, capitalised,
# upper and lower case. Some forms are several tokens, and then only their last token is banned,
# after the others:

# %%
FORMS = [" Paris", "Paris", " PARIS", "PARIS", " paris", "paris"]
for form in FORMS:
    print(f"{form!r:<9} {tokens_of(ids_of(form))}")
every_form = answer(capital, bad_words_ids=[ids_of(form) for form in FORMS])
closest_call(every_form, "the answer without any form of Paris")
every_text = tokenizer.decode(every_form.sequences[0, P_CAP:], skip_special_tokens=True)
print(repr(every_text))
assert "paris" not in every_text.lower()

# %% [markdown]
# That is as far as a list of token sequences goes: `"PAR"` alone stays allowed (only `"IS"`
# after it is banned), and nothing stops the model from spelling the word with other tokens than
# the tokenizer's own choice, `"P"` + `"aris"` for instance, which decodes to the same text and is
# in no list. Guaranteeing something about the *text* needs a processor that looks at the text:
# section 3.

# %%
spelled = ids_of("P") + ids_of("aris")
print(tokens_of(spelled), "decodes to", repr(tokenizer.decode(spelled)))
assert tokenizer.decode(spelled) == "Paris" and spelled not in [ids_of(form) for form in FORMS]
assert [ids_of("PAR")[0]] not in [ids_of(form) for form in FORMS]  # "PAR" alone is in no list

# %% [markdown]
# A bias is the soft version: it moves a logit by a fixed amount, and the token still wins if it
# was far enough ahead. At the step that chose `"Paris"`, `"London"` was behind by:

# %%
london = ids_of("London")
assert len(london) == 1
behind = (logits[0, ids_of("Paris")[0]] - logits[0, london[0]]).item()
print(f'"London" is {lt.fmt(behind, decimals=1, kind="logit")} behind "Paris"')
for bias in (3.0, 6.0):
    biased = answer(capital, sequence_bias=[[london, bias]])
    closest_call(biased, f"the answer with bias {bias}")
    for t, (raw, scores) in enumerate(zip(biased.logits, biased.scores, strict=True)):
        by_hand = add_sequence_bias(raw, biased.sequences[:, :P_CAP + t], [[london, bias]])
        assert torch.equal(by_hand, scores)
        assert torch.equal(by_hand, SequenceBiasLogitsProcessor([[london, bias]])(biased.sequences[:, :P_CAP + t], raw))
    print(f"bias +{bias}: {tokenizer.decode(biased.sequences[0, P_CAP:], skip_special_tokens=True)!r}")
    assert (london[0] in biased.sequences[0, P_CAP:].tolist()) == (bias > behind)

# %% [markdown]
# `no_repeat_ngram_size=n` forbids any token that would complete an *n*-gram (*n* tokens in a row)
# already present in the sequence, the prompt included. By hand: take the last *n* − 1 tokens,
# find every earlier place where they occur, and ban the token that followed them there. A short
# poem that greedy decoding makes repeat itself:

# %%
def no_repeat_ngram(scores, input_ids, n):
    scores = scores.clone()
    for row, ids in enumerate(input_ids.tolist()):
        last = ids[len(ids) - (n - 1):]  # the n - 1 tokens a new n-gram would start with
        for i in range(len(ids) - n + 1):
            if ids[i:i + n - 1] == last:
                scores[row, ids[i + n - 1]] = -math.inf  # would repeat the n-gram at i
    return scores


poem = lt.chat_inputs(tokenizer, "Write a short poem about rain.", device=model.device)
P_POEM = poem["input_ids"].shape[1]
poems = {}
for n in (None, 3):
    out = answer(poem, max_new_tokens=24, no_repeat_ngram_size=n)
    closest_call(out, f"the poem with no_repeat_ngram_size={n}")
    if n is not None:
        for t, (raw, scores) in enumerate(zip(out.logits, out.scores, strict=True)):
            assert torch.equal(no_repeat_ngram(raw, out.sequences[:, :P_POEM + t], n), scores)
    poems[n] = out.sequences[0, P_POEM:].tolist()
    print(f"no_repeat_ngram_size={n}: distinct 3-grams {lt.fmt(lt.distinct_ngram_ratio(poems[n], 3), 2, kind='exact')}")
    print("   ", repr(tokenizer.decode(poems[n])))
assert lt.distinct_ngram_ratio(poems[None], 3) < 1 == lt.distinct_ngram_ratio(poems[3], 3)

# %% [markdown]
# No 3-gram repeats any more, and the poem has to find other words. The price is the same as for
# the repetition penalty ([notebook 05 §7](05_decoding.ipynb#repetition-penalty-eos)): the rule
# knows nothing about meaning, so a name of three tokens can be written only once, and the
# [chat template](glossary.md#chat-template)'s own tokens in the prompt count too.
#
# ## 3. Structured output: a regular expression by hand
#
# A program that reads the answer wants it in a format: a date, a number, JSON. Asking for it in
# the prompt is not enough for a small model:

# %%
apollo = lt.chat_inputs(tokenizer, "On what date did Apollo 11 land on the Moon? Answer with the date only, "
                        "as YYYY-MM-DD.", device=model.device)
P_APOLLO = apollo["input_ids"].shape[1]
free = answer(apollo, max_new_tokens=20)
closest_call(free, "the date answer")
print(repr(tokenizer.decode(free.sequences[0, P_APOLLO:], skip_special_tokens=True)))

# %% [markdown]
# [Constrained decoding](glossary.md#constrained-decoding) makes the format a rule instead of a
# wish: at each step, allow only the tokens after which the text can still become a full match of
# a regular expression, and allow EOS only once it is one. The `regex` package answers the
# question "can this text still become a match?" directly: `fullmatch(..., partial=True)`
# succeeds on a text that is a match or the beginning of one.

# %%
DATE = r"(19|20)[0-9][0-9]-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
date = regex.compile(DATE)
for text in ["1969-07-20", "1969-0", "1969-1", "1969-13", "July"]:
    match = date.fullmatch(text, partial=True)
    print(f"{text!r:<13} {'no' if match is None else 'partial' if match.partial else 'full'}")

# %% [markdown]
# The processor needs the text of every token of the vocabulary. `lt.token_texts` reads it from the
# vocabulary's byte alphabet (`None` for special tokens and for tokens that hold only part of a
# multi-byte character: those never match a whole character):

# %%
texts = lt.token_texts(tokenizer)
sample = range(0, len(tokenizer), 97)
assert all(texts[i] == tokenizer.decode(i) for i in sample if texts[i] is not None)
usable = sum(text is not None for text in texts)
print(f"{usable} of {len(texts)} tokens have a text of their own; e.g. {[texts[i] for i in range(1000, 1005)]}")

# %% [markdown]
# The whole processor: for each row, the text generated so far; each token of the vocabulary is
# tried after it.

# %%
class RegexByHand(LogitsProcessor):
    def __init__(self, pattern, prompt_length):
        self.regex = regex.compile(pattern)
        self.prompt_length = prompt_length
        self.tests = 0  # partial-match tests: the work
        self.masks = []  # the allowed tokens of every call, kept to compare

    def allowed(self, text):
        match = self.regex.fullmatch
        keep = [piece is not None and match(text + piece, partial=True) is not None for piece in texts]
        self.tests += usable
        keep[EOS] = match(text) is not None  # the end only after a full match
        return torch.tensor(keep)

    def __call__(self, input_ids, scores):
        generated = input_ids[:, self.prompt_length:].tolist()
        mask = torch.stack([self.allowed("".join(texts[t] for t in ids)) for ids in generated])
        self.masks.append(mask)
        return scores.masked_fill(~mask.to(scores.device), -math.inf)


hand = RegexByHand(DATE, P_APOLLO)
constrained = answer(apollo, max_new_tokens=16, logits_processor=[hand])
closest_call(constrained, "the constrained date")
dated = tokenizer.decode(constrained.sequences[0, P_APOLLO:], skip_special_tokens=True)
print(repr(dated))
assert date.fullmatch(dated) and constrained.sequences[0, -1].item() == EOS

# %% [markdown]
# What it allowed at each step:

# %%
steps = len(hand.masks)
for t, mask in enumerate(hand.masks):
    so_far = tokenizer.decode(constrained.sequences[0, P_APOLLO:P_APOLLO + t])
    print(f"after {so_far!r:<13} {tokens_of(mask[0].nonzero()[:, 0])}")
assert hand.tests == steps * usable  # every usable token, at every step

# %% [markdown]
# The month can start only with 0 or 1, and the end comes only after a full date. The cost: a
# partial match for every token of the vocabulary at every step, in Python:

# %%
# NBVAL_IGNORE_OUTPUT
# CPU times: they vary from run to run and machine to machine (shown, never asserted)
def seconds_per_step(processor, repeats=1):
    start = time.process_time()
    for _ in range(repeats):
        for t in range(steps):
            processor(constrained.sequences[:, :P_APOLLO + t], constrained.logits[t])
    return (time.process_time() - start) / (steps * repeats)


hand_cost = seconds_per_step(RegexByHand(DATE, P_APOLLO))
print(f"by hand: {hand_cost * 1000:.0f} ms of CPU per step ({usable} partial matches)")

# %% [markdown]
# `lt.regex_processor` is the same processor in the package (it groups the vocabulary by first
# character, so that one failed test rules out a whole group, and caches each text's mask). It
# allows exactly the same tokens at every step:

# %%
package = lt.regex_processor(tokenizer, DATE)
for t, mask in enumerate(hand.masks):
    assert torch.equal(lt.allowed_tokens(package, constrained.sequences[:, :P_APOLLO + t], prompt_length=P_APOLLO), mask)
print(f"lt.regex_processor: the same tokens at all {steps} steps, with {package.tests} partial matches "
      f"instead of {hand.tests}")
assert package.tests < hand.tests

# %% [markdown]
# Libraries made for this job compile the pattern into an automaton and walk a prefix tree of the
# vocabulary, so that a step costs far less than a pass over every token. We use
# [llguidance](https://github.com/guidance-ai/llguidance) through `lt.grammar_processor`: a
# Rust library with wheels on PyPI for Linux, macOS and Windows that needs no GPU and no compiler,
# reads the Hugging Face tokenizer object itself (offline), and takes regular expressions, JSON
# schemas and grammars. (xgrammar and outlines-core do the same job and install as easily; both
# compile a grammar against the vocabulary ahead of time, outlines-core into an index of every
# state and token, where llguidance computes each mask when it is needed, so a new schema costs
# no start-up time.) Same regular expression, same tokens at every step, same answer:

# %%
library = lt.grammar_processor(tokenizer, regex=DATE)
for t, mask in enumerate(hand.masks):
    assert torch.equal(lt.allowed_tokens(library, constrained.sequences[:, :P_APOLLO + t], prompt_length=P_APOLLO), mask)
by_library = answer(apollo, max_new_tokens=16, logits_processor=[lt.grammar_processor(tokenizer, regex=DATE)])
assert torch.equal(by_library.sequences, constrained.sequences)
print(f"llguidance: the same tokens as the hand-written processor at all {steps} steps, the same answer")

# %%
# NBVAL_IGNORE_OUTPUT
# CPU times: they vary from run to run and machine to machine (shown, never asserted)
library_cost = seconds_per_step(lt.grammar_processor(tokenizer, regex=DATE), repeats=20)
package_cost = seconds_per_step(lt.regex_processor(tokenizer, DATE))
print(f"per step: by hand {hand_cost * 1000:.0f} ms, lt.regex_processor {package_cost * 1000:.0f} ms, "
      f"llguidance {library_cost * 1000:.2f} ms: by hand costs {hand_cost / library_cost:.0f} times as much")

# %% [markdown]
# ### Where the two differ
#
# A fixed choice of words, on the question of notebook 04, with the hand-written processor, and what
# llguidance allows at the same steps:

# %%
CITY = r"(Paris|Lyon|Marseille)\."
question = lt.chat_inputs(tokenizer, "What is the capital of France?", device=model.device)
P_Q = question["input_ids"].shape[1]
hand_city = RegexByHand(CITY, P_Q)
city = answer(question, max_new_tokens=6, logits_processor=[hand_city])
closest_call(city, "the constrained city")
library_city = lt.grammar_processor(tokenizer, regex=CITY)
fewer = 0  # steps where llguidance allows fewer tokens
for t, mask in enumerate(hand_city.masks):
    by_library = lt.allowed_tokens(library_city, city.sequences[:, :P_Q + t], prompt_length=P_Q)
    so_far = tokenizer.decode(city.sequences[0, P_Q:P_Q + t])
    print(f"after {so_far!r:<8} by hand    {tokens_of(mask[0].nonzero()[:, 0])}")
    print(f"{'':<15}llguidance {tokens_of(by_library[0].nonzero()[:, 0])}")
    assert not (by_library & ~mask).any()  # never more than by hand
    fewer += bool((mask & ~by_library).any())
assert fewer > 0
unconstrained = answer(question, max_new_tokens=6)
closest_call(unconstrained, "the unconstrained city")
unconstrained_text = tokenizer.decode(unconstrained.sequences[0, P_Q:], skip_special_tokens=True)
print("unconstrained:", repr(unconstrained_text))
assert unconstrained_text.startswith("The capital of France is")

# %% [markdown]
# Two lessons. First, the answer is Lyon. Unconstrained, the model starts with "The capital of
# France is": with that ruled out, its best first token among the allowed ones was `"L"`, and a
# constraint never looks ahead. Let the pattern (or the prompt) leave room for the words the model
# wants to write first (exercise 1). The date above is wrong probably for the same reason: free,
# the model starts with "Apollo 11 landed on the Moon on", not with a digit. Second, once the text is `"L"`, the rest (`"yon."`)
# is forced, and llguidance then allows only the first token of the tokenizer's own split of it
# (`"yon"`, its "fast-forward" tokens), where the hand-written processor allows every token that
# fits. Both keep the text a match; the library also keeps the tokens the way the model saw them in
# training. In the date, no two characters in a row were forced, so the two agreed at every step.
#
# ### A JSON schema
#
# The same library turns a JSON schema into such a rule. Ours: a name, an integer age and a list
# of exactly three colours (with short strings, so that an answer cannot run on forever).
# `lt.grammar_processor` asks llguidance for JSON on one line, with `", "` and `": "` between
# items, as `json.dumps` writes it. Three prompts, greedy first:

# %%
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "colours": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 3, "maxItems": 3},
    },
    "required": ["name", "age", "colours"],
    "additionalProperties": False,
}
PROMPTS = [
    "Describe a person in JSON with the keys name, age (an integer) and colours (a list of three favourite colours).",
    'Invent a character for a story. Answer only with JSON: {"name": ..., "age": ..., "colours": [three colours]}.',
    "Give me a JSON object for a user profile: name, age, and three favourite colours.",
]


def valid(text):
    """Is ``text`` a JSON document that follows SCHEMA?"""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return False
    return (isinstance(data, dict) and set(data) == {"name", "age", "colours"} and isinstance(data["name"], str)
            and type(data["age"]) is int and isinstance(data["colours"], list) and len(data["colours"]) == 3
            and all(isinstance(colour, str) for colour in data["colours"]))


tokenizer.padding_side = "left"  # a batch for generation: pads on the left (notebook 04 §4)
rendered = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in PROMPTS]
people = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
P_PEOPLE = people["input_ids"].shape[1]
N_JSON = 40
# the schema's longest document, one token per character (an escape or a character of several
# bytes could take more): a bound on the constrained answer's length, which ends at EOS anyway
N_SCHEMA = len(json.dumps({"name": "x" * 16, "age": 120, "colours": ["x" * 10] * 3}))


def answers_of(sequences):
    return [tokenizer.decode(row[P_PEOPLE:], skip_special_tokens=True) for row in sequences]


free_json = answer(people, max_new_tokens=12)  # the start is enough: see below
closest_call(free_json, "the free JSON answers")
json_out = answer(people, max_new_tokens=N_JSON, logits_processor=[lt.grammar_processor(tokenizer, json_schema=SCHEMA)])
closest_call(json_out, "the constrained JSON answers")
for name, out in (("free", free_json), ("schema", json_out)):
    for text in answers_of(out.sequences):
        print(f"{name:<7} valid: {valid(text)!s:<5} {text[:90]!r}")
    print(f"{name}: {sum(map(valid, answers_of(out.sequences)))} of {len(PROMPTS)} valid")
assert not any(text.lstrip().startswith("{") for text in answers_of(free_json.sequences))  # never valid
assert all(map(valid, answers_of(json_out.sequences)))

# %% [markdown]
# Free, the model starts with a code fence or a sentence: a JSON document starts with `{` (after
# optional whitespace), so these answers can never become valid, however long they run (their
# first 12 tokens are enough to know). With the schema, every answer parses and follows it.
# Sampled, two draws per prompt (seed 0), the same batch with and without the schema, in full:

# %%
# NBVAL_IGNORE_OUTPUT
# sampled texts: another CPU's rounding may draw another token where two are nearly tied
twice = {key: value.repeat_interleave(2, dim=0) for key, value in people.items()}
valid_count = {name: sum(map(valid, answers_of(out.sequences))) for name, out in (("free", free_json),
                                                                                   ("schema", json_out))}
for name, processors, n in (("free", [], N_JSON),
                            ("schema", [lt.grammar_processor(tokenizer, json_schema=SCHEMA)], N_SCHEMA)):
    torch.manual_seed(0)
    with torch.inference_mode():
        sampled = model.generate(**twice, max_new_tokens=n, do_sample=True, top_k=50, logits_processor=processors)
    for text in answers_of(sampled):
        print(f"{name:<7} valid: {valid(text)!s:<5} {text[:90]!r}")
        valid_count[name] += valid(text)
total = len(PROMPTS) + len(sampled)
print(f"valid JSON, greedy and sampled: free {valid_count['free']} of {total}, "
      f"with the schema {valid_count['schema']} of {total}")
assert valid_count["schema"] == total and valid_count["free"] < total

# %% [markdown]
# The schema guarantees the *form*, not the content: the model still chooses the name, the age and
# the colours, and a constraint it finds very unlikely can lead it to odd strings. A schema also
# cannot make a model finish within `max_new_tokens`: bounded strings and arrays give a bound on the
# length, which the sampled run above takes as its `max_new_tokens`.
#
# ## 4. A chat that reuses its cache
#
# A chat renders the whole conversation through the chat template at every turn. The model has already seen everything up to its last answer: its KV cache holds the
# keys and values of those positions, so the next turn only needs the tokens after them
# ([prefix caching](glossary.md#prefix-caching)). Our first turn is the tips answer of section 1,
# with its cache:

# %%
cache_1 = tips_out.past_key_values
cached_ids = tips_ids[0, :cache_1.get_seq_length()].tolist()  # the last token was chosen, never fed
reply = tokenizer.decode(tips_ids[0, P_TIPS:], skip_special_tokens=True)
messages = [{"role": "user", "content": TIPS}, {"role": "assistant", "content": reply},
            {"role": "user", "content": "Which one matters most?"}]
second = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
print(f"cached: {len(cached_ids)} positions; the second turn's prompt: {len(second)} tokens")

# %% [markdown]
# The new tokens are what the second rendering has *after* the cached ones, provided that it starts
# with exactly the cached tokens. It does not:

# %%
shared = 0
while shared < len(cached_ids) and cached_ids[shared] == second[shared]:
    shared += 1
print(f"the same first {shared} tokens; then cached {tokens_of(cached_ids[shared:shared + 3])}, "
      f"rendered {tokens_of(second[shared:shared + 3])}")
assert shared < len(cached_ids) and tokenizer.decode(cached_ids[shared:]) == tokenizer.decode(second[shared:len(cached_ids) + 1])

# %% [markdown]
# The model generated the blank line as one token, `"\n\n"`; the template renders the answer as
# *text*, and the tokenizer cuts that text into `"\n"`, `"\n"`. Same text, other tokens: the cache
# holds keys and values computed for tokens that are not in the new prompt. (Other templates
# differ more: some strip whitespace from earlier answers, drop their reasoning, or add a default
# system prompt.) So the rule is to compare token for token and keep the **longest common prefix**:
# crop the cache to it and feed everything after. And never render only the new message: this
# template then adds its default system prompt in the middle of the conversation:

# %%
alone = tokenizer.apply_chat_template(messages[-1:], add_generation_prompt=True, return_dict=False)
print(repr(tokenizer.decode(alone[:12])))
assert second[-len(alone):] != alone and "system" in tokenizer.decode(alone)

# %% [markdown]
# The second turn, fed over the cropped cache at the [positions](glossary.md#position-ids) that
# follow it, against the same prompt computed from scratch (a forward hook counts the positions
# each forward call receives, as in notebook 04 §3):

# %%
fed = []  # positions received by each forward call
hook = model.register_forward_hook(lambda module, args, kwargs, output: fed.append(kwargs["input_ids"].shape[1]),
                                   with_kwargs=True)
cache_2 = copy.deepcopy(cache_1)  # keep the first turn's cache intact for the comparisons below
cache_2.crop(shared - cache_2.get_seq_length())  # a negative count: drop that many positions at the end
new = torch.tensor([second[shared:]], device=model.device)
positions = torch.arange(shared, len(second), device=model.device)[None]
try:
    with torch.inference_mode():
        over_cache = model(input_ids=new, past_key_values=cache_2, position_ids=positions, use_cache=True).logits[:, -1]
        from_scratch = model(input_ids=torch.tensor([second], device=model.device)).logits[:, -1]
finally:
    hook.remove()
gap = (over_cache - from_scratch).abs().max().item()
print(f"positions fed: {fed[0]} over the cache, {fed[1]} from scratch; next-token logits differ by",
      "< 1e-4" if gap < 1e-4 else gap)
assert fed == [len(second) - shared, len(second)] and gap < 1e-4

# %% [markdown]
# The same next-token logits for a fraction of the positions. `generate` does the same when it
# is given a cache: it feeds only the positions the cache does not hold. The whole second answer,
# checked against one forward pass over prompt and answer from scratch (teacher forcing: the same
# logits a fresh greedy loop would see, so the same tokens):

# %%
N_REPLY = 16
cache_3 = copy.deepcopy(cache_1)
cache_3.crop(shared - cache_3.get_seq_length())
second_ids = torch.tensor([second], device=model.device)
with torch.inference_mode():
    turn_2 = model.generate(second_ids, attention_mask=torch.ones_like(second_ids), past_key_values=cache_3,
                            max_new_tokens=N_REPLY, do_sample=False, return_dict_in_generate=True, output_logits=True)
    scratch = model(turn_2.sequences).logits[0, len(second) - 1:-1]
reply_2 = turn_2.sequences[0, len(second):]
lt.check_gap(lt.greedy_gap(model, turn_2.sequences, len(second)), "the second answer")
drift = (torch.cat(turn_2.logits) - scratch[:len(turn_2.logits)]).abs().max().item()
print(repr(tokenizer.decode(reply_2, skip_special_tokens=True)))
print("logits over the cache vs from scratch: max |difference|", "< 1e-3" if drift < 1e-3 else drift)
assert torch.equal(scratch.argmax(-1)[:len(reply_2)], reply_2) and drift < 1e-3
saved = shared
print(f"positions computed for the prompt: {len(second) - shared} instead of {len(second)}: {saved} saved")

# %%
# NBVAL_IGNORE_OUTPUT
# CPU times: they vary from run to run and machine to machine (shown, never asserted)
def prefill_seconds(use_cache, repeats=2):
    total = 0.0
    for _ in range(repeats):
        cache = copy.deepcopy(cache_1)
        cache.crop(shared - cache.get_seq_length())
        start = time.process_time()
        with torch.inference_mode():
            if use_cache:
                model(new, past_key_values=cache, position_ids=positions, use_cache=True)
            else:
                model(second_ids)
        total += time.process_time() - start
    return total / repeats


print(f"second turn's prompt: {prefill_seconds(True) * 1000:.0f} ms over the cache, "
      f"{prefill_seconds(False) * 1000:.0f} ms from scratch (CPU)")

# %% [markdown]
# On a short chat the saving is small; it grows with every turn, since the cache holds the whole
# conversation, and with long system prompts or documents at the start. `lt.CachedChat` keeps
# the conversation and its cache, compares the new rendering with the cached tokens at every turn,
# recomputes from the first difference (with a `CacheMismatchWarning` that says where) and counts
# the positions saved. The same two turns:

# %%
chat = lt.CachedChat(model, tokenizer)
with lt.capture() as got:
    chat.say(TIPS, max_new_tokens=20)
    chat.say("Which one matters most?", max_new_tokens=N_REPLY)
print(got.find("differs from the cached tokens").split(" (the template")[0])
first_turn, second_turn = chat.turns
assert first_turn.reply_ids == tips_ids[0, P_TIPS:].tolist() and second_turn.prompt_ids == second
assert second_turn.reply_ids == reply_2.tolist() and second_turn.reused == saved == chat.positions_saved
print(f"lt.CachedChat: the same answers; {chat.positions_saved} positions read from the cache, "
      f"{second_turn.fed} computed for the second prompt")

# %% [markdown]
# ## Recap
#
# - **Stop strings** match text, not tokens: a stop string can end inside a token or span several.
#   `generate(stop_strings=..., tokenizer=...)` stops there and keeps the whole last token; by hand,
#   decode the tail (as many tokens as the stop string has bytes) and look for a match that ends in
#   the last token. Cut the text yourself.
# - **Banning and biasing** work on token ids: `bad_words_ids` is `sequence_bias` with −∞, applied
#   to a sequence's last token when the others precede it; `no_repeat_ngram_size` bans the tokens
#   that would repeat an *n*-gram, the prompt's included. A word has several forms (`" Paris"`,
#   `"Paris"`, `"PARIS"`...): ban each, and know that other spellings in tokens remain possible.
# - **Constrained decoding** allows only the tokens that keep the text a possible prefix of a
#   match, and EOS only at a full match: by hand, one partial match per vocabulary token and step
#   (tens of milliseconds per step in Python); llguidance does the same mask in a fraction of a
#   millisecond, and JSON schemas too. It guarantees the form, never the content.
# - **A chat over its cache** feeds only the tokens after the longest prefix that the new rendering
#   shares with the cached tokens, at positions that continue the cache: the same logits, the same
#   answer, fewer positions. Check the prefix token for token: a template re-renders text, and the
#   tokenizer may cut it differently from what the model generated.
#
# ## Exercises
#
# 1. **Room to start.** Allow the model to write "The capital of France is " (or nothing) before
#    the city in the pattern of the fixed choice, generate with `lt.regex_processor`, and check
#    that the answer now names Paris.
# 2. **Ban every form of a word.** The greedy answer to "Where is the Eiffel Tower?" is "The
#    Eiffel Tower is located in Paris, France, France." Ban every form of `France` (spaces, cases)
#    and check that the greedy answer (16 tokens) no longer contains it in any case.
# 3. **A third turn.** Continue `chat` with "Thank you!" (`max_new_tokens=8`). How many positions
#    did the cache save over the three turns, and which tokens did the third turn's prompt have to
#    compute?

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
ROOM = r"(The capital of France is )?(Paris|Lyon|Marseille)\."
roomy = answer(question, max_new_tokens=12, logits_processor=[lt.regex_processor(tokenizer, ROOM)])
closest_call(roomy, "the city with room to start")
roomy_text = tokenizer.decode(roomy.sequences[0, P_Q:], skip_special_tokens=True)
print(repr(roomy_text))
assert regex.fullmatch(ROOM, roomy_text) and roomy_text.endswith("Paris.")

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
eiffel = lt.chat_inputs(tokenizer, "Where is the Eiffel Tower?", device=model.device)
P_EIFFEL = eiffel["input_ids"].shape[1]
forms = [prefix + word for prefix in ("", " ") for word in ("France", "FRANCE", "france")]
after = answer(eiffel, max_new_tokens=16, bad_words_ids=[ids_of(form) for form in forms])
closest_call(after, "the answer without France")
after_text = tokenizer.decode(after.sequences[0, P_EIFFEL:], skip_special_tokens=True)
print(repr(after_text))
assert "france" not in after_text.lower() and len(forms) == 6
before = answer(eiffel, max_new_tokens=16)
closest_call(before, "the answer with France")
before_text = tokenizer.decode(before.sequences[0, P_EIFFEL:], skip_special_tokens=True)
assert before_text == "The Eiffel Tower is located in Paris, France, France."

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
with lt.capture() as got_3:
    chat.say("Thank you!", max_new_tokens=8)
third = chat.turns[2]
print(f"saved over three turns: {chat.positions_saved} positions; the third prompt computed "
      f"{third.fed}: {tokens_of(third.prompt_ids[third.reused:])}")
assert chat.positions_saved == sum(turn.reused for turn in chat.turns) > saved
assert third.reused + third.fed == len(third.prompt_ids) and third.fed < len(third.prompt_ids) // 4
