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
# # 03 · One forward pass
# **What does one call `model(**inputs)` compute, and how do its numbers become a probability
# for every possible next token?**
#
# Inference is a loop of four steps: tokenize, compute the next-token distribution, choose a
# token, repeat. Notebook 01 covered the first step, notebook 04 covers the loop. This notebook
# is the second step, opened up: one forward pass, from token ids to probabilities, and what a
# language model's numbers can tell you about a text.

# %%
import llm_tutorial as lt

banner = lt.setup_notebook(seed=0)

# %%
import copy
import math
import random

import matplotlib.pyplot as plt
import torch

tokenizer = lt.load_tokenizer()
model = lt.load_model()
config = model.config
print(type(model).__name__, "| dtype", model.dtype, "| device", model.device)
print("vocabulary:", config.vocab_size, "| layers:", config.num_hidden_layers,
      "| hidden size:", config.hidden_size, "| context:", lt.context_length(model), "tokens")

# %% [markdown]
# ## 1. The output of one forward pass: logits
#
# The model takes token ids (and an attention mask) and returns **logits**: one unnormalized
# score per vocabulary entry, at every position of the input. (It also returns
# `past_key_values`, the attention keys and values it computed, so that a next step need not
# recompute them: the KV cache of notebook 04.)

# %%
prompt = "The capital of France is"
inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
print("input_ids     ", inputs["input_ids"].tolist())
print("attention_mask", inputs["attention_mask"].tolist())
print("tokens        ", tokenizer.convert_ids_to_tokens(inputs["input_ids"][0]))

with torch.inference_mode():
    out = model(**inputs)
logits = out.logits
print(type(out).__name__, "fields:", list(out.keys()))
print("logits shape:", tuple(logits.shape), logits.dtype)

# %%
batch, seq_len, vocab_size = logits.shape
assert batch == 1  # axis 0: one row per prompt in the batch
assert seq_len == inputs["input_ids"].shape[1]  # axis 1: one position per input token
assert vocab_size == config.vocab_size  # axis 2: one score per vocabulary entry
print(f"[batch={batch}, seq_len={seq_len}, vocab_size={vocab_size}]: "
      f"{batch * seq_len * vocab_size:,} numbers from {seq_len} tokens")

# %% [markdown]
# `logits[b, t, v]` is the model's score for "token `v` comes right after the first `t + 1` tokens
# of prompt `b`". So the **last position** (`t = seq_len - 1`) scores the token that would
# follow the whole prompt: that is the one generation needs.
#
# Every other position is a prediction too: position `t` predicts token `t + 1`, seeing only
# tokens `0..t` (causal attention). Training uses all of them at once: feed the true text, and
# score each position against the token that really comes next. That is **teacher forcing**: the
# model is always given the true prefix, never its own guesses.

# %%
sentence = "The capital of France is Paris. The capital of Italy is Rome."
enc = tokenizer(sentence, return_tensors="pt").to(model.device)
ids = enc["input_ids"][0]
with torch.inference_mode():
    sentence_logits = model(**enc).logits[0]
guesses = sentence_logits.argmax(-1)  # the top prediction at every position
lt.check_gap(float(lt.top2_gap(sentence_logits).min()), "the top guess at every position")

print(f"{'position: text so far (end)':<30} {'predicted':<10} {'actual':<10}")
hits = 0
for t in range(len(ids) - 1):
    context = ("…" if t > 2 else "") + tokenizer.decode(ids[max(0, t - 2): t + 1])
    predicted, actual = tokenizer.decode(guesses[t]), tokenizer.decode(ids[t + 1])
    hits += predicted == actual
    print(f"{t:>2}: {context:<26} {predicted!r:<10} {actual!r:<10} {'hit' if predicted == actual else ''}")
print(f"{hits} of {len(ids) - 1} next tokens were the model's top guess")

# %% [markdown]
# "Sees only its past" is a claim we can check: run the first 6 tokens alone. Their logits are
# the same as in the full run (up to float rounding), because the later tokens were invisible to
# them anyway.

# %%
with torch.inference_mode():
    prefix_logits = model(input_ids=enc["input_ids"][:, :6]).logits[0]
causal_gap = (prefix_logits - sentence_logits[:6]).abs().max().item()
print("max |difference| on the first 6 positions:", "< 1e-3" if causal_gap < 1e-3 else causal_gap)
assert causal_gap < 1e-3

# %% [markdown]
# Generation only needs the last position, so `generate()` asks the model for it alone with
# `logits_to_keep=1` (it skips the `[seq_len - 1, vocab_size]` other rows of the final matrix
# product). The numbers agree to float rounding (a matrix product of another shape may sum in
# another order, so the last digits can differ).

