"""What does each layer think comes next? The logit lens.

A decoder-only model is a stack of layers that each add to one vector per position (the
residual stream); only after the last one do the final norm and the LM head turn that vector
into logits. The logit lens applies that final norm and LM head to the hidden state after
*every* layer, so each layer gets a "next token" of its own, and one can watch the answer
form on its way up the stack.

``logit_lens`` keeps each position's top token and its probability at every layer, in a
``LogitLens``: printed as a grid (layers down, positions across), drawn by ``plot()`` as a
heatmap. Its last row is the model's real output.

>>> lens = logit_lens(model, tok, "The capital of France is")
>>> lens.layers[0], lens.layers[-1] == str(model.config.num_hidden_layers)
('emb', True)
>>> lens.texts[-1][-1], lens.texts[0][-1]  # the top layer answers; the embeddings echo the input
(' Paris', ' is')
"""

from __future__ import annotations

from dataclasses import dataclass

from .arguments import check_texts
from .forward import encode_batch, forward
from .next_token import readable, shown
from .stable import check_gap, top2_gap

__all__ = ["LogitLens", "logit_lens"]

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
        width = max(len(shown(t)) for row in self.texts for t in row)
        width = max(width, max(len(shown(t)) for t in self.tokens), 4)
        lines = [f"{'layer':>5}  " + " ".join(f"{shown(t):<{width}}" for t in self.tokens)]
        for label, row in zip(self.layers, self.texts):
            lines.append(f"{label:>5}  " + " ".join(f"{shown(t):<{width}}" for t in row))
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
                ax.text(j, i, shown(text)[:10], ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(len(self.tokens)), [shown(t) for t in self.tokens], fontfamily="monospace")
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

    texts, batch = check_texts(prompt, "prompt")
    if batch:
        raise TypeError("logit_lens takes one prompt (a str), not a list")
    input_ids, mask, _ = encode_batch(tokenizer, texts, model, min_tokens=1, name="prompt")
    norm, head = _final_norm(model), model.get_output_embeddings()
    out = forward(model, input_ids, mask, output_hidden_states=True)
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
        tokens=[readable(tokenizer, i, p) for i, p in zip(input_ids[0].tolist(), pieces)],
        layers=["emb"] + [str(n) for n in range(1, len(hidden))],
        ids=ids,
        texts=[[readable(tokenizer, i, tokenizer.convert_ids_to_tokens(i)) for i in row] for row in ids],
        probs=probs,
        gaps=gaps,
    )
