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
# | 1 | No length set; `max_length` with a long prompt | 20 new [tokens](glossary.md#token) and a `UserWarning`; with `max_length` a silently cut answer or a `ValueError` | `max_new_tokens=N` |
# | 2 | The prompt comes back in the output | `decode(output[0])` starts with the prompt; per-row or per-character slicing goes wrong in a batch | slice tokens: `output[:, inputs["input_ids"].shape[1]:]`, then `skip_special_tokens=True` |
# | 3 | Greedy decoding on a long output | the same sentence over and over | `do_sample=True` (or `repetition_penalty`, `no_repeat_ngram_size`) |
# | 4 | Sampling arguments ([temperature](glossary.md#temperature), [top-k, top-p](glossary.md#top-k-top-p-min-p)) without `do_sample=True` | greedy output plus "generation flags are not valid and may be ignored"; `temperature=0` with sampling: `ValueError` | `do_sample=True` with `temperature > 0`; greedy: drop the sampling arguments |
# | 5 | "Lower temperature = more creative" | (a myth) | low temperature sharpens the distribution, high flattens it ([notebook 05, §4](05_decoding.ipynb#temperature-myth)) |
# | 6 | Right [padding](glossary.md#padding-side) in a batch | "right-padding was detected!" and a wrong answer for the short prompt | `padding_side="left"` |
# | 7 | No attention mask when pad = [EOS](glossary.md#eos) | "The attention mask is not set ... cannot be inferred" and a wrong answer | `model.generate(**inputs)` (pass the mask) |
# | 8 | Tokenizer without a pad token | `ValueError: Asking to pad but the tokenizer does not have a padding token` | `pad_token = eos_token`, or add a pad token and resize the embeddings; always pass the mask |
# | 9 | Hand-written chat prompt instead of the [chat template](glossary.md#chat-template) | empty answer, role names in the answer, a stray newline | `apply_chat_template(..., add_generation_prompt=True)` |
# | 10 | [Special tokens](glossary.md#special-token) added to an already-templated string | BOS twice at the start | `apply_chat_template(tokenize=True)` or `add_special_tokens=False` |
# | 11 | Wrong stop token | the answer runs on and writes the user's next message | stop on the chat's end-of-turn token (`generation_config.eos_token_id`) |
# | 12 | `repetition_penalty` too high | the model never stops (the end-of-turn token in the prompt is penalised: [notebook 05, §7](05_decoding.ipynb#repetition-penalty-eos)) | a penalty that ignores the prompt, or a milder value |
# | 13 | Inputs on another device than the model | `RuntimeError: Expected all tensors to be on the same device` from a direct forward pass (`generate()` no longer raises it: transformers 5 moves the inputs itself) | `inputs.to(model.device)` before every direct call |
# | 14 | Old loading spellings | `TypeError: ... unexpected keyword argument 'load_in_8bit'`; "`torch_dtype` is deprecated!" | `quantization_config=BitsAndBytesConfig(...)`, `dtype=` |
# | 15 | Llama's reference code without NCCL | `RuntimeError: Distributed package doesn't have NCCL built in` | `gloo` for one CPU process, or plain transformers (no process group at all) |
# | 16 | No `torch.no_grad()` / `inference_mode()` | activations kept for a backward pass that never comes | wrap forward passes in `torch.inference_mode()` |
# | 17 | Expecting bit-identical results | float32 and bfloat16 answers agree for a while, then part (where depends on the CPU); cached ([KV cache](glossary.md#kv-cache)) and recomputed [logits](glossary.md#logit) differ | compare with a tolerance that fits the dtype, not `==` |
# | 18 | Tokenizer output passed the wrong way | `AttributeError: 'list' object has no attribute 'shape'`, or an `AttributeError` with no message | `return_tensors="pt"` and `model.generate(**inputs)` |
# | 19 | A misspelled `generate()` argument (`repitition_penalty=`) | `ValueError: The following model_kwargs are not used by the model: ['repitition_penalty']` | the right spelling; the list in the message names the typo |
# | 20 | A model whose generation config samples by default | "greedy" code (no `do_sample`) gives another answer on every run, and nothing warns | `do_sample=False` explicitly; read `model.generation_config` |
# | 21 | Prompt + `max_new_tokens` longer than the context | learned [positions](glossary.md#position-ids): `IndexError: index out of range in self`; [RoPE](glossary.md#rope): a "friendly reminder" log, and text the model was never trained for | check `prompt + max_new_tokens <= lt.context_length(model)`; cut the prompt from the left |

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
    checked its closest call: ``lt.scores_gap``, the smallest top-1/top-2 gap among the scores it
    chose from (after its logits processors), each row up to its EOS."""
    eos = model.generation_config.eos_token_id if eos_token_id is None else eos_token_id
    lt.check_gap(lt.scores_gap(output, eos), what)
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
# itself. A simple measure is the share of distinct 4-token n-grams, `lt.distinct_ngram_ratio`
# (1.0: no repeated n-gram; [notebook 05, §2](05_decoding.ipynb) writes it out).

# %%
cat = tokenizer("I am a cat.", return_tensors="pt").to(model.device)
out_cat = checked(model.generate(**cat, max_new_tokens=24, do_sample=False, **SCORES), "the greedy loop")
greedy_cat = new_tokens(out_cat, cat)[0]
print(repr(tokenizer.decode(greedy_cat, skip_special_tokens=True)))
print("distinct 4-grams:", lt.fmt(lt.distinct_ngram_ratio(greedy_cat, 4), 2, kind="exact"))
assert lt.distinct_ngram_ratio(greedy_cat, 4) < 0.3

# %% [markdown]
# **Cause.** Greedy decoding is deterministic: once a phrase makes itself the most likely
# continuation, the same state comes back and the same tokens follow (notebook 05). On open-ended
# prompts the loop can take a hundred tokens or more to appear, so a short test run misses it.
#
# **Fix.** Sample (`do_sample=True`, seeded here so the output is reproducible), or keep greedy
# and discourage repeats with `repetition_penalty` or `no_repeat_ngram_size` (see pitfall 12).

# %%
lt.set_seed(0)
sampled_cat = new_tokens(model.generate(**cat, max_new_tokens=16, do_sample=True), cat)[0]
print(repr(tokenizer.decode(sampled_cat, skip_special_tokens=True)))
print("distinct 4-grams:", lt.fmt(lt.distinct_ngram_ratio(sampled_cat, 4), 2, kind="exact"))
assert lt.distinct_ngram_ratio(sampled_cat, 4) > 0.9

# %% [markdown]
# <a id="temperature-ignored-warning"></a>
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
# **Cause.** `generate()` picks its mode from `do_sample` (and `num_beams`, for
# [beam search](glossary.md#beam-search)); the temperature, top-k and top-p warpers are only built
# in sampling mode (notebook 05).
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
# model *more creative* while values near 1 make it follow the probabilities. It is the other way
# round, and temperatures above 1 are allowed: sampling divides the logits by the temperature, so a
# small one sharpens the distribution (T → 0 becomes greedy) and a large one flattens it.
# [Notebook 05, §4](05_decoding.ipynb#temperature-myth) measures it; one check here, on one
# next-token distribution:

# %%
story = tokenizer("Once upon a time, there was a", return_tensors="pt").to(model.device)
with torch.inference_mode():
    next_logits = model(**story).logits[0, -1].float()
top1 = {t: torch.softmax(next_logits / t, dim=-1).max() for t in (0.5, 1.0, 1.5)}
print("probability of the most likely token:",
      " | ".join(f"T = {t}: {lt.fmt(p, 2, kind='prob')}" for t, p in top1.items()))
near_zero = torch.softmax(next_logits / 0.01, dim=-1)
print("T = 0.01: the most likely token is the greedy one, with probability > 0.99:",
      bool(near_zero.argmax() == next_logits.argmax() and near_zero.max() > 0.99))
assert top1[0.5] > top1[1.0] > top1[1.5]  # lower T, more predictable
assert near_zero.argmax() == next_logits.argmax() and near_zero.max() > 0.99  # T -> 0: greedy

# %% [markdown]
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
# <a id="doubled-bos"></a>
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
# probability of its own answer ([log-probability](glossary.md#log-prob) of the same answer tokens,
# notebook 03):

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
output = model.generate(**chat, max_new_tokens=16, do_sample=False, repetition_penalty=2.0, **SCORES)
rp_new = new_tokens(checked(output, "the penalised answer"), chat)[0]  # checked on the penalised scores
print(len(rp_new), "new tokens, ends with EOS:", bool(rp_new[-1] == tokenizer.eos_token_id))
print(repr(tokenizer.decode(rp_new)))
assert len(rp_new) == 16 and tokenizer.eos_token_id not in rp_new.tolist()

# %% [markdown]
# **Cause.** The penalty divides the logit of every token already in the sequence, and for a
# decoder-only model that includes the prompt. The chat template writes the end-of-turn token after
# every turn, so the token the model needs to stop is penalised from the first step and falls far
# down the ranking ([notebook 05, §7](05_decoding.ipynb#repetition-penalty-eos) measures by how much).
#
# **Fix.** Penalise only what the model generated: `RepetitionPenaltyLogitsProcessor` takes a
# `prompt_ignore_length` (pass it as a custom `logits_processor`); or use a mild penalty (exercise 3
# finds how mild it must be here), or `no_repeat_ngram_size`.

# %%
from transformers import RepetitionPenaltyLogitsProcessor

ignoring_prompt = RepetitionPenaltyLogitsProcessor(2.0, prompt_ignore_length=n_chat)
output = model.generate(**chat, max_new_tokens=48, do_sample=False, logits_processor=[ignoring_prompt], **SCORES)
fixed_rp = new_tokens(checked(output, "the answer with the prompt ignored"), chat)[0]
print(len(fixed_rp), "new tokens:", repr(tokenizer.decode(fixed_rp)))
assert fixed_rp[-1] == tokenizer.eos_token_id and torch.equal(fixed_rp, ref_new)  # stops, with the plain answer

# %% [markdown]
# ## 13 · Inputs on another device than the model
# **Symptom.** Seed 004's error: the model on the GPU, the token ids still on the CPU, and
# `RuntimeError: Expected all tensors to be on the same device`. With transformers 5.23 that error
# no longer comes from `generate()` (it moves the inputs itself, below), but every direct forward
# pass still raises it: scoring a text, or a hand-written loop like notebook 04's. With a GPU, the
# cell below runs exactly that. A CPU-only machine has no second device that holds data, so there it
# shows only the rule behind the error, with `meta` (a device whose tensors have a shape and no
# data): one operation, two devices, an error. (The message differs from the GPU's; the rule is the
# same.)

# %%
cpu_question = tokenizer(question, return_tensors="pt")  # the tokenizer makes its tensors on the CPU
print("model on", model.device, "| inputs on", cpu_question["input_ids"].device)
if model.device.type != "cpu":  # the real thing: weights on the GPU, ids on the CPU
    with lt.expect_error(RuntimeError, match="device") as err, torch.inference_mode():
        model(**cpu_question)
else:  # no second device: the rule, on one operation
    with lt.expect_error(RuntimeError, match="device") as err:
        torch.ones(3, device="meta") + torch.ones(3)
print(err.short(200))

# %% [markdown]
# `generate()` does not raise it: in transformers 5 it moves the inputs to `model.device` itself,
# right before each forward call, so seed 004's code now runs as it was first written. A forward
# pre-hook records the device of the ids the model actually receives, while we pass them on the CPU.
# On a GPU the hook sees `cuda:0`; on a CPU-only machine, like the one that recorded this notebook,
# the model is on the CPU too and the check holds trivially (there is nothing to move).

# %%
received = []


def record_device(module, args, kwargs):
    ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
    received.append(ids.device)


cpu_chat = lt.chat_inputs(tokenizer, question)  # no device given: the CPU
hook = model.register_forward_pre_hook(record_device, with_kwargs=True)
try:
    out_moved = model.generate(**cpu_chat, max_new_tokens=48, do_sample=False)
finally:
    hook.remove()
print("ids passed on", cpu_chat["input_ids"].device, "| received by the model on",
      sorted({str(d) for d in received}), f"in all {len(received)} forward calls | model on", model.device)
assert cpu_chat["input_ids"].device.type == "cpu" and set(received) == {model.device}
assert torch.equal(out_moved.to(ref.device), ref)  # the same answer as with inputs on model.device

# %% [markdown]
# **Cause.** A torch operation runs on one device and needs every tensor it reads on that device;
# torch never moves a tensor implicitly (forward pass: notebook 03). `generate()` moves its inputs on
# purpose; the model's `forward` does not.
#
# **Fix.** Move the inputs to the model before any direct call: `inputs.to(model.device)` (seed
# 000's `.to(model.device)`). Note that a tokenizer's `BatchEncoding.to()` moves *in place* and
# returns the same object:

# %%
moved = cpu_question.to(model.device)
with torch.inference_mode():
    direct_logits = model(**moved).logits
print("same object:", moved is cpu_question, "| inputs now on", cpu_question["input_ids"].device,
      "| logits on", direct_logits.device)
assert moved is cpu_question and cpu_question["input_ids"].device == direct_logits.device == model.device
del moved, cpu_question, direct_logits

# %% [markdown]
# ## 14 · Old loading spellings
# **Symptom.** Seed 001 loads with `load_in_4bit=True`, seed 000 mentions `load_in_8bit=True` and
# uses `torch_dtype=`. On transformers 5 the first two are errors, the third a deprecation:

# %%
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

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
# **Fix.** `dtype=` for the precision, `quantization_config=BitsAndBytesConfig(...)` for 8/4-bit
# [quantization](glossary.md#quantization).

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
# pitfall 14) gives answers that agree for a while, then part (where depends on the CPU's bfloat16
# kernels, so the cell's output is not compared; the asserts hold everywhere):

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
assert first is not None and first > 0 and torch.equal(a[:first], b[:first])  # agree for a while, then part

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
# and setup. The measurements above (their digits depend on the CPU, so they are printed in ignored
# cells and bounded by asserts) give the scale: in float32, cached and recomputed logits agree to
# 1e-4; in bfloat16 by up to about a logit, and the log-probabilities of the tokens
# actually chosen differ between the two dtypes far less than the whole vocabulary's. The check
# below allows the chosen tokens 0.25, a margin over what this run measured. Texts are compared by
# meaning or score, not character by character.

# %%
torch.testing.assert_close(again["float32"], runs["float32"][1], atol=1e-4, rtol=0)
with lt.expect_error(AssertionError, match="not close") as err:
    torch.testing.assert_close(again["bfloat16"], runs["bfloat16"][1], atol=1e-4, rtol=0)
print("float32's tolerance applied to bfloat16:", err.short(60))
torch.testing.assert_close(again["bfloat16"], runs["bfloat16"][1], atol=2.0, rtol=0)  # about a logit, not 1e-4
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
# ## 19 · A misspelled `generate()` argument
# **Symptom.** Seed 000 lists the arguments of `generate()` it uses, among them
# `repitition_penalty`. Spelled that way, the call fails before generating anything:

# %%
with lt.expect_error(ValueError, match="not used by the model") as err:
    model.generate(**chat, max_new_tokens=48, do_sample=False, repitition_penalty=1.1)
print(err.message)
assert "['repitition_penalty']" in err.message and "typos" in err.message

# %% [markdown]
# **Cause.** `generate()` keeps the arguments it knows (the fields of `GenerationConfig`) and hands
# every other keyword to the model's forward pass as a `model_kwargs` entry (an attention mask, for
# instance). Before generating, it checks that the model's `forward` accepts each of them; a name
# that is neither a generation setting nor a model input is refused, with the list of such names.
#
# **Fix.** The right spelling, `repetition_penalty`: a `GenerationConfig` field. (1.1 is mild enough
# to leave this short answer as it was.)

# %%
from transformers import GenerationConfig

fields = GenerationConfig().to_dict()
print("GenerationConfig fields: 'repetition_penalty'", "repetition_penalty" in fields,
      "| 'repitition_penalty'", "repitition_penalty" in fields)
output = model.generate(**chat, max_new_tokens=48, do_sample=False, repetition_penalty=1.1, **SCORES)
spelled_right = new_tokens(checked(output, "the answer with penalty 1.1"), chat)[0]
print(repr(tokenizer.decode(spelled_right)))
assert "repetition_penalty" in fields and "repitition_penalty" not in fields
assert torch.equal(spelled_right, ref_new)

# %% [markdown]
# ## 20 · A model whose generation config samples by default
# **Symptom.** Code that never mentions sampling is greedy, and so repeatable, only if the model
# says so. A model folder may ship a `generation_config.json`; `from_pretrained` reads it into
# `model.generation_config`, the defaults of every `generate()` call. This model's sets only its
# special tokens (pitfall 1). We write one that samples, as some chat models ship, and read it back
# the way `from_pretrained` does:

# %%
import copy
import json
import tempfile
from pathlib import Path

sampling_defaults = copy.deepcopy(model.generation_config)
sampling_defaults.update(do_sample=True, temperature=0.6, top_p=0.9)
with tempfile.TemporaryDirectory() as folder:
    sampling_defaults.save_pretrained(folder)  # writes folder/generation_config.json
    written = json.loads((Path(folder) / "generation_config.json").read_text())
    shipped = GenerationConfig.from_pretrained(folder)
print("generation_config.json:", {k: written[k] for k in ("do_sample", "temperature", "top_p")})
assert (shipped.do_sample, shipped.temperature, shipped.top_p) == (True, 0.6, 0.9)


@contextlib.contextmanager
def generation_defaults(model, config):
    """Run the block with ``config`` as ``model.generation_config``, as if the model had been
    loaded from a folder that ships it; the model's own config is back afterwards."""
    saved, model.generation_config = model.generation_config, config
    try:
        yield model
    finally:
        model.generation_config = saved


