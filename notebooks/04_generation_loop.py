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
# # 04 · The generation loop
# **What does `model.generate()` actually do between the prompt and the answer, and can we
# write that loop ourselves so that it gives exactly the same tokens?**
#
# Notebook 03 ran one forward pass: the [logits](glossary.md#logit) of the last position are the
# model's guess for the next [token](glossary.md#token), and their argmax is greedy decoding's
# choice. Generation repeats that step: choose a token, append it, run the model again, until an
# [end-of-sequence token](glossary.md#eos) or a length limit. We build that loop in six steps and
# check every one against the library:
#
# 1. the simplest loop; 2. the KV cache (and what wrong positions do); 3. how fast each version
# is; 4. batches, Llama's reference `generate()` and log-probabilities; 5. sampling inside the
# loop; 6. streaming.
#
# The finished loop is `lt.generate` (in `llm_tutorial/generation.py`): same arguments as
# `model.generate`, same tokens.

# %%
import llm_tutorial as lt

banner = lt.setup_notebook(seed=0)

# %%
import inspect

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, TextStreamer

model = lt.load_model()
tokenizer = lt.load_tokenizer()
EOS = tokenizer.eos_token_id
PAD = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else EOS
print(type(model).__name__, model.dtype, "| EOS", EOS, repr(tokenizer.decode(EOS)), "| pad", PAD)

# %% [markdown]
# ## 1. The simplest loop
#
# Forward the whole sequence, take the argmax of the last position's logits, append it, stop
# when the model produces the end-of-sequence (EOS) token. That is all of greedy generation:

# %%
@torch.no_grad()
def simplest_loop(model, ids, max_new_tokens, eos_id):
    for _ in range(max_new_tokens):
        logits = model(ids).logits  # [1, length, vocab]: the whole sequence, every time
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)  # the most likely next token
        ids = torch.cat([ids, next_id], dim=1)  # append it
        if next_id.item() == eos_id:  # the model says the answer is over
            break
    return ids


# %%
capital = lt.chat_inputs(tokenizer, "What is the capital of France?", device=model.device)
ours = simplest_loop(model, capital["input_ids"], max_new_tokens=30, eos_id=EOS)
with torch.no_grad():
    theirs = model.generate(**capital, max_new_tokens=30, do_sample=False)
n_prompt = capital["input_ids"].shape[1]
lt.check_gap(lt.greedy_gap(model, ours, n_prompt), "the capital answer")
print(f"prompt: {n_prompt} tokens; new: {ours.shape[1] - n_prompt} tokens")
print(repr(tokenizer.decode(ours[0, n_prompt:])))
assert torch.equal(ours, theirs)
assert ours[0, -1].item() == EOS and ours.shape[1] - n_prompt < 30  # stopped at EOS, not at the limit

# %% [markdown]
# Identical, EOS included: `generate` also appends the EOS token it stopped at.
#
# (The `lt.check_gap` line guards the printed answer: `lt.greedy_gap` measures, in one more
# forward pass, how far the top token stayed ahead of the runner-up at every step, and
# `lt.check_gap` refuses a near-tie, where another CPU's rounding could choose the other token.
# Every greedy text printed below is checked the same way.)
#
# ## 2. Why it is slow, and the KV cache
#
# At step *t* the simplest loop pushes all *P + t* tokens (prompt plus answer so far) through
# all layers again, to use only the last position's logits. For *n* new tokens that is
# *nP + n(n-1)/2* token positions: the work grows with the **square** of the length.
#
# But the earlier positions' results never change. Attention is causal: position *i* only sees
# positions ≤ *i*, so appending tokens cannot change anything computed for the ones before them:

# %%
sky = lt.chat_inputs(tokenizer, "Explain in two sentences why the sky is blue.", device=model.device)
P = sky["input_ids"].shape[1]
with torch.no_grad():
    short = model(sky["input_ids"]).logits
    longer = model(torch.cat([sky["input_ids"], theirs[:, n_prompt:]], dim=1)).logits
gap = (longer[:, :P] - short).abs().max().item()
print(f"largest change of the prompt's logits after appending {longer.shape[1] - P} tokens:",
      "< 1e-4" if gap < 1e-4 else gap)
assert gap < 1e-4

# %% [markdown]
# So each layer can keep the **keys and values** it computed for every past token (the
# [*KV cache*](glossary.md#kv-cache)) and, for a new token, compute only that token's query, key
# and value and attend to the cached ones. With `use_cache=True` the model returns the cache in
# `past_key_values`:

# %%
with torch.no_grad():
    prefill_out = model(sky["input_ids"], use_cache=True)
cache = prefill_out.past_key_values
keys = cache.layers[0].keys
print(type(cache).__name__, "|", len(cache.layers), "layers | keys of layer 0:", tuple(keys.shape),
      "= [batch, key/value heads, tokens, head size] | cached tokens:", cache.get_seq_length())
cfg = model.config
kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads  # fewer with GQA
head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
per_token = 2 * cfg.num_hidden_layers * kv_heads * head_dim * keys.element_size()
measured = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers) / P
print(f"cache size: {lt.fmt(per_token / 1024, decimals=1, kind='exact')} KiB per token (keys and values, every layer)")
assert keys.shape == (1, kv_heads, P, head_dim) and measured == per_token

# %% [markdown]
# The loop with a cache: **prefill** runs the prompt once; each **step** then feeds only the new
# token, tells the model its [**position**](glossary.md#position-ids) (the next index after
# everything in the cache), and gets the updated cache back.

