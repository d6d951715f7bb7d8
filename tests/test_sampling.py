"""The hand-written decoding filters against their transformers counterparts, bit for bit."""


import pytest
import torch
from transformers import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

import llm_tutorial as lt


@pytest.fixture(scope="module")
def prompt_ids(tokenizer):
    """Two prompts (left-padded batch) in the chat format, so the end-of-turn token is in them."""
    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                      tokenize=False)
        for q in ("Name three colours.", "Write one sentence about the sea and the moon at night.")
    ]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    tokenizer.padding_side = "right"
    return enc


@pytest.fixture(scope="module")
def real_logits(model, prompt_ids):
    """Next-token logits of the embedded model for a batch of 2 real prompts: [2, vocab]."""
    with torch.inference_mode():
        out = model(**prompt_ids)
    return out.logits[:, -1, :].float()


def random_logits(seed, batch=3, vocab=500, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, vocab, generator=g) * scale


def logit_sets(real_logits):
    return {
        "random": random_logits(0),
        "random-peaked": random_logits(1, scale=12.0),
        "random-ties": torch.randint(-3, 3, (4, 64), generator=torch.Generator().manual_seed(2)).float(),
        "real": real_logits,
    }


DUMMY_IDS = torch.zeros(1, 1, dtype=torch.long)


def ids_for(logits):
    return DUMMY_IDS.expand(logits.shape[0], 1)


# --------------------------------------------------------------------------- equality with transformers
@pytest.mark.parametrize("t", [0.05, 0.5, 0.7, 1.0, 1.5, 3.0])
def test_temperature_matches_transformers(real_logits, t):
    for logits in logit_sets(real_logits).values():
        expected = TemperatureLogitsWarper(t)(ids_for(logits), logits)
        assert torch.equal(lt.apply_temperature(logits, t), expected)


def test_temperature_accepts_an_int_where_transformers_wants_a_float(real_logits):
    assert torch.equal(lt.apply_temperature(real_logits, 2), TemperatureLogitsWarper(2.0)(None, real_logits))


@pytest.mark.parametrize("k", [1, 2, 5, 50, 499, 500, 501, 10**6])
def test_top_k_matches_transformers(real_logits, k):
    for name, logits in logit_sets(real_logits).items():
        expected = TopKLogitsWarper(k)(ids_for(logits), logits)
        got = lt.top_k_filter(logits, k)
        assert torch.equal(got, expected), name
        if name != "random-ties":
            assert (got.isfinite().sum(-1) == min(k, logits.shape[-1])).all(), name


def test_top_k_keeps_ties_like_transformers():
    logits = torch.tensor([[3.0, 1.0, 3.0, 2.0, 2.0]])
    got = lt.top_k_filter(logits, 3)
    assert got.isfinite().tolist() == [[True, False, True, True, True]]  # 4 kept: a tie at the cut
    assert torch.equal(got, TopKLogitsWarper(3)(None, logits))


def test_k_at_least_vocab_and_k1(real_logits):
    vocab = real_logits.shape[-1]
    assert torch.equal(lt.top_k_filter(real_logits, vocab), real_logits)
    assert torch.equal(lt.top_k_filter(real_logits, vocab + 7), real_logits)
    one = lt.top_k_filter(real_logits, 1)
    assert (one.isfinite().sum(-1) == 1).all()
    assert torch.equal(one.argmax(-1), real_logits.argmax(-1))


@pytest.mark.parametrize("p", [0.0, 1e-12, 1e-3, 0.1, 0.3, 0.5, 0.8, 0.9, 0.95, 0.999, 1.0])
def test_top_p_matches_transformers(real_logits, p):
    for name, logits in logit_sets(real_logits).items():
        expected = TopPLogitsWarper(p)(ids_for(logits), logits)
        assert torch.equal(lt.top_p_filter(logits, p), expected), (name, p)


def test_top_p_tiny_p_is_greedy_and_p1_keeps_all(real_logits):
    for p in (0.0, 1e-9):
        kept = lt.top_p_filter(real_logits, p)
        assert (kept.isfinite().sum(-1) == 1).all()
        assert torch.equal(kept.argmax(-1), real_logits.argmax(-1))
    assert torch.equal(lt.top_p_filter(real_logits, 1.0), real_logits)  # no prob underflows to 0 here