# %% [markdown]
# The same "greedy" line, no `do_sample`, run twice on that model:

# %%
pet = lt.chat_inputs(tokenizer, "Suggest a name for a black cat.", device=model.device)
lt.set_seed(0)  # only so that this notebook's stored output is reproducible
with generation_defaults(model, shipped), lt.capture(level="INFO") as got:
    two_runs = [new_tokens(model.generate(**pet, max_new_tokens=12), pet)[0] for _ in range(2)]
for answer in two_runs:
    print(repr(tokenizer.decode(answer, skip_special_tokens=True)))
print("logged:", got)
assert not torch.equal(two_runs[0], two_runs[1]) and not got.messages  # two answers, and not a word about it

# %% [markdown]
# **Cause.** `generate()` starts from `model.generation_config` and overrides only what the call
# passes. With `do_sample: true` in the file, every call samples, with the file's temperature and
# top-p; nothing warns, since those flags are valid in sampling mode (pitfall 4 warns only when they
# are not).
#
# **Fix.** Say what you want: `do_sample=False` in the call (or `model.generation_config.do_sample =
# False` once, for every later call), and read `model.generation_config` after loading a model. The
# call with `do_sample=False` gives the model's plain greedy answer, which is the same every time:

# %%
with generation_defaults(model, shipped), lt.capture(level="INFO") as got:
    output = model.generate(**pet, max_new_tokens=16, do_sample=False, **SCORES)
