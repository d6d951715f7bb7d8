"""Next-token tables (llm_tutorial.next_token): the top-k against the model, their display, entropy."""

import math

import pytest
import torch

import llm_tutorial as lt

PROMPT = "The capital of France is"


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
    with pytest.raises(ValueError, match=rf"k must be an int in \[1, {len(tok)}\], got 0"):
        lt.next_token_table(tok, logits, k=0)
    with pytest.raises(ValueError, match="at most the vocabulary size"):
        lt.next_token_table(tok, logits, k=len(tok) + 1)
    with pytest.raises(TypeError, match="k must be an int"):
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


def test_entropy():
    assert math.isclose(float(lt.entropy(torch.zeros(1, 8))[0]), math.log(8), rel_tol=1e-6)
    assert float(lt.entropy(torch.tensor([[0.0, float("-inf")]]))[0]) == 0.0
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 500, generator=g) * 3
    assert (lt.entropy(lt.apply_temperature(logits, 0.5)) < lt.entropy(lt.apply_temperature(logits, 2.0))).all()
    p = torch.softmax(logits, -1)
    assert torch.allclose(lt.entropy(logits), -(p * p.log()).sum(-1), rtol=1e-5)
    with pytest.raises(ValueError, match="2-D"):
        lt.entropy(torch.zeros(4))
