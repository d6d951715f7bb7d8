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
# # 05 · Decoding strategies
# **The model gives a probability to every token of its vocabulary. How do we pick one, and what
# does each way of picking do to the text?**
#
# Notebook 03 computed the next-[token](glossary.md#token) distribution, notebook 04 wrote the loop
# around it. This notebook is about the one line of that loop that chooses the token: greedy,
# sampling, [temperature](glossary.md#temperature), [top-k, top-p, min-p](glossary.md#top-k-top-p-min-p),
# repetition penalty, [beam search](glossary.md#beam-search), and a sampler of our own.
# Every filter is written by hand (`llm_tutorial/sampling.py`), checked against the transformers
# code that `generate()` runs, and measured on real text.

# %%
import llm_tutorial as lt

banner = lt.setup_notebook(seed=0)

# %%
import math
import statistics
from itertools import pairwise

import matplotlib.pyplot as plt
import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

model = lt.load_model()
tokenizer = lt.load_tokenizer()
EOS = tokenizer.eos_token_id
print(type(model).__name__, model.dtype, "| vocabulary:", model.config.vocab_size, "tokens")


# %% [markdown]
# A few helpers used all along: encode a plain prompt, get the next-token logits, cut the
# generated part out of `generate()`'s output, and score a text with the unmodified model: the
# [log-prob](glossary.md#log-prob) of each of its tokens (teacher forcing, as in notebook 03).
#
# And one guard. A float32 forward pass gives slightly different logits on different CPUs, so a
# greedy text would come out differently on another machine if, at some step, the top two
# candidates were nearly tied. `closest_call` reads the scores `generate()` chose from
# (`output_scores=True`, after its logits processors, so after a repetition penalty too) and
# `lt.check_gap` refuses a gap below `lt.GAP` while this notebook is recorded or tested.

# %%
def encode(text):
    """Token ids and attention mask of a plain (non-chat) prompt."""
    return tokenizer(text, return_tensors="pt").to(model.device)


@torch.inference_mode()
def next_logits(inputs):
    """Float32 logits [1, vocab] for the token that follows the prompt."""
    return model(**inputs).logits[:, -1, :].float()


def generated(sequences, prompt_len):
    """The new token ids of each row, cut at the first end-of-sequence token."""
    return lt.answer_tokens(sequences, prompt_len, EOS)


def logprobs_of(prompt_ids, new_ids):
    """Log-probability of each new token given everything before it, under the plain model."""
    sequence = torch.tensor([prompt_ids + new_ids], device=model.device)
    return lt.token_logprobs(model, sequence)[0, len(prompt_ids) - 1:]


def token_text(token_id):
    return repr(tokenizer.decode([token_id]))


def prob_text(p, digits=2):
    """A probability as text (through lt.fmt), in scientific notation below 0.001: 1.4e-6."""
    p = float(p)
    if p >= 1e-3:
        return lt.fmt(p, digits, kind="prob")
    exponent = math.floor(math.log10(p))
    for edge in (exponent, exponent + 1):  # not where the power of ten changes
        lt.check_threshold([math.log10(p)], edge, "a power of ten", kind="logit")
    return f"{lt.fmt(p / 10 ** exponent, digits, kind='prob')}e{exponent}"


SCORES = dict(output_scores=True, return_dict_in_generate=True)  # what closest_call reads


def closest_call(output, what):
    """Check the closest call of a greedy ``generate(..., **SCORES)``: ``lt.scores_gap``, the
    smallest top-1/top-2 gap among the scores it chose from (each row up to its EOS)."""
    return lt.check_gap(lt.scores_gap(output, EOS), what)


STORY = encode("Once upon a time")
STORY_IDS = STORY["input_ids"][0].tolist()
N_NEW = 32  # new tokens per strategy in the comparisons

# %% [markdown]
# ## 1. What the model hands us
# One forward pass gives one score ([logit](glossary.md#logit)) per vocabulary entry; softmax turns
# them into probabilities. Seed 002 shows such a top-10 table for a Japanese prompt; here is ours.

# %%
story_logits = next_logits(STORY)
story_probs = story_logits.softmax(-1)[0]
top = story_probs.topk(10)
lt.check_gap(lt.ranking_gap(story_logits[0], 10), "the order of the top 10")  # no two nearly tied
print("rank  token          prob")
for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True), start=1):
    print(f"{rank:>4}  {token_text(i):<12} {lt.fmt(p, 2, kind='prob'):>6}")
print(f"the top 10 hold {lt.fmt(top.values.sum(), 2, kind='prob')} of the mass; "
      f"{int((story_probs > 0).sum())} tokens have a non-zero probability")
assert abs(story_probs.sum().item() - 1) < 1e-4 and top.values.sum() < 1
assert int((story_probs > 0).sum()) == story_logits.shape[-1]  # every entry of the vocabulary, none excluded

# %% [markdown]
# Every strategy below is a rule for going from this vector to one token id.
#
# ## 2. Greedy: always the most likely token
# `do_sample=False` (the default) takes the argmax at every step. Nothing is random, so the same
# prompt gives the same text, run after run:

# %%
with torch.inference_mode():
    runs = [model.generate(**STORY, max_new_tokens=8, do_sample=False) for _ in range(2)]
assert torch.equal(runs[1], runs[0])
print(tokenizer.decode(runs[0][0]))  # closest call: checked below, on a longer run with the same start

# %% [markdown]
# Seed 002 adds that greedy text tends to repeat itself. On a longer run it does. Two measures:
# the share of each 24-token window's 3-grams (runs of 3 tokens) that already occurred earlier,
# written out below, and the **distinct n-gram ratio**, distinct n-grams / all n-grams (1.0:
# nothing repeats; near 0: a loop), which `lt.distinct_ngram_ratio` computes.

# %%
with torch.inference_mode():
    greedy_out = model.generate(**STORY, max_new_tokens=96, do_sample=False, **SCORES)
closest_call(greedy_out, "greedy's story")
greedy_long = greedy_out.sequences
greedy_ids = generated(greedy_long, len(STORY_IDS))[0]
assert greedy_ids[:8] == generated(runs[0], len(STORY_IDS))[0]  # same start: greedy is deterministic
print(tokenizer.decode(greedy_ids))


# %%
window = 24
seen_grams, repeated_share = set(), []
for start in range(0, len(greedy_ids), window):
    grams = [tuple(greedy_ids[i:i + 3]) for i in range(start, min(start + window, len(greedy_ids) - 2))]
    repeated_share.append(sum(g in seen_grams for g in grams) / len(grams))
    seen_grams.update(grams)
print(f"share of each {window}-token window's 3-grams already seen earlier:",
      ", ".join(lt.fmt(r, decimals=2, kind="exact") for r in repeated_share))  # ratios of counts
print("distinct 3-gram ratio over all", len(greedy_ids), "tokens:",
      lt.fmt(lt.distinct_ngram_ratio(greedy_ids, 3), decimals=2, kind="exact"))
assert repeated_share[0] < 0.1 and repeated_share[-1] > 0.5  # fresh at first, mostly a rerun at the end
assert lt.distinct_ngram_ratio(greedy_ids, 3) < 0.7

# %% [markdown]
# Once a sentence has been produced, the most likely continuation of "…sentence. " is often the
# same sentence again: greedy has no way out of a loop it has entered.
#
# ## 3. Pure sampling: draw from the distribution as it is
# `do_sample=True` draws the next token at random, each with its probability under the model.
# Careful: `do_sample=True` alone is *not* pure sampling.
#
# <a id="implicit-top-k"></a>
# **The implicit `top_k=50`.** A generation setting you do not pass comes from the model's
# `generation_config`; what that leaves unset comes from transformers' own defaults, and there
# `top_k` is 50. So `do_sample=True` alone draws among the 50 most likely tokens only, and cuts
# the tail you may have wanted. We print both sources, then ask `generate()` itself: with
# `output_scores=True` it returns the scores it drew from, after every filter (a removed token is
# `-inf`).

# %%
from transformers import GenerationConfig

FIELDS = ("do_sample", "temperature", "top_k", "top_p", "min_p")
shipped = {f: getattr(model.generation_config, f) for f in FIELDS}
library = {f: GenerationConfig._get_default_generation_params().get(f) for f in FIELDS}
print("this model's generation_config:   ", shipped)
print("transformers' defaults for the rest:", library)
left = {}
for call, extra in [("do_sample=True", {}), ("do_sample=True, top_k=0", {"top_k": 0})]:
    with torch.inference_mode():
        first_step = model.generate(**STORY, max_new_tokens=1, do_sample=True, **extra, **SCORES).scores[0]
    left[call] = int(first_step.isfinite().sum())
    print(f"{call:<24} draws among {left[call]} tokens")
top_k_in_effect = shipped["top_k"] if shipped["top_k"] is not None else library["top_k"]
assert library["top_k"] == 50
if all(shipped[f] in (None, library[f]) for f in ("top_p", "min_p")):  # nothing else cuts the tail
    assert left["do_sample=True"] == top_k_in_effect and left["do_sample=True, top_k=0"] == story_logits.shape[-1]

# %% [markdown]
# Pure sampling needs `top_k=0`: every token keeps its chance. `num_return_sequences=3` draws
# three samples in one batched call.

# %%
lt.set_seed(1)
with torch.inference_mode():
    pure = model.generate(**STORY, max_new_tokens=N_NEW, do_sample=True, top_k=0, num_return_sequences=3)
pure_ids = generated(pure, len(STORY_IDS))
for i, ids in enumerate(pure_ids):
    print(f"[{i}] {tokenizer.decode(ids)!r}\n")


# %% [markdown]
# How different are they? We count the 3-grams two samples share (`lt.ngram_overlap`, the Jaccard
# overlap: shared distinct 3-grams / all distinct 3-grams of both), averaged over the pairs, and
# how long their common start is.