greedy_pet = new_tokens(checked(output, "the greedy name"), pet)[0]
own_defaults = new_tokens(model.generate(**pet, max_new_tokens=16), pet)[0]  # this model's own config: greedy
print(repr(tokenizer.decode(greedy_pet, skip_special_tokens=True)), "| logged:", got)
assert torch.equal(greedy_pet, own_defaults) and not model.generation_config.do_sample

# %% [markdown]
# ## 21 · Prompt plus `max_new_tokens` past the context length
# **Symptom.** A model is built for a fixed number of positions, its context length
# (`config.max_position_embeddings`; `lt.context_length(model)` reads it). `generate()` does not
# refuse a prompt plus `max_new_tokens` longer than that, and what happens past the end depends on
# how the model encodes [positions](glossary.md#position-ids). Generating past this model's context
# would take thousands of tokens, so two tiny models with random weights and a context of 32, built
# from configs (no download), show the two cases. First a Llama, which uses
# [RoPE](glossary.md#rope) like the model of this series:

# %%
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

CONTEXT = 32
tiny = dict(vocab_size=len(tokenizer), bos_token_id=None, eos_token_id=None, pad_token_id=None)  # no EOS: full length
torch.manual_seed(0)
tiny_llama = LlamaForCausalLM(LlamaConfig(max_position_embeddings=CONTEXT, hidden_size=64, intermediate_size=128,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                          **tiny)).eval()
tiny_gpt2 = GPT2LMHeadModel(GPT2Config(n_positions=CONTEXT, n_embd=64, n_layer=2, n_head=4, **tiny)).eval()
long_prompt = tokenizer("The quick brown fox jumps over the lazy dog. " * 2, return_tensors="pt")  # CPU, like them
n_long = long_prompt["input_ids"].shape[1]
print(f"context {lt.context_length(tiny_llama)} | prompt {n_long} tokens + max_new_tokens=24 = {n_long + 24}")
with lt.capture() as got:
    out_llama = tiny_llama.generate(**long_prompt, max_new_tokens=24, do_sample=False)