# %%
with torch.inference_mode():
    last_only = model(**inputs, logits_to_keep=1).logits
print("logits_to_keep=1:", tuple(last_only.shape))
assert last_only.shape == (1, 1, vocab_size)
assert torch.allclose(last_only[0, -1], logits[0, -1], atol=1e-3)

# %% [markdown]
# ## 2. From logits to probabilities: softmax
#
# Softmax turns the last position's logits into a probability distribution:
# $p_v = e^{z_v} / \sum_u e^{z_u}$. By hand first (subtracting the maximum first changes nothing
# mathematically and keeps `exp` from overflowing), then checked against `torch.softmax`.

# %%
last = logits[0, -1].float()
shifted = last - last.max()
probs = shifted.exp() / shifted.exp().sum()
print("sum of probabilities:", lt.fmt(probs.sum(), decimals=3))
assert abs(probs.sum().item() - 1) < 1e-5
assert torch.allclose(probs, torch.softmax(last, dim=-1), rtol=1e-4, atol=1e-7)
print("largest logit:", lt.fmt(last.max(), decimals=1, kind="logit"),
      "| smallest:", lt.fmt(last.min(), decimals=1, kind="logit"))
lt.check_threshold(probs, 0.01, "the tokens with p > 1%")  # none so close to 1% that it could cross
print("tokens with p > 1%:", int((probs > 0.01).sum()), "of", vocab_size)

# %% [markdown]
# The ten most likely next tokens, by hand. The numbers are rounded with `lt.fmt` so that they
# print the same on every CPU (float32 results differ between CPUs in their last digits): logits
# to 1 decimal, probabilities to 2 significant digits. A ranking can flip too when two logits are
# nearly tied, so `lt.ranking_gap` measures how close the closest neighbours are.

# %%
top = torch.topk(probs, 10)
lt.check_gap(lt.ranking_gap(last, 10), "the order of the top 10")
print(f"{'rank':>4}  {'token':<10} {'id':>6} {'logit':>8} {'prob':>7}")
for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
    print(f"{rank:>4}  {tokenizer.decode(i)!r:<10} {i:>6} {lt.fmt(last[i], decimals=1, kind='logit'):>8} "
          f"{lt.fmt(p, 2, kind='prob'):>7}")

# %% [markdown]
# The package's `lt.next_token_distribution` runs the model and builds the same table (as text,
# and as an HTML table with bars in Jupyter), rounded the same way; it checks the gaps of its
# ranking itself. Leading spaces are shown as `·`.

# %%
table = lt.next_token_distribution(model, tokenizer, prompt, k=10)
assert table.ids == top.indices.tolist()
assert all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(table.probs, top.values.tolist()))
assert table.ids == lt.next_token_table(tokenizer, logits[0, -1], k=10).ids
table

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.bar([repr(c.text) for c in table], table.probs, color="#4c72b0")
ax.set_ylabel("probability")
ax.set_title(f"next token after {prompt!r} ({lt.describe_model()})")
ax.tick_params(axis="x", rotation=45)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The seed's Japanese prompt, with an English-centric model
#
# Seed 002 shows the top-10 after 「…織田信長は美少女」 from a model it does not name (the post is
# about Llama 3's code): だ 0.2617, だった 0.0850, である 0.0752, ... Here is the same cell with the
# model this notebook runs (the embedded SmolLM2 is trained mostly on English text).
#
# This prompt is long, and the cells below need many continuations of it. So it runs once, by
# hand: `logits_to_keep=1` (section 1) skips the logits nobody reads, and the pass keeps the
# prompt's attention keys and values (`past_key_values`) for the continuations.
# `lt.next_token_table` builds the table from the last position's logits.

# %%
jp_prompt = ("たとえば織田信長が美少女だというゲーム・アニメを中心にトレーニングしたら"
             "織田信長が美少女だと思ってしまう。織田信長は美少女")
jp_ids = tokenizer(jp_prompt)["input_ids"]
print(f"{len(jp_prompt)} characters, {len(jp_prompt.encode())} UTF-8 bytes, {len(jp_ids)} tokens")
print("the last 6 tokens:", tokenizer.convert_ids_to_tokens(jp_ids[-6:]))
print("their bytes:      ", [lt.token_bytes(p) for p in tokenizer.convert_ids_to_tokens(jp_ids[-6:])])
with torch.inference_mode():
    jp_out = model(input_ids=torch.tensor([jp_ids], device=model.device), logits_to_keep=1, use_cache=True)
jp_table = lt.next_token_table(tokenizer, jp_out.logits[0, -1], k=10, prompt=jp_prompt)
jp_table

