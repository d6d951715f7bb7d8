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
# # 07 · Speed
# **On a laptop this model writes a few to a few dozen tokens a second. What limits it, and what
# makes it faster without changing a single token of the answer?**
#
# Notebook 04 built the generation loop and showed that the [KV cache](glossary.md#kv-cache) turns
# quadratic work into linear work. This notebook measures what is left, live, on this machine:
#
# 1. the [**roofline**](glossary.md#roofline): what one decoding step must read and compute
#    (counted), how fast this machine reads memory and multiplies (measured), and the speed limits
#    that follow, for float32, bfloat16, int8 and nf4; prefill against decode;
# 2. **batching**: many sequences for the price of one, up to a bend;
# 3. the **KV cache's memory**: when it outweighs the model, here and for an 8B model;
# 4. **prompt-lookup decoding** and 5. [**speculative decoding**](glossary.md#speculative-decoding),
#    written by hand: several tokens per forward pass, with exactly greedy decoding's tokens;
# 6. a **static cache** and `torch.compile`; 7. what a **serving engine** adds.
#
# Times change from run to run and machine to machine, so they are printed only in cells marked
# `# NBVAL_IGNORE_OUTPUT`, never asserted. What is asserted is counted work (bytes, FLOPs, forward
# passes, positions) and token equality: every speed-up below gives the very same tokens.

# %%
import llm_tutorial as lt

banner = lt.setup_notebook(seed=0)

# %%
import copy
import os
import shutil
import time

import matplotlib.pyplot as plt
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

model = lt.load_model()
tokenizer = lt.load_tokenizer()
EOS = tokenizer.eos_token_id
cpu_start = time.process_time()  # the notebook's CPU seconds, reported at the end
print(type(model).__name__, model.dtype, "on", model.device)  # threads: see the banner

# %% [markdown]
# ## 1. The roofline of this machine
#
# ### What one decoding step reads and computes
#
# A decoding step feeds **one** new token through every layer. Each weight matrix multiplies a
# single vector: each weight is read from memory once and used for one multiplication and one
# addition (2 FLOPs). Attention adds a little: for each query head, a dot product with every
# cached key and a weighted sum of every cached value (2 × 2 × head size FLOPs per cached token),
# and it reads the whole cache. Counted from the real layers and `model.config`:

# %%
shape = lt.attention_shape(model.config)
weights = sum(m.weight.numel() for m in lt.linear_layers(model).values())  # every weight matrix, lm_head too
context = 100  # tokens already in the cache
by_hand_flops = 2 * weights + 4 * shape["layers"] * shape["heads"] * shape["head_dim"] * (context + 1)
head = model.get_output_embeddings().weight
# tables a pass only looks rows up in: input embeddings not tied to lm_head, learned positions
lookups = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.weight is not head]
by_hand_bytes = (sum(p.nbytes for p in model.parameters())  # every weight once (tied ones too)
                 - sum(t.nbytes for t in lookups) + sum(t[0].nbytes for t in lookups)  # one row of a lookup table
                 + (context + 1) * lt.kv_cache_bytes_per_token(model))  # the KV cache, read by attention
print(shape)
print(f"one step after {context} tokens: {lt.fmt(by_hand_flops / 1e6, decimals=1, kind='exact')} MFLOP, "
      f"{lt.fmt(by_hand_bytes / 1e6, decimals=1, kind='exact')} MB read")
assert by_hand_flops == lt.forward_flops(model, 1, past_tokens=context)
assert by_hand_bytes == lt.forward_bytes(model, 1, past_tokens=context)

# %% [markdown]
# `lt.forward_flops` and `lt.forward_bytes` (in `llm_tutorial/roofline.py`) count the same for any
# number of new tokens, cached tokens and rows. (A model whose input embeddings are tied to its
# `lm_head`, like this one, reads the whole table every step, for the output; activations, small
# next to the weights, are not counted.)
#
# The FLOPs are what PyTorch's own counter sees in a real step (it counts attention only when it is
# computed with plain matrix products, `attn_implementation="eager"`):

# %%
prompt = lt.chat_inputs(tokenizer, "Why is the sky blue?", device=model.device)
P = prompt["input_ids"].shape[1]
attention = model.config._attn_implementation  # "sdpa" here: put back afterwards
model.set_attn_implementation("eager")
try:
    with torch.inference_mode():
        cache = model(**prompt, use_cache=True).past_key_values
        with FlopCounterMode(display=False) as counter:
            model(prompt["input_ids"][:, -1:], past_key_values=cache, use_cache=True)
finally:
    model.set_attn_implementation(attention)
print(f"one step after {P} cached tokens: torch counted {counter.get_total_flops():,} FLOPs")
assert counter.get_total_flops() == lt.forward_flops(model, 1, past_tokens=P)

# %% [markdown]
# So a decoding step does about **2 FLOPs per 4 bytes** it reads: its *arithmetic intensity* is
# about 0.5 FLOP per byte in float32.

# %%
step_flops, step_bytes = lt.forward_flops(model, 1, past_tokens=P), lt.forward_bytes(model, 1, past_tokens=P)
print(f"arithmetic intensity of a decoding step: {lt.fmt(step_flops / step_bytes, decimals=2, kind='exact')} FLOP/byte")
assert 0.4 < step_flops / step_bytes < 0.6

# %% [markdown]
# ### How fast this machine reads and multiplies
#
# `lt.memory_bandwidth` sums a 256 MiB float32 tensor (far larger than any CPU cache: every byte
# comes from main memory; one addition per 4 bytes is no work at all) and returns bytes per second,
# the fastest of a few runs. `lt.matmul_flops` times a 2048 × 2048 float32 matrix product
# (2 × 2048³ FLOPs). Their ratio is the **ridge point**: the FLOPs per byte a computation needs
# before the arithmetic, not the memory, sets its speed.

# %%
# NBVAL_IGNORE_OUTPUT
# measured speeds of this machine: they differ between machines and from run to run
bandwidth = lt.memory_bandwidth(2**28, repeats=3, device=model.device)  # where the model's weights are
flop_rate = lt.matmul_flops(2048, repeats=3, device=model.device)
flop_rate_bf16 = lt.matmul_flops(1024, repeats=2, dtype=torch.bfloat16, device=model.device)
ridge = flop_rate / bandwidth
print(f"memory bandwidth {bandwidth / 1e9:.1f} GB/s | float32 matmul {flop_rate / 1e9:.0f} GFLOP/s "
      f"(bfloat16: {flop_rate_bf16 / 1e9:.0f}) | ridge point {ridge:.1f} FLOP/byte")

