"""How likely is a text under a model, and what does it expect next?

- ``token_logprobs``: the log-probability of each token given the ones before it (teacher forcing).
- ``text_logprob`` / ``perplexity``: a whole text's summed log-prob and ``exp(-mean log-prob)``,
  which equals ``exp(loss)`` of ``model(input_ids, labels=input_ids)``.
- ``next_token_distribution`` / ``next_token_table``: the top-k candidates for the next token
  (token, id, logit, probability) as a printable and HTML table with a bar chart.
- ``surprise``: each token of a text coloured by how surprising it was (HTML; text elsewhere).
- ``logit_lens``: the final norm and LM head applied to every layer's hidden state.

Every function takes one text or a list of texts (a batch, right-padded internally with an
attention mask). An empty text raises a ValueError. A text longer than the model's context
(``config.max_position_embeddings``) raises a ValueError: nothing is truncated silently.
Log-probabilities are natural logs (nats), computed in float32 whatever the model's dtype.

Scoring starts at the second token: the first token of a text has no logits before it. Tokenizers
that add a BOS token (Llama 3, Gemma) make every real token scored; SmolLM2's adds none.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .stable import GAP, check_gap, fmt, ranking_gap, top2_gap

__all__ = [
    "Candidate",
    "LogitLens",
    "NextTokenTable",
    "ScoredToken",
    "SurpriseView",
    "context_length",
    "logit_lens",
    "next_token_distribution",
    "next_token_table",
    "perplexity",
    "surprise",
    "text_logprob",
    "token_logprobs",
]

SURPRISE_SCALE = 10.0  # nats: a token with -log p >= this is drawn fully red


# ---------------------------------------------------------------------------------------------
# inputs


def context_length(model) -> int | None:
    """The longest sequence the model was built for (``max_position_embeddings``), or None.

    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> context_length(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, n_positions=32)))
    32
    """
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _texts(value, name: str) -> tuple[list[str], bool]:
    """``(texts, is_batch)``; checks every text is a non-empty str."""
    if isinstance(value, str):
        texts, batch = [value], False
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        texts, batch = list(value), True
        if not texts:
            raise ValueError(f"{name} must be a str or a non-empty list of str, not an empty list")
    else:
        raise TypeError(f"{name} must be a str or a list of str, not {type(value).__name__}")
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str or a list of str; found a {type(text).__name__}")
        if not text:
            raise ValueError(
                f"{name} must not be an empty string: an empty text has no tokens, so there is "
                "nothing to feed the model and nothing to score"
            )
    return texts, batch


def _check_length(model, n_tokens: int, what: str) -> None:
    ctx = context_length(model)
    if ctx is not None and n_tokens > ctx:
        raise ValueError(
            f"{what} has {n_tokens} tokens, more than the model's context of {ctx} "
            "(config.max_position_embeddings); shorten it, or score it in windows of at most "
            f"{ctx} tokens"
        )


def _encode(tokenizer, texts: list[str], model, *, min_tokens: int, name: str):
    """Tokenize each text, check its length, and right-pad them into one batch.

    Returns ``(input_ids, attention_mask, lengths)`` on ``model.device``. Padding is done here,
    so a tokenizer without a pad token works, and the tokenizer's ``padding_side`` is untouched.
    """
    import torch

    rows = [tokenizer(text, add_special_tokens=True)["input_ids"] for text in texts]
    for text, ids in zip(texts, rows):
        if len(ids) < min_tokens:
            raise ValueError(
                f"{name} {text!r} has {len(ids)} token(s); at least {min_tokens} are needed: the "
                "first token has no logits before it, so a text is scored from its 2nd token on"
            )
        _check_length(model, len(ids), f"{name} {text[:40]!r}{'...' if len(text) > 40 else ''}")
    width = max(len(ids) for ids in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pad = 0 if pad is None else pad
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, ids in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[r, : len(ids)] = 1
    lengths = [len(ids) for ids in rows]
    return input_ids.to(model.device), mask.to(model.device), lengths


def _check_ids(input_ids, attention_mask, min_len: int):
    import torch

    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor, not {type(input_ids).__name__}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be a 2-D tensor [batch, seq_len], not {input_ids.dim()}-D")
    if input_ids.shape[1] < min_len:
        raise ValueError(
            f"input_ids must have at least {min_len} position(s) (got {input_ids.shape[1]})"
        )
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
            raise ValueError("attention_mask must be a tensor with the same shape as input_ids")
        if bool((attention_mask.sum(-1) == 0).any()):
            raise ValueError("attention_mask has a row with no real token (all zeros)")


def _logits(model, input_ids, attention_mask=None, **kwargs):
    """Forward pass in inference mode. With a mask that has left padding, position ids are
    counted from each row's first real token (what ``generate`` does)."""
    import torch

    _check_length(model, input_ids.shape[1], "input_ids")
    input_ids = input_ids.to(model.device)
    extra = dict(kwargs)
    if attention_mask is not None:
        attention_mask = attention_mask.to(model.device)
        if bool((attention_mask[:, 0] == 0).any()):  # left padding
            extra["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        return model(input_ids=input_ids, attention_mask=attention_mask, **extra)


# ---------------------------------------------------------------------------------------------
# log-probabilities and perplexity


def token_logprobs(model, input_ids, attention_mask=None):
    """Log-probability of each token given the ones before it: shape ``[batch, seq_len - 1]``.

    Position ``t`` of the result scores ``input_ids[:, t + 1]`` with the logits at ``t``
    (teacher forcing). Positions whose target is padding (mask 0) are set to 0. Left or right
    padding both work (with left padding, position ids are derived from the mask).

    >>> lp = token_logprobs(model, tok("Hello world", return_tensors="pt").input_ids)
    >>> lp.shape
    torch.Size([1, 1])
    """
    import torch

    _check_ids(input_ids, attention_mask, 2)
    logits = _logits(model, input_ids, attention_mask).logits.float()
    input_ids = input_ids.to(logits.device)
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    picked = logprobs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    if attention_mask is not None:
        picked = picked * attention_mask[:, 1:].to(picked.device, picked.dtype)
    return picked


def _scored(model, tokenizer, text, name="text"):
    texts, batch = _texts(text, name)
    input_ids, mask, lengths = _encode(tokenizer, texts, model, min_tokens=2, name=name)
    return texts, batch, input_ids, mask, lengths


def text_logprob(model, tokenizer, text: str | list[str]) -> float | list[float]:
    """Sum of the log-probabilities (natural log) of every token of ``text`` after the first.
    A list of texts gives a list of sums (scored as one padded batch).

    >>> text_logprob(model, tok, "The cat sat on the mat.") < 0
    True
    """
    _, batch, input_ids, mask, _ = _scored(model, tokenizer, text)
    sums = token_logprobs(model, input_ids, mask).sum(-1).tolist()
    return sums if batch else sums[0]


def perplexity(model, tokenizer, text: str | list[str]) -> float | list[float]:
    """``exp(-mean log-prob)`` over the predicted tokens of ``text``; equals ``exp(loss)`` of
    ``model(input_ids, labels=input_ids)``. A list of texts gives a list (one value per text).

    >>> perplexity(model, tok, "The cat sat on the mat.") > 1
    True
    """
    _, batch, input_ids, mask, lengths = _scored(model, tokenizer, text)
    sums = token_logprobs(model, input_ids, mask).sum(-1).tolist()
    values = [math.exp(-s / (n - 1)) for s, n in zip(sums, lengths)]
    return values if batch else values[0]


# ---------------------------------------------------------------------------------------------
# readable tokens


def _readable(tokenizer, token_id: int, piece: str) -> str:
    """The text a token stands for; a fragment of a multi-byte character as ``\\xe3\\x81``."""
    text = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text
    from .tokens import token_bytes

    raw = token_bytes(piece)
    return "".join(f"\\x{b:02x}" for b in raw) if raw is not None else text


def _shown(text: str) -> str:
    """A token's text with its leading space and line breaks made visible."""
    return text.replace(" ", "·").replace("\n", "↵").replace("\t", "→") if text else "∅"


# ---------------------------------------------------------------------------------------------
# next-token distribution


@dataclass(frozen=True)
class Candidate:
    """One candidate next token: its rank (1 = most likely), id, vocabulary piece, readable
    text, raw logit and softmax probability."""

    rank: int
    id: int
    piece: str
    text: str
    logit: float
    prob: float


class NextTokenTable:
    """The top-k of a next-token distribution: a table in text, an HTML table with bars in
    Jupyter, and ``plot()`` for a bar chart. Iterate it for ``Candidate`` rows."""

    def __init__(self, candidates: list[Candidate], *, entropy: float, vocab_size: int,
                 prompt: str | None = None, gap: float = math.inf):
        self.candidates = list(candidates)
        self.entropy = entropy
        self.vocab_size = vocab_size
        self.prompt = prompt
        self.gap = gap  # smallest logit difference between neighbours of the top k + 1 (stable.py)

    def __len__(self) -> int:
        return len(self.candidates)

    def __iter__(self):
        return iter(self.candidates)

    def __getitem__(self, index):
        return self.candidates[index]

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.candidates]

    @property
    def probs(self) -> list[float]:
        return [c.prob for c in self.candidates]

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.candidates]

    @property
    def mass(self) -> float:
        """Total probability of the listed candidates."""
        return sum(self.probs)

    def _footer(self) -> str:
        # printed numbers keep a margin from rounding boundaries (stable.py), so this text is
        # the same on every CPU; so is the order, or check_gap refuses it under the test suite
        check_gap(self.gap, f"the order of the top-{len(self)} table")
        return (f"top-{len(self)} mass {fmt(self.mass, 2, kind='prob')} of {self.vocab_size} tokens · "
                f"entropy {fmt(self.entropy, 3)} nats")

    def __str__(self) -> str:
        footer = self._footer()
        width = max([5] + [len(_shown(c.text)) for c in self.candidates])
        lines = [f"{'rank':>4}  {'token':<{width}}  {'id':>6}  {'logit':>8}  {'prob':>6}"]
        for c in self.candidates:
            lines.append(f"{c.rank:>4}  {_shown(c.text):<{width}}  {c.id:>6}  "
                         f"{fmt(c.logit, decimals=1, kind='logit'):>8}  {fmt(c.prob, 2, kind='prob'):>6}")
        lines.append(footer)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        footer = self._footer()
        top = max(self.probs) if self.candidates else 1.0
        rows = []
        for c in self.candidates:
            bar = fmt(120 * c.prob / top, decimals=0, kind='prob') if top > 0 else "0"
            rows.append(
                f"<tr><td>{c.rank}</td><td title='{html.escape(c.piece, quote=True)}' "
                f"style='font-family:monospace'>{html.escape(_shown(c.text))}</td>"
                f"<td>{c.id}</td><td>{fmt(c.logit, decimals=1, kind='logit')}</td>"
                f"<td>{fmt(c.prob, 2, kind='prob')}</td>"
                f"<td style='text-align:left'><div style='background:#4c72b0;height:10px;"
                f"width:{bar}px'></div></td></tr>"
            )
        caption = (f"<caption>next token after {html.escape(repr(self.prompt))}</caption>"
                   if self.prompt is not None else "")
        return (
            f"<table>{caption}<thead><tr><th>rank</th><th>token</th><th>id</th><th>logit</th>"
            f"<th>prob</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<div style='font-size:85%;color:#555'>{html.escape(footer)}</div>"
        )

    def plot(self, ax=None, title: str | None = None):
        """Horizontal bar chart of the candidates' probabilities (most likely on top)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 0.3 * len(self) + 1))
        labels = [repr(c.text) for c in self.candidates]
        ax.barh(range(len(self)), self.probs, color="#4c72b0")
        ax.set_yticks(range(len(self)), labels, fontfamily="monospace")
        ax.invert_yaxis()
        ax.set_xlabel("probability")
        ax.set_title(title if title is not None else
                     (f"next token after {self.prompt!r}" if self.prompt is not None else "next token"))
        return ax


def next_token_table(tokenizer, logits, k: int = 10, *, prompt: str | None = None) -> NextTokenTable:
    """Top-``k`` table of one next-token distribution, from its logits (a 1-D tensor over the
    vocabulary, e.g. ``model(**inputs).logits[0, -1]``). Probabilities are the float32 softmax.

    >>> import torch
    >>> table = next_token_table(tok, torch.tensor([0.0, 2.0, 1.0]), k=2)
    >>> table.ids
    [1, 2]
    """
    import torch

    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, not {type(logits).__name__}")
    if logits.dim() == 2 and logits.shape[0] == 1:
        logits = logits[0]
    if logits.dim() != 1:
        raise ValueError(f"logits must be 1-D [vocab_size] (one position), not shape {tuple(logits.shape)}")
    vocab = logits.shape[0]
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= vocab:
        raise ValueError(f"k must be an int between 1 and the vocabulary size {vocab}, not {k!r}")
    logits = logits.detach().float().cpu()
    logprobs = torch.log_softmax(logits, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    entropy = float(-(probs * logprobs).nan_to_num().sum())
    top = torch.topk(probs, k)  # ties: torch's order
    ids = top.indices.tolist()
    pieces = tokenizer.convert_ids_to_tokens(ids)
    candidates = [
        Candidate(rank=r + 1, id=i, piece=p, text=_readable(tokenizer, i, p),
                  logit=float(logits[i]), prob=float(probs[i]))
        for r, (i, p) in enumerate(zip(ids, pieces))
    ]
    return NextTokenTable(candidates, entropy=entropy, vocab_size=vocab, prompt=prompt,
                          gap=ranking_gap(logits, k))


def next_token_distribution(model, tokenizer, prompt, k: int = 10):
    """Run the model on ``prompt`` and return the top-``k`` ``NextTokenTable`` for the token
    that follows it.

    ``prompt`` is a str, a list of str (one table each, run as one padded batch), or a mapping
    with ``input_ids`` (and ``attention_mask``), e.g. ``lt.chat_inputs(tok, "Hi")``; with a
    mask, each row's last real token is used, whichever side the padding is on.

    >>> print(next_token_distribution(model, tok, "The capital of France is", k=1))
    rank  token   id     logit    prob
       1  ·Paris  7042  ...
    """
    import torch

    if isinstance(prompt, Mapping):
        if "input_ids" not in prompt:
            raise ValueError("prompt given as a mapping must have an 'input_ids' entry")
        input_ids = prompt["input_ids"]
        mask = prompt.get("attention_mask")
        _check_ids(input_ids, mask, 1)
        if mask is None:
            last = [input_ids.shape[1] - 1] * input_ids.shape[0]
        else:
            last = (mask.shape[1] - 1 - mask.long().flip(-1).argmax(-1)).tolist()
        texts, batch = [None] * input_ids.shape[0], input_ids.shape[0] > 1
    else:
        texts, batch = _texts(prompt, "prompt")
        input_ids, mask, lengths = _encode(tokenizer, texts, model, min_tokens=1, name="prompt")
        last = [n - 1 for n in lengths]
    logits = _logits(model, input_ids, mask).logits
    rows = torch.arange(logits.shape[0], device=logits.device)
    final = logits[rows, torch.tensor(last, device=logits.device)]
    tables = [next_token_table(tokenizer, final[r], k, prompt=texts[r]) for r in range(len(last))]
    return tables if batch else tables[0]


# ---------------------------------------------------------------------------------------------
# per-token surprise


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
        return _shown(self.expected)


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
        rows = [(_shown(t.text), t.shown_surprise, t.shown_p, t.shown_rank,
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
                f"{html.escape(_shown(t.text))}</span>"
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


def surprise(model, tokenizer, text, *, scale: float = SURPRISE_SCALE):
    """Score every token of ``text`` and return a ``SurpriseView`` (a list of them for a list
    of texts). ``scale``: the surprise, in nats, drawn fully red.

    >>> view = surprise(model, tok, "The cat sat on the mat.")
    >>> view.most_surprising.text
    ' cat'
    """
    import torch

    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
        raise ValueError(f"scale must be a positive number of nats, not {scale!r}")
    texts, batch, input_ids, mask, lengths = _scored(model, tokenizer, text)
    logits = _logits(model, input_ids, mask).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = input_ids[:, 1:].to(logprobs.device)
    picked = logprobs.gather(-1, targets[..., None]).squeeze(-1)
    ranks = (logprobs > picked[..., None]).sum(-1) + 1
    expected = logprobs.argmax(-1)
    # how close each printed choice came to another one (stable.py): the nearest other logit to
    # the token's own (its rank), and top-1 minus top-2 (the expected token)
    distance = (logprobs - picked[..., None]).abs().scatter(-1, targets[..., None], math.inf)
    rank_gaps, expected_gaps = distance.min(-1).values, top2_gap(logprobs)
    rank_lows = (logprobs > picked[..., None] + 2 * GAP).sum(-1) + 1
    views = []
    for r, n in enumerate(lengths):
        ids = input_ids[r, :n].tolist()
        pieces = tokenizer.convert_ids_to_tokens(ids)
        tokens = [ScoredToken(ids[0], pieces[0], _readable(tokenizer, ids[0], pieces[0]), None, None, None)]
        for t in range(1, n):
            e = int(expected[r, t - 1])
            tokens.append(ScoredToken(
                ids[t], pieces[t], _readable(tokenizer, ids[t], pieces[t]),
                float(picked[r, t - 1]), int(ranks[r, t - 1]),
                _readable(tokenizer, e, tokenizer.convert_ids_to_tokens(e)),
                rank_gap=float(rank_gaps[r, t - 1]), expected_gap=float(expected_gaps[r, t - 1]),
                rank_low=int(rank_lows[r, t - 1]),
            ))
        views.append(SurpriseView(tokens, scale=float(scale)))
    return views if batch else views[0]


# ---------------------------------------------------------------------------------------------
# logit lens

_FINAL_NORM_NAMES = ("norm", "ln_f", "final_layernorm", "final_layer_norm", "norm_f")


def _final_norm(model):
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    for name in _FINAL_NORM_NAMES:
        module = getattr(decoder, name, None)
        if module is not None:
            return module
    raise NotImplementedError(
        f"logit_lens could not find the final norm of {type(model).__name__}: none of "
        f"{_FINAL_NORM_NAMES} is an attribute of its decoder {type(decoder).__name__}"
    )


@dataclass
class LogitLens:
    """Top-1 prediction of every layer at every position: ``ids[layer][position]`` and
    ``probs[layer][position]``, with ``layers`` labels (``"emb"``, ``"1"``, ..., ``"N"``) and
    the prompt's ``tokens`` (readable texts)."""

    tokens: list[str]
    layers: list[str]
    ids: list[list[int]]
    texts: list[list[str]]
    probs: list[list[float]]
    gaps: list[list[float]] | None = None
    """Top-1 minus top-2 logit of every cell (``stable.top2_gap``): below ``GAP`` another CPU may
    show the runner-up there."""

    def __str__(self) -> str:
        if self.gaps is not None:
            check_gap(min(min(row) for row in self.gaps), "a cell of the logit lens")
        width = max(len(_shown(t)) for row in self.texts for t in row)
        width = max(width, max(len(_shown(t)) for t in self.tokens), 4)
        lines = [f"{'layer':>5}  " + " ".join(f"{_shown(t):<{width}}" for t in self.tokens)]
        for label, row in zip(self.layers, self.texts):
            lines.append(f"{label:>5}  " + " ".join(f"{_shown(t):<{width}}" for t in row))
        return "\n".join(lines)

    def plot(self, ax=None, title: str = "logit lens: top next token per layer"):
        """Heatmap of the top token's probability, annotated with the token."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(1.1 * len(self.tokens) + 1.5, 0.28 * len(self.layers) + 1))
        ax.imshow(self.probs, aspect="auto", cmap="Blues", vmin=0, vmax=1)
        for i, row in enumerate(self.texts):
            for j, text in enumerate(row):
                colour = "white" if self.probs[i][j] > 0.6 else "black"
                ax.text(j, i, _shown(text)[:10], ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(len(self.tokens)), [_shown(t) for t in self.tokens], fontfamily="monospace")
        ax.set_yticks(range(len(self.layers)), self.layers, fontsize=7)
        ax.set_xlabel("input position (prediction is for the token after it)")
        ax.set_ylabel("layer")
        ax.set_title(title)
        return ax


def logit_lens(model, tokenizer, prompt: str) -> LogitLens:
    """Apply the final norm and the LM head to the hidden state after every layer
    (``output_hidden_states=True``) and keep each position's top token.

    Row 0 is the embeddings; the last row is the model's real output (its logits; transformers
    returns the last hidden state already normalized). Assumes the common layout
    ``hidden -> final norm -> LM head`` (Llama, Mistral, Qwen, GPT-2, ...); a model whose final
    norm is not found raises NotImplementedError. Extra output transforms (e.g. Gemma 2's logit
    soft-capping) are not applied to the intermediate rows.

    >>> lens = logit_lens(model, tok, "The capital of France is")
    >>> lens.texts[-1][-1]
    ' Paris'
    """
    import torch

    texts, batch = _texts(prompt, "prompt")
    if batch:
        raise TypeError("logit_lens takes one prompt (a str), not a list")
    input_ids, mask, _ = _encode(tokenizer, texts, model, min_tokens=1, name="prompt")
    norm, head = _final_norm(model), model.get_output_embeddings()
    out = _logits(model, input_ids, mask, output_hidden_states=True)
    hidden = out.hidden_states
    with torch.inference_mode():
        rows = [head(norm(h[0])) for h in hidden[:-1]] + [out.logits[0]]
    ids, probs, gaps = [], [], []
    for logits in rows:
        p = torch.softmax(logits.float(), dim=-1)
        top = p.max(-1)
        ids.append(top.indices.tolist())
        probs.append(top.values.tolist())
        gaps.append(top2_gap(logits).tolist())
    pieces = tokenizer.convert_ids_to_tokens(input_ids[0].tolist())
    return LogitLens(
        tokens=[_readable(tokenizer, i, p) for i, p in zip(input_ids[0].tolist(), pieces)],
        layers=["emb"] + [str(n) for n in range(1, len(hidden))],
        ids=ids,
        texts=[[_readable(tokenizer, i, tokenizer.convert_ids_to_tokens(i)) for i in row] for row in ids],
        probs=probs,
        gaps=gaps,
    )