print("Llama:", out_llama.shape[1], "tokens, no error |", got)
assert out_llama.shape[1] == n_long + 24 > CONTEXT and got.contains("exceeded the model's predefined maximum length")

# %% [markdown]
# GPT-2 adds a learned vector per position, from a table with one row per position (notebook 04 builds one
# like it). The first position past the table is an error (the reminder above is
# logged once per process, so it does not appear again):

# %%
with lt.expect_error(IndexError, match="index out of range") as err:
    tiny_gpt2.generate(**long_prompt, max_new_tokens=24, do_sample=False)
print("GPT-2:", err)
print("this model:", type(model).__name__, "| context", lt.context_length(model), "tokens")
assert lt.context_length(tiny_gpt2) == tiny_gpt2.transformer.wpe.num_embeddings == CONTEXT

# %% [markdown]
# **Cause.** A learned position table has `context` rows, and position `context` is one too many. RoPE
# computes each position's rotation from its index, so any index works and nothing breaks; but a
# trained model has never seen distances past its context, so what it writes there is not to be
# trusted, and the only sign is that one log line.
#
# **Fix.** Check the budget before generating, and make room by cutting the prompt from the left, so
# that its end (the question) stays: slice the ids, or let the tokenizer do it
# (`truncation=True, max_length=...` with `truncation_side="left"`). In a chat, drop whole old turns
# instead, so the template stays intact.

