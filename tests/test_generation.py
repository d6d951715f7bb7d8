"""The hand-written loop (llm_tutorial.generation) against model.generate, token for token."""

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

import llm_tutorial as lt
from llm_tutorial.generation import answer_tokens, generate, stream_tokens
from llm_tutorial.steps import choose_next_token, position_ids_from_mask, prefill

QUESTIONS = (
    "What is 2+2? Answer with the number only.",
    "Write a long poem about the sea, the moon, the stars and the wind at night, with many verses.",
    "Hi",
)


@pytest.fixture(scope="module")
def batch(tokenizer):
    """Three chat prompts of very different lengths, left-padded, with their mask."""
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                      tokenize=False)
        for q in QUESTIONS
    ]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    lengths = enc["attention_mask"].sum(1)
    assert int(lengths.max() - lengths.min()) >= 15, "the prompts must differ a lot in length"
    return enc


@pytest.fixture(scope="module")
def gpt2(tokenizer):
    """A randomly initialised tiny GPT-2: learned absolute position embeddings, no download."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=96, n_embd=64, n_layer=2, n_head=4,
                        initializer_range=0.3,  # larger than GPT-2's 0.02: varied, position-sensitive text
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def gpt2_batch():
    """Random ids, left-padded with pad id 0 (not the EOS id 2), lengths 9, 3 and 6."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 49152, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :6] = 0
    mask[2, :3] = 0
    return ids.masked_fill(mask == 0, 0), mask


def hf(model, ids, mask, **kwargs):
    """model.generate quietly (it warns about flags that the mode ignores)."""
    with lt.capture(), torch.inference_mode():
        return model.generate(ids, attention_mask=mask, **kwargs)


def ours_and_hf(model, ids, mask, seed=None, **kwargs):
    if seed is not None:
        torch.manual_seed(seed)
    mine = generate(model, ids, mask, **kwargs)
    if seed is not None:
        torch.manual_seed(seed)
    return mine, hf(model, ids, mask, **kwargs)


@pytest.fixture(scope="module")
def llama(tokenizer):
    """The embedded model's architecture in miniature (RoPE, grouped-query attention, tied
    embeddings), random, over its vocabulary with a context of 128, so that it takes ``batch``.
    initializer_range=0.1: varied text that repeats some tokens (the repetition penalty bites)."""
    torch.manual_seed(0)
    config = LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=128,
                         tie_word_embeddings=True, initializer_range=0.1, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


# ---------------------------------------------------------------------------------------------
# greedy, the embedded model on real text (the other tests use tiny random models: same code paths,
# a fraction of the time)
# ---------------------------------------------------------------------------------------------
def test_greedy_single_prompt_stops_at_eos_like_generate(model, tokenizer):
    enc = lt.chat_inputs(tokenizer, QUESTIONS[0])
    mine, ref = ours_and_hf(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=12,
                            eos_token_id=tokenizer.eos_token_id)
    assert mine.dtype == torch.long
    assert torch.equal(mine, ref)
    assert mine.shape[1] < enc["input_ids"].shape[1] + 12  # all rows finished: stopped at EOS, not at the limit
    assert int(mine[0, -1]) == tokenizer.eos_token_id


@pytest.fixture(scope="module")
def real_batch_run(model, tokenizer, batch):
    """``batch`` through the embedded model, 10 greedy tokens (the 2+2 row ends at its eighth):
    model.generate with its raw logits, and ours with log-probs (one run serves the token test and
    the log-prob test)."""
    kwargs = dict(max_new_tokens=10, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, output_logits=True, return_dict_in_generate=True,
                             **kwargs)
    seq, logprobs = generate(model, batch["input_ids"], batch["attention_mask"], return_logprobs=True, **kwargs)
    return out, seq, logprobs


def test_greedy_batch_with_eos_mid_batch_equals_generate(tokenizer, batch, real_batch_run):
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    ref, mine = real_batch_run[0].sequences, real_batch_run[1]
    assert torch.equal(mine, ref)
    new = mine[:, batch["input_ids"].shape[1]:]
    first_eos = [row.index(eos) if eos in row else None for row in new.tolist()]
    # one row (2+2) finishes early, the poem does not: the finished row is padded afterwards
    assert first_eos[0] is not None and first_eos[0] < new.shape[1] - 1
    assert first_eos[1] is None
    assert (new[0, first_eos[0]:] == pad).all()