# %%
@torch.no_grad()
def cached_loop(model, ids, max_new_tokens, eos_id, position_of=None):
    out = model(ids, use_cache=True)  # prefill: the whole prompt, once
    for step in range(max_new_tokens):
        next_id = out.logits[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=1)
        if next_id.item() == eos_id or step == max_new_tokens - 1:
            break
        # the new token is the last one of the sequence: its index is length - 1
        position = ids.shape[1] - 1 if position_of is None else position_of(ids)
        out = model(next_id, past_key_values=out.past_key_values,  # only the new token + the cache
                    position_ids=torch.tensor([[position]], device=ids.device), use_cache=True)
    return ids


N = 12
with torch.no_grad():
    reference = model.generate(**sky, max_new_tokens=N, do_sample=False)
hand = cached_loop(model, sky["input_ids"], N, EOS)
lt.check_gap(lt.greedy_gap(model, reference, P), "the sky answer")
print(repr(tokenizer.decode(hand[0, P:])))
assert torch.equal(hand, reference)

# %% [markdown]
# Same tokens as `generate`. The position matters: the cache stores keys that already carry their
# positions ([RoPE](glossary.md#rope) rotates them by position), and the new token must be placed
# after them. Two classic bugs: computing the position once before the loop (every new token gets
# the same one), or counting positions within the new input only (always 0):

# %%
def closest_call(ids, positions):
    """Greedy tokens ids[:, P:] made with these positions: check them in one pass over the whole
    sequence (causal attention: the same computation as the cached loop) and return the
    smallest top-1/top-2 logit gap of their choices."""
    with torch.no_grad():
        logits = model(ids, position_ids=positions[None, :ids.shape[1]]).logits[:, P - 1:-1]
    assert torch.equal(logits.argmax(dim=-1), ids[:, P:])  # the same choices as the loop made
    return lt.top2_gap(logits).min().item()


frozen = cached_loop(model, sky["input_ids"], N, EOS, position_of=lambda ids: P)
zero = cached_loop(model, sky["input_ids"], N, EOS, position_of=lambda ids: 0)
index = torch.arange(P + N, device=model.device)
lt.check_gap(closest_call(frozen, index.clamp(max=P)), "the text with frozen positions")
lt.check_gap(closest_call(zero, torch.where(index < P, index, 0)), "the text with positions 0")
for name, ids in [("right positions", hand), ("position frozen at P", frozen), ("position always 0", zero)]:
    print(f"{name:<21} {tokenizer.decode(ids[0, P:])!r}")
assert not torch.equal(frozen, reference) and not torch.equal(zero, reference)

# %% [markdown]
# The text derails within a few tokens (or stops), without any error. If you pass no
# `position_ids` at all, this model counts on from the cache length: the right position for one
# unpadded prompt (one step, both ways, below). In a left-padded batch that count includes the
# pads; section 4 measures what that does.

# %%
next_id = prefill_out.logits[:, -1:].argmax(dim=-1)
with torch.no_grad():
    implicit = model(next_id, past_key_values=cache, use_cache=True).logits
    fresh_cache = model(sky["input_ids"], use_cache=True).past_key_values
    explicit = model(next_id, past_key_values=fresh_cache, position_ids=torch.tensor([[P]], device=model.device),
                     use_cache=True).logits
gap = (implicit - explicit).abs().max().item()
print("next-token logits, no position_ids vs position P: max |difference|", "< 1e-5" if gap < 1e-5 else gap)
assert torch.allclose(implicit, explicit, atol=1e-5)

# %% [markdown]
# The package splits the same loop into one small function per idea: `lt.prefill`,
# `lt.choose_next_token`, `lt.update_finished` (the stopping rule, section 4) and
# `lt.decode_step`; `lt.stream_tokens` runs them in a loop.
# `lt.generate` collects the tokens; with `use_cache=False`, `decode_step` recomputes the whole
# sequence like the simplest loop:

# %%
print(inspect.getsource(lt.decode_step).split('"""')[-1].strip())

# %%
ours_cached = lt.generate(model, capital["input_ids"], capital["attention_mask"], max_new_tokens=30,
                          eos_token_id=EOS)
ours_uncached = lt.generate(model, capital["input_ids"], capital["attention_mask"], max_new_tokens=30,
                            eos_token_id=EOS, use_cache=False)
assert torch.equal(ours_cached, theirs) and torch.equal(ours_uncached, theirs)
print("lt.generate with cache and without: same tokens as model.generate")

# %% [markdown]
# ## 3. How much faster? A timing from this run
#
# `lt.time_decoding` (in `llm_tutorial/bench.py`) generates `N_TIME` tokens from the sky prompt
# three ways and records the time at which each token comes out: the no-cache loop, our cached
# loop (`lt.stream_tokens`), and `generate` (a streamer notes each token as it arrives). It passes
# `eos_token_id=None`, so that all three run the full length: passed explicitly, it also switches
# off `generate`'s own EOS stop. (Always pass the attention mask too: without one and without an
# EOS id, `generate` guesses the padding from the pad id, which here is `<|im_end|>`, a token the
# chat prompt contains.)
#
# Wall-clock times change from run to run and from machine to machine, so the speed is **shown
# here, not asserted**; `python -m llm_tutorial bench` prints the speed ratios (cache against no
# cache, our loop against `generate`), each step the fastest of several runs. What we assert is
# the work, counted while the loops run: a forward hook on the model records, for every forward
# call, how many token positions went in and how long the cache is afterwards.

# %%
N_TIME = 12
forward_calls = []  # (positions fed, cache length after the call) for every forward pass


def count_work(module, args, kwargs, output):
    fed = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
    cache = output.past_key_values
    forward_calls.append((fed.shape[1], None if cache is None else cache.get_seq_length()))


hook = model.register_forward_hook(count_work, with_kwargs=True)
try:  # one run of each loop: enough to see the shape (bench keeps the fastest of several)
    times, tokens = lt.time_decoding(model, sky, max_new_tokens=N_TIME, repeats=1)
finally:
    hook.remove()