# %%
def mean_overlap(samples, n=3):
    pairs = [(a, b) for i, a in enumerate(samples) for b in samples[i + 1:]]
    return sum(lt.ngram_overlap(a, b, n) for a, b in pairs) / len(pairs)


def common_prefix(samples):
    length = 0
    while all(len(s) > length for s in samples) and len({s[length] for s in samples}) == 1:
        length += 1
    return length


pure_overlap = mean_overlap(pure_ids)
print("distinct 3-gram ratio of each sample:",
      ", ".join(lt.fmt(lt.distinct_ngram_ratio(s, 3), decimals=2, kind="exact") for s in pure_ids))
print(f"mean pairwise 3-gram overlap: {lt.fmt(pure_overlap, decimals=3, kind='exact')}; "
      f"common prefix: {common_prefix(pure_ids)} tokens")
assert len({tuple(s) for s in pure_ids}) == 3 and pure_overlap < 0.2

# %% [markdown]
# Why it can lose the thread: every draw has a chance of picking a token the model itself found
# unlikely, and everything after is conditioned on it. How big a chance? At each step, the total
# probability of the tokens below 1% is the chance that the draw lands among them; summed over a
# sample's steps, it is how many such picks to expect. One forward pass over the three samples
# gives every step's distribution, and the log-prob of each drawn token. Greedy's first tokens,
# scored the same way, for comparison. (The checks: no log-prob sits at the 1% line, and no two
# picks tie for the rarest.)

# %%
RARE = math.log(0.01)
greedy_lp = logprobs_of(STORY_IDS, greedy_ids[:N_NEW])
assert all(len(ids) == N_NEW for ids in pure_ids)  # no EOS: the rows of `pure` are exactly the samples
with torch.inference_mode():
    step_logprobs = torch.log_softmax(model(pure).logits[:, len(STORY_IDS) - 1:-1].float(), -1)  # [3, N_NEW, vocab]
pure_lps = list(step_logprobs.gather(-1, pure[:, len(STORY_IDS):, None])[..., 0])  # the drawn tokens
lt.check_threshold(step_logprobs, RARE, "the tokens below 1%", kind="logit")
rare_chance = step_logprobs.exp().masked_fill(step_logprobs >= RARE, 0).sum(-1)  # [3, N_NEW]: P(draw below 1%)
print(f"{'':<10} {'mean log-prob':>13}  {'picks below 1%: seen':>20}  {'expected':>8}  rarest pick")
for name, ids, lp, chance in [("greedy", greedy_ids[:N_NEW], greedy_lp, None)] + [
        (f"sample {i}", *row) for i, row in enumerate(zip(pure_ids, pure_lps, rare_chance, strict=True))]:
    lt.check_threshold(lp, RARE, f"the picks of {name} below 1%", kind="logit")
    lt.check_gap(lt.ranking_gap(-lp, 1), f"the rarest pick of {name}")
    worst = int(lp.argmin())
    expected = "-" if chance is None else lt.fmt(chance.sum(), 2, kind="prob")  # greedy draws nothing
    print(f"{name:<10} {lt.fmt(lp.mean(), decimals=2, kind='logit'):>13}  {int((lp < RARE).sum()):>20}  "
          f"{expected:>8}  {token_text(ids[worst])} p={prob_text(lp[worst].exp())}")
observed = sum(int((lp < RARE).sum()) for lp in pure_lps)
spread = math.sqrt((rare_chance * (1 - rare_chance)).sum().item())  # standard deviation of that count
print(f"chance per draw of a token below 1%: {lt.fmt(rare_chance.mean(), 2, kind='prob')} on average; "
      f"in all {rare_chance.numel()} draws {observed} such picks, {lt.fmt(rare_chance.sum(), 2, kind='prob')} "
      f"± {lt.fmt(spread, 1, kind='prob')} expected")
assert int((greedy_lp < RARE).sum()) == 0  # greedy never picked a token below 1% here
assert abs(observed - rare_chance.sum().item()) < 3 * spread  # the samples pick rare tokens as often as predicted
assert 0.2 < rare_chance.mean() < 0.3  # about one draw in four
assert all(lp.mean() < greedy_lp.mean() for lp in pure_lps)

# %% [markdown]
# About one draw in four lands on a token the model gave less than 1%, and the samples did pick
# them about as often as that predicts (within 3 standard deviations of a count of independent
# chances). Greedy never did. The rarest pick in a sample, in context (the token between `[[ ]]`):

# %%
wild = min(range(len(pure_ids)), key=lambda i: pure_lps[i].min().item())
at = int(pure_lps[wild].argmin())
ids = pure_ids[wild]
lt.check_gap(lt.ranking_gap(-torch.cat(pure_lps), 1), "the rarest pick of all samples")
print(tokenizer.decode(ids[:at]) + "[[" + tokenizer.decode(ids[at:at + 1]) + "]]" + tokenizer.decode(ids[at + 1:]))

# %% [markdown]
# ## 4. Temperature: reshape the distribution before drawing
# Seed 002 writes it as `softmax(logits / T)`. Dividing the logits by T < 1 widens the gaps
# between them (sharper distribution), T > 1 narrows them (flatter). Inline, then the package
# function, then transformers' `TemperatureLogitsWarper`: all three agree exactly.

# %%
UNSURE = encode("My favourite food is")
unsure_logits = next_logits(UNSURE)
for t in (0.5, 1.0, 1.7):
    inline = unsure_logits / t
    assert torch.equal(lt.apply_temperature(unsure_logits, t), inline)
    assert torch.equal(lt.apply_temperature(unsure_logits, t), TemperatureLogitsWarper(t)(None, unsure_logits))
print("next-token candidates after", repr(tokenizer.decode(UNSURE["input_ids"][0])))

# %%
temperatures = [0.5, 1.0, 1.5]
order = unsure_logits[0].argsort(descending=True)[:15]
fig, ax = plt.subplots(figsize=(9, 3.2))
width = 0.27
for j, t in enumerate(temperatures):
    probs_t = lt.apply_temperature(unsure_logits, t).softmax(-1)[0, order]
    ax.bar([x + (j - 1) * width for x in range(15)], probs_t.tolist(), width, label=f"T = {t}")
ax.set_xticks(range(15), [tokenizer.decode([i]) for i in order.tolist()], rotation=60)
ax.set_ylabel("probability")
ax.set_title("The same logits at three temperatures (15 most likely tokens)")
ax.legend()
plt.tight_layout()
plt.show()


# %% [markdown]
# The same in numbers: entropy (in [bits](glossary.md#nats-and-bits): how many yes/no questions
# the next token is worth),
# the top token's probability, and how many tokens it takes to cover 90% of the mass (the set
# that top-p = 0.9 keeps, section 5). Few digits: dividing by a small T also multiplies the tiny
# differences between CPUs.
#
# A count at a threshold needs care too: when a token's cumulative mass sits within a CPU's
# drift of the 90% line, another CPU counts one token more or fewer. `kept_by_top_p` counts
# twice, with the line moved by that drift either way, and `count_text` prints the count if both
# agree, else rounded to 2 significant digits with a `~` (the digits both counts share).

# %%
def entropy_bits(logits):
    return lt.entropy(logits)[0].item() / math.log(2)


def kept_by_top_p(logits, p):
    """How many tokens top-p keeps in each row (as transformers decides it: those whose tail
    mass, summed from the least likely token, is above 1 - p), counted with 1 - p moved up and
    down by what another CPU may change (``lt.RTOL_PROB``): (fewest, most)."""
    tail = logits.sort(dim=-1).values.softmax(-1).cumsum(-1)
    drift = lt.RTOL_PROB * (1 - p)
    return (tail > 1 - p + drift).sum(-1), (tail > 1 - p - drift).sum(-1)


def count_text(fewest, most):
    """A count that prints the same on any CPU: exact if both ends agree, else ~ 2 digits."""
    fewest, most = int(fewest), int(most)
    if fewest == most:
        return str(fewest)
    rounded = {round(n, 2 - len(str(n))) for n in (fewest, most)}  # 2 significant digits
    if len(rounded) > 1:
        raise lt.UnstableOutputError(f"a count between {fewest} and {most}: even 2 digits differ")
    return f"~{rounded.pop()}"


temp_grid = [0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0]
temp_table = []
print("    T  entropy (bits)  top-1 prob  tokens for 90%")
for t in temp_grid:
    scaled = lt.apply_temperature(unsure_logits, t)
    row = (t, entropy_bits(scaled), scaled.softmax(-1).max().item(), kept_by_top_p(scaled, 0.9))
    temp_table.append(row)
    assert row[3][0] <= int(lt.top_p_filter(scaled, 0.9).isfinite().sum()) <= row[3][1]
    print(f"{t:>5}  {lt.fmt(row[1], decimals=1):>14}  {lt.fmt(row[2], 2, kind='prob'):>10}  {count_text(*row[3]):>14}")
entropies = [row[1] for row in temp_table]
top1 = [row[2] for row in temp_table]
assert all(a < b for a, b in pairwise(entropies)), "entropy falls as T falls"
assert all(a > b for a, b in pairwise(top1)), "the top token gains as T falls"


# %% [markdown]
# **T → 0 is greedy.** Along greedy's own first 32 tokens we compute, for each temperature, the
# probability that a sampled continuation is exactly greedy's: the product over the steps of the
# tempered probability of greedy's token (one teacher-forced forward pass, no generation). The
# tiny ones get one digit: a product of 32 probabilities moves more between CPUs than one does.