def test_logprobs_match_what_transformers_reports(model, tokenizer, batch, real_batch_run):
    eos = tokenizer.eos_token_id
    out, seq, logprobs = real_batch_run
    with torch.inference_mode():
        scores = model.compute_transition_scores(out.sequences, out.logits, normalize_logits=True)
    assert torch.equal(seq, out.sequences)
    assert logprobs.shape == scores.shape and logprobs.dtype == torch.float32
    new = seq[:, batch["input_ids"].shape[1]:]
    # positions up to and including each row's EOS are real tokens; after that, padding scores 0
    real = (new == eos).int().cumsum(1) - (new == eos).int() == 0
    assert (~real).any(), "the test needs a row that finished early"
    assert (logprobs[~real] == 0).all()
    assert (logprobs[real] < 0).all()
    # the raw logits generate returns, normalised over the vocabulary: the same numbers
    raw = torch.stack(out.logits, dim=1).float()
    from_raw = torch.log_softmax(raw, dim=-1).gather(-1, new[..., None])[..., 0]
    assert torch.allclose(logprobs[real], from_raw[real], atol=1e-5)
    # compute_transition_scores normalises over dim 1 of a [batch, vocab, steps] stack, which in
    # float32 is off by up to ~1e-4 from a float64 reference; ours is closer to float64
    exact = torch.log_softmax(raw.double(), dim=-1).gather(-1, new[..., None])[..., 0]
    assert torch.allclose(logprobs[real].double(), scores[real].double(), atol=3e-4)
    ours_error = (logprobs[real].double() - exact[real]).abs().max()
    theirs_error = (scores[real].double() - exact[real]).abs().max()
    assert ours_error < 5e-5 and ours_error <= theirs_error


# ---------------------------------------------------------------------------------------------
# greedy, the tiny Llama (the chat prompts of ``batch``)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("question", QUESTIONS[:2])
def test_greedy_single_prompt_equals_generate(llama, tokenizer, question):
    enc = lt.chat_inputs(tokenizer, question)
    mine, ref = ours_and_hf(llama, enc["input_ids"], enc["attention_mask"], max_new_tokens=12,
                            eos_token_id=tokenizer.eos_token_id)
    assert mine.dtype == torch.long
    assert torch.equal(mine, ref)


