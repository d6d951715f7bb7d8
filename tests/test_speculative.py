"""Prompt-lookup and speculative decoding (llm_tutorial.speculative) against greedy model.generate."""

import pytest
import torch

import llm_tutorial as lt
from llm_tutorial import speculative
from llm_tutorial.speculative import (
    early_exit_draft,
    prompt_lookup_draft,
    prompt_lookup_generate,
    speculative_generate,
    speculative_sample,
)


def greedy(model, ids, mask=None, **kwargs):
    """model.generate, greedy and quiet (it warns about flags that greedy mode ignores)."""
    with lt.capture(), torch.inference_mode():
        return model.generate(ids, attention_mask=mask, do_sample=False, **kwargs)


def random_prompts(n, length=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 49152, (1, length), generator=g) for _ in range(n)]


def count_forwards(model):
    """A list that grows by one at each forward call of ``model`` (remove with .handle.remove())."""
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls, handle


@pytest.fixture
def recorded_drafts(monkeypatch):
    """Every guess list prompt_lookup_generate gets from prompt_lookup_draft, in order."""
    drafts = []

    def recording(*args, **kwargs):
        drafts.append(prompt_lookup_draft(*args, **kwargs))
        return drafts[-1]

    monkeypatch.setattr(speculative, "prompt_lookup_draft", recording)
    return drafts


# ---------------------------------------------------------------------------------------------
# the n-gram search
# ---------------------------------------------------------------------------------------------
def test_prompt_lookup_draft_matches_transformers_candidates():
    from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

    g = torch.Generator().manual_seed(0)
    for n_tokens in (1, 2, 5, 12, 30):
        for _ in range(20):
            ids = torch.randint(0, 4, (1, n_tokens), generator=g)  # 4 symbols: many repeats
            for k, ngram in ((1, 1), (3, 2), (10, 3)):
                theirs, _ = PromptLookupCandidateGenerator(num_output_tokens=k, max_matching_ngram_size=ngram,
                                                           max_length=1000).get_candidates(ids)
                assert prompt_lookup_draft(ids[0], k, ngram) == theirs[0, n_tokens:].tolist()


def test_prompt_lookup_draft_prefers_longest_ngram_then_leftmost():
    assert prompt_lookup_draft([1, 9, 2, 3, 8, 1, 2, 3], 2, max_ngram=2) == [8, 1]  # "2 3" beats "3"
    assert prompt_lookup_draft([4, 5, 4, 6, 4], 1, max_ngram=1) == [5]  # the first 4, not the later one
    assert prompt_lookup_draft([4, 4, 4], 5, max_ngram=1) == [4, 4]  # runs into the n-gram itself
    assert prompt_lookup_draft([], 3) == [] and prompt_lookup_draft([7], 3) == []


# ---------------------------------------------------------------------------------------------
# prompt lookup: the same tokens as greedy generate
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
def test_prompt_lookup_equals_generate_on_tiny_models(request, arch):
    model = request.getfixturevalue(arch)
    for ids in random_prompts(2):
        ids = torch.cat([ids, ids[:, :4]], dim=1)  # a repeat in the prompt: guesses from the start
        out, stats = prompt_lookup_generate(model, ids, max_new_tokens=12, num_draft_tokens=5, return_stats=True)
        assert torch.equal(out, greedy(model, ids, max_new_tokens=12))
        assert stats.new_tokens == 12 and stats.drafted > 0 and stats.accepted <= stats.drafted
        assert stats.forward_calls == stats.new_tokens - stats.accepted  # each pass: the kept guesses + 1
        assert [sum(column) for column in zip(*stats.rounds)] == [stats.drafted, stats.accepted]
        assert len(stats.rounds) == stats.forward_calls and all(a <= d for d, a in stats.rounds)


def test_prompt_lookup_makes_as_many_passes_as_transformers(tiny_gpt2):
    """Same guesses as generate(prompt_lookup_num_tokens=...), so the same number of forward passes."""
    for ids in random_prompts(3, seed=1):
        calls, handle = count_forwards(tiny_gpt2)
        try:
            ref = greedy(tiny_gpt2, ids, max_new_tokens=20, prompt_lookup_num_tokens=4, max_matching_ngram_size=3)
            theirs = len(calls)
            out, stats = prompt_lookup_generate(tiny_gpt2, ids, max_new_tokens=20, num_draft_tokens=4,
                                                return_stats=True)
        finally:
            handle.remove()
        assert torch.equal(out, ref)
        assert stats.forward_calls == theirs == len(calls) - theirs < 20


