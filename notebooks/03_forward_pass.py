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
EMBEDDED = lt.model_name() == "embedded"  # the stored outputs and model-specific asserts are for it
print(type(model).__name__, "| dtype", model.dtype, "| device", model.device)
print("vocabulary:", config.vocab_size, "| layers:", config.num_hidden_layers,
      "| hidden size:", config.hidden_size, "| context:", lt.context_length(model), "tokens")

# %% [markdown]
# ## 1. The output of one forward pass: logits
#
# The model takes [token](glossary.md#token) ids (and an attention mask) and returns
# **[logits](glossary.md#logit)**: one unnormalized score per vocabulary entry, at every position
# of the input. (It also returns `past_key_values`, the attention keys and values it computed, so
# that a next step need not recompute them: the [KV cache](glossary.md#kv-cache) of notebook 04.)

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

# %% [markdown]
# As a chart, on a logarithmic axis: the ten probabilities usually span orders of magnitude (see
# the table), and on a linear axis the small ones would be slivers. Each bar carries its value.

# %%
fig, ax = plt.subplots(figsize=(7, 4))
ax.barh(range(len(table)), table.probs, color="#4c72b0")
ax.set_yticks(range(len(table)), [repr(c.text) for c in table], fontfamily="monospace")
ax.invert_yaxis()  # the most likely on top
ax.set_xscale("log")
ax.set_xlim(min(table.probs) / 3, 3)  # every bar starts left of its own end; room for the labels
for row, c in enumerate(table):
    ax.text(c.prob * 1.1, row, lt.fmt(c.prob, 2, kind="prob"), va="center", fontsize=8)
ax.set_xlabel("probability (log scale)")
ax.set_title(f"next token after {prompt!r} ({lt.describe_model()})")
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
tokens_per_char = len(jp_ids) / len(jp_prompt)
print(f"{len(jp_prompt)} characters, {len(jp_prompt.encode())} UTF-8 bytes, {len(jp_ids)} tokens: "
      f"{lt.fmt(tokens_per_char, 2, kind='exact')} tokens per character")
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
# running the whole prompt again (this reuse is the KV cache of notebook 04). The result is
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
if EMBEDDED:  # what the next paragraph says about the embedded model
    assert abs(ours["だ"] - seed_table["だ"]) < 0.01  # close to the seed's number
    assert ours["だった"] < ours["だ"] / 100  # but だった gets almost nothing
    assert 1.5 < tokens_per_char < 2  # almost two tokens per character

# %% [markdown]
# Honest reading: the embedded model's 「だ」 comes out close to the seed's number (within one
# percentage point), but that is luck, not agreement: the seed's model ranks だった second, and
# this one gives it almost nothing (after 「だ」 it rarely goes on with 「った」). With a vocabulary
# this poor in Japanese it spends almost two tokens per character (the ratio printed above), and
# its ranking is a different one.
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
# [log-probability](glossary.md#log-prob) (natural log); `exp(-mean)` is its
# **[perplexity](glossary.md#perplexity)**: "as unsure as a uniform choice among that many
# tokens". The first token is not scored: nothing comes before it (this tokenizer adds no BOS
# [token](glossary.md#special-token)).

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
#    past) and an MLP (per position) to that vector, the
#    "[residual stream](glossary.md#residual-stream)";
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
assert not EMBEDDED or first_right == config.num_hidden_layers  # the text below: only at the last layer

# %%
fig, ax = plt.subplots(figsize=(9, 8))
lens.plot(ax=ax, title=f"logit lens for {prompt!r}: top token (color: its probability)")
fig.colorbar(ax.images[0], ax=ax, label="probability of the top token", shrink=0.6)
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

# %% [markdown]
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
# explicitly. Same weights, same logits (to float rounding). The same pass also keeps the hidden
# states, for the layer written by hand below.

