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
# # 06 · Common pitfalls
# **Why does my first LLM script print the wrong thing, warn, or crash, and what is the one-line fix?**
#
# Each section below runs the mistaken code for real, captures the symptom (the wrong output, the
# warning or the exception) and asserts it, says in a sentence or two why it happens (with the
# notebook that explains the mechanism), then runs the fix and asserts that it worked.
# The mistakes come from the seed texts: the transformers guide "Generation with LLMs", a 2023
# blog post on the five functions of every first LLM script, and a chat transcript about Llama's
# reference code.

# %% [markdown]
# ## Quick reference
#
# | # | Pitfall | What you see | Fix |
# |---|---|---|---|
# | 1 | No length set; `max_length` with a long prompt | 20 new tokens and a `UserWarning`; with `max_length` a silently cut answer or a `ValueError` | `max_new_tokens=N` |
# | 2 | The prompt comes back in the output | `decode(output[0])` starts with the prompt; per-row or per-character slicing goes wrong in a batch | slice tokens: `output[:, inputs["input_ids"].shape[1]:]`, then `skip_special_tokens=True` |
# | 3 | Greedy decoding on a long output | the same sentence over and over | `do_sample=True` (or `repetition_penalty`, `no_repeat_ngram_size`) |
# | 4 | Sampling arguments without `do_sample=True` | greedy output plus "generation flags are not valid and may be ignored"; `temperature=0` with sampling: `ValueError` | `do_sample=True` with `temperature > 0`; greedy: drop the sampling arguments |
# | 5 | "Lower temperature = more creative" | (a myth) | low temperature sharpens the distribution, high flattens it: measured |
# | 6 | Right padding in a batch | "right-padding was detected!" and a wrong answer for the short prompt | `padding_side="left"` |
# | 7 | No attention mask when pad = EOS | "The attention mask is not set ... cannot be inferred" and a wrong answer | `model.generate(**inputs)` (pass the mask) |
# | 8 | Tokenizer without a pad token | `ValueError: Asking to pad but the tokenizer does not have a padding token` | `pad_token = eos_token`, or add a pad token and resize the embeddings; always pass the mask |
# | 9 | Hand-written chat prompt | empty answer, role names in the answer, a stray newline | `apply_chat_template(..., add_generation_prompt=True)` |
# | 10 | Special tokens added to an already-templated string | BOS twice at the start | `apply_chat_template(tokenize=True)` or `add_special_tokens=False` |
# | 11 | Wrong stop token | the answer runs on and writes the user's next message | stop on the chat's end-of-turn token (`generation_config.eos_token_id`) |
# | 12 | `repetition_penalty` too high | the model never stops (the end-of-turn token in the prompt is penalised) | a penalty that ignores the prompt, or a milder value |
# | 13 | Inputs on another device than the model | `RuntimeError: ... not on the expected device` / `Expected all tensors to be on the same device` | `inputs.to(model.device)` (transformers 5's `generate()` moves CPU inputs itself; a direct forward pass does not) |
# | 14 | Old loading spellings | `TypeError: ... unexpected keyword argument 'load_in_8bit'`; "`torch_dtype` is deprecated!" | `quantization_config=BitsAndBytesConfig(...)`, `dtype=` |
# | 15 | Llama's reference code without NCCL | `RuntimeError: Distributed package doesn't have NCCL built in` | `gloo` for one CPU process, or plain transformers (no process group at all) |
# | 16 | No `torch.no_grad()` / `inference_mode()` | activations kept for a backward pass that never comes | wrap forward passes in `torch.inference_mode()` |
# | 17 | Expecting bit-identical results | float32 and bfloat16 answers differ after a few dozen tokens; cached and recomputed logits differ | compare with a tolerance that fits the dtype, not `==` |
# | 18 | Tokenizer output passed the wrong way | `AttributeError: 'list' object has no attribute 'shape'`, or an `AttributeError` with no message | `return_tensors="pt"` and `model.generate(**inputs)` |

# %%
import llm_tutorial as lt

banner = lt.setup_notebook(seed=0)

# %% [markdown]
# One model and two tokenizers serve the whole notebook: the default one (which pads on the right,
# as most tokenizers do) and one that pads on the left.

# %%
import torch

tokenizer = lt.load_tokenizer()
model = lt.load_model()
left_tokenizer = lt.load_tokenizer(padding_side="left")
print(type(model).__name__, model.device, model.dtype, "| padding side:", tokenizer.padding_side)
assert left_tokenizer.padding_side == "left"


def new_tokens(output, inputs):
    """The generated part of ``generate()``'s output: everything after the (padded) prompt."""
    return output[:, inputs["input_ids"].shape[1]:]


SCORES = {"output_scores": True, "return_dict_in_generate": True}  # generate() also returns its scores


def checked(output, what, eos_token_id=None):
    """``output.sequences`` of a greedy ``generate(..., **SCORES)``, once ``lt.check_gap`` has
    checked its closest call: the smallest top-1/top-2 gap among the scores it chose from (after
    its logits processors), each row up to its EOS."""
    scores = torch.stack(output.scores, dim=1).float()
    chosen = output.sequences[:, -scores.shape[1]:]
    eos = model.generation_config.eos_token_id if eos_token_id is None else eos_token_id
    eos_ids = torch.tensor([] if eos is None else eos, dtype=torch.long, device=chosen.device).reshape(-1)
    is_eos = torch.isin(chosen, eos_ids)
    after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    lt.check_gap(float(lt.top2_gap(scores).masked_fill(after_eos, float("inf")).min()), what)
    return output.sequences


# %% [markdown]
# ### Answers that hold on any CPU
# A greedy answer flips on another CPU when two candidate tokens were nearly tied at some step
# (their float32 logits differ in the last bits between CPUs; pitfall 17). So each greedy answer
# this notebook prints is checked: `generate(..., **SCORES)` also returns the scores it chose each
# token from, and `checked` finds the closest call among them (like `lt.greedy_gap`, without its
# extra forward pass, and after a repetition penalty or another logits processor, which changes
# the choice). It raises while the notebook is recorded or tested if the margin is too small.

# %% [markdown]
# ### Catching the symptom
# A warning printed to stderr is easy to overlook and impossible to assert on. Python can record
# warnings instead of printing them:

# %%
import warnings

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    warnings.warn("this would have gone to stderr", stacklevel=1)
print([str(w.message) for w in caught])
assert caught and "stderr" in str(caught[0].message)

# %% [markdown]
# transformers also reports through its own logger, often with `warning_once` (a second trigger in
# the same process prints nothing). `lt.capture()` collects both, and `lt.expect_error()` runs a
# block that must raise, keeps the exception (and anything logged before it) and lets the notebook
# go on. Both fail loudly if what they expect does not happen.

# %%
with lt.expect_error(ZeroDivisionError, match="division") as err:
    1 / 0
print(err)
with lt.expect_error(AssertionError, match="raised nothing") as nothing, lt.expect_error(ValueError):
    pass
print(nothing)

# %% [markdown]
# ## 1 · Output too short
# **Symptom.** With no length argument, `generate()` adds 20 tokens and warns.

# %%
colors = tokenizer("A list of colors: red, blue", return_tensors="pt").to(model.device)
with lt.capture() as got:
    output = model.generate(**colors, **SCORES)
