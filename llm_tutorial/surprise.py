"""Which tokens surprised the model? Each token of a text coloured by its surprise ``-log p``.

The surprise of a token is minus its log-probability given the tokens before it (teacher
forcing, as in ``logprobs``): 0 nats for a token the model was sure of, 2.3 for one it gave
10 %, 10 for about 1 in 22,000. ``surprise`` scores every token of a text in one forward pass
and returns a ``SurpriseView``: in Jupyter the text with each token on a background from white
(expected) to red (surprising), hover for details; printed, a table with each token's surprise,
its rank among all candidates, and the token the model expected instead.

Every number shown holds on any CPU (``stable.py``): the surprise has one decimal, the colour is
drawn from that shown value, and a rank that a neighbour within a CPU's drift could change is
shown as the power of ten it exceeds (``>=100``).

>>> view = surprise(model, tok, "The cat sat on the mat.")
>>> first, cat = list(view)[:2]
>>> first.surprise is None, cat.text, cat.rank > 1  # nothing predicts the first token
(True, ' cat', True)
>>> import math
>>> from llm_tutorial import text_logprob
>>> math.isclose(view.logprob, text_logprob(model, tok, "The cat sat on the mat."), rel_tol=1e-5)
True
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from .arguments import check_number
from .logprobs import encode_texts, teacher_forcing
from .next_token import readable, shown
from .stable import GAP, check_gap, fmt, top2_gap

__all__ = ["ScoredToken", "SurpriseView", "surprise"]

SURPRISE_SCALE = 10.0  # nats: a token with -log p >= this is drawn fully red

@dataclass(frozen=True)
class ScoredToken:
    """One token of a scored text. ``logprob`` is None for the first token (nothing predicts
    it); ``rank`` is 1 when the model's top choice was this very token; ``expected`` is the
    text of that top choice."""

    id: int
    piece: str
    text: str
    logprob: float | None
    rank: int | None
    expected: str | None
    rank_gap: float = math.inf
    """Logit distance from this token to its nearest other token: below ``GAP`` the rank could
    differ by one on another CPU."""
    expected_gap: float = math.inf
    """Top-1 minus top-2 logit: below ``GAP`` another CPU could expect the runner-up."""
    rank_low: int | None = None
    """The best rank another CPU could give it: 1 + the tokens more than ``2 * GAP`` above it."""

    @property
    def surprise(self) -> float | None:
        """``-log p`` in nats (0: certain; 10: about 1 in 22,000)."""
        return None if self.logprob is None else -self.logprob

    @property
    def shown_surprise(self) -> str:
        """The surprise as printed: one decimal (``stable.fmt``), ``"-"`` for the first token."""
        return "-" if self.logprob is None else fmt(-self.logprob, decimals=1, kind="logit")

    @property
    def shown_p(self) -> str:
        """``exp(-surprise)`` of the *printed* surprise, 2 significant digits: approximate (the
        surprise is rounded to 0.1 nats, so within 5 %), but as stable as the surprise itself.

        >>> ScoredToken(5, "a", "a", -2.3026, 2, "b").shown_p
        '0.10'
        """
        if self.logprob is None:
            return "-"
        return fmt(math.exp(-float(self.shown_surprise)), 2, kind="exact")

    @property
    def shown_rank(self) -> str:
        """The rank as printed: exact where it holds on every CPU (``rank_gap >= GAP``), else the
        power of ten it exceeds (``">=100"``), which a neighbour one rank away cannot change.

        >>> ScoredToken(5, "a", "a", -7.0, 1234, "b", rank_gap=1e-4, rank_low=1231).shown_rank
        '>=1000'
        """
        if self.rank is None:
            return "-"
        if self.rank_gap >= GAP:
            return str(self.rank)
        low = self.rank_low if self.rank_low is not None else self.rank
        return f">={10 ** int(math.log10(max(low, 1)))}"

    @property
    def shown_expected(self) -> str:
        """The expected token as printed; under the test suite, refused when the model's top two
        candidates there are nearly tied (another CPU could expect the other one)."""
        if self.expected is None:
            return "(first token)"
        check_gap(self.expected_gap, f"the model's expected token instead of {self.text!r}")
        return shown(self.expected)


def _colour(surprise: float | None, scale: float) -> str:
    """Background of a token: red with opacity ``surprise / scale``. Pass the *shown* surprise
    (``ScoredToken.shown_surprise``, stable on every CPU): the colour is then stable too."""
    if surprise is None:
        return "#e0e0e0"
    alpha = min(max(surprise / scale, 0.0), 1.0)
    return f"rgba(214, 39, 40, {fmt(alpha, decimals=2, kind='exact')})"


class SurpriseView:
    """A text's tokens coloured by surprise ``-log p`` (white: expected, red: surprising), as
    HTML in Jupyter and as a table in plain text."""

    def __init__(self, tokens: list[ScoredToken], *, scale: float = SURPRISE_SCALE):
        self.tokens = list(tokens)
        self.scale = scale

    def __len__(self) -> int:
        return len(self.tokens)

    def __iter__(self):
        return iter(self.tokens)

    @property
    def logprob(self) -> float:
        """Sum of the scored tokens' log-probs (equals ``text_logprob``)."""
        return sum(t.logprob for t in self.tokens if t.logprob is not None)

    @property
    def perplexity(self) -> float:
        scored = [t for t in self.tokens if t.logprob is not None]
        return math.exp(-self.logprob / len(scored))

    @property
    def most_surprising(self) -> ScoredToken:
        return max((t for t in self.tokens if t.logprob is not None), key=lambda t: -t.logprob)

    def _summary(self) -> str:
        # rounded so that the last bits, which differ between CPUs' kernels (notebook 06,
        # pitfall 17), do not show: 3 significant digits for the perplexity, 2 decimals for log-probs
        return (f"{len(self)} tokens · log-prob {fmt(self.logprob, 3)} nats · "
                f"perplexity {fmt(self.perplexity, 3)}")

    def __str__(self) -> str:
        head = ("token", "surprise", "p≈", "rank")
        rows = [(shown(t.text), t.shown_surprise, t.shown_p, t.shown_rank,
                 t.shown_expected if t.logprob is not None else "(first token)") for t in self.tokens]
        widths = [max(len(head[i]), *(len(row[i]) for row in rows)) for i in range(4)]
        lines = [f"{head[0]:<{widths[0]}}  {head[1]:>{widths[1]}}  {head[2]:>{widths[2]}}  "
                 f"{head[3]:>{widths[3]}}  model expected"]
        for row in rows:
            lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  "
                         f"{row[3]:>{widths[3]}}  {row[4]}")
        lines.append(self._summary())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        spans = []
        for t in self.tokens:
            if t.logprob is None:
                tip = "first token: not predicted"
            else:
                tip = (f"surprise {t.shown_surprise} nats, p≈{t.shown_p}, rank {t.shown_rank}, "
                       f"model expected {t.shown_expected}")
            spans.append(
                f"<span title=\"{html.escape(tip, quote=True)}\" style=\"background:"
                f"{_colour(None if t.logprob is None else float(t.shown_surprise), self.scale)};"
                f"color:#111;padding:1px 2px;margin:0 1px;"
                f"border-radius:3px;font-family:monospace;white-space:pre\">"
                f"{html.escape(shown(t.text))}</span>"
            )
        legend = "".join(
            f"<span style=\"background:{_colour(s, self.scale)};padding:0 6px;margin-right:2px\">"
            f"{s:g}</span>" for s in (0, self.scale / 4, self.scale / 2, 3 * self.scale / 4, self.scale)
        )
        return (
            f"<div style='line-height:1.9'>{''.join(spans)}</div>"
            f"<div style='font-size:85%;color:#555'>{html.escape(self._summary())} · surprise "
            f"(-log p, nats): {legend} (hover a token for details)</div>"
        )