# %%
eager_model = lt.load_model(attn_implementation="eager")
attention_text = "The cat sat on the mat because the cat was tired."
enc = tokenizer(attention_text, return_tensors="pt").to(model.device)
with torch.inference_mode():
    eager_out = eager_model(**enc, output_attentions=True, output_hidden_states=True)
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
sink = attentions[..., 1:, 0].mean()
print(f"mean weight on the first token over all layers, heads and positions: {lt.fmt(sink, 2, kind='prob')}")
assert not EMBEDDED or sink > 0.5  # the text above: more than half

# %%
pieces = [tokenizer.decode(i) for i in enc["input_ids"][0]]
fig, ax = plt.subplots(figsize=(7, 5.5))
image = ax.imshow(attentions[layer, head].cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
fig.colorbar(image, ax=ax, label="attention weight")
ax.set_xticks(range(n), pieces, rotation=90)
ax.set_yticks(range(n), pieces)
ax.set_xlabel("key (attended to)")
ax.set_ylabel("query (attending)")
ax.set_title(f"attention weights, layer {layer + 1}, head {head}")
fig.tight_layout()
plt.show()

# %% [markdown]
# <a id="layer-by-hand"></a>
# ### One decoder layer by hand
#
# Every decoder layer does two things to the residual stream: it adds attention, then an MLP,
# each computed from a normalized copy of the stream. Here is layer 0 of the eager pass above in
# plain tensor operations, from `hidden_states[0]` (the embeddings) to `hidden_states[1]`,
# following transformers' Llama code (`modeling_llama.py`) step by step and checking the steps
# against the library. It covers **Llama-style layers only** (Llama, Mistral, Qwen2: RMSNorm,
# RoPE with its default frequencies, grouped-query attention, a SiLU-gated MLP); for any other
# architecture the cells below say so and skip. Every size comes from `model.config`.

# %%
rope = dict(getattr(config, "rope_parameters", None) or {})  # transformers 5; before: config.rope_theta
rope_type = rope.get("rope_type", "default")
rope_theta = rope.get("rope_theta", getattr(config, "rope_theta", None))
head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
n_heads, n_kv_heads = config.num_attention_heads, config.num_key_value_heads
llama_style = (config.model_type in ("llama", "mistral", "qwen2") and config.hidden_act == "silu"
               and rope_type == "default" and rope_theta is not None)
print(f"{config.model_type}: {type(layers[0]).__name__}, RoPE {rope_type!r}, activation {config.hidden_act!r}")
print(f"hidden size {config.hidden_size}, {n_heads} query heads and {n_kv_heads} key/value heads of "
      f"head_dim {head_dim}, MLP width {config.intermediate_size}")
if llama_style:
    print(f"RMSNorm eps {lt.fmt(config.rms_norm_eps, 1, kind='exact')}, RoPE theta {lt.fmt(rope_theta, kind='exact')}")
else:
    print("The hand-written layer below covers Llama-style layers only (llama, mistral, qwen2 with "
          "default RoPE and SiLU): skipped for this model.")

# %% [markdown]
# The block, drawn with this model's sizes (`T` is the number of tokens; the batch axis is left
# out). The residual stream runs down the left; each branch reads a normalized copy of it and
# adds its result back.

# %%
from matplotlib.patches import FancyBboxPatch


def box(ax, x, y, text, width=3.0, color="#dce8f5"):
    """A rounded box of height 0.64 centred on (x, y), with its text."""
    ax.add_patch(FancyBboxPatch((x - width / 2, y - 0.32), width, 0.64, fc=color, ec="#333333",
                                boxstyle="round,pad=0.02,rounding_size=0.1"))
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)


def arrow(ax, start, end):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.2))