@pytest.mark.parametrize("max_new_tokens", [0, 1, 2, 5, 11, 12, 13])
def test_never_more_than_max_new_tokens(tiny_gpt2, max_new_tokens):
    """The tiny GPT-2 repeats one token: every guess is right, so blocks would overrun the limit."""
    ids = random_prompts(1)[0]
    out, stats = prompt_lookup_generate(tiny_gpt2, ids, max_new_tokens=max_new_tokens, num_draft_tokens=5,
                                        return_stats=True)
    ref = greedy(tiny_gpt2, ids, max_new_tokens=max_new_tokens) if max_new_tokens else ids
    assert torch.equal(out, ref) and stats.new_tokens == max_new_tokens


def test_left_padded_prompt_with_its_mask(tiny_llama, tiny_gpt2):
    ids = random_prompts(1, length=9, seed=2)[0]
    ids = torch.cat([ids, ids[:, 2:6]], dim=1)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    ids = ids.masked_fill(mask == 0, 0)
    for model in (tiny_llama, tiny_gpt2):
        out = prompt_lookup_generate(model, ids, mask, max_new_tokens=10, num_draft_tokens=3)
        assert torch.equal(out, greedy(model, ids, mask, max_new_tokens=10))
        out = speculative_generate(model, model, ids, mask, max_new_tokens=10)
        assert torch.equal(out, greedy(model, ids, mask, max_new_tokens=10))


# ---------------------------------------------------------------------------------------------
# the embedded model: a copy task (with its EOS inside a guess) and an ordinary question
# ---------------------------------------------------------------------------------------------
def test_copy_task_stops_at_an_eos_inside_a_guess(model, tokenizer, recorded_drafts):
    sentence = "The quick brown fox jumps over the lazy dog."
    messages = [{"role": "user", "content": f"Repeat exactly: {sentence}"},
                {"role": "assistant", "content": sentence},
                {"role": "user", "content": f"Repeat exactly: {sentence}"}]
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    eos = tokenizer.eos_token_id
    out, stats = prompt_lookup_generate(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=24,
                                        num_draft_tokens=12, eos_token_id=eos, return_stats=True)
    ref = greedy(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=24, eos_token_id=eos)
    assert torch.equal(out, ref)
    answer = out[0, enc["input_ids"].shape[1]:].tolist()
    assert answer[-1] == eos and eos not in answer[:-1] and len(answer) < 24
    assert len(recorded_drafts) == 1 and eos in recorded_drafts[0][:12]  # the answer and its EOS, copied
    # one pass: the guesses up to their EOS are all kept, the model's token after the EOS is dropped
    assert (stats.forward_calls, stats.drafted, stats.accepted, stats.new_tokens) == (1, 11, 11, 11) == (
        1, len(answer), len(answer), len(answer))


def test_ordinary_question_equals_generate(model, tokenizer):
    enc = lt.chat_inputs(tokenizer, "What is the capital of France?")
    out = prompt_lookup_generate(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=10,
                                 eos_token_id=tokenizer.eos_token_id)
    ref = greedy(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=10,
                 eos_token_id=tokenizer.eos_token_id)
    assert torch.equal(out, ref)