# %%
# NBVAL_IGNORE_OUTPUT
# measured times: they differ from run to run and machine to machine (shown, never asserted)
LENGTHS = (6, N_TIME)
print(f"{'':<18}" + "".join(f"{f'tok/s at {n}':>14}" for n in LENGTHS) + f"{'mean time per step':>28}")
print(f"{'':<18}" + " " * 14 * len(LENGTHS) + f"{'steps 2-6':>14}{'last 5':>14}")
for name, cumulative in times.items():
    steps = [b - a for a, b in zip(cumulative, cumulative[1:], strict=False)]  # step 1 (the prefill) left out
    rates = "".join(f"{n / cumulative[n - 1]:>14.1f}" for n in LENGTHS)
    first_ms, last_ms = 1000 * sum(steps[:5]) / 5, 1000 * sum(steps[-5:]) / 5  # means, not totals
    print(f"{name:<18}{rates}{first_ms:>11.0f} ms{last_ms:>11.0f} ms")
print("speed ratios, tokens/s:", {pair: round(r, 2) for pair, r in lt.speed_ratios(times).items()})

# %%
# NBVAL_IGNORE_OUTPUT
# a plot of this run's times (they vary; nbval does not compare images)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
for name, cumulative in times.items():
    n = range(1, len(cumulative) + 1)
    left.plot(n, cumulative, label=name)
    right.plot(n, [k / t for k, t in zip(n, cumulative, strict=True)], label=name)
left.set(xlabel="tokens generated", ylabel="seconds since the call", title="cumulative time")
right.set(xlabel="tokens generated", ylabel="tokens per second (so far)", title="throughput")
left.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# With a cache the cumulative time is a straight line after the prefill; our loop and `generate`
# run the same forward calls, so they sit on top of each other (on a busy machine the measured
# gap is noise). Without a cache it bends upward, but only gently at this length, and by how much
# depends on the machine. Every forward call reads (nearly) all the model's weights, however few
# positions it gets, and then does the arithmetic for each position. Where the CPU computes fast,
# reading the weights dominates a pass over a few dozen positions, and the last no-cache step
# (*P + n − 1* positions) costs hardly more than the first (*P*); where the arithmetic dominates,
# a step costs in proportion to its positions, but even then the last one costs only
# *(P + n − 1)/P* times the first, under 2 here: the prompt already makes up most of every pass.
# Over thousands of tokens the quadratic term wins everywhere.
#
# The counted work is the same on every machine: one forward call per new token in all three
# loops; *nP + n(n−1)/2* positions without a cache (quadratic in *n*) against *P + n − 1* with one
# (linear: the prompt once, then one new token per step); and a cache that grows by exactly one
# position per step:

# %%
starts = [k for k, (fed, _) in enumerate(forward_calls) if fed == P]  # each loop begins with a prefill
ends = [*starts[1:], len(forward_calls)]
work = {loop: forward_calls[a:b] for loop, a, b in zip(times, starts, ends, strict=True)}
weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
print(f"{N_TIME} new tokens after a {P}-token prompt; the same tokens from all three loops:",
      tokens["no cache"] == tokens["hand loop, cache"] == tokens["generate()"])
for loop, calls in work.items():
    fed, cached = [f for f, _ in calls], [c for _, c in calls]
    cache_text = "no cache" if cached[0] is None else f"{cached[0]}, {cached[1]}, {cached[2]}, …, {cached[-1]}"
    print(f"{loop:<17} {len(calls)} forward calls | positions fed {fed[0]}, {fed[1]}, {fed[2]}, …, {fed[-1]}: "
          f"{sum(fed):>4} in all | cache after each call: {cache_text}")
print(f"each forward call reads (nearly) all {lt.fmt(weights_mb, 3, kind='exact')} MB of weights")

n = N_TIME
assert len(starts) == len(times) and tokens["no cache"] == tokens["hand loop, cache"] == tokens["generate()"]
timed = torch.tensor([sky["input_ids"][0].tolist() + tokens["generate()"]], device=model.device)
lt.check_gap(lt.greedy_gap(model, timed, P), "the timed tokens")
for loop, calls in work.items():
    fed, cached = [f for f, _ in calls], [c for _, c in calls]
    assert len(calls) == n  # one forward call per new token: the prefill makes the first one
    if loop == "no cache":
        assert fed == [P + t for t in range(n)] and cached == [None] * n  # the whole sequence, every time
        assert sum(fed) == n * P + n * (n - 1) // 2  # quadratic in n
    else:
        assert fed == [P] + [1] * (n - 1) and sum(fed) == P + n - 1  # the prompt once, then 1 per step
        assert cached == list(range(P, P + n))  # the cache grows by one position per step

# %% [markdown]
# ## 4. Batches: padding, positions, EOS per row, log-probs
#
# Several prompts of different lengths go through the model as one tensor. As in notebook 03, a
# decoder-only model is [padded on the **left**](glossary.md#padding-side), so that every row's
# last column is its last real token and all rows generate into the same new column. The attention
# mask hides the pads, and the position ids count from each row's first real token:

# %%
questions = [
    "What is the capital of France?",
    "Summarise in one sentence: The printing press made books cheaper, and printed material spread across Europe.",
    "Hi!",
]
left_tokenizer = lt.load_tokenizer(padding_side="left")
texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                       tokenize=False) for q in questions]
batch = left_tokenizer(texts, return_tensors="pt", padding=True).to(model.device)
ids, mask = batch["input_ids"], batch["attention_mask"]
positions = lt.position_ids_from_mask(mask)
for row in range(len(questions)):
    pads = int((mask[row] == 0).sum())
    print(f"row {row}: {pads:>2} pads + {int(mask[row].sum()):>3} tokens | mask "
          f"{''.join(map(str, mask[row, pads - 2 if pads > 1 else 0:pads + 4].tolist()))}… | positions "
          f"{positions[row, max(pads - 2, 0):pads + 4].tolist()}…{positions[row, -1].item()}")