def test_top_p_keeps_the_smallest_set_reaching_p(real_logits):
    for p in (0.5, 0.9):
        kept = lt.top_p_filter(real_logits, p).isfinite()
        probs = real_logits.softmax(-1)
        for row in range(real_logits.shape[0]):
            mass = probs[row][kept[row]].sum().item()
            assert mass >= p - 1e-6
            # without its least likely member the kept set would fall short of p
            smallest = probs[row][kept[row]].min().item()
            assert mass - smallest < p + 1e-6


# Boundary cases: a cumulative mass lands exactly on p in real arithmetic, so float32 rounding of
# softmax and cumsum decides whether the boundary token stays. The function must take the same
# decision as transformers, and these cases must be real boundary cases: the decision differs from
# exact arithmetic or from a descending-sort implementation on some of them.
BOUNDARY = [
    ((0.5, 0.3, 0.2), 0.5), ((0.5, 0.3, 0.2), 0.8), ((0.6, 0.3, 0.1), 0.9),
    ((0.4, 0.3, 0.2, 0.1), 0.4), ((0.4, 0.3, 0.2, 0.1), 0.7), ((0.4, 0.3, 0.2, 0.1), 0.9),
    ((0.5, 0.25, 0.125, 0.125), 0.75), ((0.3, 0.3, 0.2, 0.2), 0.3), ((0.3, 0.3, 0.2, 0.2), 0.6),
    ((0.3, 0.3, 0.2, 0.2), 0.8), ((0.6, 0.2, 0.1, 0.1), 0.8), ((0.9, 0.05, 0.05), 0.95),
    ((0.7, 0.2, 0.1), 0.9), ((0.45, 0.35, 0.2), 0.8),
]


def exact_kept(probs, p):
    """Smallest number of most likely tokens whose mass reaches p, in exact decimal arithmetic."""
    from fractions import Fraction

    target, total = Fraction(str(p)), Fraction(0)
    for i, q in enumerate(sorted(probs, reverse=True), start=1):
        total += Fraction(str(q))
        if total >= target:
            return i
    return len(probs)


def descending_kept(logits, p):
    """A plausible rewrite: sort descending, keep tokens while the mass before them is < p."""
    probs = logits.softmax(-1).sort(descending=True).values
    before = probs.cumsum(-1) - probs
    return int((before < p).sum())


@pytest.mark.parametrize("probs,p", BOUNDARY)
def test_top_p_boundary_matches_transformers(probs, p):
    logits = torch.tensor([probs]).log()
    assert torch.equal(lt.top_p_filter(logits, p), TopPLogitsWarper(p)(None, logits))
    # batch > 1, the same probabilities in another order: same decision in both rows (which of
    # two tied tokens goes is up to the sort, so compare how many survive)
    batch = torch.cat([logits, logits.flip(-1)])
    got = lt.top_p_filter(batch, p)
    assert torch.equal(got, TopPLogitsWarper(p)(None, batch))
    assert int(got[0].isfinite().sum()) == int(got[1].isfinite().sum())


def test_top_p_boundary_cases_are_decided_by_rounding():
    counts = [int(lt.top_p_filter(torch.tensor([probs]).log(), p).isfinite().sum()) for probs, p in BOUNDARY]
    exact = [exact_kept(probs, p) for probs, p in BOUNDARY]
    descending = [descending_kept(torch.tensor([probs]).log(), p) for probs, p in BOUNDARY]
    assert all(abs(c - e) <= 1 for c, e in zip(counts, exact, strict=True))  # off by one token at most
    assert counts != exact  # rounding moved at least one boundary decision
    assert counts != descending  # a descending rewrite is not interchangeable at the boundary
    # the documented case: (0.3, 0.3, 0.2, 0.2) at p=0.3 keeps two tokens, exact arithmetic one
    logits = torch.tensor([[0.3, 0.3, 0.2, 0.2]]).log()
    tail = logits.sort().values.softmax(-1).cumsum(-1)[0, 2].item()
    assert tail > 1 - 0.3
    assert int(lt.top_p_filter(logits, 0.3).isfinite().sum()) == 2