out_colors = checked(output, "the colors continuation")
n_new = new_tokens(out_colors, colors).shape[1]
print(got)
print(colors["input_ids"].shape[1], "prompt tokens +", n_new, "new tokens:",
      repr(tokenizer.decode(new_tokens(out_colors, colors)[0])))
assert got.contains("We recommend setting `max_new_tokens`")
assert n_new == 20 and out_colors[0, -1] != tokenizer.eos_token_id  # cut off, not finished

# %% [markdown]
# `max_length` is the trap next to it: it counts the prompt too. A chat prompt is already dozens
# of tokens long (the template adds a system prompt), so `max_length=40` leaves only a few tokens
# for the answer, and nothing warns. A `max_length` below the prompt length is an error.

# %%
question = "What is the capital of France?"
chat = lt.chat_inputs(tokenizer, question, device=model.device)
n_chat = chat["input_ids"].shape[1]
with lt.capture() as got:
    out_cut = model.generate(**chat, max_length=40, do_sample=False)
print(n_chat, "prompt tokens; answer:", repr(tokenizer.decode(new_tokens(out_cut, chat)[0])), "|", got)
assert out_cut.shape[1] == 40 and out_cut[0, -1] != tokenizer.eos_token_id and not got.messages

with lt.expect_error(ValueError, match="max_length") as err:
    model.generate(**chat, max_length=n_chat - 1)
print(err)

# %% [markdown]
# **Cause.** The generation config of this model sets no length, so transformers falls back to its
# model-agnostic default of 20 new tokens; `max_length` is the total length of prompt plus answer
# (the loop's stopping rule, notebook 04).
#
# **Fix.** Say how many *new* tokens you allow with `max_new_tokens`; a chat model stops earlier by
# itself when it emits its end-of-turn token.

# %%
print("generation config: max_length =", model.generation_config.max_length,
      "| max_new_tokens =", model.generation_config.max_new_tokens)
assert model.generation_config.max_length is None and model.generation_config.max_new_tokens is None
ref = checked(model.generate(**chat, max_new_tokens=48, do_sample=False, **SCORES), "the France answer")
ref_new = new_tokens(ref, chat)[0]
ref_answer = tokenizer.decode(ref_new, skip_special_tokens=True)
print(len(ref_new), "new tokens:", repr(ref_answer))
assert ref_new[-1] == tokenizer.eos_token_id and len(ref_new) < 48
assert torch.equal(out_cut[0], ref[0, : out_cut.shape[1]])  # max_length=40 cut this very answer

# %% [markdown]
# ## 2 · The prompt comes back in the output
# **Symptom.** `generate()` returns prompt + answer, so decoding the whole row repeats the prompt.
# Seed 000 slices it off with `output_ids.tolist()[0][token_ids.size(1):]`, which is right for one
# unpadded prompt.

# %%
whole = tokenizer.decode(out_colors[0])
print(repr(whole))
assert whole.startswith("A list of colors: red, blue")

# %% [markdown]
# Two ways of cutting it off go wrong. Cutting the decoded *string* at `len(prompt)` fails as soon
# as decoding does not give back the prompt string exactly, for instance when special tokens are
# skipped:

# %%
prompt_text = tokenizer.decode(chat["input_ids"][0])
decoded = tokenizer.decode(ref[0], skip_special_tokens=True)
by_characters = decoded[len(prompt_text):]
print(repr(by_characters), "instead of", repr(ref_answer))
assert by_characters != ref_answer

# %% [markdown]
# In a batch, cutting each row at *its own* prompt length keeps part of the prompt (and the
# padding) for the shorter prompts: every row of the output is as long as the padded prompt.

# %%
prompts = [
    "The capital of France is",
    "Here is a much longer prompt, so that the first one needs a lot of padding to be batched with it:",
]
batch = left_tokenizer(prompts, padding=True, return_tensors="pt").to(model.device)
out_batch = checked(model.generate(**batch, max_new_tokens=8, do_sample=False, **SCORES), "the batch's answers")
per_row = [out_batch[i, len(tokenizer(p)["input_ids"]):] for i, p in enumerate(prompts)]
print("cut per row:", repr(tokenizer.decode(per_row[0], skip_special_tokens=True)))
batch_answers = tokenizer.batch_decode(new_tokens(out_batch, batch), skip_special_tokens=True)
print("cut at the padded length:", batch_answers)
assert prompts[0] in tokenizer.decode(per_row[0], skip_special_tokens=True)
assert not any(p in a for p, a in zip(prompts, batch_answers))

# %% [markdown]
# **Cause.** A decoder-only model continues the sequence it was given, so its output *is* the
# prompt plus the new tokens (notebook 04); in a batch every row starts with the padded prompt.
#
# **Fix.** Slice token ids at the padded prompt length, `output[:, inputs["input_ids"].shape[1]:]`,
# then decode with `skip_special_tokens=True` to drop the end-of-turn token (seed 000's advice).

# %%
raw = tokenizer.decode(ref_new)
print(repr(raw), "->", repr(tokenizer.decode(ref_new, skip_special_tokens=True)))
assert raw.endswith(tokenizer.eos_token) and ref_answer == raw[: -len(tokenizer.eos_token)]

# %% [markdown]
# ## 3 · Greedy decoding loops
# **Symptom.** The transformers guide's own example: greedy decoding after "I am a cat." repeats
# itself. A simple measure is the share of distinct 4-token n-grams (1.0: no repeated n-gram).

# %%
def distinct_ngrams(ids, n=4):
    """Share of distinct ``n``-grams among all ``n``-grams of a token list (1.0 = no repetition)."""
    ids = [int(i) for i in ids]
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams)


cat = tokenizer("I am a cat.", return_tensors="pt").to(model.device)
out_cat = checked(model.generate(**cat, max_new_tokens=24, do_sample=False, **SCORES), "the greedy loop")
greedy_cat = new_tokens(out_cat, cat)[0]
print(repr(tokenizer.decode(greedy_cat, skip_special_tokens=True)))
print("distinct 4-grams:", lt.fmt(distinct_ngrams(greedy_cat), 2, kind="exact"))
assert distinct_ngrams(greedy_cat) < 0.3

# %% [markdown]
# **Cause.** Greedy decoding is deterministic: once a phrase makes itself the most likely
# continuation, the same state comes back and the same tokens follow (notebook 05). On open-ended
# prompts the loop can take a hundred tokens or more to appear, so a short test run misses it.
#
# **Fix.** Sample (`do_sample=True`, seeded here so the output is reproducible), or keep greedy
# and discourage repeats with `repetition_penalty` or `no_repeat_ngram_size` (see pitfall 12).

# %%
lt.set_seed(0)
sampled_cat = new_tokens(model.generate(**cat, max_new_tokens=24, do_sample=True), cat)[0]
print(repr(tokenizer.decode(sampled_cat, skip_special_tokens=True)))
print("distinct 4-grams:", lt.fmt(distinct_ngrams(sampled_cat), 2, kind="exact"))
assert distinct_ngrams(sampled_cat) > 0.9

# %% [markdown]
# ## 4 · Sampling arguments silently ignored
# **Symptom.** `temperature` without `do_sample=True` changes nothing: the output is the greedy one,
# and transformers only says so in a log message (once per process).