# %%
def fit_prompt(inputs, model, max_new_tokens):
    """The last tokens of ``inputs`` (ids and mask) that leave room for ``max_new_tokens`` in the
    model's context."""
    context = lt.context_length(model)
    if not isinstance(max_new_tokens, int) or not 0 < max_new_tokens < context:
        raise ValueError(f"max_new_tokens must be an int between 1 and {context - 1} (the context, "
                         f"{context} tokens, must keep room for the prompt), not {max_new_tokens!r}")
    return {name: tensor[:, -(context - max_new_tokens):] for name, tensor in inputs.items()}


fitted = fit_prompt(long_prompt, tiny_gpt2, max_new_tokens=24)
out_fit = tiny_gpt2.generate(**fitted, max_new_tokens=24, do_sample=False)
print(f"prompt cut to its last {fitted['input_ids'].shape[1]} tokens | output {out_fit.shape[1]} tokens, no error")
assert out_fit.shape[1] == CONTEXT and torch.equal(out_fit[:, :CONTEXT - 24], long_prompt["input_ids"][:, -(CONTEXT - 24):])
assert n_chat + 48 <= lt.context_length(model)  # this notebook's calls fit easily
with lt.expect_error(ValueError, match="max_new_tokens") as err:
    fit_prompt(long_prompt, tiny_gpt2, max_new_tokens=CONTEXT)