# %% [markdown]
# A decoding step (0.5 FLOP/byte) sits far below the ridge point of any CPU or GPU: it is
# **memory-bound**. Its speed limit is the bandwidth divided by the bytes it reads. A prefill over
# *L* prompt tokens reads the same weights once and does *L* times the arithmetic: its intensity
# is about *L*/2 FLOP/byte, above the ridge for a prompt of a few dozen tokens: **compute-bound**,
# limited by the matmul speed. `lt.roofline_seconds` takes the larger of the two times.
#
# ### The limits against what `generate` does
#
# We time `generate` on the sky prompt in float32 and in bfloat16 (half the bytes;
# [notebook 02](02_loading.ipynb) compares the two), and one prefill pass over a long
# prompt (`logits_to_keep=1`: only the last position's logits, as `generate` asks for).
# `lt.time_decoding` (notebook 04) records when each token comes out: the first one includes the
# prefill, the others are decoding steps.

# %%
half = lt.load_model(dtype=torch.bfloat16)
N_TIME = 16
long_prompt = torch.cat([lt.chat_inputs(tokenizer, "Explain, step by step, how a bicycle works. " * 12,
                                        device=model.device)["input_ids"]] * 2, dim=1)
L = long_prompt.shape[1]
decode_times = {name: lt.time_decoding(m, prompt, max_new_tokens=N_TIME, repeats=1, loops=("generate()",))[0]["generate()"]
                for name, m in (("float32", model), ("bfloat16", half))}
with torch.inference_mode():
    prefill_seconds, _ = lt.time_runs({"prefill": lambda: model(long_prompt, logits_to_keep=1)}, repeats=2)
print(f"timed: {N_TIME} new tokens in float32 and bfloat16, one prefill over {L} tokens")

# %%
# NBVAL_IGNORE_OUTPUT
# measured speeds against the limits they imply: the ratios depend on the machine and its load
def decode_speed(times):
    return (len(times) - 1) / (times[-1] - times[0])  # tokens a second after the first one


middle = P + N_TIME // 2  # the cache's length half-way through
rows = [
    ("decode, float32", model, 1, middle, decode_speed(decode_times["float32"]), flop_rate),
    ("decode, bfloat16", half, 1, middle, decode_speed(decode_times["bfloat16"]), flop_rate_bf16),
    (f"prefill, {L} tokens", model, L, 0, L / prefill_seconds["prefill"], flop_rate),
]
points = {}  # name -> (FLOP/byte, FLOP/s achieved), for the plot
print(f"{'':22}{'MB read':>9}{'GFLOP':>8}{'FLOP/B':>8}{'limit tok/s':>13}{'measured':>10}{'of limit':>10}")
for name, m, new, past, measured, rate in rows:
    nbytes = lt.forward_bytes(m, new, past_tokens=past)
    flops = lt.forward_flops(m, new, past_tokens=past, logits_to_keep=1)
    limit = new / lt.roofline_seconds(nbytes, flops, bandwidth, rate)
    points[name] = (flops / nbytes, flops * measured / new)
    print(f"{name:22}{nbytes / 1e6:9.0f}{flops / 1e9:8.2f}{flops / nbytes:8.2f}{limit:13.0f}{measured:10.1f}"
          f"{measured / limit:10.0%}")
print(f"bfloat16 decodes at {decode_speed(decode_times['bfloat16']) / decode_speed(decode_times['float32']):.2f}x "
      f"float32's speed, reading half the bytes; prefill makes "
      f"{L / prefill_seconds['prefill'] / decode_speed(decode_times['float32']):.0f}x decoding's tokens a second")

# %% [markdown]
# Read the table as: decoding reads the whole model for each token, so its limit is the bandwidth
# divided by about half a gigabyte; bfloat16 halves the bytes and so doubles the limit. Prefill
# reuses every weight it reads for all the prompt's tokens, so it makes many times more tokens a
# second than decoding (the line under the table says how many times here): a prompt of a few
# dozen tokens costs about as much time as a few generated ones.
#
# Decoding reaches only part of its limit, for reasons the roofline leaves out: each step
# launches several hundred small operations (about a dozen per layer), each with a fixed cost in
# Python and in PyTorch's dispatcher, and a matrix-vector product on 2 cores does not stream memory
# as fast as a plain sum. Whether bfloat16's halved bytes turn into speed depends on the CPU's
# kernels: a CPU without bfloat16 instructions (AVX512-BF16, AMX) converts every value to float32
# first, and even one with them may run large bfloat16 matrix *products* fast (the matmul speed
# above) but the matrix-*vector* products of decoding no faster than float32. The line under the
# table says what this CPU does.
#
# ### int8 and nf4
#
# [Quantization](glossary.md#quantization) reads even fewer bytes: 1 byte per weight for int8,
# half a byte for nf4 (plus their scales). Whether that buys speed depends on the kernels.
# [Notebook 02](02_loading.ipynb) timed whole quantized models; here we time the part that
# matters for the roofline, cheaply: the largest weight matrix of every layer of the model,
# each multiplying one vector, as a decoding step does, in each format (bitsandbytes layers,
# quantized as `from_pretrained` does).

# %%
with lt.capture() as bnb_import:
    import bitsandbytes as bnb

HALF = torch.float16 if model.device.type == "cuda" else torch.bfloat16  # compute dtype, as in notebook 02
matrices = [max(lt.linear_layers(layer).values(), key=lambda m: m.weight.numel()) for layer in lt.decoder_layers(model)]


def quantized(m, kind):
    """A bitsandbytes copy of linear layer ``m``: int8 (LLM.int8) or nf4, quantized on the device."""
    w = m.weight.detach().to(HALF)
    if kind == "int8":
        layer = bnb.nn.Linear8bitLt(w.shape[1], w.shape[0], bias=False, has_fp16_weights=False)
        layer.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
    else:
        layer = bnb.nn.Linear4bit(w.shape[1], w.shape[0], bias=False, compute_dtype=HALF, quant_type="nf4")
        layer.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4")
    return layer.to(model.device).eval()


formats = {"float32": torch.nn.ModuleList(matrices),
           str(HALF)[6:]: torch.nn.ModuleList(copy.deepcopy(matrices)).to(HALF)}  # "bfloat16" on a CPU