# %%
with lt.capture(level="INFO") as got:
    out_t = model.generate(**chat, max_new_tokens=48, temperature=0.7)
print(got)
print("identical to greedy:", torch.equal(out_t, ref))
assert got.contains("The following generation flags are not valid and may be ignored: ['temperature']")
assert torch.equal(out_t, ref)

# %% [markdown]
# Two neighbours of the same mistake raise instead: `temperature=0` *with* sampling (seed 004's
# Llama code treats 0 as "greedy"; transformers does not), and several answers from greedy decoding.

# %%
with lt.expect_error(ValueError, match="temperature") as err:
    model.generate(**chat, max_new_tokens=4, do_sample=True, temperature=0.0)
print(err.short(200))
with lt.expect_error(ValueError, match="num_return_sequences") as err:
    model.generate(**chat, max_new_tokens=4, num_return_sequences=3)
print(err.short(200))

# %% [markdown]
# **Cause.** `generate()` picks its mode from `do_sample` (and `num_beams`); the temperature, top-k
# and top-p warpers are only built in sampling mode (notebook 05).
#
# **Fix.** `do_sample=True` with a temperature above 0 for varied answers; for greedy, drop the
# sampling arguments (or use `do_sample=False` and nothing else).

# %%
lt.set_seed(0)
out_s = model.generate(**chat, max_new_tokens=12, do_sample=True, temperature=0.7, num_return_sequences=4)
samples = tokenizer.batch_decode(new_tokens(out_s, chat), skip_special_tokens=True)
for s in samples:
    print(repr(s))
assert len(set(samples)) > 1

# %% [markdown]
# ## 5 · The temperature myth
# **Symptom.** Seed 000 says temperature takes values from 0 to 1, and that values near 0 make the
# model *more creative* while values near 1 make it follow the probabilities. Measured on one
# next-token distribution, it is the other way round, and temperatures above 1 are allowed:

# %%
# NBVAL_IGNORE_OUTPUT
# the counts sit on thresholds (90% of the mass, 200 draws) and can move by one between CPUs,
# whose kernels differ in the last bits (pitfall 17); the assertions check every claim
story = tokenizer("Once upon a time, there was a", return_tensors="pt").to(model.device)
with torch.inference_mode():
    next_logits = model(**story).logits[0, -1].float()

gen = torch.Generator().manual_seed(0)
rows = []
for t in (0.2, 0.5, 1.0, 1.5):
    probs = torch.softmax(next_logits / t, dim=-1)
    entropy = float(-(probs * probs.clamp_min(1e-30).log2()).sum())
    nucleus = int((probs.sort(descending=True).values.cumsum(0) < 0.9).sum()) + 1
    draws = torch.multinomial(probs, 200, replacement=True, generator=gen)
    rows.append((t, entropy, float(probs.max()), nucleus, len(set(draws.tolist()))))
print(f"{'T':>4} {'entropy (bits)':>15} {'top-1 prob':>11} {'tokens for 90%':>15} {'distinct in 200 draws':>22}")
for t, entropy, top1, nucleus, distinct in rows:
    print(f"{t:>4} {entropy:>15.3f} {top1:>11.3f} {nucleus:>15} {distinct:>22}")
entropies, top1s, distincts = [r[1] for r in rows], [r[2] for r in rows], [r[4] for r in rows]
assert entropies == sorted(entropies) and top1s == sorted(top1s, reverse=True)
assert distincts[0] < distincts[-1]
near_zero = torch.softmax(next_logits / 0.01, dim=-1)
print(f"T = 0.01: top-1 prob {float(near_zero.max()):.4f} (the greedy token)")
assert near_zero.argmax() == next_logits.argmax() and near_zero.max() > 0.99

# %% [markdown]
# **Cause.** Sampling divides the logits by the temperature before the softmax (notebook 05): a
# small temperature stretches the gaps, so the top token takes almost all the probability (T → 0
# becomes greedy); T = 1 is the model's own distribution; T > 1 flattens it.
#
# **Fix.** Low temperature (0.2-0.7) for focused, repeatable answers; around 1 or a little above for
# variety; `do_sample=False` when you want exactly the most likely tokens.

# %% [markdown]
# ## 6 · Right padding in batched generation
# **Symptom.** With the default right padding, the short prompt is followed by padding, and the
# model continues from the padding, not from the prompt.

# %%
right_batch = tokenizer(prompts, padding=True, return_tensors="pt").to(model.device)
print(right_batch["input_ids"][0].tolist()[-4:], "<- the short row ends in padding")
with lt.capture() as got:
    output = model.generate(**right_batch, max_new_tokens=8, do_sample=False, **SCORES)
out_right = checked(output, "the right-padded answers")
right_answers = tokenizer.batch_decode(new_tokens(out_right, right_batch), skip_special_tokens=True)
solo = tokenizer(prompts[:1], return_tensors="pt").to(model.device)
out_solo = checked(model.generate(**solo, max_new_tokens=8, do_sample=False, **SCORES), "the answer alone")
solo_new = new_tokens(out_solo, solo)[0]
solo_answer = tokenizer.decode(solo_new, skip_special_tokens=True)
print(got)
print("right padded:", repr(right_answers[0]), "| alone:", repr(solo_answer))
assert got.contains("right-padding was detected!")
assert right_answers[0] != solo_answer

# %% [markdown]
# **Cause.** Generation appends after the *last* position of each row; with right padding that
# position is a pad token, so the short row's first new token is predicted from the wrong place
# (notebook 04, batching).
#
# **Fix.** Pad on the left (`padding_side="left"`), so every row ends with its own last prompt
# token. The left-padded batch of pitfall 2 gives the short prompt the same answer as alone:

# %%
print("left padded:", repr(batch_answers[0]))
assert torch.equal(new_tokens(out_batch, batch)[0], solo_new)

# %% [markdown]
# ## 7 · No attention mask when the pad token is the EOS token
# **Symptom.** Passing only `input_ids` of a padded batch: the model attends to the padding.

# %%
print("pad token == eos token:", tokenizer.pad_token_id == tokenizer.eos_token_id)
with lt.capture() as got:
    output = model.generate(batch["input_ids"], max_new_tokens=8, do_sample=False, **SCORES)
out_nomask = checked(output, "the answers without a mask")
nomask_answer = tokenizer.decode(new_tokens(out_nomask, batch)[0], skip_special_tokens=True)
print(got)
print("no mask:", repr(nomask_answer), "| with mask:", repr(batch_answers[0]))
assert got.contains("cannot be inferred from input because pad token is same as eos token")
assert nomask_answer != batch_answers[0]

# %% [markdown]
# **Cause.** Without a mask, `generate()` would guess it from the pad token, but it cannot tell
# padding from a real end-of-sequence token when both share one id, so it attends to everything,
# and the short row reads a run of end-of-turn tokens before its prompt (attention masks:
# notebook 03).
#
# **Fix.** Pass the mask the tokenizer made: `model.generate(**batch, ...)` (pitfall 2's output).

# %%
assert torch.equal(new_tokens(out_batch, batch)[0], solo_new)
print("with mask, short row == alone:", repr(batch_answers[0]))

# %% [markdown]
# ## 8 · A tokenizer without a pad token
# **Symptom.** Llama and many base models ship no pad token. Loading this tokenizer without one
# shows what happens on `padding=True`:

# %%
no_pad = lt.load_tokenizer(pad_token=None, padding_side="left")
print("pad token:", no_pad.pad_token)
with lt.expect_error(ValueError, match="does not have a padding token") as err:
    no_pad(prompts, padding=True, return_tensors="pt")
print(err.short(120))
assert no_pad.pad_token is None

# %% [markdown]
# **Cause.** Padding needs a token id to fill with, and the tokenizer has none (tokenizers:
# notebook 01).
#
# **Fix 1** (the transformers guide's): reuse the EOS token as the pad token. The batch is then
# the same as the one we generated from above.

# %%
no_pad.pad_token = no_pad.eos_token
fixed = no_pad(prompts, padding=True, return_tensors="pt")
assert torch.equal(fixed["input_ids"], batch["input_ids"].cpu())
assert torch.equal(fixed["attention_mask"], batch["attention_mask"].cpu())
print("pad token now:", repr(no_pad.pad_token), "id", no_pad.pad_token_id)

# %% [markdown]
# **The caveat.** Once pad == EOS, "is this token padding?" cannot be answered from the ids: a chat
# prompt contains real end-of-turn tokens. A mask rebuilt as `ids != pad_token_id` hides them, and
# the answer changes; the tokenizer's own `attention_mask` does not.

# %%
ids = chat["input_ids"]
guessed_mask = (ids != tokenizer.pad_token_id).long()
print("real EOS tokens in the chat prompt:", int((ids == tokenizer.eos_token_id).sum()),
      "| masked by the guessed mask:", int((guessed_mask == 0).sum()),
      "| by the tokenizer's mask:", int((chat["attention_mask"] == 0).sum()))
with torch.inference_mode():
    real_logits = model(**chat).logits[0, -1].float()
    p_guessed = model(input_ids=ids, attention_mask=guessed_mask).logits[0, -1].float().softmax(-1)
p_real = real_logits.softmax(-1)
top = int(p_real.argmax())
lt.check_gap(float(lt.top2_gap(real_logits)), "the most likely next token")
shift = float((p_real - p_guessed).abs().sum() / 2)  # total variation distance
print(f"p({tokenizer.decode(top)!r}) next: real mask {lt.fmt(p_real[top], 2, kind='prob')}, "
      f"guessed mask {lt.fmt(p_guessed[top], 2, kind='prob')}"
      f" | total variation between the two distributions: {lt.fmt(shift, 2, kind='prob')}")
assert int((guessed_mask == 0).sum()) > 0 and int((chat["attention_mask"] == 0).sum()) == 0
assert top == ref_new[0] and shift > 0.01

# %% [markdown]
# **Fix 2:** add a dedicated pad token. Its id is new to the model, so the embedding matrix must
# grow first; forgetting that is an `IndexError`. We resize a second copy of the model (loaded
# again, which is faster than `copy.deepcopy`), so the shared model stays as it is.

# %%
new_pad = lt.load_tokenizer(pad_token=None, padding_side="left")
new_pad.add_special_tokens({"pad_token": "<|pad|>"})
padded = new_pad(prompts, padding=True, return_tensors="pt").to(model.device)
print("new pad id:", new_pad.pad_token_id, "| embedding rows:", model.get_input_embeddings().num_embeddings)
with lt.expect_error(IndexError, match="index out of range") as err, torch.inference_mode():
    model(**padded)
print(err)

resized = lt.load_model()
with lt.capture() as got:
    resized.resize_token_embeddings(len(new_pad))
print("after resize:", resized.get_input_embeddings().num_embeddings, "rows |", got.summary())
with torch.inference_mode():
    last_alone = model(**solo).logits[0, -1]
    last_padded = resized(**padded).logits[0, -1, : last_alone.shape[0]]  # drop the new pad row's logit
gap = float((last_padded - last_alone).abs().max())  # about 3e-5; its last digits depend on the CPU
print("short row vs alone: last logits within 1e-4:", gap < 1e-4, "| same greedy token:",
      bool(last_padded.argmax() == last_alone.argmax()))
assert gap < 1e-4 and last_padded.argmax() == last_alone.argmax()
del resized

# %% [markdown]
# The new row of the embedding matrix is untrained, which is harmless as long as the mask hides
# every pad position, and one more reason to always pass `attention_mask`.

# %% [markdown]
# ## 9 · A hand-written chat prompt
# **Symptom.** Seed 000 writes Llama 2's prompt format by hand (`<s>[INST] <<SYS>> ... [/INST]`).
# This model was trained on another format (ChatML), and answers with an immediate end-of-turn:

# %%
system = "You are a helpful assistant."
messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
llama2_prompt = f"<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{question} [/INST]"


def answers_to(*prompt_texts, max_new_tokens=24):
    """Generate greedily from prompt strings (one left-padded batch); return the new token ids, a
    row per prompt (pads after a row's EOS), after checking the closest call."""
    inputs = left_tokenizer(list(prompt_texts), padding=True, return_tensors="pt").to(model.device)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **SCORES)
    return new_tokens(checked(output, "the answers"), inputs)


[llama2_new] = answers_to(llama2_prompt)
print(len(llama2_new), "new token(s):", repr(tokenizer.decode(llama2_new)))
assert tokenizer.decode(llama2_new, skip_special_tokens=True).strip() == ""

# %% [markdown]
# Writing the right format by hand is still fragile: forget the assistant header and the model
# writes it into the answer; forget one newline and the answer starts with it.

# %%
template = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
no_header = tokenizer.apply_chat_template(messages, tokenize=False)
no_newline = template[:-1]
print(repr(template[-40:]))
no_header_answer, no_newline_answer = tokenizer.batch_decode(answers_to(no_header, no_newline),
                                                              skip_special_tokens=True)
print("without the assistant header:", repr(no_header_answer))
print("without the last newline:    ", repr(no_newline_answer))
assert no_header_answer.startswith("assistant")
assert no_newline_answer.startswith("\n")

# %% [markdown]
# **Cause.** A chat model only knows the exact token layout it was fine-tuned on; the layout lives
# in the tokenizer's chat template (notebook 01), and the answer starts after the generation prompt.
#
# **Fix.** Let the tokenizer build the prompt: `apply_chat_template(messages,
# add_generation_prompt=True)`.

# %%
[fixed_new] = answers_to(template, max_new_tokens=48)
fixed_answer = tokenizer.decode(fixed_new, skip_special_tokens=True)
print(repr(fixed_answer))
assert fixed_new[-1] == tokenizer.eos_token_id and question.split()[-1].rstrip("?") in fixed_answer

# %% [markdown]
# ## 10 · A doubled BOS token
# **Symptom.** Many tokenizers (Llama 2 and 3, Mistral, Gemma) add a BOS token to every string they
# encode, and their chat templates write a BOS too. Render the template to a string, encode it again,
# and the model sees BOS twice. This tokenizer adds none by default; loading it with
# `add_bos_token=True` reproduces those tokenizers (its BOS is `<|im_start|>`, the template's first
# token).