# %% [markdown]
# Most candidates are not characters at all: a Japanese character is 3 UTF-8 bytes, and this
# vocabulary has a whole-character token for only a few of them. So the model often writes a
# character in two or three pieces: `\xe3\x81` is the first two bytes shared by most hiragana
# (U+3040 to U+307F), and a second token supplies the last byte. The vocabulary itself shows why:

# %%
japanese = [i for i, piece in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
            if any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff"
                   for ch in (lt.token_bytes(piece) or b"").decode("utf-8", errors="ignore"))]
print(f"tokens with at least one complete kana or kanji: {len(japanese)} of {len(tokenizer)}")
fragments = [c for c in jp_table if "\\x" in c.text]
print(f"byte fragments in the top 10: {len(fragments)}, holding p = "
      f"{lt.fmt(sum(c.prob for c in fragments), 2, kind='prob')}")

# %% [markdown]
# To compare with the seed's table we need whole characters: take one more step after each
# fragment and multiply, $P(\text{だ}) = P(\texttt{\\xe3\\x81}) \cdot P(\texttt{\\xa0} \mid
# \texttt{\\xe3\\x81})$. The fragment continuations (one row per fragment) run as one batch, and
# only their one new token runs: each row reads a copy of the prompt's keys and values, instead of
# running the 118 prompt tokens again (this reuse is the KV cache of notebook 04). The result is
# the same as running each whole row, to float rounding (asserted below). (This cell finds nothing
# to expand when the vocabulary has whole characters.)

# %%
def continue_prompt(new_ids, new_mask=None):
    """Logits at the positions of `new_ids` [rows, n] (right-padded continuations of jp_prompt):
    only the new tokens run; every row attends to a copy of the prompt's keys and values."""
    cache = copy.deepcopy(jp_out.past_key_values)  # a forward pass appends to the cache it reads
    cache.batch_repeat_interleave(new_ids.shape[0])  # one copy of the prompt per row
    mask = None
    if new_mask is not None:  # the mask covers the prompt too
        mask = torch.cat([torch.ones_like(new_mask[:, :1]).expand(-1, len(jp_ids)), new_mask], dim=1)
    with torch.inference_mode():
        return model(input_ids=new_ids, attention_mask=mask, past_key_values=cache).logits


completed = {c.text: c.prob for c in jp_table if "\\x" not in c.text}
if fragments:
    step_logits = continue_prompt(torch.tensor([[c.id] for c in fragments], device=model.device))[:, -1]
    for first, step in zip(fragments, step_logits):
        second = lt.next_token_table(tokenizer, step, k=10)
        lt.check_gap(second.gap, f"the top 10 after {first.text}")  # which characters get completed
        for c in second:
            text = tokenizer.decode([first.id, c.id])
            if "\ufffd" not in text:  # a complete character (or more)
                completed[text] = completed.get(text, 0) + first.prob * c.prob
ranked = sorted(completed.items(), key=lambda kv: -kv[1])
lt.check_gap(lt.ranking_gap(torch.tensor([math.log(p) for _, p in ranked]), 10), "the order of the characters")
for rank, (text, p) in enumerate(ranked[:10], start=1):
    print(f"{rank:>2}  {text!r:<8} {lt.fmt(p, 2, kind='prob')}")

# %% [markdown]
# The seed's candidates, scored as continuations: the probability of each one's token sequence
# after the prompt (the chain rule over its tokens). All four run as one right-padded batch after
# the prompt's keys and values; the mask zeroes the padding. Each candidate token is predicted by
# the position before it: the prompt's last position for its first token, its own previous token
# after that. `lt.token_logprobs` on the whole sequence (no reuse) checks the result for だ.

# %%
seed_table = {"だ": 0.2617, "だった": 0.0850, "である": 0.0752, "ではない": 0.0623}
word_ids = {w: tokenizer(w, add_special_tokens=False)["input_ids"] for w in seed_table}
for w, w_ids in word_ids.items():
    assert tokenizer(jp_prompt + w)["input_ids"] == jp_ids + w_ids  # appending = concatenating ids
width = max(len(w_ids) for w_ids in word_ids.values())
new_ids = torch.full((len(word_ids), width), tokenizer.pad_token_id or 0, device=model.device)  # any id: masked
new_mask = torch.zeros_like(new_ids)
for row, w_ids in enumerate(word_ids.values()):
    new_ids[row, : len(w_ids)] = torch.tensor(w_ids)
    new_mask[row, : len(w_ids)] = 1
predicting = torch.cat([jp_out.logits[:, -1:].expand(len(word_ids), -1, -1),
                        continue_prompt(new_ids, new_mask)[:, :-1]], dim=1).float()