# %% [markdown]
# The loop for a batch, inline: the same prefill and steps, plus a mask that grows by a column
# of ones, positions that grow by one per row, and a `finished` flag per row. A finished row
# keeps going through the model (the batch stays rectangular) but gets the pad token, and the
# loop ends when every row is finished.

# %%
@torch.no_grad()
def batch_loop(model, ids, mask, max_new_tokens, eos_id, pad_id):
    positions = lt.position_ids_from_mask(mask)
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    out = model(ids, attention_mask=mask, position_ids=positions, use_cache=True)  # prefill
    for step in range(max_new_tokens):
        next_ids = out.logits[:, -1].argmax(dim=-1)
        next_ids = torch.where(finished, pad_id, next_ids)  # finished rows only get padding
        finished |= next_ids == eos_id  # a row that says EOS is done
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
        if finished.all() or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)  # the new token is real
        positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)  # one place further
        out = model(next_ids[:, None], attention_mask=mask, position_ids=positions[:, -1:],
                    past_key_values=out.past_key_values, use_cache=True)
    return ids


N_BATCH = 32
with torch.no_grad():
    theirs = model.generate(**batch, max_new_tokens=N_BATCH, do_sample=False, pad_token_id=PAD,
                            output_logits=True, return_dict_in_generate=True)
inline = batch_loop(model, ids, mask, N_BATCH, EOS, PAD)
ours, logprobs = lt.generate(model, ids, mask, max_new_tokens=N_BATCH, eos_token_id=EOS, pad_token_id=PAD,
                             return_logprobs=True)
assert torch.equal(inline, theirs.sequences) and torch.equal(ours, theirs.sequences)
lt.check_gap(lt.greedy_gap(model, ours, ids.shape[1], attention_mask=mask), "the batch answers")
answers = lt.answer_tokens(ours, ids.shape[1], EOS)
for row, answer in enumerate(answers):
    print(f"row {row}: {len(answer):>2} tokens before EOS | {tokenizer.decode(answer)!r}")
new = ours[:, ids.shape[1]:]
first_eos = [r.index(EOS) if EOS in r else None for r in new.tolist()]
print("first EOS at new-token index:", first_eos, "| output columns:", new.shape[1])
assert first_eos[0] is not None and first_eos[0] < new.shape[1] - 1  # row 0 finished early...
assert (new[0, first_eos[0]:] == PAD).all()  # ...and was padded after its EOS

# %% [markdown]
# Inline loop, `lt.generate` and `generate` agree on all rows, with the short answer padded
# after its EOS. (Here the pad token *is* `<|im_end|>`, the EOS; models differ.)
#
# **Echo.** `generate` returns prompt + answer (*echo*, in Llama's terms). `lt.answer_tokens`
# cuts each row the Llama way: only the answer or the prompt too (without its padding), up to
# the first EOS:

# %%
short = lt.answer_tokens(ours, ids.shape[1], EOS, echo=False)[0]
echoed = lt.answer_tokens(ours, ids.shape[1], EOS, echo=True, attention_mask=mask)[0]
print("echo=False:", repr(tokenizer.decode(short)))
print("echo=True: ", repr(tokenizer.decode(echoed)[-90:]))
assert echoed == ids[0, mask[0].bool()].tolist() + short

# %% [markdown]
# **Per-token [log-probabilities](glossary.md#log-prob).** With `return_logprobs=True`,
# `lt.generate` also returns the log-probability of each chosen token under the model's unmodified
# distribution (0 for the padding after EOS). `generate` can report the same numbers: ask it for
# the raw logits and normalise them, e.g. with
# `compute_transition_scores(..., normalize_logits=True)`:

# %%
scores = model.compute_transition_scores(theirs.sequences, theirs.logits, normalize_logits=True)
raw = torch.stack(theirs.logits, dim=1)
from_raw = torch.log_softmax(raw, dim=-1).gather(-1, new[..., None])[..., 0]
exact = torch.log_softmax(raw.double(), dim=-1).gather(-1, new[..., None])[..., 0]
row, n_real = 0, first_eos[0] + 1
print(f"{'token':<12}{'ours':>8}{'transition':>12}{'prob':>7}")
for t in range(n_real):
    print(f"{tokenizer.decode(new[row, t])!r:<12}{lt.fmt(logprobs[row, t], decimals=2, kind='logit'):>8}"
          f"{lt.fmt(scores[row, t], decimals=2, kind='logit'):>12}{lt.fmt(logprobs[row, t].exp(), 2, kind='prob'):>7}")
is_eos = (new == EOS).int()
real = is_eos.cumsum(1) - is_eos == 0  # up to and including each row's first EOS
assert (logprobs[~real] == 0).all() and (~real[0]).any()
assert torch.allclose(logprobs[real], from_raw[real], atol=1e-5)
assert torch.allclose(logprobs[real], scores[real], atol=3e-4)
ours_error = (logprobs[real].double() - exact[real]).abs().max().item()
theirs_error = (scores[real].double() - exact[real]).abs().max().item()
assert ours_error < 5e-5 and ours_error <= theirs_error

# %%
# NBVAL_IGNORE_OUTPUT
# rounding errors: their size depends on the CPU's kernels (asserted above: ours < 5e-5, and <= theirs)
print(f"largest error against a float64 log-softmax: ours {ours_error:.1e}, "
      f"compute_transition_scores {theirs_error:.1e}")