with lt.capture() as quantizing:
    for kind in ("int8", "nf4"):
        formats[kind] = torch.nn.ModuleList(quantized(m, kind) for m in matrices)
n_weights = sum(m.weight.numel() for m in matrices)
format_bytes = {name: lt.weight_bytes(layers) + lt.quantization_constant_bytes(layers) for name, layers in formats.items()}
for name, nbytes in format_bytes.items():
    print(f"{name:9} {lt.fmt(nbytes / 1e6, decimals=1, kind='exact'):>6} MB for {n_weights:,} weights "
          f"({lt.fmt(nbytes / n_weights, decimals=2, kind='exact')} bytes each, scales included)")
assert format_bytes["int8"] < format_bytes[str(HALF)[6:]] / 1.9 and format_bytes["nf4"] < format_bytes["int8"] / 1.6

# %%
# NBVAL_IGNORE_OUTPUT
# measured times of each format: they depend on the CPU's instruction set and kernels
vector = torch.randn(1, 1, matrices[0].in_features, device=model.device)


def one_vector_through(layers, x):
    return lambda: [layer(x) for layer in layers]


with torch.inference_mode(), lt.capture() as running:
    layer_seconds, _ = lt.time_runs({name: one_vector_through(layers, vector if name == "float32" else vector.to(HALF))
                                     for name, layers in formats.items()}, repeats=5)
print(f"{'':9}{'MB':>7}{'ms':>8}{'GB/s':>7}   (one vector through the {len(matrices)} matrices)")
for name, seconds in layer_seconds.items():
    print(f"{name:9}{format_bytes[name] / 1e6:7.1f}{1000 * seconds:8.2f}{format_bytes[name] / seconds / 1e9:7.1f}")
    points[f"{name} matrices"] = (2 * n_weights / format_bytes[name], 2 * n_weights / seconds)
print("bitsandbytes said:", sorted(set(running.messages)) or "nothing")

# %% [markdown]
# The bytes are certain: int8 reads a quarter of float32's, nf4 an eighth (plus their scales).
# The times are this CPU's: a quantized format pays off only where its kernel unpacks the weights
# as fast as they stream in. Look at the GB/s column, the bytes each format actually moved per
# second: where the int8 layer (which also converts its input to float16, as bitsandbytes says)
# or the nf4 layer moves its bytes more slowly than float32 does, its unpacking, not the memory,
# sets its time, and whether it still beats float32 depends on the CPU. On a
# GPU the fused kernels usually do turn fewer bytes into more tokens.
#
# The **roofline plot**: the attainable FLOP/s at each arithmetic intensity is
# min(matmul speed, intensity × bandwidth), a slanted roof (memory-bound) meeting a flat one
# (compute-bound) at the ridge point. Every measured point of this run sits under it:

# %%
# NBVAL_IGNORE_OUTPUT
# a plot of this run's measurements (they vary; nbval does not compare images)
intensity = torch.logspace(-1.5, 3, 200)
fig, ax = plt.subplots(figsize=(8, 5))
ax.plot(intensity, torch.minimum(torch.tensor(flop_rate), intensity * bandwidth) / 1e9, "k-", label="roofline (float32)")
ax.axvline(ridge, color="gray", ls=":", label=f"ridge point, {ridge:.1f} FLOP/byte")
for (name, (x, y)), marker in zip(points.items(), "osD^v<>p", strict=False):
    ax.plot(x, y / 1e9, marker, ms=8, label=name)
ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP per byte read)",
       ylabel="GFLOP/s achieved", title="the roofline of this machine, with this run's measurements")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Batching: many sequences for the price of one
#
# A decoding step reads all the weights to compute one token. Feed it *B* sequences at once and
# it reads the weights **once** for all of them, doing *B* times the arithmetic: the intensity
# grows with the batch, the bytes hardly do. Counted:

# %%
BATCHES = (1, 2, 4, 8, 16, 32)
print(f"{'batch':>5}{'MB read':>9}{'MFLOP':>9}{'FLOP/byte':>11}")
for b in BATCHES:
    nbytes, flops = lt.forward_bytes(model, 1, past_tokens=P, batch_size=b), lt.forward_flops(model, 1, past_tokens=P, batch_size=b)
    print(f"{b:5}{lt.fmt(nbytes / 1e6, decimals=1, kind='exact'):>9}{flops // 10**6:9,}{lt.fmt(flops / nbytes, decimals=2, kind='exact'):>11}")
    assert flops == b * lt.forward_flops(model, 1, past_tokens=P)
assert lt.forward_bytes(model, 1, past_tokens=P, batch_size=32) < 1.1 * lt.forward_bytes(model, 1, past_tokens=P)

# %% [markdown]
# So as long as a step stays memory-bound, a step of *B* rows costs far less than *B* steps of one
# row, and makes *B* times the tokens. Once the intensity passes the ridge point the arithmetic takes
# over and the time per step grows with *B*: throughput levels off and each user waits longer per
# token. `lt.time_batched_steps` (in `llm_tutorial/bench.py`) prefills the prompt once, copies its
# cache into every row (`cache.batch_repeat_interleave`) and times a few decoding steps at each
# batch size:

# %%
step_seconds = lt.time_batched_steps(model, prompt["input_ids"], BATCHES, steps=3)
print("batch sizes timed:", list(step_seconds))

# %%
# NBVAL_IGNORE_OUTPUT
# measured step times and a plot of them: they depend on the machine and its load
bend = min((b for b in BATCHES if lt.forward_flops(model, 1, past_tokens=P, batch_size=b)
            / lt.forward_bytes(model, 1, past_tokens=P, batch_size=b) > ridge), default=None)
print(f"{'batch':>5}{'ms/step':>9}{'tokens/s':>10}")
for b, s in step_seconds.items():
    print(f"{b:5}{1000 * s:9.0f}{b / s:10.1f}")
print(f"batch 32 makes {32 / step_seconds[32] / (1 / step_seconds[1]):.1f}x the tokens a second of batch 1, "
      f"each step {step_seconds[32] / step_seconds[1]:.1f}x as long; the intensity passes the ridge point at batch {bend}")
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
left.plot(BATCHES, [b / step_seconds[b] for b in BATCHES], "o-")
right.plot(BATCHES, [1000 * step_seconds[b] for b in BATCHES], "o-")
for axis in (left, right):
    axis.set(xscale="log", xlabel="batch size")
    axis.set_xticks(BATCHES, [str(b) for b in BATCHES])
    if bend:
        axis.axvline(bend, color="gray", ls=":", label="intensity > ridge point")