# %%
with torch.inference_mode():
    path = torch.tensor([STORY_IDS + greedy_ids[:N_NEW]], device=model.device)
    path_logits = model(path).logits[0, len(STORY_IDS) - 1:-1].float()  # [N_NEW, vocab]: one row per step
greedy_targets = torch.tensor(greedy_ids[:N_NEW], device=model.device)
assert torch.equal(path_logits.argmax(-1), greedy_targets)  # greedy's token is the argmax at every step
print(f"    T  P(a sample of {N_NEW} tokens == greedy's)")
same_as_greedy = {}
for t in [0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5]:
    step_logprobs = torch.log_softmax(path_logits / t, -1).gather(1, greedy_targets[:, None])
    same_as_greedy[t] = math.exp(step_logprobs.sum().item())
    print(f"{t:>5}  {prob_text(same_as_greedy[t], digits=2 if same_as_greedy[t] >= 1e-3 else 1)}")
values = list(same_as_greedy.values())
assert all(a > b for a, b in pairwise(values))
assert same_as_greedy[0.01] > 0.9 and same_as_greedy[1.0] < 1e-6

# %% [markdown]
# Even at T = 0.05 a sample leaves greedy's path about one time in three. The reason is one
# near-tie: T multiplies logit gaps by 1/T, and a gap of a few hundredths stays small even at
# 1/T = 20.

# %%
top2 = path_logits.topk(2, dim=-1)
gaps = top2.values[:, 0] - top2.values[:, 1]
step = int(gaps.argmin())
runner_up = int(top2.indices[step, 1])
lt.check_gap(lt.ranking_gap(-gaps, 1), "the step with the smallest gap")
lt.check_gap(lt.ranking_gap(path_logits[step], 2), "the runner-up at that step")
print(f"step {step}: {tokenizer.decode(greedy_ids[step - 6:step])!r} -> {token_text(greedy_ids[step])} "
      f"beats {token_text(runner_up)} by {lt.fmt(gaps[step], decimals=2, kind='logit')} logits")
for t in (0.05, 0.02):
    pair = torch.softmax(top2.values[step] / t, -1)
    print(f"  T = {t}: p({token_text(runner_up)}) = {lt.fmt(pair[1], 1, kind='prob')} of the two")
assert gaps[step] < 0.1

# %% [markdown]
# And live: a sample at T = 0.01 reproduces greedy's text.

# %%
lt.set_seed(2)
with torch.inference_mode():
    cold = model.generate(**STORY, max_new_tokens=N_NEW, do_sample=True, temperature=0.01, top_k=0)
cold_ids = generated(cold, len(STORY_IDS))[0]
print(f"the sample at T=0.01 equals greedy's {N_NEW} tokens: {cold_ids == greedy_ids[:N_NEW]}")
assert cold_ids == greedy_ids[:N_NEW]

# %% [markdown]
# <a id="temperature-myth"></a>
# **The temperature myth: seed 000 has it backwards.** It says temperature "ranges over 1-0; the
# closer to 0, the more creative; the closer to 1, the more the answer follows the probabilities".
# The numbers of this run say the opposite:

# %%
cold_row, warm_row = temp_table[temp_grid.index(0.1)], temp_table[temp_grid.index(1.0)]
print(f"{'':<34}{'T = 0.1':>10}{'T = 1.0':>12}")
print(f"{'entropy of the next token (bits)':<34}{lt.fmt(cold_row[1], 2):>10}{lt.fmt(warm_row[1], 2):>12}")
print(f"{'probability of the top token':<34}{lt.fmt(cold_row[2], 2, kind='prob'):>10}"
      f"{lt.fmt(warm_row[2], 2, kind='prob'):>12}")
print(f"{f'P({N_NEW}-token sample == greedy)':<34}{prob_text(same_as_greedy[0.1]):>10}"
      f"{prob_text(same_as_greedy[1.0], digits=1):>12}")
assert cold_row[1] < warm_row[1] and cold_row[2] > warm_row[2] and same_as_greedy[0.1] > same_as_greedy[1.0]

# %% [markdown]
# Near 0 the top token takes almost all the mass and the text converges to greedy's, the least
# varied output there is. T = 1 is the model's own distribution, unchanged: that is the end that
# "follows the probabilities", and it is where samples differ most. Low T is the *least* creative
# setting. And the range is not 1-0: T = 1.5 or 2 are valid and flatten the distribution further
# (more surprising and, past a point, less coherent text; see the table above).
#
# **`temperature=0` is an error when sampling**: T = 0 would divide by zero; its limit is
# greedy, which you ask for with `do_sample=False`. transformers refuses it, and so does our
# function:

# %%
try:
    model.generate(**STORY, max_new_tokens=2, do_sample=True, temperature=0.0)
    hf_message = None
except ValueError as error:
    hf_message = str(error)
print(hf_message)
assert hf_message is not None and "strictly positive" in hf_message and "do_sample=False" in hf_message
try:
    lt.apply_temperature(unsure_logits, 0)
    our_message = None
except ValueError as error:
    our_message = str(error)
print(our_message)
assert our_message is not None and "do_sample=False" in our_message

# %% [markdown]
# A trap next to it: `temperature=2`, an `int`, is refused too, with a message that reads as if 2
# were not positive. transformers wants a `float` (the same for `repetition_penalty=2`); write
# `2.0`. Our functions take either.

# %%
int_errors = []
for kwargs in ({"do_sample": True, "temperature": 2}, {"repetition_penalty": 2}):
    try:
        model.generate(**STORY, max_new_tokens=1, **kwargs)
    except ValueError as error:
        int_errors.append(str(error))
        print(f"{kwargs}: {error}")
assert len(int_errors) == 2 and all("float" in e for e in int_errors)
assert torch.equal(lt.apply_temperature(unsure_logits, 2), lt.apply_temperature(unsure_logits, 2.0))

# %% [markdown]
# And `temperature` without `do_sample=True` does nothing at all: greedy ignores it, with a
# warning shown only once per process ([notebook 06](06_pitfalls.ipynb#temperature-ignored-warning)
# reproduces it).
#
# ## 5. Top-k and top-p: cut the long tail
# **Top-k** keeps the k most likely tokens. **Top-p** (nucleus) keeps the smallest set of most
# likely tokens whose mass reaches p. Both set the rest to `-inf`, so softmax gives them 0. Our
# functions equal the transformers warpers on the same logits.
#
# How many tokens top-p keeps is a count at a threshold: it would differ on another CPU if a
# cumulative mass sat right at it. `nucleus_margin` checks that none does, on the very numbers
# transformers compares (the tail masses against `1 - p`, see below), with `lt.check_threshold`.

# %%
def nucleus_margin(logits, p, what):
    """Distance of top-p's tail masses from 1 - p; raises (while recording or testing) if one is
    so close that another CPU could keep one token more or fewer."""
    tail = logits.sort(dim=-1).values.softmax(-1).cumsum(-1)
    return lt.check_threshold(tail, 1 - p, what)


kept_k = lt.top_k_filter(unsure_logits, 10)
kept_p = lt.top_p_filter(unsure_logits, 0.9)
assert torch.equal(kept_k, TopKLogitsWarper(10)(None, unsure_logits))
assert torch.equal(kept_p, TopPLogitsWarper(0.9)(None, unsure_logits))
nucleus_margin(unsure_logits, 0.9, "top-p 0.9 after 'My favourite food is'")
n_top_p = int(kept_p.isfinite().sum())
print("top-k=10 keeps", int(kept_k.isfinite().sum()), "tokens; top-p=0.9 keeps", n_top_p)

# %% [markdown]
# The whole vocabulary, most likely first, on log scales (a linear axis would squeeze the first
# ten tokens into a corner): each token's probability, coloured by the filter that keeps it, and
# the cumulative mass, which crosses 0.9 exactly where top-p cuts.

# %%
sorted_probs = unsure_logits.softmax(-1)[0].sort(descending=True).values
mass = sorted_probs.cumsum(-1)
assert mass[n_top_p - 1] >= 0.9 > mass[n_top_p - 2]  # top-p: the smallest set that reaches 0.9
vocab = sorted_probs.numel()
fig, ax = plt.subplots(figsize=(9, 3.6))
for first, last, color, label in [(1, 10, "tab:blue", "kept by top-k = 10 (and by top-p)"),
                                  (10, n_top_p, "tab:orange", "kept by top-p = 0.9 only"),
                                  (n_top_p, vocab, "silver", "removed by both")]:
    ranks = range(first, last + 1)  # neighbouring segments share a point, so the line is unbroken
    ax.plot(ranks, sorted_probs[first - 1:last].tolist(), color=color, linewidth=2.5, label=label)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_ylim(1e-9, 1)  # the last tokens' probabilities go further down, off the axis
ax.set_xlabel(f"rank of the token (1 = most likely; all {vocab} tokens)")
ax.set_ylabel("probability")
ax2 = ax.twinx()
ax2.plot(range(1, vocab + 1), mass.tolist(), color="black", linewidth=1, label="cumulative mass")
ax2.axhline(0.9, color="tab:orange", linestyle=":", linewidth=1)
ax2.plot([n_top_p], [mass[n_top_p - 1].item()], "o", color="tab:orange",
         label=f"mass reaches 0.9 at rank {n_top_p}")
ax2.set_ylim(0, 1.02)
ax2.set_ylabel("cumulative mass")
ax.set_title("Which tokens survive after 'My favourite food is'")
lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
fig.legend(lines, [line.get_label() for line in lines], loc="lower center", ncol=3, fontsize=8)
plt.tight_layout(rect=(0, 0.12, 1, 1))
plt.show()

# %% [markdown]
# The difference between the two: top-p's set **adapts** to the model's confidence, top-k's does
# not. On a confident step and an uncertain one:

# %%
SURE = encode("The capital of France is")
sure_logits = next_logits(SURE)
print(f"{'step':<28} top-1 prob  top-k=50 keeps  top-p=0.9 keeps")
for name, logits in [("The capital of France is", sure_logits), ("My favourite food is", unsure_logits)]:
    nucleus_margin(logits, 0.9, f"top-p 0.9 after {name!r}")
    print(f"{name:<28} {lt.fmt(logits.softmax(-1).max(), 2, kind='prob'):>10}  "
          f"{int(lt.top_k_filter(logits, 50).isfinite().sum()):>14}  {int(lt.top_p_filter(logits, 0.9).isfinite().sum()):>15}")
assert int(lt.top_p_filter(sure_logits, 0.9).isfinite().sum()) < 50 < n_top_p  # fewer, then more than top-k

# %% [markdown]
# Along greedy's 32 steps (the logits we already have), the nucleus size moves with every step:

# %%
nucleus_sizes = lt.top_p_filter(path_logits, 0.9).isfinite().sum(-1).tolist()
fewest, most = kept_by_top_p(path_logits, 0.9)  # a step's count may move by one on another CPU...
stats = [(min(sizes), sorted(sizes)[len(sizes) // 2], max(sizes)) for sizes in (fewest.tolist(), most.tolist())]
assert stats[0] == stats[1] and ((fewest <= torch.tensor(nucleus_sizes)) & (torch.tensor(nucleus_sizes) <= most)).all()
print("top-p=0.9 set size per step: min", stats[0][0], "median", stats[0][1], "max", stats[0][2])  # ...not these
fig, ax = plt.subplots(figsize=(9, 2.6))
ax.plot(nucleus_sizes, marker=".", label="top-p = 0.9")
ax.axhline(50, color="tab:red", linestyle="--", label="top-k = 50")
ax.set_yscale("log")
ax.set_xlabel("generation step (greedy's story)")
ax.set_ylabel("tokens kept")
ax.legend()
plt.tight_layout()
plt.show()
assert min(nucleus_sizes) == 1 and max(nucleus_sizes) > 50


# %% [markdown]
# <a id="top-p-draws"></a>
# ### Llama's top-p, in our own code
# Seed 002 shows how Llama 3's reference code samples: sort the probabilities descending,
# cumulative sum, zero what lies past p, renormalise, draw, map the drawn position back to a
# vocabulary id. Written out:

# %%
def llama_style_top_p(probs, p, generator, num_samples=1):
    ranked, vocab_ids = probs.sort(dim=-1, descending=True)  # most likely first
    mass_before = ranked.cumsum(-1) - ranked  # mass of the better tokens
    ranked = ranked.masked_fill(mass_before > p, 0.0)  # the set already reached p: drop
    ranked = ranked / ranked.sum(-1, keepdim=True)  # renormalise the survivors
    positions = torch.multinomial(ranked, num_samples, replacement=True, generator=generator)
    return vocab_ids.gather(-1, positions)  # sorted position -> vocabulary id


unsure_probs = unsure_logits.softmax(-1)
assert torch.equal(llama_style_top_p(unsure_probs, 0.9, torch.Generator().manual_seed(3)),
                   lt.sample_top_p(unsure_probs, 0.9, generator=torch.Generator().manual_seed(3)))

# %% [markdown]
# Next to the transformers way (filter the logits, softmax over the whole vocabulary in
# vocabulary order, draw): same surviving set, same distribution, but not the same draws for
# the same seed, because `torch.multinomial` walks a differently ordered vector. (That is why a
# hand loop must sample like `generate()` to reproduce its seeded output; notebook 04.)

# %%
draws = 200_000
ours = llama_style_top_p(unsure_probs, 0.9, torch.Generator().manual_seed(4), draws)[0]
theirs = torch.multinomial(TopPLogitsWarper(0.9)(None, unsure_logits).softmax(-1), draws, replacement=True,
                           generator=torch.Generator().manual_seed(4))[0]
nucleus = kept_p[0].isfinite()
target = kept_p.softmax(-1)[0]
freq_ours = torch.bincount(ours, minlength=nucleus.numel()) / draws
freq_theirs = torch.bincount(theirs, minlength=nucleus.numel()) / draws
tv_ours = 0.5 * (freq_ours - target).abs().sum().item()
tv_theirs = 0.5 * (freq_theirs - target).abs().sum().item()
print("first draws, Llama style: ", [tokenizer.decode([i]) for i in ours[:6].tolist()])
print("first draws, transformers:", [tokenizer.decode([i]) for i in theirs[:6].tolist()])
print(f"total variation from the nucleus distribution: Llama style {lt.fmt(tv_ours, 1)}, "
      f"transformers {lt.fmt(tv_theirs, 1)}")
assert nucleus[ours].all() and nucleus[theirs].all()  # every draw is inside the nucleus
assert not torch.equal(ours[:20], theirs[:20])  # same seed, different draws
assert tv_ours < 0.03 and tv_theirs < 0.03  # same distribution (sampling noise only)

# %% [markdown]
# ### The boundary: where float rounding decides
# Both rules mean "the smallest set reaching p", but they test the boundary differently.
# transformers sorts **ascending** and drops tokens whose tail mass is `<= 1 - p`; Llama drops a
# token when the mass before it is `> p`. On an exact tie, Llama's strict `>` keeps the token
# whose preceding mass equals p exactly: one more than "the smallest set reaching p". Here with
# probabilities that float32 holds exactly (equal logits: softmax gives 1/4 or 1/8, and every sum
# is exact), so every CPU computes the same table:

# %%
def boundary_counts(logits, p):
    """Tokens kept by top-p in the exact sense, by transformers, by lt.top_p_filter, by Llama."""
    probs = logits.softmax(-1).sort(descending=True).values
    exact = next(i for i in range(1, probs.shape[-1] + 1) if round(probs[0, :i].sum().item(), 9) >= p)
    hf = int(TopPLogitsWarper(p)(None, logits).isfinite().sum())
    mine = int(lt.top_p_filter(logits, p).isfinite().sum())
    llama = int(((probs.cumsum(-1) - probs) <= p).sum())
    return exact, hf, mine, llama


print(f"{'probabilities':<22} {'p':>4}  exact  transformers  lt.top_p_filter  Llama")
for n, p in [(4, 0.5), (4, 0.75), (2, 0.5), (8, 0.3)]:
    exact, hf, mine, llama = boundary_counts(torch.zeros(1, n), p)  # n equal logits: 1/n each
    print(f"{f'{n} x 1/{n}':<22} {p:>4}  {exact:>5}  {hf:>12}  {mine:>15}  {llama:>5}")
    on_tie = (p * n).is_integer()  # the first tokens' mass is exactly p
    assert mine == hf == exact and llama == exact + on_tie  # Llama keeps one more on an exact tie

# %% [markdown]
# With probabilities float32 cannot hold (0.3, 0.2…), softmax's rounding decides instead, and
# it is not the same on every CPU: the exponential is computed by different code with and without
# SIMD instructions. Our `top_p_filter` repeats transformers' operations in the same order
# (ascending sort, softmax, cumsum, compare with `1 - p`), so the two always agree with each
# other, on any CPU; the unit tests check these cases and random and real logits against
# `TopPLogitsWarper`. Llama's count moves with the rounding:

# %%
# NBVAL_IGNORE_OUTPUT
# float32 rounding at exact ties decides these counts, and softmax rounds differently without SIMD
boundary_cases = [((0.5, 0.3, 0.2), 0.5), ((0.5, 0.3, 0.2), 0.8), ((0.4, 0.3, 0.2, 0.1), 0.4),
                  ((0.3, 0.3, 0.2, 0.2), 0.3), ((0.3, 0.3, 0.2, 0.2), 0.6)]
print(f"{'probabilities':<22} {'p':>4}  exact  transformers  lt.top_p_filter  Llama")
for probs, p in boundary_cases:
    exact, hf, mine, llama = boundary_counts(torch.tensor([probs]).log(), p)
    print(f"{str(probs):<22} {p:>4}  {exact:>5}  {hf:>12}  {mine:>15}  {llama:>5}")
    assert mine == hf and abs(hf - exact) <= 1 and abs(llama - exact) <= 1
tail = torch.tensor([[0.3, 0.3, 0.2, 0.2]]).log().sort().values.softmax(-1).cumsum(-1)[0, 2].item()
print(f"(0.3, 0.3, 0.2, 0.2) at p=0.3: float32 tail mass 0.2+0.2+0.3 = {tail:.8f} (here) against 1 - 0.3")


# %% [markdown]
# ## 6. min-p: a cut relative to the top token
# min-p keeps the tokens whose probability is at least `min_p` times the top token's. Like top-p
# it adapts: a confident step keeps few tokens, an uncertain one many. (`min_p_margin` checks
# that no probability ratio sits at the cut.)

# %%
def min_p_margin(logits, min_p, what):
    """Distance of the ratios p / p_top from min_p; raises (while recording or testing) if one is
    so close that another CPU could keep one token more or fewer."""
    probs = logits.softmax(-1)
    return lt.check_threshold(probs / probs.amax(-1, keepdim=True), min_p, what)


for logits in (sure_logits, unsure_logits):
    probs = logits.softmax(-1)
    inline = logits.masked_fill(probs < 0.1 * probs.max(), float("-inf"))
    assert torch.equal(lt.min_p_filter(logits, 0.1), inline)
    assert torch.equal(lt.min_p_filter(logits, 0.1), MinPLogitsWarper(0.1)(None, logits))
print(f"{'min_p':>5}  {'The capital of France is':>24}  {'My favourite food is':>20}")
for m in (0.02, 0.05, 0.1, 0.2):
    min_p_margin(torch.cat([sure_logits, unsure_logits]), m, f"min-p {m}")
    print(f"{m:>5}  {int(lt.min_p_filter(sure_logits, m).isfinite().sum()):>24}  "
          f"{int(lt.min_p_filter(unsure_logits, m).isfinite().sum()):>20}")
assert int(lt.min_p_filter(sure_logits, 0.1).isfinite().sum()) < int(lt.min_p_filter(unsure_logits, 0.1).isfinite().sum())

# %% [markdown]
# ## 7. Repetition penalty
# Every token that already occurs in the sequence (prompt included) gets its logit divided by the
# penalty if positive, multiplied if negative: either way it becomes less likely. Inline, package,
# transformers, on greedy's last step of the long story (by then it repeats whole sentences):

# %%
def penalise(logits, seen_ids, penalty):
    out = logits.clone()
    for t in set(seen_ids):
        out[0, t] = out[0, t] / penalty if out[0, t] > 0 else out[0, t] * penalty
    return out


with torch.inference_mode():
    loop_logits = model(greedy_long).logits[:, -1, :].float()
inline = penalise(loop_logits, greedy_long[0].tolist(), 1.3)
assert torch.equal(lt.apply_repetition_penalty(loop_logits, greedy_long, 1.3), inline)
assert torch.equal(inline, RepetitionPenaltyLogitsProcessor(1.3)(greedy_long, loop_logits.clone()))
before, after = loop_logits.softmax(-1)[0], inline.softmax(-1)[0]
best = int(loop_logits.argmax())
lt.check_gap(float(lt.top2_gap(loop_logits)), "greedy's next token")
print(f"greedy's next token {token_text(best)}: p = {lt.fmt(before[best], 2, kind='prob')} -> "
      f"{lt.fmt(after[best], 2, kind='prob')} with penalty 1.3")

# %% [markdown]
# Live, on our story (greedy plus penalty 1.3, 32 tokens): the text takes another turn at the
# first repeated word, and even the few 3-grams greedy repeats this early disappear.

# %%
with torch.inference_mode():
    penalised_out = model.generate(**STORY, max_new_tokens=N_NEW, do_sample=False, repetition_penalty=1.3, **SCORES)
closest_call(penalised_out, "the text with penalty 1.3")  # the scores after the penalty
penalised_ids = generated(penalised_out.sequences, len(STORY_IDS))[0]
print(tokenizer.decode(penalised_ids))
print("distinct 3-gram ratio: greedy", lt.fmt(lt.distinct_ngram_ratio(greedy_ids[:N_NEW], 3), decimals=3, kind="exact"),
      "| penalty 1.3:", lt.fmt(lt.distinct_ngram_ratio(penalised_ids, 3), decimals=3, kind="exact"))
assert lt.distinct_ngram_ratio(penalised_ids, 3) > lt.distinct_ngram_ratio(greedy_ids[:N_NEW], 3)
split = common_prefix([greedy_ids[:N_NEW], penalised_ids])
print(f"they part at new token {split}: greedy's {token_text(greedy_ids[split])} already occurred before it, "
      f"the penalty picks {token_text(penalised_ids[split])}")
assert greedy_ids[split] in STORY_IDS + greedy_ids[:split]

# %% [markdown]
# <a id="repetition-penalty-eos"></a>
# **Too much of it: the penalty pushes down EOS.** The penalty does not know which tokens matter.
# A prompt built with the [chat template](glossary.md#chat-template) contains the end-of-turn token
# ([EOS](glossary.md#eos), `tokenizer.eos_token`: `<|im_end|>` here) after the system and user
# turns, and that is the token the model must produce to stop. A strong penalty pushes it down, and
# the model never stops:

# %%
QUESTION = lt.chat_inputs(tokenizer, "What is the capital of France? Answer with one word.", device=model.device)
q_len = QUESTION["input_ids"].shape[1]
print("end-of-turn tokens in the prompt:", int((QUESTION["input_ids"] == EOS).sum()))
answers = {}
for penalty in (1.0, 2.0):
    with torch.inference_mode():
        out = model.generate(**QUESTION, max_new_tokens=16, do_sample=False, repetition_penalty=penalty, **SCORES)
    closest_call(out, f"the answer with penalty {penalty}")
    new = out.sequences[0, q_len:].tolist()
    answers[penalty] = new
    print(f"penalty {penalty}: {len(new)} tokens, stopped by EOS: {EOS in new}\n  {tokenizer.decode(new)!r}")
assert EOS in answers[1.0] and len(answers[1.0]) < 10
assert EOS not in answers[2.0] and len(answers[2.0]) == 16

# %% [markdown]
# At the step where the normal answer ends, the rank of `<|im_end|>` before and after the penalty
# (the check: no other logit sits within a CPU's drift of its logit, which would move the rank):

# %%
stop_at = answers[1.0].index(EOS)
context = QUESTION["input_ids"][:, :q_len]
context = torch.cat([context, torch.tensor([answers[1.0][:stop_at]], device=model.device)], dim=1)
with torch.inference_mode():
    stop_logits = model(context).logits[:, -1, :].float()
stop_penalised = lt.apply_repetition_penalty(stop_logits, context, 2.0)
for logits in (stop_logits, stop_penalised):
    others = torch.cat([logits[0, :EOS], logits[0, EOS + 1:]])
    lt.check_threshold(others, logits[0, EOS], f"the rank of {tokenizer.eos_token}", kind="logit")
rank_before = int((stop_logits[0] > stop_logits[0, EOS]).sum())
rank_after = int((stop_penalised[0] > stop_penalised[0, EOS]).sum())
print(f"rank of {tokenizer.eos_token}: {rank_before} without penalty, {rank_after} with penalty 2.0")
assert rank_before == 0 and rank_after > 100

# %% [markdown]
# A fix: penalise only the generated tokens. `RepetitionPenaltyLogitsProcessor` has a
# `prompt_ignore_length` for that; we pass it to `generate` ourselves (section 10 explains
# `logits_processor=`):

# %%
only_new = RepetitionPenaltyLogitsProcessor(2.0, prompt_ignore_length=q_len)
with torch.inference_mode():
    out = model.generate(**QUESTION, max_new_tokens=16, do_sample=False, logits_processor=LogitsProcessorList([only_new]),
                         **SCORES)
closest_call(out, "the answer with the penalty on new tokens only")
print(repr(tokenizer.decode(out.sequences[0, q_len:])))
assert EOS in out.sequences[0, q_len:].tolist()


# %% [markdown]
# ## 8. The order of operations matters
# With `do_sample=True`, `generate()` applies: repetition penalty, temperature, top-k, top-p,
# min-p (then softmax over the whole vocabulary and one `torch.multinomial` draw; your own
# processors, if any, go between the penalty and temperature: section 10). Which pairs could be
# swapped without changing anything? We compare the final probabilities both ways (the filters
# check their margins first: the counts of kept tokens are printed).

# %%
def top_k_checked(z, k):
    last, first_out = z.topk(k + 1).values[0, k - 1:]
    if first_out.isfinite():  # a token that could take the last place
        lt.check_gap(float(last - first_out), f"top-k {k}'s last place")
    return lt.top_k_filter(z, k)


def top_p_checked(z, p):
    nucleus_margin(z, p, f"top-p {p} in the table")
    return lt.top_p_filter(z, p)


def min_p_checked(z, m):
    min_p_margin(z, m, f"min-p {m} in the table")
    return lt.min_p_filter(z, m)


steps = {
    "penalty 1.3": lambda z: lt.apply_repetition_penalty(z, UNSURE["input_ids"], 1.3),
    "temperature 0.7": lambda z: lt.apply_temperature(z, 0.7),
    "top-k 40": lambda z: top_k_checked(z, 40),
    "top-p 0.9": lambda z: top_p_checked(z, 0.9),
    "min-p 0.05": lambda z: min_p_checked(z, 0.05),
}
names = list(steps)
commutes = {}
print(f"{'first':>15}      {'second':<12} {'result':<16} tokens kept (this order vs swapped)")
for i, a in enumerate(names):
    for b in names[i + 1:]:
        ab = steps[b](steps[a](unsure_logits)).softmax(-1)
        ba = steps[a](steps[b](unsure_logits)).softmax(-1)
        commutes[a, b] = torch.allclose(ab, ba, atol=1e-6)
        print(f"{a:>15} then {b:<12} {'same as swapped' if commutes[a, b] else 'DIFFERENT':<16} "
              f"{int((ab > 0).sum())} vs {int((ba > 0).sum())}")
# temperature scales every logit by the same positive factor: it commutes with the penalty's
# per-token scaling and keeps the ranking top-k uses
assert commutes["penalty 1.3", "temperature 0.7"] and commutes["temperature 0.7", "top-k 40"]
assert not commutes["temperature 0.7", "top-p 0.9"] and not commutes["top-k 40", "top-p 0.9"]
t_then_p = lt.top_p_filter(lt.apply_temperature(unsure_logits, 0.7), 0.9)
p_then_t = lt.apply_temperature(lt.top_p_filter(unsure_logits, 0.9), 0.7)
assert int(t_then_p.isfinite().sum()) < int(p_then_t.isfinite().sum())

# %% [markdown]
# Temperature and top-p do not commute: at T = 0.7 the sharpened distribution reaches 0.9 with
# far fewer tokens. Live, with the same seed (and T = 1.5): our hand loop from notebook 04
# (`lt.generate`, which calls the functions of this notebook in `generate()`'s order) reproduces
# `generate()` token for token, and swapping the order through `logits_processor` gives another
# text.

# %%
order_kw = dict(max_new_tokens=8, do_sample=True, top_k=0)
lt.set_seed(5)
with torch.inference_mode():
    hf_order = model.generate(**STORY, temperature=1.5, top_p=0.9, **order_kw)
lt.set_seed(5)
hand_order = lt.generate(model, STORY["input_ids"], STORY["attention_mask"], temperature=1.5, top_p=0.9,
                         eos_token_id=EOS, **order_kw)
swapped = LogitsProcessorList([TopPLogitsWarper(0.9), TemperatureLogitsWarper(1.5)])
lt.set_seed(5)
with torch.inference_mode():
    other_order = model.generate(**STORY, logits_processor=swapped, **order_kw)
print("generate, temperature then top-p:", repr(tokenizer.decode(hf_order[0, len(STORY_IDS):])))
print("lt.generate, same order:         ", repr(tokenizer.decode(hand_order[0, len(STORY_IDS):])))
print("generate, top-p then temperature:", repr(tokenizer.decode(other_order[0, len(STORY_IDS):])))
assert torch.equal(hand_order, hf_order)
assert not torch.equal(other_order, hf_order)


# %% [markdown]
# ## 9. Beam search
# Greedy commits to the best token at each step; beam search keeps the `num_beams` best partial
# sequences (by total log-probability) and extends all of them, so a token that looks worse now
# can win later. It looks for a *more likely* text, not a more varied one.
#
# Its closest call is not a top-1/top-2 gap: at each step it ranks every continuation of every
# beam (the beam's total log-prob plus the new token's), keeps the `num_beams` best and drops the
# rest. `beam_closest_call` replays that ranking from the logits `generate()` returns
# (`output_logits=True`) and checks the gap between the last kept candidate and the first dropped
# one, and between the returned beams. A total log-prob adds up one small CPU difference per
# token, so the gap must clear the log-prob tolerance `lt.ATOL_LOGIT` once per step.

# %%
def beam_closest_call(output, num_beams, what):
    """The smallest gap between kept and dropped candidates at every step of a beam search in
    which no beam ended (no EOS among the candidates that count), checked by ``lt.check_gap``."""
    running = torch.full((num_beams,), -1e9)
    running[0] = 0.0  # generate() starts with one live beam
    gap = math.inf
    for logits in output.logits:
        candidates = (torch.log_softmax(logits.float(), -1) + running[:, None]).flatten()
        top = candidates.topk(num_beams + 1)
        assert not (top.indices % logits.shape[-1] == EOS).any(), "a beam ends with EOS here"
        gap = min(gap, float(top.values[num_beams - 1] - top.values[num_beams]))
        running = top.values[:num_beams]
    steps = len(output.logits)
    assert torch.allclose(running / steps, output.sequences_scores, atol=1e-4)  # the replay matches
    gap = min(gap, lt.ranking_gap(candidates, num_beams))  # the order of the returned beams
    return lt.check_gap(gap, what, tolerance=steps * lt.ATOL_LOGIT)


with torch.inference_mode():
    beam_out = model.generate(**STORY, max_new_tokens=N_NEW, do_sample=False, num_beams=5, num_return_sequences=5,
                              return_dict_in_generate=True, output_scores=True, output_logits=True)
beam_closest_call(beam_out, 5, "the 5 beams")
beam_ids = generated(beam_out.sequences, len(STORY_IDS))
greedy_total = greedy_lp.sum().item()
assert all(len(ids) == N_NEW for ids in beam_ids)  # no EOS: same length as greedy, totals comparable
beam_totals = lt.token_logprobs(model, beam_out.sequences)[:, len(STORY_IDS) - 1:].sum(-1).tolist()  # one pass
print(f"greedy   total log-prob {lt.fmt(greedy_total, 3):>6}  {tokenizer.decode(greedy_ids[:N_NEW])[:90]!r}")
for i, (ids, total) in enumerate(zip(beam_ids, beam_totals, strict=True)):
    print(f"beam {i}   total log-prob {lt.fmt(total, 3):>6}  {tokenizer.decode(ids)[:90]!r}")
assert beam_totals[0] >= greedy_total

# %% [markdown]
# Beam search is not guaranteed to find the most likely text (only `num_beams` candidates survive
# each step), but here it beats greedy by the margin printed. What it does to diversity: the five
# returned beams are near-copies of each other, unlike the three samples of section 3.

# %%
beam_overlap = mean_overlap(beam_ids)
print(f"{'':<16}common prefix  mean 3-gram overlap")
print(f"{'5 beams':<16}{common_prefix(beam_ids):>13}  {lt.fmt(beam_overlap, decimals=3, kind='exact'):>19}")
print(f"{'3 pure samples':<16}{common_prefix(pure_ids):>13}  {lt.fmt(pure_overlap, decimals=3, kind='exact'):>19}")
assert common_prefix(beam_ids) > common_prefix(pure_ids) and beam_overlap > 2 * pure_overlap

# %% [markdown]
# `length_penalty` matters when hypotheses end at different lengths (an EOS): a finished beam is
# ranked by `total log-prob / length ** length_penalty`, where length counts the new tokens, EOS
# included (not the prompt). Log-probs are negative, so 0 ranks by the plain total (short answers
# win) and larger values favour longer ones. On a chat question, the `sequences_scores` that
# `generate()` returns follow this formula (default `length_penalty=1.0`), and re-ranking the same
# four finished answers with other values moves the winner:

# %%
# NBVAL_IGNORE_OUTPUT
# beams that end at different steps (EOS) are not covered by beam_closest_call: a near-tie could keep others
DESCRIBE = lt.chat_inputs(tokenizer, "Describe the sea in one sentence.", device=model.device)
d_len = DESCRIBE["input_ids"].shape[1]


def sea_beams(length_penalty):
    """(total log-prob, length, ended by EOS, text) of the 4 answers generate() returns, best first."""
    with torch.inference_mode():
        out = model.generate(**DESCRIBE, max_new_tokens=32, do_sample=False, num_beams=4, num_return_sequences=4,
                             length_penalty=length_penalty, return_dict_in_generate=True, output_scores=True)
    scored = lt.token_logprobs(model, out.sequences)[:, d_len - 1:]  # one pass; pads after an EOS not counted
    beams = []
    for row, lp, score in zip(out.sequences[:, d_len:].tolist(), scored, out.sequences_scores.tolist(), strict=True):
        length = row.index(EOS) + 1 if EOS in row else len(row)
        total = lp[:length].sum().item()
        assert abs(total / length ** length_penalty - score) < 1e-3  # the formula, as generate() applies it
        beams.append((total, length, EOS in row, tokenizer.decode(row[:length], skip_special_tokens=True)))
    return beams


finished = {1.0: sea_beams(1.0)}
print("tokens  lp=0 (total)   lp=1.0   lp=2.0")
for total, length, _, text in finished[1.0]:
    print(f"{length:>6} {total:13.2f} {total / length:8.3f} {total / length ** 2:8.4f}  {text!r}")
reranked = {lp: max(finished[1.0], key=lambda f, lp=lp: f[0] / f[1] ** lp)[1] for lp in (0.0, 1.0, 2.0)}
print("length of the winner, re-ranked:", reranked)
assert reranked[0.0] == min(f[1] for f in finished[1.0]) and reranked[2.0] == max(f[1] for f in finished[1.0])

# %% [markdown]
# Re-ranking after the fact is not what `generate(length_penalty=2.0)` does. The value acts during
# the search: `generate()` keeps only the `num_beams` best *finished* beams by this score as they
# come in, and decides by it when to stop looking for better ones. Run with 2.0, the same question
# gives other answers, not just another order: its winner is one the default search never returned.

# %%
# NBVAL_IGNORE_OUTPUT
# the same reason: which beams finish, and when the search stops, can hinge on near-ties
finished[2.0] = sea_beams(2.0)
for total, length, ended, text in finished[2.0]:
    print(f"{length:>3} tokens, {'ended by EOS' if ended else 'cut at max_new_tokens':<21} total {total:7.2f}  "
          f"score {total / length ** 2:8.4f}  {text[-50:]!r}")
in_common = len({f[3] for f in finished[2.0]} & {f[3] for f in finished[1.0]})
print(f"answers in common with the default run: {in_common} of 4; winner's length {finished[2.0][0][1]} "
      f"(re-ranking predicted {reranked[2.0]})")
assert finished[2.0][0][1] >= reranked[2.0] > finished[1.0][0][1]  # the search went on to longer answers
assert finished[2.0][0][3] not in {f[3] for f in finished[1.0]}  # a winner the default run did not return

# %% [markdown]
# **`num_return_sequences` with sampling** draws that many independent samples in one call (we did
# it in section 3); with beams it returns the best finished beams, which share most of their text.
#
# ## 10. Your own logits processor
# `generate(logits_processor=[...])` accepts any `LogitsProcessor`: an object called as
# `(input_ids, scores) -> scores` at every step. Where does it run? A processor that only records
# what it receives answers that, with `output_scores=True` giving what comes out at the end:

# %%
class Recorder(LogitsProcessor):
    def __init__(self):
        self.seen = []

    def __call__(self, input_ids, scores):
        self.seen.append(scores.clone())
        return scores


recorder = Recorder()
lt.set_seed(0)
with torch.inference_mode():
    probe = model.generate(**STORY, max_new_tokens=1, do_sample=True, temperature=0.5, repetition_penalty=1.3,
                           logits_processor=[recorder], output_scores=True, return_dict_in_generate=True)
seen, final = recorder.seen[0], probe.scores[0]
penalised_raw = lt.apply_repetition_penalty(story_logits, STORY["input_ids"], 1.3)
lt.check_gap(float(seen.topk(51).values[0, 49] - seen.topk(51).values[0, 50]), "top_k=50's last place")
print("finite logits our processor receives:", int(seen.isfinite().sum()), "| after generate's warpers:",
      int(final.isfinite().sum()))
assert torch.allclose(seen, penalised_raw, atol=1e-4)  # it receives the logits after the penalty...
assert torch.equal(final, lt.top_k_filter(lt.apply_temperature(seen, 0.5), 50))  # ...before temperature, top_k=50

# %% [markdown]
# So the order is: repetition penalty (and the other built-in processors), **then your
# processors**, then the sampling warpers (temperature, top-k, top-p, min-p). The 50 finite logits
# at the end are the implicit `top_k=50` of [section 3](#implicit-top-k).

# %% [markdown]
# ### A Mirostat-style sampler
# Seed 002 mentions Mirostat: instead of a fixed k or p, it aims at a target **surprise** τ (in
# bits, `-log2 p` of the chosen token). Each step it keeps only the tokens whose surprise is below a
# threshold μ, and after each draw it moves μ by `eta * (target - observed surprise)`: surprised
# too much, cut harder next time. (Mirostat 2.0's rule; we measure the observed surprise under the
# plain distribution.) A processor only sees the token chosen at the previous step when it is called
# again, so the update happens at the start of the next call. τ can differ per row. We pass
# `top_k=0` so that no built-in warper cuts after ours.

# %%
class MirostatStyle(LogitsProcessor):
    def __init__(self, target_bits, eta=0.5):
        self.target = torch.as_tensor(target_bits, dtype=torch.float32)
        self.eta = eta
        self.mu = 2 * self.target  # start loose: twice the target
        self.previous = None  # last step's log-probs, to score the token that was drawn
        self.kept = []

    def __call__(self, input_ids, scores):
        if self.previous is not None:
            chosen = input_ids[:, -1:]
            surprise = -self.previous.gather(1, chosen).squeeze(1) / math.log(2)
            self.mu = self.mu - self.eta * (surprise - self.target)
        logprobs = torch.log_softmax(scores.float(), dim=-1)
        self.previous = logprobs
        remove = -logprobs / math.log(2) > self.mu[:, None]
        remove[torch.arange(scores.shape[0]), scores.argmax(-1)] = False  # always keep the top token
        self.kept.append((~remove).sum(-1))
        return scores.masked_fill(remove, float("-inf"))


targets = [2.0, 3.0, 4.0]
mirostat = MirostatStyle(targets)
rows = {key: value.repeat(len(targets), 1) for key, value in STORY.items()}
lt.set_seed(6)
with torch.inference_mode():
    miro = model.generate(**rows, max_new_tokens=N_NEW, do_sample=True, top_k=0,
                          logits_processor=LogitsProcessorList([mirostat]))
miro_ids = generated(miro, len(STORY_IDS))
measured = []
print(" target  measured surprise  text")
for target, ids in zip(targets, miro_ids, strict=True):
    measured.append(-logprobs_of(STORY_IDS, ids).mean().item() / math.log(2))
    print(f"{target:>7} {lt.fmt(measured[-1], decimals=2, kind='logit'):>18}  {tokenizer.decode(ids)[:60]!r}")
assert measured[0] < measured[1] < measured[2]
assert all(abs(m - t) < 0.5 for m, t in zip(measured, targets, strict=True))

# %% [markdown]
# How many tokens the cut kept, per row (the median over the steps):

# %%
# NBVAL_IGNORE_OUTPUT
# a token's surprise can sit within a CPU's drift of the cut μ (which sums that drift over the steps): ±1 token
kept_per_row = [int(kept) for kept in torch.stack(mirostat.kept, 1).median(-1).values.tolist()]
print("median tokens kept per step, targets", targets, ":", kept_per_row)
assert kept_per_row[0] < kept_per_row[1] < kept_per_row[2]  # a higher target, a looser cut


# %% [markdown]
# The measured surprise (mean `-log2 p` of the text, recomputed by teacher forcing outside the
# processor) follows the target: one knob for "how surprising", whatever the step's shape.
#
# ## 11. Explore it yourself
# Sliders for temperature, top-k, top-p and min-p over the real next-token distribution after
# "My favourite food is", applied in `generate()`'s order by `lt.process_logits`. The widget needs
# a live kernel; below it is the same view rendered as text for a few settings (what the sliders
# show).

# %%
def explorer_text(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, logits=unsure_logits, rows=8):
    settings = dict(temperature=temperature, top_k=top_k)
    if top_p < 1:  # the margins of the counts printed (they raise only while recording or testing)
        nucleus_margin(lt.process_logits(logits, **settings), top_p, "the explorer's top-p")
    if min_p > 0:
        min_p_margin(lt.process_logits(logits, **settings, top_p=top_p), min_p, "the explorer's min-p")
    processed = lt.process_logits(logits, **settings, top_p=top_p, min_p=min_p if min_p > 0 else None)
    probs = processed.softmax(-1)[0]
    kept = int(processed.isfinite().sum())
    lt.check_gap(lt.ranking_gap(processed[0], min(rows, kept)), "the explorer's ranking")
    lines = [f"T={temperature} top_k={top_k} top_p={top_p} min_p={min_p}: {kept} tokens kept, "
             f"entropy {lt.fmt(lt.entropy(processed)[0] / math.log(2), 3)} bits"]
    values, ids = probs.topk(min(rows, kept))  # only tokens that survived
    for v, i in zip(values.tolist(), ids.tolist(), strict=True):
        bar = "#" * int(lt.fmt(40 * v, decimals=0, kind="prob"))  # 40 * p, rounded: one # per 2.5%
        lines.append(f"  {token_text(i):<14} {lt.fmt(v, 2, kind='prob'):>6} {bar}")
    return "\n".join(lines)


for setting in [dict(), dict(temperature=0.5), dict(temperature=0.7, top_p=0.9), dict(top_k=3), dict(min_p=0.2)]:
    print(explorer_text(**setting), end="\n\n")

# %%
import ipywidgets as widgets

sliders = {
    "temperature": widgets.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.05, description="temperature"),
    "top_k": widgets.IntSlider(value=0, min=0, max=100, description="top_k (0=off)"),
    "top_p": widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top_p"),
    "min_p": widgets.FloatSlider(value=0.0, min=0.0, max=0.5, step=0.01, description="min_p"),
}
view = widgets.HTML(value="<pre>" + explorer_text() + "</pre>")


def refresh(_change=None):
    view.value = "<pre>" + explorer_text(**{name: s.value for name, s in sliders.items()}) + "</pre>"


for slider in sliders.values():
    slider.observe(refresh, names="value")
explorer = widgets.VBox([*sliders.values(), view])
explorer

# %% [markdown]
# Moving a slider re-renders the view (checked here by setting a value from code, then back):

# %%
sliders["top_k"].value = 3
assert view.value == "<pre>" + explorer_text(top_k=3) + "</pre>" and "3 tokens kept" in view.value
sliders["top_k"].value = 0
assert view.value == "<pre>" + explorer_text() + "</pre>"


# %% [markdown]
# ## 12. All strategies side by side
# The same prompt, 32 new tokens each. Greedy, beam search and the penalty are deterministic: one
# text each, from sections 2, 9 and 7. A sampled text is one draw, and a ranking built on one draw
# per strategy would rank luck, so every sampling strategy gets 4 samples. All of them are drawn in
# one batched call: a processor (section 10) applies each block of rows its own settings with the
# functions of sections 4-6 (equal to transformers' warpers, checked there), and the
# Mirostat-style rows get their own sampler. With `output_logits=True`, `generate()` also returns
# the model's logits *before* any processor: the plain model's log-prob of every drawn token, with
# no extra pass.
#
# One row uses the values that Llama's reference `generate()` defaults to: seed 004 quotes its
# signature, `temperature: float = 0.6, top_p: float = 0.9`. A model in transformers carries its
# own in `generation_config` (section 3 prints the embedded model's: it sets none, so
# `generate()` falls back to greedy unless told to sample).
#
# Distinct n-gram ratios: higher = less repetition. Mean log-prob: the plain model's average
# log-probability of the generated tokens (higher = more "expected" text); for the sampled rows,
# the average over the 4 samples, with the lowest and highest sample.

# %%
class PerRow(LogitsProcessor):
    """Each block of rows gets its own processing: lt.process_logits settings, or a processor."""

    def __init__(self, blocks):
        self.blocks = blocks  # [(rows, settings dict or LogitsProcessor)]

    def __call__(self, input_ids, scores):
        out = scores.clone()
        for rows, how in self.blocks:
            out[rows] = lt.process_logits(scores[rows], **how) if isinstance(how, dict) else how(input_ids[rows], scores[rows])
        return out


SAMPLES = 4
sampling = {
    "pure sampling (top_k=0)": {},
    "Llama's defaults: T 0.6, top-p 0.9": dict(temperature=0.6, top_p=0.9),
    "top-k 50 (do_sample default)": dict(top_k=50),
    "top-p 0.9": dict(top_p=0.9),
    "min-p 0.1": dict(min_p=0.1),
    "Mirostat-style, 3 bits": MirostatStyle([3.0] * SAMPLES),
}
blocks = [(slice(i * SAMPLES, (i + 1) * SAMPLES), how) for i, how in enumerate(sampling.values())]
batch = {key: value.repeat(len(sampling) * SAMPLES, 1) for key, value in STORY.items()}
lt.set_seed(7)
with torch.inference_mode():
    drawn = model.generate(**batch, max_new_tokens=N_NEW, do_sample=True, top_k=0, output_logits=True,
                           return_dict_in_generate=True, logits_processor=LogitsProcessorList([PerRow(blocks)]))
new_tokens = drawn.sequences[:, len(STORY_IDS):]
plain_lp = torch.log_softmax(torch.stack(drawn.logits, 1).float(), -1).gather(-1, new_tokens[..., None])[..., 0]
assert torch.allclose(plain_lp[0], logprobs_of(STORY_IDS, new_tokens[0].tolist()), atol=1e-4)  # = teacher forcing
ended = (new_tokens == EOS).long()
counted = (ended.cumsum(-1) - ended) == 0  # every new token up to the first EOS, included
drawn_ids = generated(drawn.sequences, len(STORY_IDS))
drawn_means = ((plain_lp * counted).sum(-1) / counted.sum(-1)).tolist()

results = {"greedy": [(greedy_ids[:N_NEW], greedy_lp.mean().item())],
           "beam search, 5 beams": [(beam_ids[0], beam_totals[0] / N_NEW)],
           "greedy + repetition penalty 1.3": [(penalised_ids, logprobs_of(STORY_IDS, penalised_ids).mean().item())]}
for i, name in enumerate(sampling):
    results[name] = [(drawn_ids[r], drawn_means[r]) for r in range(i * SAMPLES, (i + 1) * SAMPLES)]
summary = {}  # name: (distinct-3, mean log-prob, its standard error)
print(f"{'strategy':<35} {'distinct-2':>10} {'distinct-3':>10}  {'mean log-prob':>13} {'± 2 SE':>7}")
for name, rows in results.items():
    means = [m for _, m in rows]
    error = statistics.stdev(means) / math.sqrt(len(means)) if len(means) > 1 else 0.0  # 0: deterministic
    summary[name] = (sum(lt.distinct_ngram_ratio(ids, 3) for ids, _ in rows) / len(rows), statistics.mean(means), error)
    d2 = sum(lt.distinct_ngram_ratio(ids, 2) for ids, _ in rows) / len(rows)
    print(f"{name:<35} {lt.fmt(d2, decimals=3, kind='exact'):>10} {lt.fmt(summary[name][0], decimals=3, kind='exact'):>10}  "
          f"{lt.fmt(summary[name][1], decimals=2, kind='logit'):>13} "
          f"{lt.fmt(2 * error, decimals=2, kind='logit') if len(rows) > 1 else '':>7}")
print(f"\n(for scale: greedy over {len(greedy_ids)} tokens, section 2: distinct-2 "
      f"{lt.fmt(lt.distinct_ngram_ratio(greedy_ids, 2), decimals=3, kind='exact')}, "
      f"distinct-3 {lt.fmt(lt.distinct_ngram_ratio(greedy_ids, 3), decimals=3, kind='exact')})")

# %% [markdown]
# The outputs (the first sample of each sampling strategy):

# %%
for name, rows in results.items():
    print(f"{name}:\n  {tokenizer.decode(rows[0][0])!r}\n")

# %% [markdown]
# An average of 4 samples still carries sampling noise: its standard error (SE, the spread of the 4
# values divided by √4) says how far another 4 samples' average might land. We call one strategy
# clearly more likely than another only when the averages differ by more than twice their
# combined standard error, and check which pairs are that clear:

# %%
def clearly_above(a, b):
    """a's mean log-prob is above b's by more than twice their combined standard error."""
    return summary[a][1] - summary[b][1] > 2 * math.hypot(summary[a][2], summary[b][2])


sampled_names = list(sampling)
print("clearly below greedy:", [name for name in sampled_names if clearly_above("greedy", name)])
print("clearly above pure sampling:", [name for name in sampled_names if clearly_above(name, sampled_names[0])])
assert summary["beam search, 5 beams"][1] >= summary["greedy"][1]  # both deterministic
assert summary["greedy + repetition penalty 1.3"][0] > summary["greedy"][0]
assert all(clearly_above("greedy", name) for name in sampled_names)
pure_name, llama_name, top_k_name, top_p_name, min_p_name, mirostat_name = sampled_names
assert all(clearly_above(name, pure_name) for name in (llama_name, min_p_name, mirostat_name))
assert not clearly_above(top_k_name, pure_name) and not clearly_above(top_p_name, pure_name)
assert all(summary[name][1] > summary[pure_name][1] for name in sampled_names[1:])  # on average, all above pure
assert summary[llama_name][1] == max(summary[name][1] for name in sampled_names)

# %% [markdown]
# Reading the table: at 32 tokens repetition is only starting to show (greedy's loop takes over
# later, section 2; the penalty removes even its first repeats). What separates the strategies
# here is how *likely* the text is under the model. Beam search, then greedy, score highest, and
# every sampling strategy is clearly below greedy. Llama's defaults (a sharper distribution, cut
# to its nucleus) come closest; they, min-p and the Mirostat-style sampler are clearly above pure
# sampling. Top-k 50 and top-p 0.9 are above it on average, but 4 samples cannot tell them apart
# from it: on an uncertain step both still keep a broad tail (top-p kept thousands of tokens at
# one step of greedy's story, section 5).

# %% [markdown]
# ## Recap
# - Greedy (`do_sample=False`) is deterministic and loops on long outputs; beam search finds
#   higher-probability text, with even less variety.
# - Sampling (`do_sample=True`) draws from the distribution; alone it applies `top_k=50`; pure
#   sampling (`top_k=0`) sometimes picks tokens the model found very unlikely.
# - Temperature divides the logits: low T is sharp (T → 0 is greedy), T = 1 is the model as is,
#   high T is flat. Seed 000's "near 0 = creative" is backwards. `temperature=0` with sampling is
#   an error, and so is an `int` like `temperature=2` (write `2.0`); `temperature` without
#   `do_sample=True` is ignored with a once-per-process warning
#   ([notebook 06](06_pitfalls.ipynb#temperature-ignored-warning)).
# - Top-k keeps a fixed number of tokens, top-p and min-p adapt to the model's confidence. Our
#   filters equal transformers' bit for bit, top-p's float-rounding boundary included; Llama's
#   top-p keeps one token more on an exact tie, and samples the same distribution but not the same
#   seeded draws.
# - `generate()` applies penalty → temperature → top-k → top-p → min-p; temperature and top-p do
#   not commute. Your own `logits_processor`s run after the penalty, before temperature.
# - A repetition penalty also hits the end-of-turn token of a chat prompt: too high and the model
#   cannot stop.
# - Beam search's `length_penalty` decides which finished beams the search keeps, not only their
#   order. Comparing sampling strategies takes several samples each: one draw ranks luck.
#
# ## Exercises
# 1. **Ban a word.** Write a `LogitsProcessor` that makes the story never contain the token
#    `" city"` (set its logit to `-inf`), run greedy for 16 tokens with it, and check the token is
#    absent while greedy without it contains it.
# 2. **How cold is "almost greedy"?** With `path_logits` from section 4, find (to 0.01) the
#    highest temperature at which a 32-token sample still equals greedy's text with probability
#    at least 0.5.
# 3. **Top-p vs min-p.** For each of greedy's 32 steps, count the tokens kept by `top_p=0.9` and by
#    `min_p=0.1`. On how many steps does min-p keep fewer tokens, on how many more, and what are
#    the steps where the two agree like?

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
# Exercise 1
class BanTokens(LogitsProcessor):
    def __init__(self, token_ids):
        self.token_ids = list(token_ids)

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, self.token_ids] = float("-inf")
        return scores


city = tokenizer.encode(" city", add_special_tokens=False)
assert len(city) == 1
with torch.inference_mode():
    banned = model.generate(**STORY, max_new_tokens=16, do_sample=False, logits_processor=[BanTokens(city)], **SCORES)
closest_call(banned, "the story without ' city'")
banned_ids = generated(banned.sequences, len(STORY_IDS))[0]
print(tokenizer.decode(banned_ids))
assert city[0] in greedy_ids[:16] and city[0] not in banned_ids


# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
# Exercise 2
def p_same(t):
    return math.exp(torch.log_softmax(path_logits / t, -1).gather(1, greedy_targets[:, None]).sum().item())


low, high = 1, 100  # in hundredths: p_same(low / 100) >= 0.5 > p_same(high / 100); p_same falls as T rises
while high - low > 1:
    mid = (low + high) // 2
    low, high = (mid, high) if p_same(mid / 100) >= 0.5 else (low, mid)
lt.check_threshold([p_same(low / 100), p_same(high / 100)], 0.5, "the answer's two sides")
print(f"highest T with P(sample == greedy) >= 0.5: {low / 100} (P = {lt.fmt(p_same(low / 100), 2, kind='prob')})")
assert p_same(low / 100) >= 0.5 > p_same(high / 100) and high == low + 1

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
# Exercise 3
min_p_margin(path_logits, 0.1, "min-p 0.1 along greedy's story")
top_p_sizes = lt.top_p_filter(path_logits, 0.9).isfinite().sum(-1)
min_p_sizes = lt.min_p_filter(path_logits, 0.1).isfinite().sum(-1)
assert torch.equal(top_p_sizes, torch.tensor(nucleus_sizes))  # the counts of section 5
fewer, more = int((min_p_sizes < top_p_sizes).sum()), int((min_p_sizes > top_p_sizes).sum())
fewest, most = kept_by_top_p(path_logits, 0.9)  # top-p's counts as another CPU may find them
assert all(int((min_p_sizes < n).sum()) == fewer and int((min_p_sizes > n).sum()) == more for n in (fewest, most))
agree = (min_p_sizes == fewest) & (min_p_sizes == most)
top1_prob = path_logits.softmax(-1).amax(-1)
print(f"min-p=0.1 keeps fewer tokens than top-p=0.9 on {fewer} of {len(top_p_sizes)} steps, more on {more}; "
      f"on the {int(agree.sum())} others both keep at most {int(most[agree].max())} tokens, "
      f"and the top token has p >= {lt.fmt(top1_prob[agree].min(), 2, kind='prob')}")
assert fewer > len(top_p_sizes) // 2 and more == 0  # min-p is the tighter cut here...
assert fewer + int(agree.sum()) == len(top_p_sizes) and int(most[agree].max()) <= 2  # ...except on confident steps