# %% [markdown]
# The two columns agree to the digits shown, but underneath only to about 1e-4, not exactly:
# `compute_transition_scores` normalises over the vocabulary axis of a `[batch, vocab, steps]`
# stack, and in float32 that sum comes out a little less precise than a log-softmax over the last
# axis (the comparison with float64 above is the judge; its digits depend on the CPU, so that
# cell's output is not compared).
#
# ### Llama's reference `generate()`, mapped to this loop
#
# Seeds 002 and 004 walk through Llama's own `generate()`. It solves the same problems with a
# different layout: prompts are written **left-aligned** into a tensor filled with `pad_id`, the
# loop starts at the *shortest* prompt's length, and `input_text_mask` keeps the longer prompts'
# own tokens where the loop would otherwise write a generated one. Every row's token *k* sits in
# column *k*, so positions need no per-row bookkeeping and no attention mask is needed (no pad
# ever lies before `cur_pos`).
#
# | Llama `generate()` | here |
# |---|---|
# | `tokens = torch.full((bsz, total_len), pad_id)`, prompts left-aligned | left-padded `input_ids` + `attention_mask`; columns appended |
# | `input_text_mask = tokens != pad_id` | `attention_mask` (prompt part) |
# | `for cur_pos in range(min_prompt_len, total_len)` | prefill the whole batch, then one step per new column |
# | `model.forward(tokens[:, prev_pos:cur_pos], prev_pos)` | `decode_step`: new token + cache + `position_ids` |
# | `torch.where(input_text_mask[:, cur_pos], tokens[:, cur_pos], next_token)` | not needed: all rows generate from the same column |
# | `eos_reached \|= ~input_text_mask[:, cur_pos] & (next_token == eos_id)`; `if all(eos_reached): break` | `finished \|= isin(next, eos)`; stop when all finished |
# | (rows keep generating after EOS; cut afterwards) | finished rows get `pad_token_id` |
# | `token_logprobs = -F.cross_entropy(logits.transpose(1, 2), target, ignore_index=pad_id)` | `log_softmax(logits).gather(next)` |
# | `echo`; cut at `eos_id` | `lt.answer_tokens(..., echo=...)` |
#
# Here is Llama's loop on our Hugging Face model, with its cache: left-aligned prompts, pad `-1`
# as in Llama (never fed to the model), greedy. It computes the log-probs in both places: before
# writing the chosen token (as in the seed's code) and after (as in Llama's repository today):

# %%
def target_logprobs(logits, targets, pad_id):
    """Llama's per-token log-probs: minus the cross-entropy, 0 where the target is padding."""
    return -F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", ignore_index=pad_id)


@torch.no_grad()
def llama_style_generate(model, prompt_tokens, max_gen_len, eos_id, echo=False, pad_id=-1):
    bsz, device = len(prompt_tokens), model.device
    min_prompt_len = min(len(t) for t in prompt_tokens)
    total_len = max(len(t) for t in prompt_tokens) + max_gen_len
    tokens = torch.full((bsz, total_len), pad_id, dtype=torch.long, device=device)
    for k, t in enumerate(prompt_tokens):
        tokens[k, :len(t)] = torch.tensor(t, device=device)
    input_text_mask = tokens != pad_id
    logprobs_seed_order = torch.zeros(tokens.shape, device=device)
    logprobs_fixed_order = torch.zeros(tokens.shape, device=device)
    eos_reached = torch.zeros(bsz, dtype=torch.bool, device=device)
    prev_pos, cache = 0, None
    for cur_pos in range(min_prompt_len, total_len):
        out = model(tokens[:, prev_pos:cur_pos], past_key_values=cache, use_cache=True,
                    position_ids=torch.arange(prev_pos, cur_pos, device=device)[None].expand(bsz, -1))
        logits, cache = out.logits.float(), out.past_key_values
        # the seed's order: log-probs of columns prev_pos+1 .. cur_pos before cur_pos is written
        logprobs_seed_order[:, prev_pos + 1:cur_pos + 1] = target_logprobs(
            logits, tokens[:, prev_pos + 1:cur_pos + 1], pad_id)
        next_token = logits[:, -1].argmax(dim=-1)
        next_token = torch.where(input_text_mask[:, cur_pos], tokens[:, cur_pos], next_token)
        tokens[:, cur_pos] = next_token
        # the fixed order: the same, after the chosen token is in place
        logprobs_fixed_order[:, prev_pos + 1:cur_pos + 1] = target_logprobs(
            logits, tokens[:, prev_pos + 1:cur_pos + 1], pad_id)
        eos_reached |= ~input_text_mask[:, cur_pos] & (next_token == eos_id)
        prev_pos = cur_pos
        if all(eos_reached):
            break
    results = []
    for i, toks in enumerate(tokens.tolist()):
        start = 0 if echo else len(prompt_tokens[i])
        toks = toks[start:len(prompt_tokens[i]) + max_gen_len]
        probs = {name: lp[i, start:len(prompt_tokens[i]) + max_gen_len].tolist()
                 for name, lp in [("seed", logprobs_seed_order), ("fixed", logprobs_fixed_order)]}
        if eos_id in toks:  # cut at EOS, as Llama does
            toks = toks[:toks.index(eos_id)]
            probs = {name: p[:len(toks)] for name, p in probs.items()}
        results.append((toks, probs))
    return results


prompt_tokens = [ids[row, mask[row].bool()].tolist() for row in range(len(questions))]
llama = llama_style_generate(model, prompt_tokens, N_BATCH, EOS)
ours_answers, ours_logprobs = lt.answer_tokens(ours, ids.shape[1], EOS, logprobs=logprobs)
for row, (toks, probs) in enumerate(llama):
    seed_order = ", ".join(lt.fmt(p, decimals=1, kind="exact") for p in probs["seed"][:3])  # exact zeros
    fixed_order = ", ".join(lt.fmt(p, decimals=2, kind="logit") for p in probs["fixed"][:3])
    print(f"row {row}: same answer as lt.generate: {toks == ours_answers[row]} | first log-probs, seed order "
          f"[{seed_order}], fixed [{fixed_order}]")
    assert toks == ours_answers[row]
    assert all(p == 0 for p in probs["seed"])
    assert max(abs(a - b) for a, b in zip(probs["fixed"], ours_logprobs[row], strict=True)) < 1e-3

