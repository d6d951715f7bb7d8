"""Tests for llm_tutorial.compare: next-token log-probs and the comparison of two models'
next-token distributions."""

import pytest
import torch

import llm_tutorial as lt

TEXT = "The cat sat on the mat because it was tired."


# --- next-token log-probs and comparisons ------------------------------------------------------

def test_next_token_logprobs_shape_and_normalisation(model, tok):
    enc = tok(TEXT, return_tensors="pt")
    lp = lt.next_token_logprobs(model, enc)
    assert lp.shape == (enc.input_ids.shape[1], model.config.vocab_size)
    assert lp.dtype == torch.float32 and lp.device.type == "cpu"
    assert torch.allclose(lp.exp().sum(-1), torch.ones(lp.shape[0]), atol=1e-4)
    assert torch.equal(lt.next_token_logprobs(model, enc.input_ids[0]), lp)


def test_next_token_logprobs_agree_with_token_logprobs(model, tok):
    ids = tok(TEXT, return_tensors="pt").input_ids
    lp = lt.next_token_logprobs(model, ids)
    picked = lp[:-1].gather(-1, ids[0, 1:, None]).squeeze(-1)
    assert torch.allclose(picked, lt.token_logprobs(model, ids)[0], atol=1e-5)


def test_next_token_logprobs_rejects_a_batch(model):
    with pytest.raises(ValueError, match="one sequence"):
        lt.next_token_logprobs(model, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="input_ids"):
        lt.next_token_logprobs(model, [1, 2, 3])


def test_compare_a_model_with_itself(model, tok):
    ids = tok(TEXT, return_tensors="pt").input_ids
    same = lt.compare_next_token(model, model, ids)
    assert same.top1_agreement == 1.0 and same.mean_kl == 0.0 and same.max_kl == 0.0
    assert same.max_abs_logprob_diff == 0.0
    assert same.positions == ids.shape[1]
    assert abs(same.perplexity - lt.perplexity(model, tok, TEXT)) < 1e-3
    assert same.perplexity == same.reference_perplexity


def test_compare_with_bfloat16(model, tok):
    import copy

    ids = tok(TEXT, return_tensors="pt").input_ids
    reference = lt.next_token_logprobs(model, ids)
    half = copy.deepcopy(model).to(torch.bfloat16)
    result = lt.compare_next_token(reference, half, ids)
    assert 0 < result.mean_kl < 0.05 and result.max_kl >= result.mean_kl
    assert 0.7 <= result.top1_agreement <= 1.0
    assert abs(result.perplexity - lt.perplexity(half, tok, TEXT)) < 1e-2 * result.perplexity
    assert result.reference_perplexity == pytest.approx(lt.perplexity(model, tok, TEXT), rel=1e-4)
    # a precomputed tensor and the model give the same comparison
    assert lt.compare_next_token(reference, lt.next_token_logprobs(half, ids), ids) == result


def test_compare_kl_and_agreement_by_hand():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    q = torch.tensor([[0.5, 0.4, 0.1], [0.2, 0.6, 0.2]])
    result = lt.compare_next_token(p.log(), q.log(), torch.tensor([0, 2]))
    kl = (p * (p.log() - q.log())).sum(-1)
    assert result.mean_kl == pytest.approx(float(kl.mean()), rel=1e-5)
    assert result.max_kl == pytest.approx(float(kl.max()), rel=1e-5)
    assert result.top1_agreement == 0.5
    # one target: token 2 after position 0
    assert result.perplexity == pytest.approx(1 / 0.1, rel=1e-5)
    assert result.max_abs_logprob_diff == pytest.approx(0.0, abs=1e-6)


def test_compare_without_ids_has_no_text_measures():
    a = torch.log_softmax(torch.randn(4, 10), -1)
    result = lt.compare_next_token(a, a)
    assert result.perplexity is None and result.max_abs_logprob_diff is None


def test_compare_rejects_bad_arguments(model):
    a = torch.log_softmax(torch.randn(4, 10), -1)
    with pytest.raises(ValueError, match="differ in shape"):
        lt.compare_next_token(a, a[:3])
    with pytest.raises(ValueError, match="input_ids has 3 tokens"):
        lt.compare_next_token(a, a, torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="reference must be a model"):
        lt.compare_next_token("x", a)
    with pytest.raises(ValueError, match="input_ids is needed"):
        lt.compare_next_token(model, a)
    with pytest.raises(ValueError, match="one sequence"):
        lt.compare_next_token(a, a, torch.ones(2, 4, dtype=torch.long))