if llama_style:
    hidden, inner, n_rep = config.hidden_size, config.intermediate_size, n_heads // n_kv_heads
    fig, ax = plt.subplots(figsize=(9, 9.5))
    ax.set(xlim=(0, 12), ylim=(-0.2, 14.2))
    ax.axis("off")
    stream_color = "#b07020"
    box(ax, 1.4, 13.6, f"hidden_states[0]\n[T, {hidden}]", width=2.6, color="#f5e3c8")
    box(ax, 1.4, 0.2, f"hidden_states[1]\n[T, {hidden}]", width=2.6, color="#f5e3c8")
    ax.plot([1.4, 1.4], [13.28, 0.8], color=stream_color, lw=2.5, zorder=1)
    arrow(ax, (1.4, 1.4), (1.4, 0.52))
    ax.text(0.75, 10.0, "residual stream", rotation=90, ha="center", va="center", color=stream_color)
    for y in (6.8, 1.8):  # where a branch adds its result
        ax.plot(1.4, y, "o", ms=20, mfc="white", mec="#333333", zorder=3)
        ax.text(1.4, y, "+", ha="center", va="center", fontsize=14, zorder=4)
    # attention
    ax.plot([1.4, 4.2], [12.6, 12.6], color="#333333", lw=1.2)
    box(ax, 6.5, 12.6, f"input_layernorm: RMSNorm, eps {lt.fmt(config.rms_norm_eps, 1, kind='exact')}", width=4.6)
    for x, name, heads in [(4.3, "q_proj", n_heads), (6.5, "k_proj", n_kv_heads), (8.7, "v_proj", n_kv_heads)]:
        arrow(ax, (x, 12.28), (x, 11.72))
        box(ax, x, 11.4, f"{name}: {hidden} → {heads * head_dim}\n{heads} heads × {head_dim}", width=2.0)
    for x in (4.3, 6.5):
        arrow(ax, (x, 11.08), (x, 10.52))
    box(ax, 5.4, 10.2, f"RoPE on q and k, θ = {lt.fmt(rope_theta, kind='exact')}\n"
        f"pair i turns by position × θ^(-2i/{head_dim})", width=4.2)
    arrow(ax, (5.4, 9.88), (5.4, 9.32))
    arrow(ax, (8.7, 11.08), (8.7, 9.32))
    box(ax, 6.5, 9.0, f"GQA: repeat k and v ×{n_rep}, {n_kv_heads} → {n_heads} heads", width=5.4)
    arrow(ax, (6.5, 8.68), (6.5, 8.22))
    box(ax, 6.5, 7.9, f"softmax(q·kᵀ / √{head_dim} + causal mask) · v\nweights [{n_heads}, T, T]", width=5.4)
    arrow(ax, (6.5, 7.58), (6.5, 7.12))
    box(ax, 6.5, 6.8, f"o_proj: {n_heads * head_dim} → {hidden}")
    arrow(ax, (5.0, 6.8), (1.75, 6.8))
    # MLP
    ax.plot([1.4, 4.6], [5.7, 5.7], color="#333333", lw=1.2)
    box(ax, 6.5, 5.7, "post_attention_layernorm: RMSNorm", width=3.8)
    for x, name in [(5.0, "gate_proj"), (8.0, "up_proj")]:
        arrow(ax, (x, 5.38), (x, 4.92))
        box(ax, x, 4.6, f"{name}: {hidden} → {inner}", width=2.6)
    arrow(ax, (5.0, 4.28), (5.8, 3.62))
    arrow(ax, (8.0, 4.28), (7.2, 3.62))
    box(ax, 6.5, 3.3, f"{config.hidden_act}(gate) × up\n[T, {inner}]", color="#e3f0dc")
    arrow(ax, (6.5, 2.98), (6.5, 2.12))
    box(ax, 6.5, 1.8, f"down_proj: {inner} → {hidden}")
    arrow(ax, (5.0, 1.8), (1.75, 1.8))
    ax.set_title(f"one decoder layer of {lt.describe_model()} (layer 0 of {config.num_hidden_layers})")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# **1. RMSNorm.** Each position's vector is divided by its root mean square (plus `rms_norm_eps`,
# so as never to divide by zero), then multiplied by a learned weight per dimension; unlike
# LayerNorm, no mean is subtracted. transformers computes it in float32 whatever the model's
# dtype, and casts back before the weight. Each step is checked against the library with
# `torch.testing.assert_close` and a tolerance of `rtol = atol = 1e-5` for a float32 model
# (`2e-2` in half precision): the hand code runs the same operations as the library, and a
# matrix product summed in another order moves only the last float32 digits. (The difference
# measured on this CPU is printed at the end of this section.)