print(err.short(200))
del tiny_llama, tiny_gpt2

# %% [markdown]
# ## Recap
# - Set `max_new_tokens`; slice the answer off at the padded prompt length, decode with
#   `skip_special_tokens=True`.
# - Pick the mode on purpose: greedy loops on long outputs; sampling arguments need `do_sample=True`;
#   a low temperature makes output *more* predictable, not less; a model's generation config may
#   sample by default, so pass `do_sample=False` when you mean greedy.
# - Spell `generate()`'s arguments right: a typo is a `ValueError` that lists it among the unused
#   `model_kwargs`.
# - Batches: left padding and the attention mask, always; a pad token that equals EOS cannot be
#   told apart from a real EOS.
# - Chat models: the chat template, not a hand-written prompt; no second BOS; stop on the
#   end-of-turn token; keep `repetition_penalty` away from the prompt.
# - Environment: inputs on `model.device` for every direct forward pass (`generate()` moves them
#   itself); `dtype=` and `quantization_config=`; no NCCL needed for transformers;
#   `torch.inference_mode()` for every hand-written forward pass.
# - Keep prompt + `max_new_tokens` within `lt.context_length(model)`: past it, learned positions
#   crash and RoPE models write text they were never trained for.
# - Numbers: equal tokens within one setup, tolerances across dtypes and devices.
#
# ## Exercises
# 1. What is the smallest `max_length` that returns the full answer to the France question? Check
#    that it gives exactly `ref`, and that one token less does not.
# 2. Write `bos_count(ids, tokenizer)`: how many BOS tokens open a sequence. Check it on `twice`
#    and `once` from pitfall 10.
# 3. Without generating: at the end of the France answer, does `repetition_penalty=1.2` still let
#    the model stop greedily? Find the largest penalty (to 0.05) at which it does, and check it
#    against the exact crossing, worked out by hand from the logits.
# 4. Pitfall 11's run-on wrote a user turn. Write a stop rule with `stop_strings` (a `generate()`
#    argument that needs `tokenizer=`) that ends at `"<|im_start|>user"` instead, and check where it
#    stops.

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
# 1. max_length counts prompt and answer, EOS included.
smallest = n_chat + len(ref_new)
print("max_length =", smallest, "== max_new_tokens", len(ref_new), "+ prompt", n_chat)
assert torch.equal(model.generate(**chat, max_length=smallest, do_sample=False), ref)
one_less = model.generate(**chat, max_length=smallest - 1, do_sample=False)
assert torch.equal(one_less, ref[:, :-1])  # one less: the same answer without its EOS, cut off

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
# 2. Count the leading BOS tokens.
def bos_count(ids, tokenizer):
    ids = [int(i) for i in ids]
    count = 0
    while count < len(ids) and ids[count] == tokenizer.bos_token_id:
        count += 1
    return count