@pytest.mark.parametrize("m", [0.0, 0.01, 0.05, 0.1, 0.3, 0.9, 1.0])
def test_min_p_matches_transformers(real_logits, m):
    for name, logits in logit_sets(real_logits).items():
        expected = MinPLogitsWarper(m)(ids_for(logits), logits)
        got = lt.min_p_filter(logits, m)
        assert torch.equal(got, expected), (name, m)
        assert (got.isfinite().sum(-1) >= 1).all()


def test_min_p_scales_with_confidence():
    confident = torch.tensor([[0.90, 0.05, 0.03, 0.02]]).log()
    unsure = torch.tensor([[0.30, 0.28, 0.22, 0.20]]).log()
    assert int(lt.min_p_filter(confident, 0.1).isfinite().sum()) == 1
    assert int(lt.min_p_filter(unsure, 0.1).isfinite().sum()) == 4


@pytest.mark.parametrize("min_tokens", [2, 5])
def test_min_tokens_to_keep_matches_transformers(real_logits, min_tokens):
    logits = real_logits
    assert torch.equal(lt.top_k_filter(logits, 1, min_tokens_to_keep=min_tokens),
                       TopKLogitsWarper(1, min_tokens_to_keep=min_tokens)(None, logits))
    assert torch.equal(lt.top_p_filter(logits, 1e-6, min_tokens_to_keep=min_tokens),
                       TopPLogitsWarper(1e-6, min_tokens_to_keep=min_tokens)(None, logits))
    assert torch.equal(lt.min_p_filter(logits, 1.0, min_tokens_to_keep=min_tokens),
                       MinPLogitsWarper(1.0, min_tokens_to_keep=min_tokens)(None, logits))
    assert (lt.top_p_filter(logits, 1e-6, min_tokens_to_keep=min_tokens).isfinite().sum(-1) == min_tokens).all()


def test_filter_value_is_used(real_logits):
    got = lt.top_k_filter(real_logits, 3, filter_value=-1e4)
    assert torch.equal(got, TopKLogitsWarper(3, filter_value=-1e4)(None, real_logits))
    assert got.isfinite().all()


@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.2, 2.0, 10.0])
def test_repetition_penalty_matches_transformers(real_logits, prompt_ids, penalty):
    ids = prompt_ids["input_ids"]
    mask = prompt_ids["attention_mask"]
    # as generate() builds it: ignore the left padding
    padding = (mask != 0).int().argmax(dim=1)
    expected = RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=padding)(ids, real_logits.clone())
    assert torch.equal(lt.apply_repetition_penalty(real_logits, ids, penalty, attention_mask=mask), expected)
    # without a mask: every id counts, including the padding
    expected_all = RepetitionPenaltyLogitsProcessor(penalty)(ids, real_logits.clone())
    assert torch.equal(lt.apply_repetition_penalty(real_logits, ids, penalty), expected_all)
    logits = random_logits(3, batch=2, vocab=100)
    rand_ids = torch.randint(0, 100, (2, 40), generator=torch.Generator().manual_seed(4))
    assert torch.equal(lt.apply_repetition_penalty(logits, rand_ids, penalty),
                       RepetitionPenaltyLogitsProcessor(penalty)(rand_ids, logits.clone()))


def test_repetition_penalty_does_not_modify_its_input_and_ignores_out_of_vocab_ids():
    logits = torch.tensor([[1.0, -1.0, 2.0]])
    before = logits.clone()
    got = lt.apply_repetition_penalty(logits, torch.tensor([[1, 7]]), 3.0)
    assert torch.equal(logits, before)
    assert got.tolist() == [[1.0, -3.0, 2.0]]