token_lp = torch.log_softmax(predicting, dim=-1).gather(-1, new_ids[..., None]).squeeze(-1)
candidate_lp = (token_lp * new_mask).sum(-1)
ours = dict(zip(word_ids, candidate_lp.exp().tolist()))
print(f"{'candidate':<10} {'tokens':>6} {'this model':>10} {'seed 002':>9}")
for w, seed_p in seed_table.items():  # in percent
    print(f"{w:<10} {len(word_ids[w]):>6} {lt.fmt(ours[w], 2, kind='prob', percent=True):>10} "
          f"{lt.fmt(seed_p, decimals=2, kind='exact', percent=True):>9}")
whole = lt.token_logprobs(model, torch.tensor([jp_ids + word_ids["だ"]]))[0, len(jp_ids) - 1:].sum().exp().item()
assert abs(ours["だ"] - whole) < 1e-4  # the reused keys and values change nothing
assert "だ" in completed and abs(completed["だ"] - whole) < 1e-4  # two roads, one number
assert ours["だった"] < ours["だ"] / 100

# %% [markdown]
# Honest reading: the embedded model's 「だ」 comes out close to the seed's number (26 % against
# 26.17 %), but that is luck, not agreement: the seed's model ranks だった second, and this one
# gives it almost nothing (after 「だ」 it rarely goes on with 「った」). With a vocabulary this poor
# in Japanese it spends 2-3 tokens per character (the 61-character prompt is 118 tokens), and its
# ranking is a different one.
#
# To run this notebook with a Japanese-capable model, download one while online
# (`hf download Qwen/Qwen2.5-0.5B-Instruct`), then start Jupyter with
# `LLM_TUTORIAL_MODEL=Qwen/Qwen2.5-0.5B-Instruct jupyter lab` (or a local folder path). Every cell
# reads the model's sizes from `model.config`, so the same cells run; the stored outputs are for
# the embedded model.

# %% [markdown]
# ## 4. How likely is a whole text? Log-probability and perplexity
#
# With teacher forcing, one forward pass scores every token of a text: take log-softmax at
# position `t` and pick the entry of the token actually at `t + 1`. The sum is the text's
# log-probability (natural log); `exp(-mean)` is its **perplexity**: "as unsure as a uniform
# choice among that many tokens". The first token is not scored: nothing comes before it (this
# tokenizer adds no BOS token).

# %%
text = "The cat sat on the mat because it was tired."
enc = tokenizer(text, return_tensors="pt").to(model.device)
with torch.inference_mode():
    scored = model(**enc, labels=enc["input_ids"])
logprobs = torch.log_softmax(scored.logits[0, :-1].float(), dim=-1)
per_token = logprobs.gather(-1, enc["input_ids"][0, 1:, None]).squeeze(-1)
total = per_token.sum().item()
ppl = math.exp(-per_token.mean().item())
# 3 significant digits: the last digits differ between CPUs (notebook 06, pitfall 17); the asserts
# below compare with a relative tolerance of 1e-5
print(f"{len(per_token)} scored tokens | log-prob {lt.fmt(total, 3)} nats | perplexity {lt.fmt(ppl, 3)}")
print(f"model loss {lt.fmt(scored.loss, 3)} | exp(loss) {lt.fmt(math.exp(scored.loss.item()), 3)}")

# %% [markdown]
# The model computes the same thing as its training loss when you pass `labels=input_ids`: it
# shifts the labels by one internally and returns the mean negative log-prob. So
# perplexity = exp(loss), and the package's `lt.text_logprob` / `lt.perplexity` agree:

# %%
assert math.isclose(-per_token.mean().item(), scored.loss.item(), rel_tol=1e-5)
assert math.isclose(ppl, math.exp(scored.loss.item()), rel_tol=1e-5)
assert math.isclose(lt.text_logprob(model, tokenizer, text), total, rel_tol=1e-5)
assert math.isclose(lt.perplexity(model, tokenizer, text), ppl, rel_tol=1e-5)
print("hand-made == model loss == lt.perplexity (relative tolerance 1e-5)")

# %% [markdown]
# A sensible sentence against the same words shuffled (a fixed seed, so the shuffle is the same on
# every run). Both are scored in one padded batch: pass a list.

# %%
words = text.split()
random.Random(0).shuffle(words)
shuffled = " ".join(words)
pair = [text, shuffled]
pair_ppl = lt.perplexity(model, tokenizer, pair)
pair_lp = lt.text_logprob(model, tokenizer, pair)
for t, p, lp in zip(pair, pair_ppl, pair_lp):
    print(f"perplexity {lt.fmt(p, 3):>6} | log-prob {lt.fmt(lp, 3):>6} | {t}")
assert pair_ppl[1] > 5 * pair_ppl[0]
assert math.isclose(pair_ppl[0], ppl, rel_tol=1e-4)  # batched (padded) == alone