# ---------------------------------------------------------------------------------------------
# speculative decoding with a draft model
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_new_tokens", [1, 4, 5, 6, 12])
def test_the_model_as_its_own_draft_keeps_every_guess(tiny_llama, max_new_tokens):
    ids = random_prompts(1, seed=3)[0]
    out, stats = speculative_generate(tiny_llama, tiny_llama, ids, max_new_tokens=max_new_tokens,
                                      num_draft_tokens=4, return_stats=True)
    assert torch.equal(out, greedy(tiny_llama, ids, max_new_tokens=max_new_tokens))
    assert stats.acceptance_rate == (1.0 if max_new_tokens > 1 else 0.0) and stats.accepted == stats.drafted
    assert stats.forward_calls == -(-max_new_tokens // 5)  # 4 guesses + the model's own token a pass
    assert stats.draft_forward_calls == stats.drafted == max_new_tokens - stats.forward_calls


def test_eos_inside_a_guessed_block(tiny_llama):
    ids = random_prompts(1, seed=3)[0]
    plain = greedy(tiny_llama, ids, max_new_tokens=12)[0, ids.shape[1]:].tolist()
    eos = plain[2]  # the 3rd new token, guessed in the first block of 4
    assert eos not in plain[:2]
    out, stats = speculative_generate(tiny_llama, tiny_llama, ids, max_new_tokens=12, num_draft_tokens=4,
                                      eos_token_id=eos, return_stats=True)
    assert torch.equal(out, greedy(tiny_llama, ids, max_new_tokens=12, eos_token_id=eos))
    assert out[0, ids.shape[1]:].tolist() == plain[:3]
    assert (stats.forward_calls, stats.drafted, stats.accepted, stats.new_tokens) == (1, 3, 3, 3)
    assert stats.rounds == [(3, 3)]


def test_an_always_wrong_draft_changes_nothing_but_the_work(tiny_llama, tiny_gpt2):
    tiny_llama.model.norm.weight.data.zero_()  # every logit 0: the draft always guesses token 0
    ids = random_prompts(1, seed=4)[0]
    out, stats = speculative_generate(tiny_gpt2, tiny_llama, ids, max_new_tokens=10, num_draft_tokens=3,
                                      return_stats=True)
    ref = greedy(tiny_gpt2, ids, max_new_tokens=10)
    assert 0 not in ref[0].tolist()
    assert torch.equal(out, ref)
    assert stats.accepted == 0 and stats.forward_calls == 10 and stats.drafted == stats.draft_forward_calls > 0


def test_a_dynamically_quantized_int8_draft(tiny_llama):
    """Its output layer has no plain weight tensor; the vocabulary check must still work."""
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        draft = torch.ao.quantization.quantize_dynamic(copy.deepcopy(tiny_llama), {torch.nn.Linear},
                                                       dtype=torch.qint8)
    assert not isinstance(getattr(draft.get_output_embeddings(), "weight", None), torch.Tensor)
    ids = random_prompts(1, seed=5)[0]
    out, stats = speculative_generate(tiny_llama, draft, ids, max_new_tokens=8, num_draft_tokens=3,
                                      return_stats=True)
    assert torch.equal(out, greedy(tiny_llama, ids, max_new_tokens=8)) and stats.drafted > 0


@pytest.mark.parametrize("target, draft", [("tiny_gpt2", "tiny_llama"), ("tiny_llama", "tiny_gpt2")])
def test_a_random_draft_of_another_architecture(request, target, draft):
    target, draft = request.getfixturevalue(target), request.getfixturevalue(draft)
    for ids in random_prompts(2, seed=5):
        out, stats = speculative_generate(target, draft, ids, max_new_tokens=12, num_draft_tokens=3,
                                          return_stats=True)
        assert torch.equal(out, greedy(target, ids, max_new_tokens=12))
        assert stats.accepted <= stats.drafted and stats.forward_calls == 12 - stats.accepted


# ---------------------------------------------------------------------------------------------
# early exit: the first layers of the model as its draft
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
def test_early_exit_draft_shares_weights_and_leaves_the_model_alone(request, arch):
    model = request.getfixturevalue(arch)
    n_layers = model.config.num_hidden_layers
    ids = random_prompts(1, seed=6)[0]
    with torch.no_grad():
        full = model(ids).logits
        whole = early_exit_draft(model, n_layers)
        assert torch.equal(whole(ids).logits, full)
        draft = early_exit_draft(model, 1)
        calls, handle = count_forwards(model)
        try:
            shallow = draft(ids).logits
        finally:
            handle.remove()
        assert not calls  # the draft is its own module: hooks on the model do not see it
        assert not torch.allclose(shallow, full)
        assert torch.equal(model(ids).logits, full) and model.config.num_hidden_layers == n_layers
    assert draft.config.num_hidden_layers == 1
    assert all(p.data_ptr() in {q.data_ptr() for q in model.parameters()} for p in draft.parameters())
    out = speculative_generate(model, draft, ids, max_new_tokens=10, num_draft_tokens=3)
    assert torch.equal(out, greedy(model, ids, max_new_tokens=10))


def test_early_exit_draft_refuses_what_it_cannot_cut(tiny_llama):
    with pytest.raises(ValueError, match="num_layers"):
        early_exit_draft(tiny_llama, 3)
    with pytest.raises(ValueError, match="num_layers"):
        early_exit_draft(tiny_llama, 0)
    with pytest.raises(TypeError, match="layers"):
        early_exit_draft(torch.nn.Linear(2, 2), 1)


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def test_argument_errors(tiny_llama, tiny_gpt2):
    ids = random_prompts(1)[0]
    with pytest.raises(ValueError, match="input_ids"):
        prompt_lookup_generate(tiny_llama, ids.repeat(2, 1), max_new_tokens=3)
    with pytest.raises(ValueError, match="input_ids"):
        speculative_generate(tiny_llama, tiny_llama, ids.repeat(2, 1), max_new_tokens=3)
    with pytest.raises(ValueError, match="num_draft_tokens"):
        prompt_lookup_generate(tiny_llama, ids, max_new_tokens=3, num_draft_tokens=0)
    with pytest.raises(ValueError, match="max_ngram"):
        prompt_lookup_generate(tiny_llama, ids, max_new_tokens=3, max_ngram=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        prompt_lookup_generate(tiny_llama, ids, max_new_tokens=-1)
    with pytest.raises(TypeError, match="return_stats"):
        prompt_lookup_generate(tiny_llama, ids, max_new_tokens=3, return_stats=1)
    with pytest.raises(ValueError, match="num_draft_tokens"):
        speculative_generate(tiny_llama, tiny_llama, ids, max_new_tokens=3, num_draft_tokens=0)
    with pytest.raises(ValueError, match="draft_model's 32 positions"):
        speculative_generate(tiny_llama, tiny_gpt2, ids, max_new_tokens=30)
    with pytest.raises(TypeError, match="draft_model must be a Hugging Face causal LM, not str"):
        speculative_generate(tiny_llama, "draft", ids, max_new_tokens=3)
    tiny_llama.resize_token_embeddings(100)
    with pytest.raises(ValueError, match="vocabulary"):
        speculative_generate(tiny_gpt2, tiny_llama, ids.clamp(max=99), max_new_tokens=3)


# ---------------------------------------------------------------------------------------------
# sampling: the accept/reject rule
# ---------------------------------------------------------------------------------------------
def test_speculative_sample_keeps_the_target_distribution():
    """Guesses drawn from q, kept or replaced by the rule: the kept tokens follow p, position by position."""
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(2 * torch.randn(3, 5, generator=g), dim=-1)  # the target, after each prefix
    q = torch.softmax(2 * torch.randn(2, 5, generator=g), dim=-1)  # a draft that disagrees with it
    assert (p[:2] - q).abs().max() > 0.3  # keeping every guess would give q, far from p
    trials, counts = 1500, torch.zeros(2, 5)
    for _ in range(trials):
        guesses = torch.multinomial(q, 1, generator=g).squeeze(1)
        kept = speculative_sample(p, q, guesses, generator=g)
        assert 1 <= len(kept) <= 3
        for i, token in enumerate(kept[:2]):
            counts[i, token] += 1
    for i in range(2):
        n = counts[i].sum()  # position 2 is reached only when guess 1 was kept
        sigma = (p[i] * (1 - p[i]) / n).sqrt()
        assert ((counts[i] / n - p[i]).abs() <= 4 * sigma + 1e-3).all(), (i, counts[i] / n, p[i])


def test_speculative_sample_edge_cases():
    p = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    assert len(speculative_sample(p, p[:2], torch.tensor([0, 1]))) == 3  # draft = target: all kept
    greedy_p = torch.eye(3)[[2, 0, 1]]  # one-hot: the target's argmax is 2, then 0, then 1
    guesses = torch.tensor([2, 1])
    assert speculative_sample(greedy_p, torch.eye(3)[guesses], guesses) == [2, 0]  # the greedy rule
    with pytest.raises(ValueError, match="target_probs"):
        speculative_sample(p[:2], p[:2], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="the same vocab"):
        speculative_sample(p, torch.ones(2, 3) / 3, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="draft_tokens must be a torch.Tensor"):
        speculative_sample(p, p[:2], [0, 1])
    with pytest.raises(ValueError, match="1-D tensor of token ids"):
        speculative_sample(p, p[:2], torch.tensor([0.0, 1.0]))