assert bos_count(twice["input_ids"][0], bos_tokenizer) == 2 and bos_count(once["input_ids"][0], bos_tokenizer) == 1
print("twice:", bos_count(twice["input_ids"][0], bos_tokenizer), "| once:", bos_count(once["input_ids"][0], bos_tokenizer))

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
# 3. The logits at the step where the plain answer ends, penalised by the library's processor.
upto_end = torch.cat([chat["input_ids"], ref_new[None, :-1]], dim=1)
with torch.inference_mode():
    end_logits = model(upto_end).logits[0, -1].float()
eos = tokenizer.eos_token_id


def eos_lead(penalty):
    """How far the end-of-turn token leads the best other token after the penalty (> 0: it stops)."""
    scores = RepetitionPenaltyLogitsProcessor(penalty)(upto_end, end_logits[None].clone())[0]
    return float(scores[eos] - torch.cat([scores[:eos], scores[eos + 1:]]).max())


grid = [p / 100 for p in range(100, 205, 5)]
still_stops = [p for p in grid if eos_lead(p) > 0]
largest = max(still_stops)
for p in (largest, largest + 0.05):
    lt.check_gap(abs(eos_lead(p)), f"the end-of-turn token's lead at penalty {p}")
# by hand: the penalty divides every positive logit of a token in the sequence (the end-of-turn token's
# and its seen rivals' alike, so those never overtake it); it stops winning when it falls to the best
# logit of the tokens the sequence does not contain
seen = torch.zeros_like(end_logits, dtype=torch.bool)
seen[upto_end[0]] = True
crossing = float(end_logits[eos] / end_logits[~seen].max())
print("1.2 lets it stop:", 1.2 in still_stops, "| largest penalty that does, to 0.05:", largest,
      "| exact crossing:", lt.fmt(crossing, 3))
assert still_stops == grid[:len(still_stops)]  # it stops below a threshold and never above it
assert end_logits[eos] > 0 and end_logits[~seen].max() > 0 and largest <= crossing < largest + 0.05  # the scan's answer, to its precision

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
# 4. stop_strings ends generation when the decoded text ends with one of the strings.
stopped = new_tokens(model.generate(**chat, max_new_tokens=32, do_sample=False, eos_token_id=end_of_document,
                                    stop_strings=["<|im_start|>user"], tokenizer=tokenizer), chat)[0]
stopped_text = tokenizer.decode(stopped)
print(repr(stopped_text))
assert stopped_text.endswith("<|im_start|>user") and len(stopped) < 32
assert torch.equal(stopped, runon_new[: len(stopped)])  # the run-on's start, whose margin pitfall 11 checked