# %% [markdown]
# ## 5. Which tokens surprised the model?
#
# Per-token surprise is `-log p` of each token: 0 means "certain", 2.3 nats is p = 0.1, 6.9 is
# p = 0.001. `lt.surprise` colors each token by it (white to red; hover a token to see its
# surprise, its probability, its rank and what the model expected instead). So that the display
# is the same on every CPU, the surprise is shown to 0.1 nats and the probability `p≈` is derived
# from that rounded surprise (so it is approximate, within 5 %). A rank is shown exactly where no
# other token's logit lies within `lt.GAP` of this one's (another CPU could swap the two);
# otherwise only as the power of ten it certainly reaches: `>=1000` means "1000th or further down".

# %%
view = lt.surprise(model, tokenizer, text)
assert math.isclose(view.logprob, total, rel_tol=1e-5)
assert all(math.isclose(t.logprob, lp, rel_tol=1e-5, abs_tol=1e-6)
           for t, lp in zip(list(view)[1:], per_token.tolist()))
view

# %% [markdown]
# The same view as text, for a terminal:

# %%
print(view)

# %% [markdown]
# The shuffled sentence, and a sentence with one wrong fact: the same word, " Berlin", is red where
# it is false and white where it is true.

# %%
fact = "The capital of France is Berlin, and the capital of Germany is Berlin."
shuffled_view, fact_view = lt.surprise(model, tokenizer, [shuffled, fact])
wrong, right = [t for t in fact_view if t.text == " Berlin"]
for label, t in [("after 'France is'", wrong), ("after 'Germany is'", right)]:
    print(f"' Berlin' {label}: surprise {t.shown_surprise} nats (p≈{t.shown_p}), rank {t.shown_rank}, "
          f"model expected {t.shown_expected}")
assert wrong.surprise > right.surprise + 3 and wrong.expected == " Paris" and right.rank == 1
shuffled_view

# %%
fact_view

# %% [markdown]
# The second token (" capital") is red for another reason: after the single word "The", almost
# anything could follow. With no BOS token, the first tokens of any text are scored on very
# little context.

# %% [markdown]
# ## 6. Inside the pass
#
# A decoder-only model is a short pipeline:
#
# 1. **embeddings**: each id becomes a vector (`model.get_input_embeddings()`);
# 2. **decoder layers**: each adds attention (mixing information across positions, only from the
#    past) and an MLP (per position) to that vector, the "residual stream";
# 3. a **final norm**;
# 4. the **LM head**, a linear map from the hidden size to the vocabulary: the logits.
#
# `output_hidden_states=True` returns the residual stream after the embeddings and after each
# layer.

# %%
decoder = model.get_decoder()
layers = next(child for child in decoder.children() if isinstance(child, torch.nn.ModuleList))
print("embeddings:", model.get_input_embeddings())
print("layers:    ", len(layers), "x", type(layers[0]).__name__)
print("LM head:   ", model.get_output_embeddings())

with torch.inference_mode():
    out = model(**inputs, output_hidden_states=True)
hidden = out.hidden_states
print("hidden_states:", len(hidden), "tensors of shape", tuple(hidden[0].shape))
assert len(hidden) == config.num_hidden_layers + 1
assert all(h.shape == (1, seq_len, config.hidden_size) for h in hidden)

# %% [markdown]
# Two checks on the ends of that list. `hidden_states[0]` is exactly the embedding lookup. The
# last entry is **already normalized**: transformers stores the final norm's output there, not the
# last layer's raw output, so the LM head alone turns it into the logits.

# %%
with torch.inference_mode():
    embedded = model.get_input_embeddings()(inputs["input_ids"])
    head_of_last = model.get_output_embeddings()(hidden[-1])