# %%
bos_tokenizer = lt.load_tokenizer(add_bos_token=True)
rendered = bos_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
twice = bos_tokenizer(rendered, return_tensors="pt")
print("first tokens:", bos_tokenizer.convert_ids_to_tokens(twice["input_ids"][0, :3].tolist()))
assert twice["input_ids"][0, 0] == twice["input_ids"][0, 1] == bos_tokenizer.bos_token_id

# %% [markdown]
# The extra token is an input the model never saw in training. Here it lowers the model's
# probability of its own answer (log-probability of the same answer tokens, notebook 03):

# %%
once = bos_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                         return_tensors="pt")


def answer_logprob(prompt_ids, answer_ids):
    """Sum of log-probabilities of ``answer_ids`` after ``prompt_ids`` (one forward pass)."""
    ids = torch.cat([prompt_ids[0].cpu(), answer_ids.cpu()])[None].to(model.device)
    with torch.inference_mode():
        logprobs = model(ids).logits[0, :-1].float().log_softmax(-1)
    start = prompt_ids.shape[1] - 1
    return float(logprobs[start:].gather(-1, ids[0, 1:, None][start:]).sum())


lp_once, lp_twice = answer_logprob(once["input_ids"], fixed_new), answer_logprob(twice["input_ids"], fixed_new)
print(f"log p(answer): BOS once {lt.fmt(lp_once, decimals=1, kind='logit')} | "
      f"BOS twice {lt.fmt(lp_twice, decimals=1, kind='logit')}")
assert lp_twice < lp_once

# %% [markdown]
# **Cause.** Special tokens were added twice: once by the template, once by `encode`
# (`add_special_tokens=True` is the default; notebook 01).
#
# **Fix.** Tokenize inside the template (`apply_chat_template(..., tokenize=True)`, the default), or
# encode the rendered string with `add_special_tokens=False`.

# %%
plain = bos_tokenizer(rendered, add_special_tokens=False, return_tensors="pt")
assert torch.equal(plain["input_ids"], once["input_ids"])
assert int((once["input_ids"][0] == bos_tokenizer.bos_token_id)[:2].sum()) == 1
print("BOS once:", bos_tokenizer.convert_ids_to_tokens(once["input_ids"][0, :3].tolist()))

# %% [markdown]
# ## 11 · The wrong stop token
# **Symptom.** A chat model ends its turn with an end-of-turn token. Stop on another token (here
# `<|endoftext|>`, the end-of-document token of pre-training; with Llama 3 the same mistake is
# `<|end_of_text|>` instead of `<|eot_id|>`) and generation runs past the end of the answer and
# writes the next turns itself, the user's included.

# %%
end_of_document = tokenizer.convert_tokens_to_ids("<|endoftext|>")
output = model.generate(**chat, max_new_tokens=20, do_sample=False, eos_token_id=end_of_document, **SCORES)
runon_new = new_tokens(checked(output, "the run-on", eos_token_id=end_of_document), chat)[0]
runon = tokenizer.decode(runon_new)
print(repr(runon))
print("with skip_special_tokens:", repr(tokenizer.decode(runon_new, skip_special_tokens=True)))
assert len(runon_new) == 20 and runon.startswith(ref_answer)
assert "<|im_start|>user" in runon[len(ref_answer):]

# %% [markdown]
# **Cause.** Generation stops only on the ids in `eos_token_id` (notebook 04). The chat template
# ends each turn with `<|im_end|>`; the model emitted it, nobody stopped, so it went on with what
# follows an end of turn in its training data: the next turn. `skip_special_tokens=True` then hides
# the turn markers and makes the run-on look like one answer.
#
# **Fix.** Leave `eos_token_id` to the model's generation config (it holds the end-of-turn token),
# or pass a list with every token that may end a turn. Seed 000 passes
# `eos_token_id=tokenizer.eos_token_id` and `pad_token_id=tokenizer.pad_token_id` "to be safe":
# that *replaces* the generation config's values, harmless here where they are the same tokens
# (checked below), wrong on a model whose generation config lists more stop tokens than the
# tokenizer's single EOS.

# %%
config = model.generation_config
print("generation_config eos/pad:", config.eos_token_id, config.pad_token_id,
      "| tokenizer eos/pad:", tokenizer.eos_token_id, tokenizer.pad_token_id,
      "=", repr(tokenizer.convert_ids_to_tokens(config.eos_token_id)))
both = model.generate(**chat, max_new_tokens=32, do_sample=False,
                      eos_token_id=[tokenizer.eos_token_id, end_of_document])
