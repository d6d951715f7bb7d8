"""The surprise view (llm_tutorial.surprise): each token's -log p, rank and expected token."""

import pytest

import llm_tutorial as lt
from llm_tutorial.surprise import _colour

SENTENCE = "The cat sat on the mat because it was tired."


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
    assert _colour(None, 10) == "#e0e0e0"
    assert _colour(0.0, 10).endswith(" 0.00)")
    assert _colour(2.5, 10).endswith(" 0.25)")  # exact: the shown surprise is already rounded
    assert _colour(50.0, 10).endswith(" 1.00)")



def test_the_package_attribute_is_the_function_not_the_module():
    """``surprise`` and ``logit_lens`` name a module and its function: ``lt.<name>`` is the function."""
    import importlib

    for name in ("surprise", "logit_lens"):
        module = importlib.import_module(f"llm_tutorial.{name}")
        assert getattr(lt, name) is getattr(module, name) and callable(getattr(lt, name))