assert torch.equal(hidden[0], embedded)
assert torch.allclose(head_of_last, out.logits, atol=1e-4)
size = [h[0, -1].norm().item() for h in hidden]  # the last position's vector
print("length of the last position's vector after the embeddings, layer 1, the middle layer,")
print("the layer before last, and the last entry (normalized):",
      ", ".join(lt.fmt(x, 3) for x in (size[0], size[1], size[len(size) // 2], size[-2], size[-1])))

# %% [markdown]
# ### The logit lens
#
# What would the model say if it stopped after layer `n`? Apply the final norm and the LM head to
# `hidden_states[n]`. The final norm's name differs between architectures (`norm` in
# Llama/Qwen/Mistral, `ln_f` in GPT-2); `lt.logit_lens` looks for the usual names and raises
# `NotImplementedError` for a layout it does not know. By hand for one layer first:

# %%
final_norm = getattr(decoder, "norm", None) or getattr(decoder, "ln_f", None)
assert final_norm is not None, "not a Llama- or GPT-2-like layout: see lt.logit_lens"
middle = config.num_hidden_layers // 2
with torch.inference_mode():
    middle_logits = model.get_output_embeddings()(final_norm(hidden[middle]))[0, -1]
middle_top = tokenizer.decode(middle_logits.argmax())
lt.check_gap(float(lt.top2_gap(middle_logits)), f"the top token after layer {middle}")
print(f"after layer {middle}, the top next token is {middle_top!r}; after all layers, "
      f"{table[0].text!r}")

lens = lt.logit_lens(model, tokenizer, prompt)
assert lens.texts[middle][-1] == middle_top
assert lens.texts[-1] == [tokenizer.decode(i) for i in out.logits[0].argmax(-1)]
lt.check_gap(min(row[-1] for row in lens.gaps), "the top token of every layer at the last position")
first_right = next(n for n, row in enumerate(lens.texts) if row[-1] == table[0].text)
print(f"the final answer {table[0].text!r} is first on top after layer {first_right} of "
      f"{config.num_hidden_layers}")

# %%
fig, ax = plt.subplots(figsize=(9, 8))
lens.plot(ax=ax, title=f"logit lens for {prompt!r}: top token (color: its probability)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the last column from top to bottom: the early layers predict generic tokens (punctuation,
# spaces, "the"), and the answer appears late (for the embedded model, only at the last layer:
# a small model has few layers to spare). The embedding row mostly predicts the input token
# itself: this model ties its LM head to its embedding matrix (`config.tie_word_embeddings`), so
# an embedding scores highest against itself.

# %%
tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
same = sum(a == b for a, b in zip(lens.ids[0], inputs["input_ids"][0].tolist()))
lt.check_gap(min(lens.gaps[0]), "the embedding row's top tokens")
print(f"LM head tied to the embeddings: {tied}; the embedding row predicts the input token itself "
      f"at {same} of {seq_len} positions")
assert tied == bool(config.tie_word_embeddings)
assert not tied or same > seq_len / 2
#
# ### Attention weights
#
# Each layer's attention computes, for every position, weights over the positions it may look at
# (itself and the past). The default attention kernel (`sdpa`) never materializes those weights,
# so asking for them returns nothing, with a warning:

# %%
print("attention implementation:", config._attn_implementation)
with lt.capture() as got, torch.inference_mode():
    sdpa_out = model(**inputs, output_attentions=True)
print("attentions returned:", sdpa_out.attentions)
print(got)
assert not sdpa_out.attentions and got.contains("output_attentions=True")

# %% [markdown]
# Load the model once more with the plain ("eager") attention, which computes the weight matrix
# explicitly. Same weights, same logits (to float rounding):

# %%
eager_model = lt.load_model(attn_implementation="eager")
attention_text = "The cat sat on the mat because the cat was tired."
enc = tokenizer(attention_text, return_tensors="pt").to(model.device)
with torch.inference_mode():
    eager_out = eager_model(**enc, output_attentions=True)
    sdpa_logits = model(**enc).logits
attentions = torch.stack(eager_out.attentions)[:, 0]  # [layer, head, query, key]
print("attentions:", len(eager_out.attentions), "layers of", tuple(eager_out.attentions[0].shape),
      "= [batch, heads, query position, key position]")
assert torch.allclose(eager_out.logits, sdpa_logits, atol=1e-3)
assert torch.allclose(attentions.sum(-1), torch.ones(()), atol=1e-5)  # each row is a distribution
assert bool((attentions.triu(diagonal=1) == 0).all())  # no weight on the future
print("every row sums to 1, and nothing above the diagonal (no looking ahead)")

# %% [markdown]
# Which head to draw? One found from the numbers: the head that puts the most weight on the
# **previous** token (a pattern many models learn). And, over all heads, how much weight goes to
# the very first token (an "attention sink": a place to put weight when nothing else is relevant;
# in the embedded model, more than half of all attention goes there).

# %%
n = attentions.shape[-1]
previous = attentions[..., torch.arange(1, n), torch.arange(n - 1)].mean(-1)  # [layer, head]
layer, head = divmod(int(previous.argmax()), previous.shape[1])
lt.check_gap(float(lt.top2_gap(previous.flatten())), "the previous-token head")  # no runner-up close by
print(f"previous-token head: layer {layer + 1}, head {head}, "
      f"mean weight on the previous token {lt.fmt(previous[layer, head], 2, kind='prob')}")
print(f"mean weight on the first token over all layers, heads and positions: "
      f"{lt.fmt(attentions[..., 1:, 0].mean(), 2, kind='prob')}")

# %%
pieces = [tokenizer.decode(i) for i in enc["input_ids"][0]]
fig, ax = plt.subplots(figsize=(6.5, 5.5))
ax.imshow(attentions[layer, head].numpy(), cmap="viridis", vmin=0, vmax=1)
ax.set_xticks(range(n), pieces, rotation=90)
ax.set_yticks(range(n), pieces)
ax.set_xlabel("key (attended to)")
ax.set_ylabel("query (attending)")
ax.set_title(f"attention weights, layer {layer + 1}, head {head}")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Batches: padding, the attention mask and position ids
#
# Two prompts of different lengths fit in one tensor only after **padding** the short one. For a
# decoder-only model, pad on the **left**, so that every row's last position is a real token. The
# **attention mask** marks real tokens with 1 and padding with 0; attention then ignores the pads.
# **Position ids** say where each token sits in its own text; for the padded row they must count
# from its first real token. The side is chosen per call with `padding_side="left"` (or once, when
# loading: `lt.load_tokenizer(padding_side="left")`).

# %%
if tokenizer.pad_token is None:  # some tokenizers have none; any token works, it is masked
    tokenizer.pad_token = tokenizer.eos_token
print("pad token:", repr(tokenizer.pad_token))
prompts = ["The capital of France is", "Hello there"]
padded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(model.device)
position_ids = (padded["attention_mask"].cumsum(-1) - 1).clamp(min=0)
for row in range(2):
    print(f"row {row}: tokens   {tokenizer.convert_ids_to_tokens(padded['input_ids'][row])}")
    print(f"       mask     {padded['attention_mask'][row].tolist()}")
    print(f"       position {position_ids[row].tolist()}")

# %% [markdown]
# Run the batch with mask and position ids, and each prompt alone. On the real tokens the logits
# match (to float rounding: a batch computes with different shapes):

# %%
with torch.inference_mode():
    batched = model(**padded, position_ids=position_ids).logits
    unmasked = model(input_ids=padded["input_ids"]).logits
    alone = [model(**tokenizer(p, return_tensors="pt").to(model.device)).logits[0] for p in prompts]
real = padded["attention_mask"].bool()
for row in range(2):
    gap = (batched[row][real[row]] - alone[row]).abs().max().item()
    broken = (unmasked[row][real[row]] - alone[row]).abs().max().item()
    print(f"row {row}: with mask, max |difference| {'< 1e-3' if gap < 1e-3 else gap}; without mask: "
          f"{'< 1e-3' if broken < 1e-3 else lt.fmt(broken, decimals=1, kind='logit')}")
    assert gap < 1e-3
assert (unmasked[0] - alone[0]).abs().max() < 1e-3  # the unpadded row does not care
assert (unmasked[1][real[1]] - alone[1]).abs().max() > 1.0  # the padded row does

# %% [markdown]
# Without the mask, the short prompt's tokens attend to the pad tokens as if they were text (the
# embedded tokenizer pads with its end-of-turn token `<|im_end|>`), and the prediction changes:

# %%
for name, row_logits in [("alone", alone[1][-1]), ("batch with mask", batched[1, -1]),
                         ("batch without mask", unmasked[1, -1])]:
    lt.check_gap(float(lt.top2_gap(row_logits)), f"the next token ({name})")
    print(f"{name:<19} next token {tokenizer.decode(row_logits.argmax())!r}")
assert batched[1, -1].argmax() == alone[1][-1].argmax()
assert unmasked[1, -1].argmax() != alone[1][-1].argmax()

# %% [markdown]
# Position ids matter less here than the mask: this model encodes positions with RoPE, which only
# sees distances between tokens, so the same batch without `position_ids` (every row counting
# 0, 1, 2, ... from the first pad) gives the same logits to float rounding. Models with learned
# absolute positions (GPT-2) do need them; `generate()` builds them from the mask for you.

# %%
with torch.inference_mode():
    no_positions = model(**padded).logits
gap = (no_positions[1][real[1]] - alone[1]).abs().max().item()
print("mask without position ids, short row:", "< 1e-3" if gap < 1e-3 else gap)
assert gap < 1e-3

# %% [markdown]
# ## 8. Greedy decoding is an argmax
#
# The simplest way to choose the next token: take the most likely one. One step by hand, against
# `generate(do_sample=False)`:

# %%
by_hand = int(logits[0, -1].argmax())
lt.check_gap(float(lt.top2_gap(logits[0, -1])), "the greedy choice")
with torch.inference_mode():
    generated = model.generate(**inputs, max_new_tokens=1, do_sample=False)
from_generate = int(generated[0, inputs["input_ids"].shape[1]])
print(f"argmax: {by_hand} {tokenizer.decode(by_hand)!r} | generate: {from_generate} "
      f"{tokenizer.decode(from_generate)!r}")
assert by_hand == from_generate == table.ids[0]

# %% [markdown]
# Appending that token and running the pass again gives the next one: that loop, and how
# `generate()` avoids recomputing the whole prefix each time (the KV cache), is notebook 04.
# Choosing something other than the argmax (temperature, top-k, top-p) is notebook 05.
#
# ## Recap
#
# - `model(**inputs).logits` has shape `[batch, seq_len, vocab_size]`: a score for every possible
#   next token at every position. The last position predicts the token after the prompt; every
#   other position predicts the token after it, seeing only its past (teacher forcing).
# - Softmax turns logits into probabilities that sum to 1; `lt.next_token_distribution` shows
#   the top-k as a table. Printed numbers go through `lt.fmt` and rankings are checked for
#   near-ties, so that every output is the same on any CPU.
# - An English-centric vocabulary splits Japanese into byte fragments, so its "top token" can be
#   half a character; compare whole continuations with the chain rule instead. Many continuations
#   of one long prompt need not rerun it: keep its keys and values and run only the new tokens.
# - One pass scores a whole text: log-prob = sum of per-token log-probs; perplexity =
#   exp(mean negative log-prob) = exp(loss with `labels=input_ids`). Shuffled text scores far worse,
#   and per-token surprise points at the exact token that broke expectations.
# - Inside: embeddings → decoder layers → final norm → LM head. The last hidden state is already
#   normalized. The logit lens shows the answer forming in the last layers. Attention weights need
#   `attn_implementation="eager"`.
# - In a batch, pad on the left and pass the attention mask: without it, padding changes the
#   answer.
# - Greedy decoding is `argmax` of the last position's logits.
#
# ## Exercises
#
# 1. After `"The capital of France is"`, which continuation does the model find most likely:
#    `" Paris"`, `" Lyon"` or `" Berlin"`? Compare their log-probabilities (they are all single
#    tokens here, but use the chain rule so that it also works when they are not).

# %% tags=["solution"] jupyter={"source_hidden": true}
prompt_ids = tokenizer(prompt)["input_ids"]
cities = [" Paris", " Lyon", " Berlin"]
rows = [prompt_ids + tokenizer(city, add_special_tokens=False)["input_ids"] for city in cities]
width = max(len(r) for r in rows)  # one right-padded batch; the mask zeroes the padding's scores
batch_ids = torch.tensor([r + [tokenizer.pad_token_id or 0] * (width - len(r)) for r in rows])
batch_mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
lp = lt.token_logprobs(model, batch_ids, batch_mask)[:, len(prompt_ids) - 1:].sum(-1)  # chain rule
scores = dict(zip(cities, lp.tolist()))
print(" | ".join(f"{city!r}: {lt.fmt(score, decimals=2, kind='logit')}" for city, score in scores.items()))
assert max(scores, key=scores.get) == " Paris"

# %% [markdown]
# 2. Temperature divides the logits before the softmax. For the prompt above, print the top
#    token's probability and the entropy of the distribution at temperatures 0.5, 1 and 2. Which
#    way do they move?

# %% tags=["solution"] jupyter={"source_hidden": true}
results = []
for temperature in (0.5, 1.0, 2.0):
    p = torch.softmax(logits[0, -1].float() / temperature, dim=-1)
    entropy = -(p * p.clamp_min(1e-30).log()).sum().item()
    results.append((temperature, p.max().item(), entropy))
    print(f"T={temperature}: top p {lt.fmt(p.max(), 2, kind='prob')}, "
          f"entropy {lt.fmt(entropy, decimals=2, kind='logit')} nats")
assert results[0][1] > results[1][1] > results[2][1]  # higher T: flatter
assert results[0][2] < results[1][2] < results[2][2]
assert math.isclose(results[1][2], table.entropy, rel_tol=1e-4)

# %% [markdown]
# 3. Make the padding mistake on purpose: pad the same two prompts on the **right** and take
#    `logits[:, -1]` for both rows. Which row now gets a wrong prediction, and which position
#    should you have read instead?

# %% tags=["solution"] jupyter={"source_hidden": true}
right = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right").to(model.device)
with torch.inference_mode():
    right_logits = model(**right).logits
last_real = right["attention_mask"].sum(-1) - 1
for row in range(2):
    for position in (-1, last_real[row]):
        lt.check_gap(float(lt.top2_gap(right_logits[row, position])), f"row {row}'s prediction")
    wrong = tokenizer.decode(right_logits[row, -1].argmax())
    correct = tokenizer.decode(right_logits[row, last_real[row]].argmax())
    print(f"row {row}: logits[-1] -> {wrong!r}; logits[{int(last_real[row])}] -> {correct!r}")
assert right_logits[1, last_real[1]].argmax() == alone[1][-1].argmax()
assert right_logits[1, -1].argmax() != alone[1][-1].argmax()