left.set(ylabel="tokens per second (all rows)", title="throughput")
right.set(ylabel="ms per step", title="latency: each row waits this long per token")
right.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Throughput grows with the batch (from batch 1 to 2 it may not: batch 1 runs matrix-vector
# kernels, larger batches matrix-matrix ones, and which are faster depends on the machine), then
# levels off where the step stops being memory-bound (a CPU's ridge point is low, a few FLOPs per
# byte, so the bend comes after a handful of rows; a GPU's ridge point is in the hundreds, and batches of hundreds still gain).
# This is why a server batches the requests of many users, and why one laptop user sees none of
# that gain.
#
# ## 3. The KV cache's memory
#
# Every token of every sequence keeps a key and a value vector per key/value head per layer:
# [notebook 04 §2](04_generation_loop.ipynb) measured it in a real cache. `lt.kv_cache_bytes_per_token`
# computes it from the config, and agrees with the cache of section 1's prompt:

# %%
per_token = lt.kv_cache_bytes_per_token(model)
held = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
model_bytes = lt.weight_bytes(model)
crossing = model_bytes // per_token  # whole tokens, from integer byte counts
limit = lt.context_length(model)
print(f"KV cache: 2 x {shape['layers']} layers x {shape['kv_heads']} heads x {shape['head_dim']} x "
      f"{model.dtype.itemsize} bytes = {per_token:,} bytes per token")
print(f"the weights: {model_bytes:,} bytes = the cache of {crossing:,} tokens "
      f"(context length {limit:,})")
for tokens in (1024, limit):
    print(f"  {tokens:6,} tokens: " + ", ".join(f"batch {b}: {lt.fmt(b * tokens * per_token / 1e9, decimals=2, kind='exact')} GB"
                                              for b in (1, 8, 32)))
assert held == per_token * cache.get_seq_length()
assert per_token == 2 * shape["layers"] * shape["kv_heads"] * shape["head_dim"] * model.dtype.itemsize
assert limit * per_token < model_bytes  # one sequence at full context: less than the weights
assert 8 * limit * per_token > 3 * model_bytes  # a batch of 8 at full context: several times more

# %% [markdown]
# For this small model one sequence at its full context needs less memory than the weights, but a
# batch of 8 long conversations needs several times more: the cache, not the model, decides how
# many users fit in memory. And every decoding step reads the cache of its row: with long contexts
# the bytes per token grow, and the speed limit of section 1 falls.

# %%
# NBVAL_IGNORE_OUTPUT
# a plot of the counted sizes (nbval does not compare images)
lengths = torch.arange(0, limit + 1, 256)
fig, ax = plt.subplots(figsize=(7, 4))
for b in (1, 8, 32):
    ax.plot(lengths, b * lengths * per_token / 1e9, label=f"KV cache, batch {b}")
ax.axhline(model_bytes / 1e9, color="k", ls="--", label="the model's weights")
ax.set(xlabel="tokens per sequence", ylabel="GB", yscale="log", title="KV cache against weights (float32)")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# **The same arithmetic for an 8B model, on paper.** The values of Llama-3.1-8B, from its
# `config.json` on the Hugging Face Hub (`meta-llama/Llama-3.1-8B`): 32 layers, hidden size 4096,
# 32 query heads and 8 key/value heads of 128 (grouped-query attention, [GQA](glossary.md#gqa)),
# MLP size 14336, vocabulary 128256, untied embeddings, a context of 131072 tokens, bfloat16.
# Building the model on the `meta` device allocates nothing and counts its parameters:

# %%
llama8b = LlamaConfig(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                      head_dim=128, intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False,
                      max_position_embeddings=131072)
with torch.device("meta"):
    params_8b = sum(p.numel() for p in LlamaForCausalLM(llama8b).parameters())
weights_8b = params_8b * 2  # bfloat16
kv_8b = lt.kv_cache_bytes_per_token(llama8b, torch.bfloat16)
without_gqa = copy.deepcopy(llama8b)
without_gqa.num_key_value_heads = 32
kv_8b_no_gqa = lt.kv_cache_bytes_per_token(without_gqa, torch.bfloat16)
print(f"Llama-3.1-8B: {params_8b:,} parameters = {lt.fmt(weights_8b / 1e9, decimals=1, kind='exact')} GB in bfloat16")
print(f"KV cache: {kv_8b // 1024} KiB per token; at 131072 tokens {lt.fmt(131072 * kv_8b / 1e9, decimals=1, kind='exact')} GB "
      f"per sequence; it outweighs the model after {int(weights_8b / kv_8b):,} tokens")
print(f"without GQA (32 key/value heads): {kv_8b_no_gqa // 1024} KiB per token, outweighs the model "
      f"after {int(weights_8b / kv_8b_no_gqa):,} tokens")
assert params_8b == 8_030_261_248 and kv_8b == 2 * 32 * 8 * 128 * 2 == kv_8b_no_gqa // 4
assert llama8b.max_position_embeddings * kv_8b > weights_8b  # a full-context sequence outweighs the model

# %% [markdown]
# Grouped-query attention shares each key/value head among 4 query heads and so divides the cache
# by 4: this is what makes 128k-token contexts affordable at all. Even so, one full-context
# sequence needs more memory than the whole model.
#
# ## 4. Prompt-lookup decoding, by hand
#
# A decoding step reads all the weights for one token; a pass over 10 tokens reads them once too
# and costs little more (the prefill above showed it). So if we could **guess** the next few
# tokens, one pass could check all of them. When an answer repeats its prompt (quoting, editing a
# text or code, summarising with the source's words) the guess is free: find the last few tokens
# earlier in the text and copy what followed them there. That is **prompt-lookup decoding**
# (Saxena, 2023; in transformers `generate(prompt_lookup_num_tokens=...)`).
#
# The guess first: the last *n* tokens (*n* = 3, then 2, then 1), their first earlier occurrence,
# and up to *k* tokens that followed it.

# %%
def lookup_draft(tokens, k=10, max_ngram=3):
    """Up to k tokens that followed the first earlier occurrence of the last n tokens (n = max_ngram..1)."""
    for n in range(min(max_ngram, len(tokens) - 1), 0, -1):
        for start in range(len(tokens) - n):  # leftmost first, the last n-gram itself excluded
            if tokens[start:start + n] == tokens[-n:]:
                return tokens[start + n:start + n + k]
    return []


print(lookup_draft([5, 6, 7, 8, 9, 6, 7], k=3))
assert lookup_draft([5, 6, 7, 8, 9, 6, 7], k=3) == lt.prompt_lookup_draft([5, 6, 7, 8, 9, 6, 7], 3) == [8, 9, 6]

# %% [markdown]
# Then the loop. Each round: draft, run the model once over the tokens it has not seen yet (the
# whole prompt in the first round, then the last token) followed by the draft, and read the
# model's own greedy choice after each prefix. Keep the drafted tokens up to the first one the
# model disagrees with, then add the model's own choice at that point (so every round gains at
# least one token, like a plain step). The cache got keys and values for every drafted token;
# those after the kept ones are cut off again (`cache.crop` with a negative count).

# %%
def agreed(draft, choices, eos_id):
    """The draft up to the model's first disagreement, plus the model's own token; cut after EOS."""
    n = 0
    while n < len(draft) and draft[n] == choices[n]:
        n += 1
    new = draft[:n] + [choices[n]]
    return (new[:new.index(eos_id) + 1] if eos_id in new else new), n


def through_eos(tokens, eos_id):
    return tokens[:tokens.index(eos_id) + 1] if eos_id in tokens else tokens


@torch.inference_mode()
def prompt_lookup(model, ids, max_new_tokens, eos_id, k=10, max_ngram=3):
    tokens, n_prompt = ids[0].tolist(), ids.shape[1]
    cache, calls, drafted, accepted = DynamicCache(config=model.config), 0, 0, 0
    while len(tokens) - n_prompt < max_new_tokens and (calls == 0 or tokens[-1] != eos_id):
        room = max_new_tokens - (len(tokens) - n_prompt) - 1  # the model adds one token of its own
        draft = through_eos(lookup_draft(tokens, min(k, room), max_ngram), eos_id) if room else []
        unseen = tokens[cache.get_seq_length():]
        logits = model(torch.tensor([unseen + draft], device=model.device), past_key_values=cache).logits[0]
        choices = logits[-len(draft) - 1:].argmax(dim=-1).tolist()  # the choice after each prefix of the draft
        new, n = agreed(draft, choices, eos_id)
        tokens += new
        cache.crop(len(tokens) - 1 - cache.get_seq_length())  # drop the rejected guesses
        calls, drafted, accepted = calls + 1, drafted + len(draft), accepted + n
    return torch.tensor([tokens], device=model.device), {"forward_calls": calls, "drafted": drafted, "accepted": accepted}


# %% [markdown]
# A task whose answer copies its input: repeat a paragraph.

# %%
copy_task = lt.chat_inputs(tokenizer, "Repeat this text exactly, word for word: Water boils at 100 degrees "
                           "Celsius at sea level. At higher altitudes the air pressure is lower, so water boils at "
                           "a lower temperature, and food takes longer to cook. This is why pasta cooked in the "
                           "mountains needs a few more minutes.", device=model.device)
P_COPY, N_COPY = copy_task["input_ids"].shape[1], 48
greedy_seconds, greedy_copy = lt.time_runs({"greedy": lambda: model.generate(**copy_task, max_new_tokens=N_COPY,
                                                                              do_sample=False)}, repeats=1)
lookup_seconds, runs = lt.time_runs({"lookup": lambda: prompt_lookup(model, copy_task["input_ids"], N_COPY, EOS)},
                                    repeats=1)
greedy_copy, (copy_by_hand, copy_stats) = greedy_copy["greedy"], runs["lookup"]
lt.check_gap(lt.greedy_gap(model, greedy_copy, P_COPY), "the repeated paragraph")
print(repr(tokenizer.decode(copy_by_hand[0, P_COPY:])))
print(copy_stats, "for", copy_by_hand.shape[1] - P_COPY, "new tokens")
assert torch.equal(copy_by_hand, greedy_copy)

# %% [markdown]
# The same tokens as greedy `generate`, in a fraction of the forward passes. transformers does
# the same with `prompt_lookup_num_tokens` (its `max_matching_ngram_size` defaults to 2; we pass
# 3 as above), and so does the package's `lt.prompt_lookup_generate`, which also counts its work:

# %%
with torch.inference_mode():
    library = model.generate(**copy_task, max_new_tokens=N_COPY, do_sample=False, prompt_lookup_num_tokens=10,
                             max_matching_ngram_size=3)
package, stats = lt.prompt_lookup_generate(model, copy_task["input_ids"], copy_task["attention_mask"],
                                           max_new_tokens=N_COPY, eos_token_id=EOS, return_stats=True)
assert torch.equal(library, greedy_copy) and torch.equal(package, greedy_copy)
assert (stats.forward_calls, stats.drafted, stats.accepted) == tuple(copy_stats.values())
print(f"lt.prompt_lookup_generate: {stats.new_tokens} tokens in {stats.forward_calls} forward passes "
      f"(greedy: one per token), {stats.accepted} of {stats.drafted} guesses kept "
      f"({lt.fmt(stats.acceptance_rate, decimals=0, percent=True, kind='exact')})")

# %% [markdown]
# On an open question there is little to copy: most guesses are wrong (or there are none), each
# round still gains one token, and a pass over 10 guessed tokens costs a little more than a plain
# step. Prompt lookup can then be slower than greedy decoding:

# %%
OPEN_QUESTION = "What are three good habits for staying healthy?"
open_task = lt.chat_inputs(tokenizer, OPEN_QUESTION, device=model.device)
P_OPEN, N_OPEN = open_task["input_ids"].shape[1], 24
seconds, runs = lt.time_runs({
    "greedy, open": lambda: model.generate(**open_task, max_new_tokens=N_OPEN, do_sample=False),
    "lookup, open": lambda: lt.prompt_lookup_generate(model, open_task["input_ids"], open_task["attention_mask"],
                                                      max_new_tokens=N_OPEN, eos_token_id=EOS, return_stats=True),
}, repeats=1)
reference, (open_lookup, open_stats) = runs.values()
lt.check_gap(lt.greedy_gap(model, reference, P_OPEN), "the open answer")
print(repr(tokenizer.decode(reference[0, P_OPEN:])))
print(f"{open_stats.new_tokens} tokens in {open_stats.forward_calls} forward passes, {open_stats.accepted} of "
      f"{open_stats.drafted} guesses kept")
assert torch.equal(open_lookup, reference) and open_stats.forward_calls > 0.8 * open_stats.new_tokens

# %%
# NBVAL_IGNORE_OUTPUT
# measured speed-ups: they depend on the machine and its load (the counted passes above do not)
for task, greedy_s, lookup_s, counts in (("copy", greedy_seconds["greedy"], lookup_seconds["lookup"], copy_stats),
                                         ("open", seconds["greedy, open"], seconds["lookup, open"], vars(open_stats))):
    print(f"{task}: greedy {greedy_s:.2f} s, prompt lookup {lookup_s:.2f} s: {greedy_s / lookup_s:.2f}x "
          f"({counts['accepted']}/{counts['drafted']} guesses kept, {counts['forward_calls']} passes)")

# %% [markdown]
# ## 5. Speculative decoding with a draft model
#
# Guesses can come from a second, cheaper model, the **draft**: it proposes *k* tokens greedily,
# one cheap pass each, and the big model (the **target**) checks them in one pass, exactly as
# above (Leviathan et al., 2023; Chen et al., 2023). The target's tokens are kept whatever the
# draft proposes, so the output is the target's greedy output **whatever the draft**: a good draft
# only saves passes of the target. The loop, with the draft keeping its own cache:

# %%
@torch.inference_mode()
def speculative(target, draft, ids, max_new_tokens, eos_id, k=4):
    tokens, n_prompt = ids[0].tolist(), ids.shape[1]
    target_cache, draft_cache = DynamicCache(config=target.config), DynamicCache(config=draft.config)
    calls, drafted, accepted = 0, 0, 0
    while len(tokens) - n_prompt < max_new_tokens and (calls == 0 or tokens[-1] != eos_id):
        guesses, room = [], max_new_tokens - (len(tokens) - n_prompt) - 1
        while len(guesses) < min(k, room) and eos_id not in guesses:  # the draft guesses greedily
            unseen = (tokens + guesses)[draft_cache.get_seq_length():]
            logits = draft(torch.tensor([unseen], device=draft.device), past_key_values=draft_cache).logits
            guesses.append(int(logits[0, -1].argmax()))
        unseen = tokens[target_cache.get_seq_length():]
        logits = target(torch.tensor([unseen + guesses], device=target.device), past_key_values=target_cache).logits[0]
        new, n = agreed(guesses, logits[-len(guesses) - 1:].argmax(dim=-1).tolist(), eos_id)
        tokens += new
        for c in (target_cache, draft_cache):  # both caches forget the rejected guesses
            c.crop(min(0, len(tokens) - 1 - c.get_seq_length()))
        calls, drafted, accepted = calls + 1, drafted + len(guesses), accepted + n
    return torch.tensor([tokens], device=target.device), {"forward_calls": calls, "drafted": drafted, "accepted": accepted}


# %% [markdown]
# The only other model here is this one in other forms. Two drafts:
#
# - the **bfloat16** copy from section 1: half the bytes, nearly the same predictions;
# - an **early-exit** draft, `lt.early_exit_draft(model, 4)`: the first 4 of the model's layers, its
#   final norm and its head, sharing the weights (no copy). About a third of the bytes of a step
#   (the head is a large part of this small model), but a model not trained to be read after
#   4 layers guesses badly ([notebook 03](03_forward_pass.ipynb)'s logit lens showed how far the
#   early layers' guesses are from the final ones). Being slow, it runs for the first 12 tokens only.
#
# Both against the greedy answer to the open question of section 4 (greedy decoding's first 12
# tokens are the first 12 of its 24):

# %%
early = lt.early_exit_draft(model, 4)
assert 0.25 < lt.forward_bytes(early, 1, past_tokens=P_OPEN) / lt.forward_bytes(model, 1, past_tokens=P_OPEN) < 0.4
spec_seconds, spec_runs = lt.time_runs({
    "bfloat16 draft, by hand": lambda: speculative(model, half, open_task["input_ids"], N_OPEN, EOS),
    "early-exit draft": lambda: lt.speculative_generate(model, early, open_task["input_ids"], open_task["attention_mask"],
                                                        max_new_tokens=12, eos_token_id=EOS, return_stats=True),
}, repeats=1)
with torch.inference_mode(), lt.capture() as assisted:
    library = model.generate(**open_task, max_new_tokens=N_OPEN, do_sample=False, assistant_model=half)
package, package_stats = lt.speculative_generate(model, half, open_task["input_ids"], open_task["attention_mask"],
                                                 max_new_tokens=N_OPEN, eos_token_id=EOS, return_stats=True)
(spec_by_hand, spec_stats), (early_out, early_stats) = spec_runs.values()
for out in (spec_by_hand, library, package):
    assert torch.equal(out, reference)
assert torch.equal(early_out, reference[:, :P_OPEN + 12])
assert all("deprecated" in m for m in assisted.messages), assisted.messages
print("by hand (bfloat16 draft), lt.speculative_generate (bfloat16 and early-exit drafts) and "
      "generate(assistant_model=...): the target's greedy tokens")

# %% [markdown]
# The tokens are the target's. How many guesses the target accepts depends on the draft, and for
# the bfloat16 draft on the CPU's rounding, so the counts are shown in an ignored cell (asserted
# only with wide margins):

# %%
# NBVAL_IGNORE_OUTPUT
# acceptance of a bfloat16 draft and times depend on the CPU (bfloat16 rounding, kernels, load)
greedy_open = seconds["greedy, open"]
for name, counts, spent in (("bfloat16 draft, by hand", spec_stats, spec_seconds["bfloat16 draft, by hand"]),
                            ("bfloat16 draft, package", vars(package_stats), None),
                            ("early-exit draft (4 layers)", vars(early_stats), spec_seconds["early-exit draft"])):
    rate = counts["accepted"] / max(counts["drafted"], 1)
    new = counts.get("new_tokens", N_OPEN)
    timing = f", {spent:.2f} s: {greedy_open / N_OPEN * new / spent:.2f}x greedy's speed" if spent else ""
    print(f"{name:28} {counts['accepted']:3}/{counts['drafted']:3} guesses kept ({rate:.0%}), "
          f"{counts['forward_calls']} target passes for {new} tokens{timing}")
assert spec_stats["forward_calls"] < N_OPEN / 2 and early_stats.acceptance_rate < 0.5

# %% [markdown]
# The bfloat16 draft agrees with the target almost always, so the target runs a fraction of the
# passes; whether that is faster depends on how cheap the draft's passes are on this CPU (see
# section 1: often they are not cheaper at all). The early-exit draft is cheap but nearly always
# wrong: one target pass per token, plus the draft's passes, slower than plain decoding. A draft
# must be both **cheap and right**. If the target accepts each guess with probability *a*, a round
# of *k* guesses yields on average (1 − *a*<sup>*k*+1</sup>) / (1 − *a*) tokens for one target pass
# plus *k* draft passes (Leviathan et al., 2023). Real systems use a draft model from the same
# family (a 1B model for an 8B one), a draft trained for it (Medusa heads, EAGLE, LayerSkip), or
# prompt lookup.
#
# **Sampling.** With `do_sample=True` the draft's token *x* (drawn from the draft's distribution
# *q*) is accepted with probability min(1, *p*(*x*) / *q*(*x*)), where *p* is the target's
# distribution after the same prefix; at the first rejection, the token is drawn instead from the
# leftover distribution max(0, *p* − *q*), renormalised. The accepted-or-redrawn token then has
# **exactly** the distribution *p*: speculative sampling changes the speed, not the samples'
# distribution (Leviathan, Kalman & Matias, "Fast Inference from Transformers via Speculative
# Decoding", ICML 2023, arXiv:2211.17192; Chen et al., "Accelerating Large Language Model Decoding
# with Speculative Sampling", 2023, arXiv:2302.01318). One step of that rule, drawn 200,000 times on
# made-up distributions over 5 tokens:

# %%
p = torch.tensor([0.50, 0.20, 0.15, 0.10, 0.05])  # the target's next-token distribution
q = torch.tensor([0.30, 0.40, 0.10, 0.10, 0.10])  # the draft's: quite different
generator = torch.Generator().manual_seed(0)
draws = 200_000
x = torch.multinomial(q, draws, replacement=True, generator=generator)  # the draft's guesses
accept = torch.rand(draws, generator=generator) < (p[x] / q[x]).clamp(max=1)
leftover = (p - q).clamp(min=0) / (p - q).clamp(min=0).sum()
redrawn = torch.multinomial(leftover, draws, replacement=True, generator=generator)
token = torch.where(accept, x, redrawn)
frequency = torch.bincount(token, minlength=5) / draws
standard_error = (p * (1 - p) / draws).sqrt()
print("target p:", [lt.fmt(v, decimals=2, kind="exact") for v in p.tolist()],
      "| draft q:", [lt.fmt(v, decimals=2, kind="exact") for v in q.tolist()],
      "| leftover max(0, p - q), renormalised:", [lt.fmt(v, decimals=2, kind="exact") for v in leftover.tolist()])
assert ((frequency - p).abs() < 5 * standard_error).all()  # the tokens follow p, not q

# %%
# NBVAL_IGNORE_OUTPUT
# sampled frequencies (random draws; the assert above checks them against p)
print("frequency of each token:", [f"{f:.3f}" for f in frequency.tolist()],
      f"| guesses accepted: {accept.float().mean():.1%} (expected sum of min(p, q) = {torch.minimum(p, q).sum():.2f})")

# %% [markdown]
# ## 6. Static cache and compilation
#
# The default cache grows by one position a step, so every step has new tensor shapes. A **static
# cache** (`cache_implementation="static"`) allocates the cache for the whole length once and
# writes into it: fixed shapes, which is what `torch.compile` (and CUDA graphs) need to capture
# one compiled step and replay it. On its own it changes nothing in the tokens:

# %%
with torch.inference_mode(), lt.capture() as got:
    static = model.generate(**open_task, max_new_tokens=N_OPEN, do_sample=False, cache_implementation="static")
assert torch.equal(static, reference) and not got.messages
print("cache_implementation='static': the same tokens")

# %% [markdown]
# `torch.compile` fuses the many small operations of a step (the overhead of section 1) into
# fewer, generated kernels. On a CPU its backend writes and compiles C++, so it needs a C++
# compiler and takes minutes on a laptop the first time. It is never required here; the cell runs
# it only where a compiler is found and you set `TRY_COMPILE = True` (or the environment variable
# `LLM_TUTORIAL_COMPILE=1`):

# %%
# NBVAL_IGNORE_OUTPUT
# optional, machine-dependent and slow to compile: off unless asked for
TRY_COMPILE = os.environ.get("LLM_TUTORIAL_COMPILE") == "1"
compiler = next((shutil.which(c) for c in (os.environ.get("CXX", "c++"), "g++", "clang++") if shutil.which(c)), None)
if compiler is None:
    print("no C++ compiler found: torch.compile's CPU backend needs one (skipped)")
elif not TRY_COMPILE:
    print(f"C++ compiler found ({compiler}); set TRY_COMPILE = True to compile (minutes the first time)")
else:
    eager_forward = model.forward
    model.forward = torch.compile(model.forward, dynamic=False)
    try:
        with torch.inference_mode():
            for attempt in ("first call (compiles)", "second call"):
                start = time.perf_counter()
                compiled = model.generate(**open_task, max_new_tokens=N_OPEN, do_sample=False,
                                          cache_implementation="static")
                print(f"{attempt}: {time.perf_counter() - start:.1f} s")
    finally:
        model.forward = eager_forward
    print("same tokens as eager:", torch.equal(compiled, reference))

# %% [markdown]
# ## 7. From here to a serving engine (on paper)
#
# Serving engines such as **vLLM**, **TGI** (Hugging Face's text-generation-inference) and
# **SGLang** run the same model and the same decoding rules, and add what this notebook measured
# the need for:
#
# | what | what it does | which limit of this notebook it attacks |
# |---|---|---|
# | continuous batching | new requests join the running batch at any step, finished ones leave | §2: a step of 8 rows costs far less than 8 steps of one row, so keep the batch full |
# | paged KV cache (PagedAttention) | the cache lives in fixed-size blocks, allocated as a sequence grows | §3: no memory reserved for the longest possible answer, so more sequences fit |
# | prefix caching | requests that share a prompt prefix (a system prompt, a document) share its cache blocks | §3 and prefill: the shared prefix is computed and stored once |
# | speculative decoding | n-gram (prompt lookup), draft models, trained heads (Medusa, EAGLE) | §4-5: several tokens per pass of the big model |
# | quantized kernels | fused int8/int4/fp8 matrix kernels (AWQ, GPTQ, Marlin, FP8) | §1: fewer bytes, without §1's unpacking overhead |
# | compiled steps, CUDA graphs, tensor parallelism | one launch per step; a model split over GPUs | §1's per-operation overhead; bandwidth of several GPUs |
#
# The `generate` arguments of this series map to vLLM's `SamplingParams` (per request) and to
# arguments of its engine, `LLM(...)`:
#
# | `model.generate(...)` | vLLM |
# |---|---|
# | `max_new_tokens=N` | `SamplingParams(max_tokens=N)` |
# | `min_new_tokens=N` | `min_tokens=N` |
# | `do_sample=False` (greedy) | `temperature=0` |
# | `do_sample=True, temperature=T` | `temperature=T` |
# | `top_k=K` (`generate` adds `top_k=50` when unset!) | `top_k=K` (unset: no top-k) |
# | `top_p=P`, `min_p=M` | `top_p=P`, `min_p=M` |
# | `repetition_penalty=R` | `repetition_penalty=R` (also OpenAI-style `presence_penalty`, `frequency_penalty`) |
# | `num_return_sequences=N` | `n=N` |
# | `eos_token_id=[...]`; `eos_token_id=None` to run on | `stop_token_ids=[...]`; `ignore_eos=True` |
# | `stop_strings=[...]` (with `tokenizer=`) | `stop=[...]` |
# | `torch.manual_seed(s)` before the call | `seed=s` |
# | `output_logits=True` / `output_scores=True` | `logprobs=K` (the top K log-probs of each token) |
# | `num_beams=B` | `LLM.beam_search(...)` with `BeamSearchParams(beam_width=B)` |
# | `prompt_lookup_num_tokens=K, max_matching_ngram_size=N` | `LLM(speculative_config={"method": "ngram", "num_speculative_tokens": K, "prompt_lookup_max": N})` |
# | `assistant_model=draft` | `LLM(speculative_config={"model": "draft-name", "num_speculative_tokens": K})` |
# | `cache_implementation="static"`, `torch.compile` | built in (CUDA graphs, compilation) |
#
# Check the names against the vLLM version you install: its arguments move between releases.

# %%
# NBVAL_IGNORE_OUTPUT
# CPU seconds this notebook used so far (depends on the machine)
print(f"CPU seconds since the model was loaded: {time.process_time() - cpu_start:.0f}")

# %% [markdown]
# ## Recap
#
# - A decoding step reads every weight (and the KV cache) to compute one token: about 0.5 FLOP per
#   byte in float32, far below any machine's ridge point. Its speed limit is **bandwidth / bytes
#   per token**; prefill reuses each weight for all prompt tokens and is limited by the matmul
#   speed instead, so it makes tokens many times faster. Count the bytes and FLOPs with
#   `lt.forward_bytes` / `lt.forward_flops`; measure the machine with `lt.memory_bandwidth` /
#   `lt.matmul_flops`.
# - Fewer bytes (bfloat16, int8, nf4) raise the limit only where the kernels turn them into speed:
#   on many CPUs they do not. Measure.
# - **Batching** reads the weights once for all rows: throughput grows with the batch until the
#   intensity passes the ridge point, then bends.
# - The **KV cache** grows by `2 × layers × kv_heads × head_dim × bytes` per token per sequence
#   (`lt.kv_cache_bytes_per_token`); for long contexts or many users it outweighs the model. GQA
#   divides it.
# - **Prompt lookup** and **speculative decoding** check several guessed tokens in one pass and
#   keep the target's own greedy tokens: the same answer, fewer passes. They pay off when the
#   guesses are right (copying tasks; a draft that is cheap *and* agrees) and cost time when not.
#   Sampling has an exact version (accept with min(1, p/q), else redraw from max(0, p − q)).
# - A static cache gives the same tokens and fixed shapes for `torch.compile`; serving engines add
#   continuous batching, a paged cache, prefix caching and fused kernels.
#
# ## Exercises
#
# 1. Llama-2-7B has no GQA: 32 layers, 32 key/value heads of 128, float16 (its `config.json` on the
#    Hub, `meta-llama/Llama-2-7b-hf`; 6,738,415,616 parameters, context 4096). How many bytes does
#    its KV cache take per token, and how many tokens of one sequence outweigh its weights? Compute
#    it with `lt.kv_cache_bytes_per_token` from a `LlamaConfig`.

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
llama2 = LlamaConfig(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32, num_key_value_heads=32)
per_token_7b = lt.kv_cache_bytes_per_token(llama2, torch.float16)
tokens_7b = 6_738_415_616 * 2 / per_token_7b
print(f"{per_token_7b // 1024} KiB per token; the weights weigh as much as {int(tokens_7b):,} tokens of cache "
      f"({lt.fmt(tokens_7b / 4096, decimals=1, kind='exact')} full 4096-token contexts)")
assert per_token_7b == 524_288 and 25_000 < tokens_7b < 26_000

# %% [markdown]
# 2. Run `lt.prompt_lookup_generate` on the copy task with `max_ngram=1` (look up only the last
#    token). Are the tokens the same? Does it need more or fewer forward passes than `max_ngram=3`?

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
one_gram, one_stats = lt.prompt_lookup_generate(model, copy_task["input_ids"], copy_task["attention_mask"],
                                                max_new_tokens=N_COPY, max_ngram=1, eos_token_id=EOS,
                                                return_stats=True)
print(f"max_ngram=1: {one_stats.forward_calls} passes, {one_stats.accepted}/{one_stats.drafted} kept | "
      f"max_ngram=3: {copy_stats['forward_calls']} passes, {copy_stats['accepted']}/{copy_stats['drafted']} kept")
assert torch.equal(one_gram, greedy_copy)  # the same tokens, whatever the guesses
assert one_stats.forward_calls >= copy_stats["forward_calls"]  # one token matches in more wrong places

# %% [markdown]
# 3. From the counted bytes and FLOPs only: at which batch size does a decoding step (after the
#    sky prompt, float32) first reach 4 FLOPs per byte, a typical ridge point of a laptop CPU?

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
def step_intensity(batch):
    return lt.forward_flops(model, 1, past_tokens=P, batch_size=batch) / lt.forward_bytes(model, 1, past_tokens=P,
                                                                                        batch_size=batch)


batch = 1
while step_intensity(batch) < 4:
    batch += 1
print("batch size", batch, "| FLOP/byte:", lt.fmt(step_intensity(batch), decimals=2, kind="exact"))
assert step_intensity(batch) >= 4 > step_intensity(batch - 1)