# %% [markdown]
# Both layouts give the same answers. But the log-probs computed *before* the chosen token is
# written are all zero: the target column still holds `pad_id`, which `ignore_index` skips.
# Users hit exactly this in Llama's repository (issue meta-llama/llama#583, "Can't compute the
# logprobs of generated tokens"); the fix moved the computation after `tokens[:, cur_pos] = ...`.
# After the move the numbers agree with ours (to 1e-3: Llama's layout feeds the longer prompts'
# tail one token at a time, so the float rounding differs slightly).
#
# ### Positions from the mask, and what happens without them
#
# `generate` takes each row's positions from the mask, and so do our loops. A loop that passes no
# `position_ids` gets the model's default instead: every column numbered, pads included (and at
# later steps the cache length, which counts them too). So every real token of a padded row moves
# the same number of places on: its row's number of pads. One pass over the finished batch (prompt
# plus answers; with causal attention the same computation as the loop's steps) with and without
# position ids shows what that does to this model:

# %%
full_mask = torch.cat([mask, torch.ones_like(ours[:, ids.shape[1]:])], dim=1)  # generated columns are real
with torch.no_grad():
    with_positions = model(ours, attention_mask=full_mask,
                           position_ids=lt.position_ids_from_mask(full_mask)).logits[:, ids.shape[1] - 1:-1]
    without_positions = model(ours, attention_mask=full_mask).logits[:, ids.shape[1] - 1:-1]
default_positions = torch.arange(full_mask.shape[1], device=model.device).expand_as(full_mask)
shift = default_positions - lt.position_ids_from_mask(full_mask)
for row in range(len(questions)):
    moved = shift[row, full_mask[row].bool()].unique().tolist()
    difference = (with_positions[row] - without_positions[row]).abs().max().item()
    print(f"row {row}: every real token moved by {moved} | max |logit difference| without position ids: "
          f"{'0 (bit-identical)' if difference == 0 else '< 1e-3' if difference < 1e-3 else difference}")
    assert len(moved) == 1 and moved[0] == (mask[row] == 0).sum()  # a uniform shift: the row's pads
    assert difference < 1e-3 and (difference == 0) == (moved[0] == 0)
assert torch.equal(without_positions.argmax(dim=-1)[real], new[real])  # the same tokens chosen (`real`: above)

# %% [markdown]
# The shift is the same for every token of a row, and RoPE puts only the *distance* between two
# tokens into their attention score, so without position ids the logits change only by float
# rounding (rotations by other angles round differently; the unpadded row is bit-identical) and
# every token chosen is the same. For this model, omitting `position_ids` in a left-padded batch is
# harmless, though not bit-identical to `generate`. It is wrong for a model with learned
# **absolute** positions: GPT-2 *adds* a learned vector per position, so a shifted row reads other
# vectors. A tiny, randomly initialised GPT-2 (built from a config, no download) shows it: a padded
# row's next-token logits depend on the position ids, and with positions from the mask each row
# gets exactly what it gets alone.

# %%
torch.manual_seed(0)
gpt2_config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=64, n_layer=2, n_head=4,
                         initializer_range=0.3, bos_token_id=tokenizer.bos_token_id, eos_token_id=EOS)
gpt2 = GPT2LMHeadModel(gpt2_config).eval()
g_ids = left_tokenizer(["The cat sat on the mat and looked outside.", "Hello"], return_tensors="pt",
                       padding=True)
g_mask = g_ids["attention_mask"]
from_mask, _ = lt.prefill(gpt2, g_ids["input_ids"], g_mask)  # positions from the mask (the default)
counting_pads, _ = lt.prefill(gpt2, g_ids["input_ids"], g_mask, torch.arange(g_mask.shape[1]).expand_as(g_mask))
print("padded row, max |logit difference| with pads counted as positions:",
      lt.fmt((from_mask[1] - counting_pads[1]).abs().max(), decimals=1, kind="logit"))
together = lt.generate(gpt2, g_ids["input_ids"], g_mask, max_new_tokens=8, eos_token_id=EOS, pad_token_id=PAD)
alone = lt.generate(gpt2, g_ids["input_ids"][1:, -int(g_mask[1].sum()):], max_new_tokens=8, eos_token_id=EOS)
with torch.no_grad():
    library = gpt2.generate(**g_ids, max_new_tokens=8, do_sample=False, pad_token_id=PAD)
assert (from_mask[1] - counting_pads[1]).abs().max() > 0.1
assert together[1, -8:].tolist() == alone[0, -8:].tolist() and torch.equal(together, library)
print("GPT-2, padded row in the batch == the same row alone, and == gpt2.generate")

# %% [markdown]
# ## 5. Sampling inside the loop
#
# Greedy decoding takes the argmax. Sampling draws the next token from the distribution instead,
# usually after reshaping it. Notebook 05 explains each filter; here we only need their order
# in `generate`: repetition penalty, then [temperature](glossary.md#temperature),
# [top-k, top-p, min-p](glossary.md#top-k-top-p-min-p), then a softmax over
# the whole vocabulary and `torch.multinomial`, in float32. One step by hand, against the
# package's `choose_next_token`, with the same seed:

# %%
logits = prefill_out.logits[:, -1].float()  # the sky prompt's next-token logits, from section 2
scores = lt.apply_temperature(logits, 0.8)
scores = lt.top_k_filter(scores, 50)
ranked = torch.softmax(scores, dim=-1).sort(descending=True).values.cumsum(dim=-1)  # mass of the top 1, 2, ...
lt.check_threshold(ranked, 0.9, "the tokens top-p keeps")  # no cumulative mass near p: the count holds
scores = lt.top_p_filter(scores, 0.9)
probs = torch.softmax(scores, dim=-1)
print("tokens left after top-k 50 and top-p 0.9:", int((probs > 0).sum()))
drawn = []
for seed in range(5):
    torch.manual_seed(seed)
    by_hand = torch.multinomial(probs, num_samples=1).item()
    torch.manual_seed(seed)
    package = lt.choose_next_token(logits, do_sample=True, temperature=0.8, top_k=50, top_p=0.9).item()
    assert by_hand == package
    drawn.append(tokenizer.decode(by_hand))
print("draws for seeds 0-4:", drawn)

# %% [markdown]
# With the same `torch.manual_seed` right before each call, the whole sampled loop reproduces
# `generate(do_sample=True, ...)` token for token, given the same settings. Mind one default:
# `generate` adds `top_k=50` when sampling unless you pass `top_k`
# ([notebook 05, §3](05_decoding.ipynb#implicit-top-k)), while `lt.generate` adds nothing
# (`top_k=None`: no top-k). So the comparisons pass `top_k` explicitly:

# %%
settings = [dict(top_k=50), dict(temperature=0.7, top_k=None, top_p=0.9),
            dict(temperature=1.2, top_k=None, min_p=0.05, repetition_penalty=1.2)]
for seed, kwargs in enumerate(settings):
    torch.manual_seed(seed)
    ours = lt.generate(model, ids, mask, max_new_tokens=4, do_sample=True, eos_token_id=EOS,
                       pad_token_id=PAD, **kwargs)
    torch.manual_seed(seed)
    with torch.no_grad():
        theirs = model.generate(**batch, max_new_tokens=4, do_sample=True, pad_token_id=PAD, **kwargs)
    assert torch.equal(ours, theirs)
    print(f"seed {seed}, {kwargs}: equal")
    for row, answer in enumerate(lt.answer_tokens(ours, ids.shape[1], EOS)):
        print(f"   row {row}: {tokenizer.decode(answer)!r}")

# %% [markdown]
# Left unset, `top_k` means 50 there and none here:

# %%
def sampled(seed, **kwargs):
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.generate(**sky, max_new_tokens=4, do_sample=True, temperature=1.5, **kwargs)


torch.manual_seed(3)
lt_default = lt.generate(model, sky["input_ids"], max_new_tokens=4, do_sample=True, temperature=1.5,
                         eos_token_id=EOS)
torch.manual_seed(3)
lt_top50 = lt.generate(model, sky["input_ids"], max_new_tokens=4, do_sample=True, temperature=1.5,
                       top_k=50, eos_token_id=EOS)
assert torch.equal(lt_default, sampled(3, top_k=None))  # unset here = top_k=None there
assert torch.equal(lt_top50, sampled(3))  # generate's unset top_k = 50
assert not torch.equal(lt_default, lt_top50)
print("lt.generate(top_k=None) == generate(top_k=None); lt.generate(top_k=50) == generate() with top_k unset")

# %% [markdown]
# A hand loop must also *draw* the way `generate` does. Llama's `sample_top_p` (seed 002) keeps the
# same tokens as top-p but draws from the probabilities sorted by size, so the same seed picks
# other tokens ([notebook 05, §5](05_decoding.ipynb#top-p-draws)).

# %% [markdown]
# ## 6. Streaming
#
# A chat interface prints the answer while it is being generated. Our loop is a Python generator
# (`lt.stream_tokens`), so we can print each token as it arrives. Decoding token by token is
# not quite right, though: a character can span several tokens (an emoji, most Japanese), and
# each piece alone decodes to `�`:

# %%
smile = tokenizer("🙂", add_special_tokens=False)["input_ids"]
print(len(smile), "tokens:", [tokenizer.decode([t]) for t in smile], "→ together:", tokenizer.decode(smile))
assert len(smile) > 1 and tokenizer.decode(smile) == "🙂"

# %% [markdown]
# So a streamer decodes everything produced so far and prints only the new part, holding back
# text that ends in an incomplete character. A Japanese answer makes the point (this small,
# English-centric model's Japanese is poor, but every character spans several tokens):

# %%
def stream_answer(model, inputs, max_new_tokens):
    new_ids, printed, chunks, held = [], "", 0, 0
    for step in lt.stream_tokens(model, inputs["input_ids"], inputs["attention_mask"],
                                 max_new_tokens=max_new_tokens, eos_token_id=EOS):
        new_ids.append(step.tokens[0].item())
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # "�": the rest of a split character has not come yet
            held += 1
            continue
        if text != printed:
            print(text[len(printed):], end="", flush=True)
            printed, chunks = text, chunks + 1
    print()
    return printed, chunks, held


japanese = lt.chat_inputs(tokenizer, "How do you say 'thank you' in Japanese? Answer with the Japanese word only.",
                          device=model.device)
streamed, our_chunks, held = stream_answer(model, japanese, 12)
print(f"{our_chunks} pieces printed; {held} times a piece was held back, waiting for the rest of a character")
assert held > 0 and "\ufffd" not in streamed

# %% [markdown]
# transformers has the same idea built in: `TextStreamer` prints text as it completes
# (`TextIteratorStreamer` hands it to another thread, for a web app). We keep a copy of what it
# prints to compare:

# %%
class RecordingStreamer(TextStreamer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.text, self.chunks = "", 0

    def on_finalized_text(self, text, stream_end=False):
        self.text, self.chunks = self.text + text, self.chunks + (text != "")
        super().on_finalized_text(text, stream_end)


streamer = RecordingStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
with torch.no_grad():
    full = model.generate(**japanese, max_new_tokens=12, do_sample=False, streamer=streamer)
final = tokenizer.decode(full[0, japanese["input_ids"].shape[1]:], skip_special_tokens=True)
lt.check_gap(lt.greedy_gap(model, full, japanese["input_ids"].shape[1]), "the Japanese answer (both streams)")
print(f"TextStreamer printed {streamer.chunks} piece(s); we printed {our_chunks}")
assert streamer.text == streamed == final
assert streamer.chunks < our_chunks

# %% [markdown]
# Same text, but `TextStreamer` printed it in fewer pieces: it waits for a space (a complete
# word) before printing, and only CJK ideographs count as complete on their own, not kana, so
# a kana answer without spaces appears at once. A character-level streamer like ours shows it
# as it is generated.

# %% [markdown]
# ## Recap
#
# - Generation is a loop: forward, choose the next token from the last position's logits,
#   append, stop at EOS or at `max_new_tokens`. Greedy is an argmax; `generate` returns prompt +
#   new tokens, EOS included.
# - Without a cache every step recomputes the whole sequence: *nP + n(n−1)/2* positions, quadratic.
#   The KV cache keeps each layer's keys and values: prefill once, then feed one token per step
#   (*P + n − 1* positions), **at its position**. Wrong positions break the text silently. At a
#   few dozen tokens the time shows the quadratic count only gently, and differently on every
#   machine: count the work, and measure speed with `python -m llm_tutorial bench`.
# - Batches: pad on the left, pass the mask, take positions from the mask, as `generate` does.
#   Without them the pads count as positions, which shifts each padded row uniformly: harmless for
#   this RoPE model (the same tokens; logits equal up to float rounding), wrong for learned
#   absolute positions like GPT-2's. Finished rows get the pad token; the loop stops when all rows
#   are finished. Llama's reference loop does the same job with left-aligned prompts and
#   `input_text_mask`; its log-probs must be computed after the token is written.
# - Sampling: penalty, temperature, top-k, top-p, min-p, softmax, `multinomial` over the
#   vocabulary (not over the sorted probabilities, as Llama's code does). With the same seed our
#   loop reproduces `generate`; mind `generate`'s implicit `top_k=50`, and that an explicit
#   `eos_token_id=None` disables its EOS stop.
# - `lt.generate(model, ids, mask, max_new_tokens=..., eos_token_id=...)` is the loop in the
#   package; `lt.stream_tokens` yields its steps. To stream text, decode the whole answer so
#   far and print only the new part, holding back a character until all its tokens are there.
#
# ## Exercises
#
# 1. `generate(min_new_tokens=k)` forbids EOS for the first *k* new tokens. Write that loop
#    from `lt.prefill`, `lt.choose_next_token` and `lt.decode_step` (set the EOS logit to
#    `-inf` while fewer than *k* tokens exist) and check it against `generate` for the
#    capital-of-France prompt with *k* = 12.

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
def min_new_tokens_loop(model, ids, max_new_tokens, min_new_tokens, eos_id):
    positions = lt.position_ids_from_mask(torch.ones_like(ids))
    logits, cache = lt.prefill(model, ids)
    for step in range(max_new_tokens):
        if step < min_new_tokens:
            logits = logits.clone()
            logits[:, eos_id] = float("-inf")
        next_ids = lt.choose_next_token(logits)
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
        if next_ids.item() == eos_id or step == max_new_tokens - 1:
            break
        positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)
        logits, cache = lt.decode_step(model, ids, None, positions, cache)
    return ids


ours = min_new_tokens_loop(model, capital["input_ids"], 14, 12, EOS)
with torch.no_grad():
    theirs = model.generate(**capital, max_new_tokens=14, min_new_tokens=12, do_sample=False)
    teacher = model(ours).logits[:, n_prompt - 1:-1]  # the choices again, in one pass
teacher[:, :12, EOS] = float("-inf")  # EOS was not a candidate there
lt.check_gap(lt.top2_gap(teacher).min(), "the answer with min_new_tokens")
print(repr(tokenizer.decode(ours[0, n_prompt:])))
assert torch.equal(ours, theirs) and ours.shape[1] - n_prompt >= 12

# %% [markdown]
# 2. The per-token log-probs of an answer add up to the log-probability of the whole answer
#    given the prompt. Check that the sum for the short batch answer (row 0 of section 4)
#    equals what teacher forcing gives: `lt.token_logprobs` on prompt + answer (notebook 03).

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
row_ids = ours_answers[0] + [EOS]  # the answer and the EOS that ended it
sequence = torch.tensor([prompt_tokens[0] + row_ids])
teacher = lt.token_logprobs(model, sequence)[0, -len(row_ids):]
from_loop = logprobs[0, :len(row_ids)]
print(f"sum from the loop {lt.fmt(from_loop.sum(), decimals=2, kind='logit')} | "
      f"teacher forcing {lt.fmt(teacher.sum(), decimals=2, kind='logit')}")
assert torch.allclose(from_loop, teacher, atol=1e-3)

# %% [markdown]
# 3. Stop at a string instead of a token: with `lt.stream_tokens`, stop the sky answer as soon
#    as its text contains a comma. Compare with `generate(stop_strings=",",
#    tokenizer=tokenizer)`.

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
new_ids = []
for step in lt.stream_tokens(model, sky["input_ids"], max_new_tokens=40, eos_token_id=EOS):
    new_ids.append(step.tokens[0].item())
    if "," in tokenizer.decode(new_ids):
        break
with torch.no_grad():
    theirs = model.generate(**sky, max_new_tokens=40, do_sample=False, stop_strings=",", tokenizer=tokenizer)
lt.check_gap(lt.greedy_gap(model, theirs, P), "the answer up to its comma")
print(repr(tokenizer.decode(new_ids)))
assert "," in tokenizer.decode(new_ids) and "," not in tokenizer.decode(new_ids[:-1])  # stopped at the first comma
assert new_ids == theirs[0, P:].tolist()