seed_style = model.generate(**chat, max_new_tokens=32, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
assert (config.eos_token_id, config.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
assert torch.equal(both, ref) and torch.equal(seed_style, ref)

# %% [markdown]
# ## 12 · `repetition_penalty` set too high
# **Symptom.** With `repetition_penalty=2.0` the model no longer stops.

# %%
output = model.generate(**chat, max_new_tokens=20, do_sample=False, repetition_penalty=2.0, **SCORES)
rp_new = new_tokens(checked(output, "the penalised answer"), chat)[0]  # checked on the penalised scores
print(len(rp_new), "new tokens, ends with EOS:", bool(rp_new[-1] == tokenizer.eos_token_id))
print(repr(tokenizer.decode(rp_new)))
assert len(rp_new) == 20 and tokenizer.eos_token_id not in rp_new.tolist()

# %% [markdown]
# **Cause.** The penalty divides the logit of *every token already in the sequence*, and for a
# decoder-only model that includes the prompt (notebook 05). The chat prompt contains the
# end-of-turn token after every turn, so the token the model needs to stop is penalised from the
# first step. At the point where the plain answer ends:

# %%
from transformers import RepetitionPenaltyLogitsProcessor

upto_end = torch.cat([chat["input_ids"], ref_new[None, :-1]], dim=1)
with torch.inference_mode():
    end_logits = model(upto_end).logits[:, -1].float()


def eos_standing(scores):
    """The end-of-turn token's rank in ``scores[0]`` (0: the greedy choice) and its lead over the
    best other token (negative: behind it), checked to hold on any CPU."""
    eos = tokenizer.eos_token_id
    others = torch.cat([scores[0, :eos], scores[0, eos + 1:]])
    lead = float(scores[0, eos] - others.max())
    lt.check_gap(abs(lead), "the end-of-turn token's lead")
    return int((others > scores[0, eos]).sum()), lead


processors = {str(p): RepetitionPenaltyLogitsProcessor(p) for p in (1.0, 1.2, 2.0)}
processors["2.0, prompt ignored"] = RepetitionPenaltyLogitsProcessor(2.0, prompt_ignore_length=n_chat)
standing = {name: eos_standing(proc(upto_end, end_logits.clone())) for name, proc in processors.items()}
print("end-of-turn token: rank (0 = the greedy choice), lead over the best other token in logits")
for name, (rank, lead) in standing.items():
    # the exact rank far down the list can move by one on another CPU (near-tied logits): > 10
    print(f"  penalty {name:>19}: rank {rank if rank == 0 else '> 10'}, "
          f"lead {lt.fmt(lead, decimals=2, kind='logit')}")
assert standing["1.0"][0] == 0 and standing["2.0"][0] > 10 and standing["2.0, prompt ignored"][0] == 0
assert all(rank == 0 or rank > 10 for rank, _ in standing.values())

# %% [markdown]
# **Fix.** Penalise only what the model generated: `RepetitionPenaltyLogitsProcessor` takes a
# `prompt_ignore_length` (pass it as a custom `logits_processor`); or use a mild penalty (1.1-1.2,
# the value the penalty's paper suggests; 1.2 is the limit here, where the end-of-turn token stays
# first by 0.05 logits), or `no_repeat_ngram_size`.

# %%
ignoring_prompt = RepetitionPenaltyLogitsProcessor(2.0, prompt_ignore_length=n_chat)
output = model.generate(**chat, max_new_tokens=48, do_sample=False, logits_processor=[ignoring_prompt], **SCORES)
fixed_rp = new_tokens(checked(output, "the answer with the prompt ignored"), chat)[0]
print(len(fixed_rp), "new tokens:", repr(tokenizer.decode(fixed_rp)))
assert fixed_rp[-1] == tokenizer.eos_token_id

# %% [markdown]
# ## 13 · Inputs on another device than the model
# **Symptom.** Seed 004's error: the model on the GPU, the token ids still on the CPU,
# `RuntimeError: Expected all tensors to be on the same device`. This machine has no GPU, but the
# same class of error appears with a device it does have: `meta`, a device whose tensors have a
# shape and no data. A copy of the model's architecture on `meta` stands for "weights on another
# device"; the inputs stay on the CPU:

# %%
from transformers import AutoModelForCausalLM

with torch.device("meta"):
    elsewhere = AutoModelForCausalLM.from_config(model.config)
cpu_inputs = lt.chat_inputs(tokenizer, question)
print("model on", elsewhere.device, "| inputs on", cpu_inputs["input_ids"].device)
with lt.expect_error(RuntimeError, match="not on the expected device") as err:
    elsewhere.generate(**cpu_inputs, max_new_tokens=1)
print(err)

# %% [markdown]
# **Cause.** A torch operation runs on one device and needs every tensor it reads on that device;
# a tensor is never moved implicitly (forward pass: notebook 03).
#
# **Fix.** Move the inputs to the model: `inputs.to(model.device)` (seed 000's `.to(model.device)`).
# Note that a tokenizer's `BatchEncoding.to()` moves *in place* and returns the same object. A
# meta model then runs without a device error (it computes shapes only):

# %%
moved = cpu_inputs.to(elsewhere.device)
print("same object:", moved is cpu_inputs, "| inputs now on", cpu_inputs["input_ids"].device)
logits_shape = elsewhere(input_ids=moved["input_ids"]).logits.shape
print("logits:", tuple(logits_shape), "on", elsewhere.device)
assert moved is cpu_inputs and logits_shape == (1, n_chat, model.config.vocab_size)
del elsewhere, moved, cpu_inputs

# %% [markdown]
# The real error, on a machine with a GPU (the model is there already: `lt.load_model()` puts it on
# the GPU when there is one). A direct forward pass with CPU inputs fails; `generate()` in
# transformers 5 moves CPU inputs to the model's device itself, which the source says in so many
# words (checked below on every machine).

# %%
import inspect

from transformers.generation.utils import GenerationMixin

moves_inputs = "move_to_device(model_inputs, self.device)" in inspect.getsource(
    GenerationMixin.prepare_inputs_for_generation)
print("generate() moves inputs to the model's device itself:", moves_inputs)
assert moves_inputs
if torch.cuda.is_available() and model.device.type == "cuda":
    gpu_question = tokenizer(question, return_tensors="pt")  # still on the CPU
    with lt.expect_error(RuntimeError, match="same device") as err, torch.inference_mode():
        model(**gpu_question)
    print(err.short(200))
    with torch.inference_mode():
        fixed_logits = model(**gpu_question.to(model.device)).logits
    assert fixed_logits.device == model.device
else:
    print(f"skipped the GPU cell: no CUDA device here (the model is on {model.device})")

# %% [markdown]
# ## 14 · Old loading spellings
# **Symptom.** Seed 001 loads with `load_in_4bit=True`, seed 000 mentions `load_in_8bit=True` and
# uses `torch_dtype=`. On transformers 5 the first two are errors, the third a deprecation:

# %%
from transformers import BitsAndBytesConfig

source = lt.resolve_model()  # the local folder of the default model
for old in ("load_in_8bit", "load_in_4bit"):
    with lt.expect_error(TypeError, match="unexpected keyword argument") as err:
        AutoModelForCausalLM.from_pretrained(source, **{old: True})
    print(err)
with lt.capture() as got:
    old_bf16 = AutoModelForCausalLM.from_pretrained(source, torch_dtype=torch.bfloat16)
print(got, "->", old_bf16.dtype)
assert got.contains("`torch_dtype` is deprecated! Use `dtype` instead!")

# %% [markdown]
# **Cause.** transformers 5 removed the `load_in_*bit` shortcuts (they reach the model's constructor
# and fail there) and renamed `torch_dtype` to `dtype` (notebook 02).
#
# **Fix.** `dtype=` for the precision, `quantization_config=BitsAndBytesConfig(...)` for 8/4-bit.

# %%
with lt.capture() as got:
    model_bf16 = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).to(model.device).eval()
assert not got.messages and model_bf16.dtype == torch.bfloat16
assert all(torch.equal(a, b) for a, b in zip(old_bf16.state_dict().values(), model_bf16.state_dict().values()))
del old_bf16
with lt.capture() as bnb_import:  # importing bitsandbytes logs CPU-dependent notes (notebook 02)
    import bitsandbytes  # noqa: F401
with lt.capture() as got:
    model_int8 = AutoModelForCausalLM.from_pretrained(
        source, quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map={"": model.device.type})
int8_layers = sum(type(m).__name__ == "Linear8bitLt" for m in model_int8.modules())
print("captured while loading:", got.summary())
print(f"int8: {int8_layers} Linear8bitLt layers, {lt.fmt(model_int8.get_memory_footprint() / 1e6, 3, kind='exact')} MB "
      f"(float32: {lt.fmt(model.get_memory_footprint() / 1e6, 3, kind='exact')} MB)")
assert int8_layers > 0 and model_int8.get_memory_footprint() < model.get_memory_footprint() / 2
del model_int8

# %% [markdown]
# ## 15 · Llama's reference code on a machine without NCCL
# **Symptom.** Seed 004 runs Meta's `example_text_completion.py` with `torchrun`; its
# `Llama.build()` starts with `torch.distributed.init_process_group("nccl")` and fails on a Mac.
# The same call here, with the variables `torchrun` sets for a single process:

# %%
import os
import socket

import torch.distributed as dist

print("NCCL available:", dist.is_nccl_available(), "| gloo available:", dist.is_gloo_available())
with socket.socket() as s:  # a free local port, as torchrun would pick
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
torchrun_env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
                "LOCAL_RANK": "0"}
saved_env = {k: os.environ.get(k) for k in torchrun_env}
os.environ.update(torchrun_env)
with lt.expect_error(RuntimeError, match="NCCL") as err:
    dist.init_process_group("nccl")
print(err)
assert not dist.is_initialized()

# %% [markdown]
# **Cause.** NCCL (NVIDIA Collective Communications Library) is how processes on NVIDIA GPUs
# exchange tensors (all-reduce, broadcast) when one model is split across GPUs; PyTorch builds
# without CUDA (CPU-only, macOS) do not include it. The reference code always asks for it, even
# for one process (it was written for model-parallel GPU inference; `torch.cuda.set_device` and
# `device="cuda"` follow).
#
# **Fix 1.** For one CPU process, the `gloo` backend works (and the process group should be
# destroyed afterwards):