def test_no_cache_recomputes_and_gives_the_same_tokens(llama, tokenizer, batch):
    kwargs = dict(max_new_tokens=8, eos_token_id=tokenizer.eos_token_id)  # each step recomputes everything
    cached = generate(llama, batch["input_ids"], batch["attention_mask"], **kwargs)
    uncached, ref = ours_and_hf(llama, batch["input_ids"], batch["attention_mask"], use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    assert torch.equal(uncached, ref)


def test_logprobs_ignore_the_sampling_filters(llama, tokenizer):
    """Log-probs are under the unmodified distribution, not the tempered/filtered one."""
    enc = lt.chat_inputs(tokenizer, QUESTIONS[1])
    torch.manual_seed(3)
    seq, logprobs = generate(llama, enc["input_ids"], max_new_tokens=6, do_sample=True, temperature=0.5,
                             top_k=5, return_logprobs=True)
    with torch.inference_mode():
        logits = llama(seq).logits[:, enc["input_ids"].shape[1] - 1:-1].float()
    expected = torch.log_softmax(logits, -1).gather(-1, seq[:, enc["input_ids"].shape[1]:, None])[..., 0]
    assert torch.allclose(logprobs, expected, atol=1e-4)
    tempered = torch.log_softmax(logits / 0.5, -1).gather(-1, seq[:, enc["input_ids"].shape[1]:, None])[..., 0]
    assert not torch.allclose(logprobs, tempered, atol=1e-2)  # the tempered numbers would differ


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------
# top_k is always explicit: model.generate(do_sample=True) without it applies top_k=50, ours applies none
SAMPLING_SETTINGS = [
    dict(top_k=50),  # what model.generate(do_sample=True) does when nothing else is set
    dict(top_k=None, temperature=0.7, top_p=0.9),
    dict(top_k=None, temperature=1.3, min_p=0.05, repetition_penalty=1.3),
    dict(top_k=None),  # pure sampling from the whole vocabulary
]


# one seed per setting (two different seeds across them): each case draws 3 rows x 8 tokens, and the
# tiny GPT-2 below covers more seeds
@pytest.mark.parametrize(("seed", "settings"), list(zip([0, 7, 0, 7], SAMPLING_SETTINGS)), ids=str)
def test_seeded_sampling_batch_equals_generate(llama, tokenizer, batch, seed, settings):
    mine, ref = ours_and_hf(llama, batch["input_ids"], batch["attention_mask"], seed=seed, max_new_tokens=8,
                            do_sample=True, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, **settings)
    assert torch.equal(mine, ref)


def test_top_k_none_means_no_top_k_but_generate_defaults_to_50(llama, tokenizer):
    enc = lt.chat_inputs(tokenizer, QUESTIONS[1])
    ids, eos = enc["input_ids"], tokenizer.eos_token_id
    runs = {}
    for name, fn in {
        "ours_none": lambda: generate(llama, ids, max_new_tokens=12, do_sample=True, temperature=1.5,
                                      eos_token_id=eos),
        "ours_50": lambda: generate(llama, ids, max_new_tokens=12, do_sample=True, temperature=1.5, top_k=50,
                                    eos_token_id=eos),
        "hf_default": lambda: hf(llama, ids, None, max_new_tokens=12, do_sample=True, temperature=1.5),
        "hf_none": lambda: hf(llama, ids, None, max_new_tokens=12, do_sample=True, temperature=1.5, top_k=None),
    }.items():
        torch.manual_seed(5)
        runs[name] = fn()
    assert torch.equal(runs["ours_none"], runs["hf_none"])
    assert torch.equal(runs["ours_50"], runs["hf_default"])
    assert not torch.equal(runs["ours_none"], runs["ours_50"])


def test_repetition_penalty_applies_in_greedy_mode_too(llama, tokenizer, batch):
    kwargs = dict(max_new_tokens=10, eos_token_id=tokenizer.eos_token_id, repetition_penalty=1.5)
    mine, ref = ours_and_hf(llama, batch["input_ids"], batch["attention_mask"], **kwargs)
    assert torch.equal(mine, ref)
    plain = generate(llama, batch["input_ids"], batch["attention_mask"], max_new_tokens=10,
                     eos_token_id=tokenizer.eos_token_id)
    assert not torch.equal(mine, plain)


# ---------------------------------------------------------------------------------------------
# EOS / pad mapping, lengths
# ---------------------------------------------------------------------------------------------
def test_eos_none_never_stops_like_generate(llama, tokenizer):
    enc = lt.chat_inputs(tokenizer, QUESTIONS[0])
    n = enc["input_ids"].shape[1]
    # a copy whose own EOS is a token it produces early (the tiny Llama never says the real one)
    own = copy.deepcopy(llama)
    own.config.eos_token_id = own.generation_config.eos_token_id = int(
        generate(llama, enc["input_ids"], max_new_tokens=3)[0, n + 2])
    mine, ref = ours_and_hf(own, enc["input_ids"], enc["attention_mask"], max_new_tokens=12,
                            eos_token_id=None, pad_token_id=None)
    assert torch.equal(mine, ref)
    assert mine.shape[1] == n + 12
    assert own.config.eos_token_id in mine[0, n:].tolist()  # it went past the model's own EOS


def test_max_new_tokens_one_and_zero(llama, tokenizer, batch):
    ids, mask = batch["input_ids"], batch["attention_mask"]
    mine, ref = ours_and_hf(llama, ids, mask, max_new_tokens=1, eos_token_id=tokenizer.eos_token_id)
    assert torch.equal(mine, ref) and mine.shape == (3, ids.shape[1] + 1)
    seq, logprobs = generate(llama, ids, mask, max_new_tokens=0, return_logprobs=True)
    assert torch.equal(seq, ids) and seq.data_ptr() != ids.data_ptr()
    assert logprobs.shape == (3, 0)
    with pytest.raises(ValueError, match="max_new_tokens"):  # the library refuses 0; we return the prompt
        hf(llama, ids, mask, max_new_tokens=0)


# ---------------------------------------------------------------------------------------------
# a second architecture: GPT-2 with learned absolute positions
# ---------------------------------------------------------------------------------------------
def test_gpt2_greedy_left_padded_batch_equals_generate(gpt2, gpt2_batch):
    ids, mask = gpt2_batch
    for use_cache in (True, False):
        mine, ref = ours_and_hf(gpt2, ids, mask, max_new_tokens=15, use_cache=use_cache, pad_token_id=0)
        assert torch.equal(mine, ref)


def test_gpt2_padding_does_not_change_a_row(gpt2, gpt2_batch):
    """With positions from the mask, a padded row gets exactly the tokens it gets alone."""
    ids, mask = gpt2_batch
    together = generate(gpt2, ids, mask, max_new_tokens=10, pad_token_id=0)
    for row in range(3):
        alone_ids = ids[row:row + 1, mask[row].bool()]
        alone = generate(gpt2, alone_ids, max_new_tokens=10)
        assert together[row, ids.shape[1]:].tolist() == alone[0, alone_ids.shape[1]:].tolist()


def test_gpt2_positions_really_matter(gpt2, gpt2_batch):
    """Counting positions from the first column instead of each row's first token changes the
    next-token logits of a padded row (with RoPE the shift would cancel out; here it does not)."""
    ids, mask = gpt2_batch
    right, _ = prefill(gpt2, ids, mask, position_ids_from_mask(mask))
    naive, _ = prefill(gpt2, ids, mask, torch.arange(ids.shape[1]).expand_as(ids))
    assert torch.allclose(right[0], naive[0])  # row 0 has no padding: same positions
    assert not torch.allclose(right[1], naive[1], atol=1e-3)
    assert right[1].argmax() != naive[1].argmax() or right[2].argmax() != naive[2].argmax()


def test_gpt2_eos_mid_batch_and_list_of_eos(gpt2, gpt2_batch):
    ids, mask = gpt2_batch
    free = generate(gpt2, ids, mask, max_new_tokens=12, pad_token_id=0)[:, ids.shape[1]:].tolist()
    eos = [free[1][2], free[0][5]]  # declare two of the tokens it produces "end of sequence"
    mine, ref = ours_and_hf(gpt2, ids, mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(mine, ref)
    # each row is the free run up to its first EOS, then padding; the loop ends with the last row
    expected = []
    for row in free:
        stop = next((i for i, t in enumerate(row) if t in eos), None)
        expected.append(row if stop is None else row[:stop + 1] + [0] * (len(row) - stop - 1))
    width = max(next((i + 1 for i, t in enumerate(row) if t in eos), 12) for row in free)
    assert mine[:, ids.shape[1]:].tolist() == [row[:width] for row in expected]
    assert any(t in eos for t in expected[1][:3])  # row 1 finished early


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("settings", [
    dict(top_k=None),
    dict(top_k=20, temperature=0.8),
    dict(top_k=None, top_p=0.5, min_p=0.2, temperature=2.0),
    dict(top_k=5, top_p=0.9, repetition_penalty=0.7),
], ids=str)
def test_gpt2_seeded_sampling_equals_generate(gpt2, gpt2_batch, seed, settings):
    ids, mask = gpt2_batch
    mine, ref = ours_and_hf(gpt2, ids, mask, seed=seed, max_new_tokens=12, do_sample=True, pad_token_id=0,
                            **settings)
    assert torch.equal(mine, ref)


def test_gpt2_mask_inferred_from_pad_id_like_generate(gpt2, gpt2_batch):
    """No mask: pad id 0 occurs and is not the EOS id, so both infer the padding from it."""
    ids, mask = gpt2_batch
    inferred, ref = ours_and_hf(gpt2, ids, None, max_new_tokens=8, pad_token_id=0, eos_token_id=2)
    assert torch.equal(inferred, ref)
    assert torch.equal(inferred, generate(gpt2, ids, mask, max_new_tokens=8, pad_token_id=0, eos_token_id=2))


# ---------------------------------------------------------------------------------------------
# other architectures: tiny, randomly initialised, built from configs (no download)
# ---------------------------------------------------------------------------------------------
_SMALL = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
ARCHITECTURES = {  # rotary (full or partial), learned absolute positions, ALiBi, parallel blocks, GQA
    "Qwen2Config": dict(num_key_value_heads=2, **_SMALL),
    "MistralConfig": dict(num_key_value_heads=2, **_SMALL),
    "Gemma2Config": dict(num_key_value_heads=2, head_dim=16, **_SMALL),
    "PhiConfig": dict(**_SMALL),
    "GPTNeoXConfig": dict(**_SMALL),
    "OPTConfig": dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128,
                      word_embed_proj_dim=64),
    "BloomConfig": dict(vocab_size=1000, hidden_size=64, n_layer=2, n_head=4),
    "FalconConfig": dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4),
    "GPTJConfig": dict(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=128),
    "GPTNeoConfig": dict(vocab_size=1000, hidden_size=64, num_layers=2, num_heads=4, max_position_embeddings=128,
                         attention_types=[[["global", "local"], 1]]),
}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def tiny_model(request):
    import transformers

    torch.manual_seed(0)
    config = getattr(transformers, request.param)(**ARCHITECTURES[request.param], pad_token_id=0,
                                                  bos_token_id=1, eos_token_id=2)
    config.initializer_range = 0.3  # large random weights: confident, varied next tokens
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="module")
def tiny_batch():
    """Random ids below 1000, left-padded with pad id 0 (not the EOS id 2), lengths 9, 3 and 6."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 1000, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :6] = 0
    mask[2, :3] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("use_cache", [True, False])
def test_other_architectures_greedy_with_eos_mid_batch(tiny_model, tiny_batch, use_cache):
    ids, mask = tiny_batch
    free = generate(tiny_model, ids, mask, max_new_tokens=10, pad_token_id=0)
    eos = int(free[1, ids.shape[1] + 2])  # row 1 "ends" at its third new token
    mine, ref = ours_and_hf(tiny_model, ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=0,
                            use_cache=use_cache)
    assert torch.equal(mine, ref)
    assert (mine[1, ids.shape[1] + 3:] == 0).all()  # padded after its EOS


@pytest.mark.parametrize("seed", [0, 1])
def test_other_architectures_seeded_sampling(tiny_model, tiny_batch, seed):
    ids, mask = tiny_batch
    mine, ref = ours_and_hf(tiny_model, ids, mask, seed=seed, max_new_tokens=10, do_sample=True, top_k=20,
                            temperature=0.9, pad_token_id=0)
    assert torch.equal(mine, ref)


def test_gpt2_bfloat16_equals_generate(gpt2, gpt2_batch):
    model = GPT2LMHeadModel(gpt2.config).eval()
    model.load_state_dict(gpt2.state_dict())
    model = model.to(torch.bfloat16)
    ids, mask = gpt2_batch
    mine, ref = ours_and_hf(model, ids, mask, max_new_tokens=10, pad_token_id=0)
    assert torch.equal(mine, ref)


def test_too_long_for_the_position_table(gpt2, gpt2_batch):
    ids, mask = gpt2_batch
    with pytest.raises(ValueError, match="positions"):
        generate(gpt2, ids, mask, max_new_tokens=96)


# ---------------------------------------------------------------------------------------------
# streaming, pieces, post-processing
# ---------------------------------------------------------------------------------------------
def test_stream_tokens_yields_the_generated_tokens(gpt2, gpt2_batch):
    ids, mask = gpt2_batch
    steps = list(stream_tokens(gpt2, ids, mask, max_new_tokens=6, pad_token_id=0))
    assert len(steps) == 6
    streamed = torch.stack([s.tokens for s in steps], dim=1)
    assert torch.equal(streamed, generate(gpt2, ids, mask, max_new_tokens=6, pad_token_id=0)[:, ids.shape[1]:])
    assert not any(s.finished.any() for s in steps)


def test_stream_tokens_checks_arguments_before_the_first_step(gpt2, gpt2_batch):
    ids, mask = gpt2_batch
    with pytest.raises(ValueError, match="max_new_tokens"):
        stream_tokens(gpt2, ids, mask, max_new_tokens=-1)  # no iteration needed


def test_choose_next_token_greedy_and_penalty():
    logits = torch.tensor([[1.0, 3.0, 2.0]])
    assert choose_next_token(logits).tolist() == [1]
    # token 1 was seen: 3.0 / 2 = 1.5 < 2.0, so token 2 wins
    assert choose_next_token(logits, torch.tensor([[1]]), repetition_penalty=2.0).tolist() == [2]


def test_position_ids_from_mask():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_answer_tokens_echo_and_logprobs():
    seq = torch.tensor([[0, 5, 6, 7, 2, 2], [4, 5, 6, 8, 9, 3]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    lp = torch.tensor([[-0.5, -0.25, 0.0], [-1.0, -2.0, -3.0]])
    assert answer_tokens(seq, 3, 2) == [[7], [8, 9, 3]]
    assert answer_tokens(seq, 3, 2, echo=True, attention_mask=mask) == [[5, 6, 7], [4, 5, 6, 8, 9, 3]]
    tokens, logprobs = answer_tokens(seq, 3, [2, 9], logprobs=lp)
    assert tokens == [[7], [8]] and logprobs == [[-0.5], [-1.0]]
    with pytest.raises(ValueError, match="logprobs"):
        answer_tokens(seq, 3, 2, logprobs=lp[:, :2])


# ---------------------------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "error", "phrase"), [
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens"),
    (dict(max_new_tokens=2.0), TypeError, "max_new_tokens"),
    (dict(max_new_tokens=True), TypeError, "max_new_tokens"),
    (dict(max_new_tokens=2, do_sample=True, temperature=0.0), ValueError, "temperature"),
    (dict(max_new_tokens=2, do_sample=True, temperature=-1), ValueError, "temperature"),
    (dict(max_new_tokens=2, top_p=0.0), ValueError, "top_p"),
    (dict(max_new_tokens=2, top_p=1.5), ValueError, "top_p"),
    (dict(max_new_tokens=2, top_k=-1), ValueError, "top_k"),
    (dict(max_new_tokens=2, top_k=2.5), TypeError, "top_k"),
    (dict(max_new_tokens=2, min_p=1.5), ValueError, "min_p"),
    (dict(max_new_tokens=2, repetition_penalty=0), ValueError, "repetition_penalty"),
    (dict(max_new_tokens=2, do_sample="yes"), TypeError, "do_sample"),
    (dict(max_new_tokens=2, eos_token_id="</s>"), TypeError, "eos_token_id"),
    (dict(max_new_tokens=2, pad_token_id=-1), ValueError, "pad_token_id"),
    (dict(max_new_tokens=2, pad_token_id=[0, 1]), ValueError, "pad_token_id"),
    (dict(max_new_tokens=2, use_cache=None), TypeError, "use_cache"),
    (dict(max_new_tokens=2, return_logprobs=1), TypeError, "return_logprobs"),
])
def test_bad_arguments(gpt2, gpt2_batch, kwargs, error, phrase):
    ids, mask = gpt2_batch
    with pytest.raises(error, match=phrase):
        generate(gpt2, ids, mask, **kwargs)


def test_max_new_tokens_is_required(gpt2, gpt2_batch):
    with pytest.raises(TypeError, match="max_new_tokens"):
        generate(gpt2, gpt2_batch[0])


def test_temperature_zero_is_fine_when_greedy(gpt2, gpt2_batch):
    ids, mask = gpt2_batch
    assert torch.equal(generate(gpt2, ids, mask, max_new_tokens=3, temperature=0.0),
                       generate(gpt2, ids, mask, max_new_tokens=3))


@pytest.mark.parametrize(("ids", "mask", "error", "phrase"), [
    (torch.tensor([5, 6, 7]), None, ValueError, "2-D"),
    ([[5, 6, 7]], None, TypeError, "input_ids"),
    (torch.tensor([[5.0, 6.0]]), None, TypeError, "integer"),
    (torch.zeros(1, 0, dtype=torch.long), None, ValueError, "at least 1 token"),
    (torch.tensor([[5, 6, 7]]), torch.ones(1, 2, dtype=torch.long), ValueError, "shape"),
    (torch.tensor([[5, 6, 7]]), torch.tensor([[0, 2, 1]]), ValueError, "0 .padding. and 1"),
    (torch.tensor([[5, 6, 7]]), torch.tensor([[0, 0, 0]]), ValueError, "no real token"),
    (torch.tensor([[5, 6, 7]]), [[1, 1, 1]], TypeError, "attention_mask"),
])
def test_bad_inputs(gpt2, ids, mask, error, phrase):
    with pytest.raises(error, match=phrase):
        generate(gpt2, ids, mask, max_new_tokens=2)


def test_not_a_model():
    with pytest.raises(TypeError, match="model"):
        generate("gpt2", torch.tensor([[1, 2]]), max_new_tokens=2)