def _token_stats(logprobs, targets) -> dict:
    """Per scored position: the token's log-prob and rank, the expected (top) token, and how
    close each printed choice came to another one (``stable.py``): the nearest other logit to the
    token's own (its rank), top-1 minus top-2 (the expected token), the best rank within drift."""
    picked = logprobs.gather(-1, targets[..., None]).squeeze(-1)
    distance = (logprobs - picked[..., None]).abs().scatter(-1, targets[..., None], math.inf)
    return {
        "logprob": picked,
        "rank": (logprobs > picked[..., None]).sum(-1) + 1,
        "expected": logprobs.argmax(-1),
        "rank_gap": distance.min(-1).values,
        "expected_gap": top2_gap(logprobs),
        "rank_low": (logprobs > picked[..., None] + 2 * GAP).sum(-1) + 1,
    }


def _scored_tokens(tokenizer, ids: list[int], stats: dict, row: int) -> list[ScoredToken]:
    """The ``ScoredToken``s of one text (row ``row`` of the batch, its ``ids`` without padding)."""
    pieces = tokenizer.convert_ids_to_tokens(ids)
    tokens = [ScoredToken(ids[0], pieces[0], readable(tokenizer, ids[0], pieces[0]), None, None, None)]
    for t in range(1, len(ids)):
        at = (row, t - 1)
        e = int(stats["expected"][at])
        tokens.append(ScoredToken(
            ids[t], pieces[t], readable(tokenizer, ids[t], pieces[t]),
            float(stats["logprob"][at]), int(stats["rank"][at]),
            readable(tokenizer, e, tokenizer.convert_ids_to_tokens(e)),
            rank_gap=float(stats["rank_gap"][at]), expected_gap=float(stats["expected_gap"][at]),
            rank_low=int(stats["rank_low"][at]),
        ))
    return tokens


def surprise(model, tokenizer, text, *, scale: float = SURPRISE_SCALE):
    """Score every token of ``text`` and return a ``SurpriseView`` (a list of them for a list
    of texts). ``scale``: the surprise, in nats, drawn fully red.

    >>> view = surprise(model, tok, "The cat sat on the mat.")
    >>> view.most_surprising.text
    ' cat'
    """
    scale = check_number(scale, "scale", low=0, low_open=True, what="a number of nats")
    _, batch, input_ids, mask, lengths = encode_texts(model, tokenizer, text)
    stats = _token_stats(*teacher_forcing(model, input_ids, mask))
    views = [SurpriseView(_scored_tokens(tokenizer, input_ids[r, :n].tolist(), stats, r), scale=scale)
             for r, n in enumerate(lengths)]
    return views if batch else views[0]