# %%
dist.init_process_group("gloo")
total = torch.ones(3)
dist.all_reduce(total)  # with one process, the sum is the tensor itself
print("backend:", dist.get_backend(), "| world size:", dist.get_world_size(), "| all_reduce:", total.tolist())
assert dist.get_backend() == "gloo" and total.tolist() == [1.0, 1.0, 1.0]
dist.destroy_process_group()
for k, v in saved_env.items():
    if v is None:
        os.environ.pop(k)
    else:
        os.environ[k] = v
assert not dist.is_initialized()

# %% [markdown]
# The reference code would fail at its next CUDA-only line anyway. **Fix 2** is the one this series
# uses: plain transformers needs no process group at all. The model of this notebook was loaded
# with `from_pretrained` and generated every answer above without one.

# %%
if not torch.cuda.is_available():
    with lt.expect_error(AssertionError, AttributeError, RuntimeError) as err:
        torch.cuda.set_device(0)  # Llama.build()'s next line
    print("the reference code's next line:", err.short(100))
print("process group initialized:", dist.is_initialized(), "| answer:", repr(ref_answer))
assert not dist.is_initialized() and ref_new[-1] == tokenizer.eos_token_id

# %% [markdown]
# ## 16 · Forgetting `torch.no_grad()` / `torch.inference_mode()`
# **Symptom.** Nothing visible: a forward pass with gradients enabled works, but autograd keeps
# every intermediate tensor a backward pass would need. We measure exactly what it keeps with a
# hook that sees each tensor saved for backward (weights excluded: they exist anyway).

# %%
import contextlib

weights = {p.untyped_storage().data_ptr() for p in model.parameters()}


def saved_for_backward(context, input_ids):
    """Bytes of activations autograd saves during one forward pass under ``context``."""
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with context, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(input_ids).logits
    return sum(saved.values()), logits.requires_grad


text_ids = tokenizer("The quick brown fox jumps over the lazy dog. " * 3, return_tensors="pt")["input_ids"]
text_ids = text_ids.to(model.device)
for name, context in [("grad enabled", contextlib.nullcontext()), ("torch.no_grad()", torch.no_grad()),
                      ("torch.inference_mode()", torch.inference_mode())]:
    nbytes, requires_grad = saved_for_backward(context, text_ids)
    print(f"{name:>24}: {lt.fmt(nbytes / 1e6, decimals=1, kind='exact'):>5} MB saved for backward, "
          f"logits.requires_grad={requires_grad}")
    if name == "grad enabled":
        kept = nbytes
    else:
        assert nbytes == 0 and not requires_grad
