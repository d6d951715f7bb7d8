"""What does the model expect next? The next-token distribution as a top-k table.

The logits at the last position of a prompt score every vocabulary entry as the token that
comes next; their softmax is the next-token distribution. ``next_token_distribution`` runs the
model and returns its top ``k`` as a ``NextTokenTable``: printed as a table, shown as an HTML
table with bars in Jupyter, drawn with ``plot()``. ``entropy`` measures how spread the whole
distribution is (0 nats: one certain token; ``log(vocab)``: all equally likely).

A token is shown as the text it stands for, spaces as ``·`` and line breaks as ``↵``; a token
that holds only part of a multi-byte character is shown as its bytes (``\\xe3\\x81``).

>>> table = next_token_distribution(model, tok, "The capital of France is", k=3)
>>> table[0].text, table[0].rank
(' Paris', 1)
>>> table.probs == sorted(table.probs, reverse=True) and 0 < table.mass <= 1
True
>>> import math
>>> 0 < table.entropy < math.log(table.vocab_size)
True
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass

from .arguments import check_input_ids, check_int, check_logits, check_texts
from .forward import encode_batch, forward
from .stable import check_gap, fmt, ranking_gap
from .tokens import token_bytes

__all__ = ["Candidate", "NextTokenTable", "entropy", "next_token_distribution", "next_token_table"]


def readable(tokenizer, token_id: int, piece: str) -> str:
    """The text a token stands for; a fragment of a multi-byte character as ``\\xe3\\x81``."""
    text = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text
    raw = token_bytes(piece)
    return "".join(f"\\x{b:02x}" for b in raw) if raw is not None else text


def shown(text: str) -> str:
    """A token's text with its leading space and line breaks made visible."""
    return text.replace(" ", "·").replace("\n", "↵").replace("\t", "→") if text else "∅"


def entropy(logits):
    """Shannon entropy (nats) of ``softmax(logits)`` for each row of ``[batch, vocab]`` logits;
    ``-inf`` entries (tokens a filter removed) count as 0.

    >>> import torch, math
    >>> round(float(entropy(torch.zeros(1, 4))[0]), 4) == round(math.log(4), 4)
    True
    """
    import torch

    check_logits(logits)
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    return -(p * logp.masked_fill(p == 0, 0.0)).sum(dim=-1)


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
        width = max([5] + [len(shown(c.text)) for c in self.candidates])
        lines = [f"{'rank':>4}  {'token':<{width}}  {'id':>6}  {'logit':>8}  {'prob':>6}"]
        for c in self.candidates:
            lines.append(f"{c.rank:>4}  {shown(c.text):<{width}}  {c.id:>6}  "
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
                f"style='font-family:monospace'>{html.escape(shown(c.text))}</td>"
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
    k = check_int(k, "k", low=1, high=vocab, hint="; k is at most the vocabulary size")
    logits = logits.detach().float().cpu()
    probs = torch.softmax(logits, dim=-1)
    top = torch.topk(probs, k)  # ties: torch's order
    ids = top.indices.tolist()
    pieces = tokenizer.convert_ids_to_tokens(ids)
    candidates = [
        Candidate(rank=r + 1, id=i, piece=p, text=readable(tokenizer, i, p),
                  logit=float(logits[i]), prob=float(probs[i]))
        for r, (i, p) in enumerate(zip(ids, pieces))
    ]
    return NextTokenTable(candidates, entropy=float(entropy(logits[None])[0]), vocab_size=vocab,
                          prompt=prompt, gap=ranking_gap(logits, k))


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

    check_int(k, "k", low=1)
    if isinstance(prompt, Mapping):
        if "input_ids" not in prompt:
            raise ValueError("prompt given as a mapping must have an 'input_ids' entry")
        input_ids = prompt["input_ids"]
        mask = prompt.get("attention_mask")
        check_input_ids(input_ids, mask)
        if mask is None:
            last = [input_ids.shape[1] - 1] * input_ids.shape[0]
        else:
            last = (mask.shape[1] - 1 - mask.long().flip(-1).argmax(-1)).tolist()
        texts, batch = [None] * input_ids.shape[0], input_ids.shape[0] > 1
    else:
        texts, batch = check_texts(prompt, "prompt")
        input_ids, mask, lengths = encode_batch(tokenizer, texts, model, min_tokens=1, name="prompt")
        last = [n - 1 for n in lengths]
    logits = forward(model, input_ids, mask).logits
    rows = torch.arange(logits.shape[0], device=logits.device)
    final = logits[rows, torch.tensor(last, device=logits.device)]
    tables = [next_token_table(tokenizer, final[r], k, prompt=texts[r]) for r in range(len(last))]
    return tables if batch else tables[0]