def test_repetition_penalty_pushes_down_the_end_of_turn_token(real_logits, prompt_ids, tokenizer):
    eos = tokenizer.eos_token_id
    assert bool((prompt_ids["input_ids"] == eos).any(-1).all())  # the chat prompt holds it
    ranks = []
    for penalty in (1.0, 2.0):
        pen = lt.apply_repetition_penalty(real_logits, prompt_ids["input_ids"], penalty,
                                          attention_mask=prompt_ids["attention_mask"])
        ranks.append(int((pen[0] > pen[0, eos]).sum()))
    assert ranks[1] > ranks[0]


# --------------------------------------------------------------------------- composition and sampling
def test_process_logits_is_generates_order(model, tokenizer, prompt_ids):
    """A cached hand loop with process_logits + softmax + multinomial draws the same tokens as
    generate(do_sample=True) with the same seed."""
    settings = dict(temperature=0.8, top_k=40, top_p=0.9, min_p=0.02, repetition_penalty=1.3)
    ids, mask = prompt_ids["input_ids"], prompt_ids["attention_mask"]
    lt.set_seed(11)
    with torch.inference_mode():
        expected = model.generate(ids, attention_mask=mask, do_sample=True, max_new_tokens=8,
                                  pad_token_id=tokenizer.eos_token_id, **settings)
    lt.set_seed(11)
    seq, cache = ids, None
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    step_ids, step_pos, step_mask = ids, position_ids, mask
    finished = torch.zeros(ids.shape[0], dtype=torch.bool)
    with torch.inference_mode():
        for _ in range(8):
            out = model(input_ids=step_ids, attention_mask=step_mask, position_ids=step_pos,
                        past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits = lt.process_logits(out.logits[:, -1, :].float(), seq, attention_mask=mask, **settings)
            nxt = torch.multinomial(logits.softmax(-1), 1).squeeze(1)
            nxt = torch.where(finished, torch.full_like(nxt, tokenizer.eos_token_id), nxt)
            finished |= nxt == tokenizer.eos_token_id
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step_mask = mask
            step_ids, step_pos = nxt[:, None], step_pos[:, -1:] + 1
            if finished.all():
                break
    assert seq.tolist() == expected.tolist()


def test_process_logits_skips_neutral_values(real_logits):
    assert torch.equal(lt.process_logits(real_logits), real_logits)
    chained = lt.top_p_filter(lt.top_k_filter(lt.apply_temperature(real_logits, 0.7), 20), 0.9)
    assert torch.equal(lt.process_logits(real_logits, temperature=0.7, top_k=20, top_p=0.9), chained)
    with pytest.raises(ValueError, match="input_ids"):
        lt.process_logits(real_logits, repetition_penalty=1.2)


def test_sample_top_p_keeps_the_llama_set_and_samples_from_it(real_logits):
    probs = real_logits.softmax(-1)
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([lt.sample_top_p(probs, 0.9, generator=g) for _ in range(40)], dim=1)
    kept = lt.top_p_filter(real_logits, 0.9).isfinite()
    for row in range(probs.shape[0]):
        assert kept[row, draws[row]].all()  # every draw lies in the nucleus
    # the Llama set equals the transformers set away from the boundary
    sorted_probs, order = probs.sort(descending=True)
    llama_kept = torch.zeros_like(kept).scatter(1, order, (sorted_probs.cumsum(-1) - sorted_probs) <= 0.9)
    assert torch.equal(llama_kept, kept)
    assert lt.sample_top_p(probs, 0.0).tolist() == probs.argmax(-1, keepdim=True).tolist()


def test_unset_and_neutral_values_are_the_same_step_skipped(real_logits):
    """None and the neutral value both skip a step, in process_logits as in choose_next_token."""
    ids = ids_for(real_logits)
    assert torch.equal(lt.process_logits(real_logits, ids, temperature=None, top_k=None, top_p=None,
                                         min_p=None, repetition_penalty=None), real_logits)
    assert torch.equal(lt.process_logits(real_logits, ids, temperature=1.0, top_k=0, top_p=1.0,
                                         repetition_penalty=1.0), real_logits)


@pytest.mark.parametrize("settings", [
    {},
    {"temperature": 0.7, "top_k": 20},
    {"top_p": 0.9, "min_p": 0.05, "repetition_penalty": 1.3},
    {"temperature": None, "top_p": 1.0, "repetition_penalty": None},
])
def test_choose_next_token_draws_from_process_logits(real_logits, settings):
    """The loop's choice is process_logits, then a seeded draw over the vocabulary (or argmax)."""
    seen = torch.tensor([[5, 6, 7], [8, 9, 10]])
    processed = lt.process_logits(real_logits, seen, **settings)
    torch.manual_seed(3)
    expected = torch.multinomial(processed.softmax(-1), 1).squeeze(1)
    torch.manual_seed(3)
    assert torch.equal(lt.choose_next_token(real_logits, seen, do_sample=True, **settings), expected)
    greedy = lt.process_logits(real_logits, seen, repetition_penalty=settings.get("repetition_penalty"))
    assert torch.equal(lt.choose_next_token(real_logits, seen, **settings), greedy.argmax(-1))


# --------------------------------------------------------------------------- bad parameters
@pytest.mark.parametrize("call,error,phrase", [
    (lambda x: lt.apply_temperature(x, 0.0), ValueError, "do_sample=False"),
    (lambda x: lt.apply_temperature(x, -1.0), ValueError, "temperature must be"),
    (lambda x: lt.apply_temperature(x, float("inf")), ValueError, "finite"),
    (lambda x: lt.apply_temperature(x, float("nan")), ValueError, "got nan"),
    (lambda x: lt.apply_temperature(x, "0.7"), TypeError, "temperature must be a real number"),
    (lambda x: lt.apply_temperature(x, True), TypeError, "temperature"),
    (lambda x: lt.top_k_filter(x, 0), ValueError, "k must be an int >= 1"),
    (lambda x: lt.top_k_filter(x, -3), ValueError, "k must be an int >= 1"),
    (lambda x: lt.top_k_filter(x, 2.5), TypeError, "k must be an int"),
    (lambda x: lt.top_k_filter(x, 2, min_tokens_to_keep=0), ValueError, "min_tokens_to_keep"),
    (lambda x: lt.top_p_filter(x, 1.5), ValueError, r"p must be a probability in \[0, 1\]"),
    (lambda x: lt.top_p_filter(x, -0.1), ValueError, "p must be"),
    (lambda x: lt.top_p_filter(x, None), TypeError, "p must be a real number"),
    (lambda x: lt.min_p_filter(x, 2.0), ValueError, r"min_p must be a fraction of the top probability in \[0, 1\]"),
    (lambda x: lt.min_p_filter(x, "0.1"), TypeError, "min_p"),
    (lambda x: lt.apply_repetition_penalty(x, torch.tensor([[1]]), 0.0), ValueError, "penalty must be"),
    (lambda x: lt.apply_repetition_penalty(x, [[1]], 1.2), TypeError, "input_ids must be a torch.Tensor"),
    (lambda x: lt.apply_repetition_penalty(x, torch.tensor([[1.0]]), 1.2), TypeError, "integer"),
    (lambda x: lt.apply_repetition_penalty(x, torch.tensor([[-1]]), 1.2), ValueError, ">= 0"),
    (lambda x: lt.apply_repetition_penalty(x, torch.tensor([[1], [2]]), 1.2), ValueError, "same batch"),
    (lambda x: lt.sample_top_p(x, 0.9), ValueError, "non-negative"),
])
def test_bad_parameters(call, error, phrase):
    with pytest.raises(error, match=phrase):
        call(torch.tensor([[1.0, -2.0, 0.5]]))


@pytest.mark.parametrize("bad,error", [
    ([[1.0, 2.0]], TypeError), (torch.tensor([1.0, 2.0]), ValueError),
    (torch.zeros(1, 2, 3), ValueError), (torch.tensor([[1, 2]]), TypeError),
])
def test_bad_logits(bad, error):
    for fn, arg in ((lt.apply_temperature, 0.7), (lt.top_k_filter, 1), (lt.top_p_filter, 0.9),
                    (lt.min_p_filter, 0.1)):
        with pytest.raises(error, match="logits"):
            fn(bad, arg)