# %%
torch.set_grad_enabled(False)  # inference only: autograd records nothing from here on
block = next(c for c in eager_model.get_decoder().children() if isinstance(c, torch.nn.ModuleList))[0]
stream = eager_out.hidden_states[0]  # the embeddings of attention_text: [batch, T, hidden]
T = stream.shape[1]
tolerance = dict(rtol=1e-5, atol=1e-5) if stream.dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)


def rms_norm(h, weight):
    """h / sqrt(mean(h²) + eps), computed in float32, back in h's dtype, times the learned weight."""
    h32 = h.float()
    h32 = h32 * torch.rsqrt(h32.pow(2).mean(-1, keepdim=True) + config.rms_norm_eps)
    return weight * h32.to(h.dtype)


if llama_style:
    normed = rms_norm(stream, block.input_layernorm.weight)
    torch.testing.assert_close(normed, block.input_layernorm(stream), **tolerance)
    print("stream", tuple(stream.shape), "-> RMSNorm", tuple(normed.shape), "== block.input_layernorm")

# %% [markdown]
# **2. Queries, keys and values.** Three linear maps of the normed stream (`h @ W.T`, plus a bias
# where the model has one, as Qwen2 does), each split into heads of `head_dim` numbers. This model
# has fewer key/value heads than query heads: [grouped-query attention](glossary.md#gqa) (GQA),
# which makes keys and values, and so the KV cache, smaller.

# %%
def linear(h, layer):
    """What an nn.Linear computes: h @ W.T (+ b)."""
    return h @ layer.weight.T + (layer.bias if layer.bias is not None else 0)


if llama_style:
    attn = block.self_attn
    split = (*stream.shape[:-1], -1, head_dim)  # [batch, T, heads, head_dim]
    q = linear(normed, attn.q_proj).view(split).transpose(1, 2)  # [batch, heads, T, head_dim]
    k = linear(normed, attn.k_proj).view(split).transpose(1, 2)
    v = linear(normed, attn.v_proj).view(split).transpose(1, 2)
    print("q", tuple(q.shape), "k", tuple(k.shape), "v", tuple(v.shape), "= [batch, heads, T, head_dim]")
    assert q.shape[1] == n_heads and k.shape[1] == v.shape[1] == n_kv_heads

# %% [markdown]
# **3. RoPE: rotate by position.** [RoPE](glossary.md#rope) encodes where a token sits by rotating
# its query and key: the `head_dim` numbers form `head_dim / 2` pairs, and pair `i` at position
# `p` turns by the angle $p \cdot \theta^{-2i/d}$ ($\theta$ = `rope_theta`, $d$ = `head_dim`:
# pair 0 turns by one radian per position, the last pairs very slowly). The cos and sin of every
# angle, by hand, checked against the model's own rotary embedding module:

# %%
if llama_style:
    positions = torch.arange(T, device=stream.device)  # one text, no padding: 0, 1, ..., T - 1
    inv_freq = 1.0 / rope_theta ** (torch.arange(0, head_dim, 2, device=stream.device).float() / head_dim)
    angles = positions[:, None].float() * inv_freq  # [T, head_dim / 2]: position × frequency of pair i
    cos = torch.cat([angles, angles], dim=-1).cos()  # [T, head_dim]: both members of a pair, same angle
    sin = torch.cat([angles, angles], dim=-1).sin()
    library_cos, library_sin = eager_model.get_decoder().rotary_emb(stream, positions[None])
    torch.testing.assert_close(cos.to(stream.dtype), library_cos[0], **tolerance)
    torch.testing.assert_close(sin.to(stream.dtype), library_sin[0], **tolerance)
    print("cos, sin", tuple(cos.shape), "= [T, head_dim] == rotary_emb(stream, position_ids)")

# %% [markdown]
# transformers pairs dimension `i` with dimension `i + head_dim / 2` (the two halves of the
# vector, not neighbours as in the RoPE paper): `rotate_half` maps the halves `(a, b)` to
# `(-b, a)`, so `x · cos + rotate_half(x) · sin` turns every pair `(a, b)` into
# `(a cos - b sin, b cos + a sin)`, a rotation. A rotation keeps lengths, so each vector's norm is
# unchanged. The rotated keys, and the values, are what the KV cache keeps for this layer:

# %%
def rotate_half(h):
    """Halves (a, b) -> (-b, a): pairs dimension i with i + head_dim / 2."""
    first, second = h.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


if llama_style:
    q_rot = q * cos + rotate_half(q) * sin  # cos, sin [T, head_dim] broadcast over batch and heads
    k_rot = k * cos + rotate_half(k) * sin
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm(dim=-1), **tolerance)  # a rotation
    torch.testing.assert_close(q_rot[:, :, 0], q[:, :, 0], **tolerance)  # position 0: angle 0, unchanged
    cached = eager_out.past_key_values.layers[0]
    torch.testing.assert_close(k_rot, cached.keys, **tolerance)
    torch.testing.assert_close(v, cached.values, **tolerance)
    print("rotated keys", tuple(k_rot.shape), "== the cache's keys for layer 0; values == its values")

# %% [markdown]
# **4. Grouped-query attention: the repeat.** Each key/value head serves `n_heads / n_kv_heads`
# consecutive query heads: query head `h` reads key/value head `h // n_rep`. Repeating each
# key/value head `n_rep` times gives every query head its own copy (transformers' `repeat_kv`
# does the same with `expand` and `reshape`):

# %%
if llama_style:
    n_rep = n_heads // n_kv_heads
    k_all = k_rot.repeat_interleave(n_rep, dim=1)  # [batch, n_heads, T, head_dim]
    v_all = v.repeat_interleave(n_rep, dim=1)
    assert all(torch.equal(k_all[:, h], k_rot[:, h // n_rep]) and torch.equal(v_all[:, h], v[:, h // n_rep])
               for h in range(n_heads))
    print(f"k {tuple(k_rot.shape)} -> {tuple(k_all.shape)}: {n_kv_heads} key/value heads × {n_rep} = "
          f"{n_heads}; query head h reads key/value head h // {n_rep}")

# %% [markdown]
# **5. Scores, the causal mask, softmax.** Every query is compared with every key by a dot
# product, divided by $\sqrt{d}$; the causal mask sets the scores of later positions to $-\infty$,
# so that softmax gives them weight 0; softmax (in float32, as transformers does) turns each row
# into weights that sum to 1. These are the weights that `output_attentions=True` returned:

# %%
if llama_style:
    scores = q_rot @ k_all.transpose(-1, -2) / math.sqrt(head_dim)  # [batch, heads, query, key]
    future = torch.ones(T, T, dtype=torch.bool, device=stream.device).triu(diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))  # a query sees only itself and the past
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    torch.testing.assert_close(weights, eager_out.attentions[0], **tolerance)
    print("weights", tuple(weights.shape), "== output_attentions=True, layer 0")

# %% [markdown]
# The query heads of one group read the same keys and values, and still weigh them differently:
# each has its own queries. The first group's heads, as computed by hand:

# %%
if llama_style:
    shown = min(n_rep, 4)
    fig, axes = plt.subplots(1, shown, figsize=(3.3 * shown + 1.2, 4.4), squeeze=False, layout="constrained")
    for h, ax in enumerate(axes[0]):
        image = ax.imshow(weights[0, h].float().cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(T), pieces, rotation=90, fontsize=7)
        ax.set_yticks(range(T), pieces if h == 0 else [], fontsize=7)
        ax.set_title(f"query head {h}", fontsize=9)
        ax.set_xlabel("key")
    axes[0, 0].set_ylabel("query")
    fig.colorbar(image, ax=axes[0].tolist(), label="attention weight")
    fig.suptitle(f"layer 0, by hand: query heads 0-{shown - 1}, all reading key/value head 0")
    plt.show()
    assert not torch.equal(weights[0, 0], weights[0, n_rep - 1]) or n_rep == 1  # same keys, other weights

# %% [markdown]
# **6. Mix, project, add.** Each head's output is its weighted sum of value vectors; the heads are
# put side by side again (`n_heads × head_dim` numbers per position) and `o_proj` maps them to the
# hidden size. The result is **added** to the stream: a layer writes into the residual stream
# rather than replacing it.

# %%
if llama_style:
    heads_out = weights @ v_all  # [batch, heads, T, head_dim]
    concat = heads_out.transpose(1, 2).reshape(*stream.shape[:-1], n_heads * head_dim)
    after_attention = stream + linear(concat, attn.o_proj)  # the first residual connection
    print("heads", tuple(heads_out.shape), "-> side by side", tuple(concat.shape),
          "-> o_proj + stream", tuple(after_attention.shape))

# %% [markdown]
# **7. The MLP (SwiGLU) and its residual.** A second RMSNorm, then two maps to the wider
# `intermediate_size`: the "gate" goes through SiLU (`hidden_act`, $\mathrm{silu}(x) = x \cdot
# \sigma(x)$) and multiplies the "up" map element by element (a gated linear unit with SiLU:
# SwiGLU); `down_proj` maps back to the hidden size, and the result is added to the stream. That is
# the whole layer: the result must be `hidden_states[1]`.

# %%
if llama_style:
    normed_again = rms_norm(after_attention, block.post_attention_layernorm.weight)
    gate = linear(normed_again, block.mlp.gate_proj)
    up = linear(normed_again, block.mlp.up_proj)
    mlp_out = linear(gate * torch.sigmoid(gate) * up, block.mlp.down_proj)  # silu(gate) * up
    torch.testing.assert_close(mlp_out, block.mlp(normed_again), **tolerance)
    layer_out = after_attention + mlp_out  # the second residual connection
    torch.testing.assert_close(layer_out, eager_out.hidden_states[1], **tolerance)
    print(f"gate, up {tuple(gate.shape)} -> MLP {tuple(mlp_out.shape)}; layer 0 by hand == hidden_states[1] "
          f"(rtol {tolerance['rtol']}, atol {tolerance['atol']})")

# %%
# NBVAL_IGNORE_OUTPUT
# the differences depend on the CPU's kernels (0 where hand code and library sum in the same order)
if llama_style:
    for name, mine, theirs in [("attention weights", weights, eager_out.attentions[0]),
                               ("hidden_states[1]", layer_out, eager_out.hidden_states[1])]:
        print(f"{name}: max |hand - library| = {(mine - theirs).abs().max().item():.2e}")

# %% [markdown]
# ## 7. Batches: padding, the attention mask and position ids
#
# Two prompts of different lengths fit in one tensor only after **padding** the short one. For a
# decoder-only model, [pad on the **left**](glossary.md#padding-side), so that every row's last
# position is a real token. The **attention mask** marks real tokens with 1 and padding with 0;
# attention then ignores the pads. **[Position ids](glossary.md#position-ids)** say where each
# token sits in its own text; for the padded row they must count
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
# Position ids matter less here than the mask: this model encodes positions with RoPE (see [the
# layer by hand](#layer-by-hand)), which only
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
# - One Llama-style decoder layer, by hand: RMSNorm (in float32) → q/k/v projections → RoPE
#   (rotate each pair of dimensions by position × frequency) → repeat the key/value heads (GQA) →
#   scores / √head_dim, causal mask, softmax → weighted values → `o_proj` → add to the residual
#   stream; then RMSNorm → `silu(gate) × up` → `down_proj` → add. It reproduces
#   `hidden_states[1]` and the attention weights to float rounding.
# - In a batch, pad on the left and pass the attention mask: without it, padding changes the
#   answer.
# - Greedy decoding is `argmax` of the last position's logits.
#
# ## Exercises
#
# 1. After `"The capital of France is"`, which continuation does the model find most likely:
#    `" Paris"`, `" Lyon"` or `" Berlin"`? Compare their log-probabilities (they are all single
#    tokens here, but use the chain rule so that it also works when they are not).

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
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
# 2. [Temperature](glossary.md#temperature) divides the logits before the softmax. For the prompt above, print the top
#    token's probability and the entropy of the distribution at temperatures 0.5, 1 and 2. Which
#    way do they move?

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
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

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
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