half, _ = saved_for_backward(contextlib.nullcontext(), text_ids[:, : text_ids.shape[1] // 2])
print(f"{text_ids.shape[1]} tokens: {lt.fmt(kept / 1e6, decimals=1, kind='exact')} MB; "
      f"half the tokens: {lt.fmt(half / 1e6, decimals=1, kind='exact')} MB; "
      f"weights: {lt.fmt(model.get_memory_footprint() / 1e6, 3, kind='exact')} MB")
assert kept > 1.8 * half > 0

# %% [markdown]
# **Cause.** By default torch records the computation graph for training (notebook 03). The saved
# activations grow with the number of tokens (twice the tokens, about twice the memory) and the
# batch size; in a hand-written loop that keeps its outputs, they pile up step after step.
#
# **Fix.** Wrap inference in `torch.inference_mode()` (or `torch.no_grad()`). `generate()` already
# does: a logits processor that looks at the grad mode during generation sees it off.

# %%
from transformers import LogitsProcessor


class GradModeProbe(LogitsProcessor):
    def __init__(self):
        self.seen = []

    def __call__(self, input_ids, scores):
        self.seen.append(torch.is_grad_enabled())
        return scores


probe = GradModeProbe()
model.generate(**chat, max_new_tokens=2, do_sample=False, logits_processor=[probe])
print("grad enabled inside generate():", probe.seen, "| outside:", torch.is_grad_enabled())
assert probe.seen and not any(probe.seen)

# %% [markdown]
# ## 17 · Expecting bit-identical results
# **Symptom.** The same greedy question in float32 and in bfloat16 (the model loaded in
# pitfall 14) gives answers that agree for a while, then part:

# %%
# NBVAL_IGNORE_OUTPUT
# where the texts part depends on the CPU's bfloat16 kernels: the point of this pitfall
from transformers import StoppingCriteria


class PartedFrom(StoppingCriteria):
    """Stop ``extra`` tokens after the new tokens first differ from ``reference`` (one row)."""

    def __init__(self, reference, prompt_length, extra=4):
        self.reference, self.prompt_length, self.extra = reference, prompt_length, extra

    def __call__(self, input_ids, scores, **kwargs):
        new = input_ids[0, self.prompt_length:]
        differ = (new != self.reference[: len(new)].to(new.device)).nonzero()
        done = len(differ) > 0 and len(new) >= int(differ[0]) + self.extra
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


moon = lt.chat_inputs(tokenizer, "Tell me about the Moon.", device=model.device)
n_moon = moon["input_ids"].shape[1]
runs = {}
for name, m in [("float32", model), ("bfloat16", model_bf16)]:
    # bfloat16 stops 4 tokens after it parts from float32: what follows is not compared
    stop = [] if name == "float32" else [PartedFrom(runs["float32"][0], n_moon)]
    out = m.generate(**moon, max_new_tokens=36, do_sample=False, output_logits=True, return_dict_in_generate=True,
                     stopping_criteria=stop)
    runs[name] = (new_tokens(out.sequences, moon)[0], torch.stack(out.logits, dim=1)[0].float())
a, b = runs["float32"][0], runs["bfloat16"][0]
length = min(len(a), len(b))
first = next((i for i in range(length) if a[i] != b[i]), None)
print("first different token: position", first)
print(" float32: ", repr(tokenizer.decode(a[:first + 4])))
print(" bfloat16:", repr(tokenizer.decode(b[:first + 4])))
assert first is not None and torch.equal(a[:first], b[:first])

# %% [markdown]
# Even in one dtype, *how* a number is computed changes its last bits. A loop that recomputes the
# whole sequence at each step (no KV cache, notebook 04) does not produce the logits the cached
# loop produced. One forward pass over the generated sequence gives the recomputed logits for
# every step at once:

# %%
# NBVAL_IGNORE_OUTPUT
# the sizes of the differences depend on the CPU's kernels
def recomputed(m, sequence):
    """Logits for every generated position from one forward pass over prompt + answer."""
    full = torch.cat([moon["input_ids"][0], sequence])[None]
    with torch.inference_mode():
        return m(full).logits[0, n_moon - 1:-1].float()


again = {}
for name, m in [("float32", model), ("bfloat16", model_bf16)]:
    tokens, cached = runs[name]
    again[name] = recomputed(m, tokens)
    print(f"{name:>9}: cached vs recomputed logits differ by up to {float((again[name] - cached).abs().max()):.1e};"
          f" greedy choices that flip: {int((again[name].argmax(-1) != cached.argmax(-1)).sum())}")
lp32, lp16 = runs["float32"][1][:first].log_softmax(-1), runs["bfloat16"][1][:first].log_softmax(-1)
chosen = a[:first, None]
vocab_gap = float((lp32 - lp16).abs().max())
chosen_gap = float((lp32.gather(-1, chosen) - lp16.gather(-1, chosen)).abs().max())
print(f"float32 vs bfloat16 on the same {first} tokens: log-probs differ by up to {vocab_gap:.2f} over the "
      f"vocabulary, {chosen_gap:.2f} for the chosen tokens")
assert float((again["float32"] - runs["float32"][1]).abs().max()) > 0  # not bit-identical...
assert torch.equal(again["float32"].argmax(-1), runs["float32"][1].argmax(-1))  # ...but the same choices
assert chosen_gap < vocab_gap

# %% [markdown]
# **Cause.** Floating-point addition is not associative: a different kernel, matrix shape, batch
# size, thread count or device adds the same numbers in another order. float32 keeps about 7
# significant digits, bfloat16 about 3, so its rounding differences are large enough to flip a
# greedy choice where the top two tokens are close, and from there the texts part
# (dtypes: notebook 02; cache: notebook 04).
#
# **Fix.** Compare with a tolerance that fits the dtype, and compare tokens only within one dtype
# and setup. From the measurements above: in float32, logits that agree to 1e-4 are "the same";
# in bfloat16 differences of up to about 1 in a logit are normal, and the log-probabilities of the
# tokens actually chosen agree to about 0.25; texts are compared by meaning or score, not character
# by character.

# %%
torch.testing.assert_close(again["float32"], runs["float32"][1], atol=1e-4, rtol=0)
with lt.expect_error(AssertionError, match="not close") as err:
    torch.testing.assert_close(again["bfloat16"], runs["bfloat16"][1], atol=1e-4, rtol=0)
print("float32's tolerance applied to bfloat16:", err.short(60))
torch.testing.assert_close(lp16.gather(-1, chosen), lp32.gather(-1, chosen), atol=0.25, rtol=0)
print("bfloat16 vs float32, chosen tokens' log-probs: within 0.25")

# %% [markdown]
# ## 18 · Tokenizer output passed the wrong way
# **Symptom.** Two common slips: encoding without `return_tensors="pt"` (plain Python lists), and
# passing the tokenizer's whole output as the first positional argument. Both end in an
# `AttributeError`, the second one with no message at all:

# %%
colors_text = "A list of colors: red, blue"
as_lists = tokenizer(colors_text)
with lt.expect_error(AttributeError) as err:
    model.generate(**as_lists, max_new_tokens=4)
print("lists:     ", err.short())
as_tensors = tokenizer(colors_text, return_tensors="pt").to(model.device)
with lt.expect_error(AttributeError) as err:
    model.generate(as_tensors, max_new_tokens=4)
print("positional:", err.short())
assert err.message == ""

# %% [markdown]
# **Cause.** `generate()` reads `.shape` from its first argument; a list has none, and a
# `BatchEncoding` (a dict of tensors) answers an unknown attribute with an empty `AttributeError`.
#
# **Fix.** Tensors (`return_tensors="pt"`) and keyword arguments (`**inputs`), which also passes the
# attention mask (pitfall 7).

# %%
out_ok = model.generate(**as_tensors, max_new_tokens=4, do_sample=False)
print(repr(tokenizer.decode(new_tokens(out_ok, as_tensors)[0])))
assert torch.equal(new_tokens(out_ok, as_tensors)[0], new_tokens(out_colors, colors)[0, :4])  # pitfall 1's start

# %% [markdown]
# ## Recap
# - Set `max_new_tokens`; slice the answer off at the padded prompt length, decode with
#   `skip_special_tokens=True`.
# - Pick the mode on purpose: greedy loops on long outputs; sampling arguments need `do_sample=True`;
#   a low temperature makes output *more* predictable, not less.
# - Batches: left padding and the attention mask, always; a pad token that equals EOS cannot be
#   told apart from a real EOS.
# - Chat models: the chat template, not a hand-written prompt; no second BOS; stop on the
#   end-of-turn token; keep `repetition_penalty` away from the prompt.
# - Environment: inputs on `model.device`; `dtype=` and `quantization_config=`; no NCCL needed
#   for transformers; `torch.inference_mode()` for every hand-written forward pass.
# - Numbers: equal tokens within one setup, tolerances across dtypes and devices.
#
# ## Exercises
# 1. What is the smallest `max_length` that returns the full answer to the France question? Check
#    that it gives exactly `ref`.
# 2. Write `bos_count(ids, tokenizer)`: how many BOS tokens open a sequence. Check it on `twice`
#    and `once` from pitfall 10.
# 3. Without generating: at the end of the France answer, does `repetition_penalty=1.2` still let
#    the model stop greedily? Find the largest penalty (to 0.05) at which it does.
# 4. Pitfall 11's run-on wrote a user turn. Write a stop rule with `stop_strings` (a `generate()`
#    argument that needs `tokenizer=`) that ends at `"<|im_start|>user"` instead, and check where it
#    stops.

# %% tags=["solution"] jupyter={"source_hidden": true}
# 1. max_length counts prompt and answer, EOS included.
smallest = n_chat + len(ref_new)
assert torch.equal(model.generate(**chat, max_length=smallest, do_sample=False), ref)
print("max_length =", smallest, "== max_new_tokens", len(ref_new), "+ prompt", n_chat)

# %% tags=["solution"] jupyter={"source_hidden": true}
# 2. Count the leading BOS tokens.
def bos_count(ids, tokenizer):
    ids = [int(i) for i in ids]
    count = 0
    while count < len(ids) and ids[count] == tokenizer.bos_token_id:
        count += 1
    return count


assert bos_count(twice["input_ids"][0], bos_tokenizer) == 2 and bos_count(once["input_ids"][0], bos_tokenizer) == 1
print("twice:", bos_count(twice["input_ids"][0], bos_tokenizer), "| once:", bos_count(once["input_ids"][0], bos_tokenizer))

# %% tags=["solution"] jupyter={"source_hidden": true}
# 3. Scan penalties; the model stops greedily while the end-of-turn token keeps rank 0 (a positive lead).
still_stops = [p / 100 for p in range(100, 205, 5)
               if eos_standing(RepetitionPenaltyLogitsProcessor(p / 100)(upto_end, end_logits.clone()))[1] > 0]
print("1.2 lets it stop:", 1.2 in still_stops, "| largest penalty that does:", max(still_stops))
assert 1.0 in still_stops and 2.0 not in still_stops

# %% tags=["solution"] jupyter={"source_hidden": true}
# 4. stop_strings ends generation when the decoded text ends with one of the strings.
stopped = new_tokens(model.generate(**chat, max_new_tokens=32, do_sample=False, eos_token_id=end_of_document,
                                    stop_strings=["<|im_start|>user"], tokenizer=tokenizer), chat)[0]
stopped_text = tokenizer.decode(stopped)
print(repr(stopped_text))
assert stopped_text.endswith("<|im_start|>user") and len(stopped) < 32
assert torch.equal(stopped, runon_new[: len(stopped)])  # the run-on's start, whose margin pitfall 11 checked
