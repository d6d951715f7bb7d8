"""Tests for llm_tutorial.scoring: log-probs, perplexity, next-token tables, surprise, logit lens."""

import copy
import math

import pytest
import torch

import llm_tutorial as lt
from llm_tutorial import scoring

SENTENCE = "The cat sat on the mat because it was tired."
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def gpt2(tok):
    """A tiny random GPT-2 (learned absolute positions, context 32) over the embedded vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=32, vocab_size=len(tok),
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return GPT2LMHeadModel(config).eval()


def tiny_llama(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok),
                         max_position_embeddings=64, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(config).eval()


def model_loss(model, tok, text):
    enc = tok(text, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc, labels=enc["input_ids"]).loss.item()


# --- log-probs and perplexity --------------------------------------------------------------------


def test_token_logprobs_match_a_hand_computation(model, tok):
    ids = tok(SENTENCE, return_tensors="pt")["input_ids"]
    lp = lt.token_logprobs(model, ids)
    assert lp.shape == (1, ids.shape[1] - 1)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0].float()
    expected = torch.log_softmax(logits[:-1], -1)[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
    assert torch.allclose(lp[0], expected, atol=1e-5)
    assert bool((lp <= 0).all())


@pytest.mark.parametrize("text", [SENTENCE, "Colorless green ideas sleep furiously.", "こんにちは、世界"])
def test_perplexity_equals_exp_of_the_model_loss(model, tok, text):
    loss = model_loss(model, tok, text)
    assert math.isclose(lt.perplexity(model, tok, text), math.exp(loss), rel_tol=1e-5)
    n = len(tok(text)["input_ids"]) - 1
    assert math.isclose(lt.text_logprob(model, tok, text), -loss * n, rel_tol=1e-5)


def test_perplexity_equals_exp_loss_on_another_architecture(gpt2, tok):
    assert math.isclose(lt.perplexity(gpt2, tok, SENTENCE), math.exp(model_loss(gpt2, tok, SENTENCE)),
                        rel_tol=1e-5)


def test_shuffled_text_is_less_likely(model, tok):
    shuffled = "mat it the tired. sat because on The was cat"
    sensible, scrambled = lt.perplexity(model, tok, [SENTENCE, shuffled])
    assert scrambled > 5 * sensible


def test_batch_equals_one_at_a_time(model, tok):
    texts = [SENTENCE, "Hello there", "A much longer sentence, with commas, that needs no padding at all."]
    batch_lp = lt.text_logprob(model, tok, texts)
    batch_ppl = lt.perplexity(model, tok, texts)
    assert isinstance(batch_lp, list) and len(batch_lp) == 3
    for text, lp, ppl in zip(texts, batch_lp, batch_ppl):
        assert math.isclose(lp, lt.text_logprob(model, tok, text), rel_tol=1e-4)
        assert math.isclose(ppl, lt.perplexity(model, tok, text), rel_tol=1e-4)


def test_left_padding_with_mask_matches_unpadded_even_with_absolute_positions(gpt2, tok):
    ids = tok(SENTENCE, return_tensors="pt")["input_ids"]
    pad = torch.full((1, 3), tok.pad_token_id)
    padded = torch.cat([pad, ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(ids)], dim=1)
    alone = lt.token_logprobs(gpt2, ids)
    left = lt.token_logprobs(gpt2, padded, mask)
    assert torch.allclose(left[0, 3:], alone[0], atol=1e-4)
    assert bool((left[0, :2] == 0).all())  # targets that are padding score 0
    # the position ids matter for GPT-2: without them the same batch gives other numbers
    with torch.inference_mode():
        wrong = gpt2(input_ids=padded, attention_mask=mask).logits[0, 3:]
        right = gpt2(input_ids=ids).logits[0]
    assert not torch.allclose(wrong, right, atol=1e-3)


def test_a_tokenizer_without_pad_token_still_batches(model, tok):
    no_pad = copy.deepcopy(tok)
    no_pad.pad_token = None
    assert no_pad.pad_token_id is None
    got = lt.text_logprob(model, no_pad, [SENTENCE, "Hello there"])
    assert math.isclose(got[1], lt.text_logprob(model, tok, "Hello there"), rel_tol=1e-4)


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("function", [lt.text_logprob, lt.perplexity, lt.surprise,
                                      lt.next_token_distribution, lt.logit_lens])
def test_empty_text_is_a_clear_error(model, tok, function):
    with pytest.raises(ValueError, match="must not be an empty string"):
        function(model, tok, "")
    if function is not lt.logit_lens:
        with pytest.raises(ValueError, match="must not be an empty string"):
            function(model, tok, [SENTENCE, ""])
        with pytest.raises(ValueError, match="empty list"):
            function(model, tok, [])


@pytest.mark.parametrize("function", [lt.text_logprob, lt.perplexity, lt.surprise,
                                      lt.next_token_distribution, lt.logit_lens])
def test_non_text_is_a_type_error(model, tok, function):
    with pytest.raises(TypeError, match="must be a str"):
        function(model, tok, 42)
    with pytest.raises(TypeError, match="must be a str"):
        function(model, tok, b"bytes")


def test_one_token_text_cannot_be_scored(model, tok):
    assert len(tok("Hello")["input_ids"]) == 1
    with pytest.raises(ValueError, match="at least 2"):
        lt.perplexity(model, tok, "Hello")
    # ... but it can be continued: one token is enough for a next-token distribution
    assert len(lt.next_token_distribution(model, tok, "Hello", k=3)) == 3


def test_text_longer_than_the_context_is_a_clear_error(gpt2, tok):
    long_text = " ".join(["word"] * 40)
    assert len(tok(long_text)["input_ids"]) > 32
    for function in (lt.text_logprob, lt.perplexity, lt.surprise, lt.next_token_distribution):
        with pytest.raises(ValueError, match="more than the model's context of 32"):
            function(gpt2, tok, long_text)
    ids = tok(long_text, return_tensors="pt")["input_ids"]
    with pytest.raises(ValueError, match="context of 32"):
        lt.token_logprobs(gpt2, ids)
    with pytest.raises(ValueError, match="context of 32"):
        lt.next_token_distribution(gpt2, tok, {"input_ids": ids})
    # exactly the context length is fine
    assert lt.token_logprobs(gpt2, ids[:, :32]).shape == (1, 31)


def test_the_embedded_model_refuses_a_text_longer_than_its_context(model, tok):
    context = lt.context_length(model)
    assert context == model.config.max_position_embeddings
    long_text = "word " * (context + 10)
    with pytest.raises(ValueError, match=f"context of {context}"):
        lt.perplexity(model, tok, long_text)


def test_token_logprobs_checks_its_arguments(model, tok):
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor"):
        lt.token_logprobs(model, [[1, 2, 3]])
    with pytest.raises(ValueError, match="2-D"):
        lt.token_logprobs(model, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="at least 2"):
        lt.token_logprobs(model, torch.tensor([[1]]))
    with pytest.raises(ValueError, match="same shape"):
        lt.token_logprobs(model, torch.tensor([[1, 2, 3]]), torch.tensor([[1, 1]]))
    with pytest.raises(ValueError, match="no real token"):
        lt.token_logprobs(model, torch.tensor([[1, 2, 3]]), torch.tensor([[0, 0, 0]]))


def test_context_length_of_several_configs(gpt2, tok):
    assert lt.context_length(gpt2) == 32
    assert lt.context_length(tiny_llama(tok)) == 64


# --- next-token tables --------------------------------------------------------------------------


def test_next_token_table_from_logits(tok):
    logits = torch.full((len(tok),), -10.0)
    logits[[10, 20, 30]] = torch.tensor([3.0, 1.0, 2.0])
    table = lt.next_token_table(tok, logits, k=3)
    assert table.ids == [10, 30, 20]
    assert [c.rank for c in table] == [1, 2, 3]
    assert [c.logit for c in table] == [3.0, 2.0, 1.0]
    full = torch.softmax(logits, -1)
    assert table.probs == pytest.approx(full[[10, 30, 20]].tolist(), rel=1e-6)
    assert table.mass == pytest.approx(float(full[[10, 20, 30]].sum()), rel=1e-6)
    assert table.probs[0] > table.probs[1] > table.probs[2]
    entropy = float(-(full * full.log()).sum())
    assert table.entropy == pytest.approx(entropy, rel=1e-5)
    assert table.vocab_size == len(tok)


def test_next_token_table_rejects_bad_arguments(tok):
    logits = torch.zeros(len(tok))
    with pytest.raises(ValueError, match="k must be an int between 1"):
        lt.next_token_table(tok, logits, k=0)
    with pytest.raises(ValueError, match="k must be an int between 1"):
        lt.next_token_table(tok, logits, k=len(tok) + 1)
    with pytest.raises(ValueError, match="k must be"):
        lt.next_token_table(tok, logits, k=2.5)
    with pytest.raises(ValueError, match="1-D"):
        lt.next_token_table(tok, torch.zeros(2, 3, len(tok)))
    with pytest.raises(TypeError, match="logits must be a torch.Tensor"):
        lt.next_token_table(tok, [0.0, 1.0])


def test_next_token_distribution_matches_the_model(model, tok):
    enc = tok(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        last = model(**enc).logits[0, -1].float()
    table = lt.next_token_distribution(model, tok, PROMPT, k=10)
    top = torch.topk(torch.softmax(last, -1), 10)
    assert table.ids == top.indices.tolist()
    assert table.probs == pytest.approx(top.values.tolist(), rel=1e-4)
    assert table.prompt == PROMPT
    assert table[0].text == tok.decode(table.ids[0])
    assert 0 < table.mass <= 1 and table.entropy > 0


def test_next_token_distribution_batch_and_mapping_inputs(model, tok):
    prompts = [PROMPT, "Hello there"]
    batch = lt.next_token_distribution(model, tok, prompts, k=5)
    alone = [lt.next_token_distribution(model, tok, p, k=5) for p in prompts]
    for b, a in zip(batch, alone):
        assert b.ids == a.ids
        assert b.probs == pytest.approx(a.probs, rel=1e-3)
    # a left-padded mapping (what generate() uses) picks each row's last real token
    left = lt.load_tokenizer(padding_side="left")
    mapped = lt.next_token_distribution(model, tok, left(prompts, return_tensors="pt", padding=True), k=5)
    assert [t.ids for t in mapped] == [a.ids for a in alone]
    right = lt.load_tokenizer(padding_side="right")
    mapped = lt.next_token_distribution(model, tok, right(prompts, return_tensors="pt", padding=True), k=5)
    assert [t.ids for t in mapped] == [a.ids for a in alone]
    encoded = left(prompts, return_tensors="pt", padding=True)
    as_bool = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"].bool()}
    assert [t.ids for t in lt.next_token_distribution(model, tok, as_bool, k=5)] == [a.ids for a in alone]
    one = lt.next_token_distribution(model, tok, {"input_ids": tok(PROMPT, return_tensors="pt")["input_ids"]})
    assert one.ids == lt.next_token_distribution(model, tok, PROMPT).ids
    with pytest.raises(ValueError, match="input_ids"):
        lt.next_token_distribution(model, tok, {"ids": [1, 2]})


def test_next_token_table_displays(model, tok, monkeypatch):
    monkeypatch.delenv("LLM_TUTORIAL_CHECK_STABLE")  # the layout, whatever the values' margins
    table = lt.next_token_distribution(model, tok, "Hello <b>", k=3)
    text = str(table)
    assert text.splitlines()[0].split() == ["rank", "token", "id", "logit", "prob"]
    assert len(text.splitlines()) == 1 + 3 + 1
    assert "entropy" in text and repr(table) == text
    page = table._repr_html_()
    assert page.count("<tr>") == 1 + 3
    assert "<b>" not in page and "&lt;b&gt;" in page  # the prompt is escaped


def test_byte_fragments_are_shown_as_bytes(model, tok):
    table = lt.next_token_distribution(model, tok, "織田信長は美少女", k=10)
    fragments = [c for c in table if "\ufffd" in tok.decode([c.id])]
    assert fragments, "an English-centric vocabulary predicts partial UTF-8 characters here"
    for c in fragments:
        assert c.text.startswith("\\x") and "\ufffd" not in c.text


def test_next_token_table_plot(model, tok):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = lt.next_token_distribution(model, tok, PROMPT, k=4)
    ax = table.plot()
    assert [bar.get_width() for bar in ax.patches] == pytest.approx(table.probs)
    plt.close("all")


# --- surprise -----------------------------------------------------------------------------------


def test_surprise_agrees_with_token_logprobs(model, tok):
    view = lt.surprise(model, tok, SENTENCE)
    ids = tok(SENTENCE, return_tensors="pt")["input_ids"]
    lp = lt.token_logprobs(model, ids)[0].tolist()
    assert len(view) == ids.shape[1]
    assert view.tokens[0].logprob is None and view.tokens[0].surprise is None
    assert [t.logprob for t in view.tokens[1:]] == pytest.approx(lp, abs=1e-5)
    assert view.logprob == pytest.approx(lt.text_logprob(model, tok, SENTENCE), rel=1e-5)
    assert view.perplexity == pytest.approx(lt.perplexity(model, tok, SENTENCE), rel=1e-5)
    for t in view.tokens[1:]:
        assert t.surprise == -t.logprob
        assert (t.rank == 1) == (t.expected == t.text)
    assert view.most_surprising.surprise == max(t.surprise for t in view.tokens[1:])


def test_surprise_batch_and_display(model, tok, monkeypatch):
    monkeypatch.delenv("LLM_TUTORIAL_CHECK_STABLE")  # the layout, whatever the values' margins
    views = lt.surprise(model, tok, [SENTENCE, "x < y & z"])
    assert len(views) == 2
    single = lt.surprise(model, tok, "x < y & z")
    assert [t.logprob for t in views[1].tokens[1:]] == pytest.approx(
        [t.logprob for t in single.tokens[1:]], abs=1e-4)
    page = views[1]._repr_html_()
    assert page.count("<span title=") == len(views[1])
    assert "&lt;" in page and "&amp;" in page
    text = str(views[0])
    assert "(first token)" in text and "perplexity" in text
    assert len(text.splitlines()) == len(views[0]) + 2
    with pytest.raises(ValueError, match="scale"):
        lt.surprise(model, tok, SENTENCE, scale=0)


def test_surprise_colours_saturate():
    assert scoring._colour(None, 10) == "#e0e0e0"
    assert scoring._colour(0.0, 10).endswith(" 0.00)")
    assert scoring._colour(2.5, 10).endswith(" 0.25)")  # exact: the shown surprise is already rounded
    assert scoring._colour(50.0, 10).endswith(" 1.00)")


# --- logit lens ---------------------------------------------------------------------------------


def test_logit_lens_rows(model, tok):
    lens = lt.logit_lens(model, tok, PROMPT)
    n_layers = model.config.num_hidden_layers
    n_tokens = len(tok(PROMPT)["input_ids"])
    assert len(lens.ids) == len(lens.layers) == n_layers + 1
    assert all(len(row) == n_tokens for row in lens.ids)
    assert lens.layers[0] == "emb" and lens.layers[-1] == str(n_layers)
    enc = tok(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        out = model(**enc, output_hidden_states=True)
        middle = model.get_output_embeddings()(model.get_decoder().norm(out.hidden_states[10]))
    assert lens.ids[-1] == out.logits[0].argmax(-1).tolist()
    assert lens.ids[10] == middle[0].argmax(-1).tolist()
    assert all(0 < p <= 1 for row in lens.probs for p in row)
    assert len(str(lens).splitlines()) == n_layers + 2
    with pytest.raises(TypeError, match="one prompt"):
        lt.logit_lens(model, tok, [PROMPT, PROMPT])


def test_logit_lens_on_gpt2_and_an_unknown_layout(gpt2, tok):
    lens = lt.logit_lens(gpt2, tok, PROMPT)
    assert len(lens.ids) == gpt2.config.n_layer + 1
    enc = tok(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        assert lens.ids[-1] == gpt2(**enc).logits[0].argmax(-1).tolist()
    odd = tiny_llama(tok)
    assert len(lt.logit_lens(odd, tok, PROMPT).ids) == 3
    del odd.model.norm
    with pytest.raises(NotImplementedError, match="final norm"):
        lt.logit_lens(odd, tok, PROMPT)


def test_every_public_name_is_exported():
    for name in scoring.__all__:
        assert getattr(lt, name) is getattr(scoring, name)
