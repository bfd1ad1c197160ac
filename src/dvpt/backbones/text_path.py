"""Prompts through a text tower with less work and bounded memory, same numbers.

Library-free: a backbone adapter describes its tower in neutral terms (:class:`CausalTower`,
:class:`PreNormBlock`, built from its own library's modules inside its own module) and calls
:func:`encode_causal`; a tower that cannot be described so (``micro``'s bidirectional MiniLM)
calls :func:`encode_chunked` around its plain loop. Nothing here knows a library's attribute
names.

Every prompt-tuning step runs the text tower over every class prompt, forward and backward.
The reference code pads each prompt to 77 tokens and runs all classes at once; at ImageNet's
1000 classes that alone needs more than 20 GiB. The savings here are exact (the same
features and gradients, to floating-point tolerance; pinned by ``tests/test_text_speed.py``
and, for every registered backbone, ``tests/test_backbone_contract.py``):

1. Real length. Columns that are padding in every prompt are dropped (``Tokens.truncated``):
   a causal or masked tower never lets padding reach the pooled token.
2. Shared prefix. In a causal tower (CLIP) the hidden states of the leading tokens that every
   prompt shares (start token + shared context vectors) cannot depend on what follows, so
   they are computed once, as a batch of one (CoCoOp: one per image, whose shifted context
   all its class prompts share); each prompt's own tokens then attend to the prefix's keys
   and values (a KV-cache split). With 16 context tokens and short class names this removes
   two thirds of the tokens.
3. Chunks. ``chunk`` prompts go through at a time. While gradients are recorded, each chunk
   is recomputed during backward (``torch.utils.checkpoint``), so the peak activation memory
   is one chunk's, whatever the class count.
4. Gradient checkpointing per transformer block (``checkpoint=True``): stores only block
   inputs and recomputes the rest in backward (about one more forward pass of compute);
   towers without described blocks checkpoint per chunk instead.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint as _checkpoint

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import Tokens

#: (embeddings [N, L, D], tokens, deep prompts) -> features [N, E]: a tower's plain loop
PlainTower = Callable[[Tensor, "Tokens", "Sequence[Tensor] | None"], Tensor]


@dataclass(frozen=True)
class TextOptions:
    """How prompts go through the text tower: speed and memory only, never the result.

    Passed explicitly (a method holds one, set once by whoever builds it: the run's
    ``text:`` config, ``dvpt bench``, ``load_prompt``), never read from a global.
    """

    #: compute the hidden states of the prefix every prompt shares once (causal towers)
    share_prefix: bool = True
    #: prompts per pass; 0 = all in one pass
    chunk: int = 0
    #: gradient checkpointing per text block (per chunk for towers without described blocks)
    checkpoint: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.chunk, int) or self.chunk < 0:
            raise ConfigError(f"text.chunk must be an integer >= 0 (0 = all classes at once), got {self.chunk!r}")


@dataclass(frozen=True)
class SharedPrefix:
    """The caller's promise about its prompts' leading tokens: ``embeddings[:, :length]`` is
    one tensor broadcast to every row of a group (start token + shared context), the N rows
    being ``groups`` consecutive groups of equal size (CoOp: one group; CoCoOp: the C class
    prompts of each image, whose context is shifted per image). A causal tower may compute
    that prefix once per group. ``length`` 0 = no promise.

    One value for the promise, so every layer between a prompt learner and the tower passes
    it on unchanged and it is checked in one place.
    """

    length: int = 0
    groups: int = 1

    def check(self, n_prompts: int) -> None:
        if self.groups < 1 or n_prompts % self.groups:
            raise ValueError(f"{n_prompts} prompts cannot form {self.groups} equal prefix groups")


@dataclass(frozen=True)
class PreNormBlock:
    """One pre-norm attention block in neutral terms, so the fast path can run it in pieces:

        x = x + attn_out(softmax(q(n) k(n)^T / sqrt(d_head) + mask) v(n)),  n = norm_attn(x)
        x = x + mlp(norm_mlp(x))

    ``q``/``k``/``v`` map [N, S, D] -> [N, S, D] (heads concatenated); ``attn_out`` is the
    output projection plus whatever the library applies before the residual sum (a layer
    scale); ``mlp`` likewise includes it. Adapters build these from their own modules.
    """

    norm_attn: Callable[[Tensor], Tensor]
    q: Callable[[Tensor], Tensor]
    k: Callable[[Tensor], Tensor]
    v: Callable[[Tensor], Tensor]
    heads: int
    attn_out: Callable[[Tensor], Tensor]
    norm_mlp: Callable[[Tensor], Tensor]
    mlp: Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class CausalTower:
    """A causal, pre-norm text tower (CLIP's) in neutral terms."""

    positions: Tensor  # [max_len, D] position embeddings, added to token embeddings
    blocks: Sequence[PreNormBlock]
    final_norm: Callable[[Tensor], Tensor]  # applied to the pooled end-of-text token
    project: Callable[[Tensor], Tensor]  # pooled hidden state -> joint space


def _checkpointed(fn, *args):
    return _checkpoint(fn, *args, use_reentrant=False)


def _chunks(n: int, chunk: int) -> list[slice]:
    size = chunk if chunk > 0 else n
    return [slice(start, min(n, start + size)) for start in range(0, n, max(1, size))]


def _rows(deep_prompts: Sequence[Tensor] | None, rows: slice) -> list[Tensor] | None:
    if not deep_prompts:
        return None
    return [p[rows] if p.dim() == 3 else p for p in deep_prompts]


def replace_prefix(hidden: Tensor, prompt: Tensor) -> Tensor:
    """Put ``prompt`` ([n, D] or [N, n, D]) at positions 1..n of ``hidden`` ([N, L, D]): how
    every plain loop applies a deep text prompt at a block's input."""
    n = prompt.shape[-2]
    prompt = prompt.to(hidden.dtype).expand(hidden.shape[0], -1, -1)
    return torch.cat([hidden[:, :1], prompt, hidden[:, 1 + n :]], dim=1)


# ---- any tower: its plain loop in chunks ----------------------------------------------------
def encode_chunked(plain: PlainTower, embeddings: Tensor, tokens: Tokens, deep_prompts: Sequence[Tensor] | None,
                   options: TextOptions) -> Tensor:
    """Chunks of a tower's plain loop on the real length, recomputed in backward when chunked
    (or asked to checkpoint) so only one chunk's activations live at a time."""
    tokens = tokens.truncated().to(embeddings.device)
    embeddings = embeddings[:, : tokens.ids.shape[1]]
    recompute = torch.is_grad_enabled() and (options.checkpoint or 0 < options.chunk < len(tokens))
    out = []
    for rows in _chunks(len(tokens), options.chunk):
        args = (embeddings[rows], tokens[rows], _rows(deep_prompts, rows))
        out.append(_checkpointed(plain, *args) if recompute else plain(*args))
    return torch.cat(out)


# ---- causal towers: the prefix once, the rest against its keys and values ---------------------
def _heads(x: Tensor, heads: int) -> Tensor:
    """[N, S, D] -> [H, N, S, D/H]."""
    n, s, d = x.shape
    return x.reshape(n, s, heads, d // heads).permute(2, 0, 1, 3)


def _block(block: PreNormBlock, hidden: Tensor, mask: Tensor, prefix_k: Tensor | None, prefix_v: Tensor | None,
           query_at: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One block on [N, S, D] tokens that also attend to a shared prefix.

    ``prefix_k``/``prefix_v`` ([H, G, P, D/H]) are the keys and values of G prefixes at this
    block, each shared by N/G consecutive rows without being copied (a group's queries are one
    matrix). ``mask`` ([N, S, S], additive) is causal plus padding among the row's own tokens;
    every token sees the whole prefix. ``query_at`` ([N]) keeps one output token per row (the
    last block only needs the pooled one). Returns hidden states and this block's keys/values.
    """
    heads = block.heads
    x = block.norm_attn(hidden)
    k, v = _heads(block.k(x), heads), _heads(block.v(x), heads)
    if query_at is not None:
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        hidden, x, mask = hidden[rows, query_at, None], x[rows, query_at, None], mask[rows, query_at, None]
    q = _heads(block.q(x), heads)
    scale = q.shape[-1] ** -0.5
    n, s, d = hidden.shape
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale + mask
    if prefix_k is not None:
        groups, p = prefix_k.shape[1], prefix_k.shape[2]
        group_q = q.reshape(heads, groups, (n // groups) * s, -1)
        shared = (torch.matmul(group_q, prefix_k.transpose(-1, -2)) * scale).view(heads, n, s, p)
        weights = F.softmax(torch.cat([shared, scores], dim=-1), dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(weights[..., p:], v)
        to_prefix = weights[..., :p].reshape(heads, groups, (n // groups) * s, p)
        out = out + torch.matmul(to_prefix, prefix_v).view(heads, n, s, -1)
    else:
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(weights, v)
    out = out.permute(1, 2, 0, 3).reshape(n, s, -1)
    hidden = hidden + block.attn_out(out)
    hidden = hidden + block.mlp(block.norm_mlp(hidden))
    return hidden, k, v


def _additive(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def _rest_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[N, S, S] additive mask among the non-prefix tokens: causal and no padding keys."""
    s = attention_mask.shape[1]
    causal = torch.ones(s, s, dtype=torch.bool, device=attention_mask.device).tril()
    return _additive(causal[None] & attention_mask[:, None, :].bool(), dtype)


def _replace(hidden: Tensor, prompt: Tensor, offset: int) -> Tensor:
    """Put the deep prompt's positions ``1..n`` of the full sequence into ``hidden``, which
    holds positions ``offset..offset+S-1`` (the prefix has offset 0, the rest offset P)."""
    n = prompt.shape[-2]
    first, last = max(1, offset), min(n, offset + hidden.shape[1] - 1)
    if last < first:
        return hidden
    part = prompt[..., first - 1 : last, :].to(hidden.dtype).expand(hidden.shape[0], -1, -1)
    lo, hi = first - offset, last - offset + 1
    return torch.cat([hidden[:, :lo], part, hidden[:, hi:]], dim=1)


def _prefix_states(tower: CausalTower, prefix: Tensor, deep_prompts: Sequence[Tensor] | None) -> list[Tensor]:
    """Keys and values [H, G, P, D/H] of the G shared prefixes ([G, P, D]) at every block, once."""
    p = prefix.shape[1]
    hidden = prefix + tower.positions[:p].to(prefix.dtype)
    mask = _additive(torch.ones(p, p, dtype=torch.bool, device=prefix.device).tril()[None], torch.float32)
    states = []
    for index, block in enumerate(tower.blocks):
        if deep_prompts and 0 < index <= len(deep_prompts):
            hidden = _replace(hidden, deep_prompts[index - 1], 0)
        hidden, k, v = _block(block, hidden, mask, None, None)
        states += [k, v]
    return states


def _run_rest(tower: CausalTower, per_block: bool, rest: Tensor, attention_mask: Tensor, pooled_at: Tensor,
              deep_prompts: Sequence[Tensor] | None, offset: int, *prefix_states: Tensor) -> Tensor:
    """Features of the non-prefix tokens [N, S, D] given the prefix's keys and values."""
    hidden = rest + tower.positions[offset : offset + rest.shape[1]].to(rest.dtype)
    mask = _rest_mask(attention_mask, torch.float32)
    last = len(tower.blocks) - 1
    for index, block in enumerate(tower.blocks):
        if deep_prompts and 0 < index <= len(deep_prompts):
            hidden = _replace(hidden, deep_prompts[index - 1], offset)
        k, v = (prefix_states[2 * index], prefix_states[2 * index + 1]) if prefix_states else (None, None)
        query_at = pooled_at if index == last else None  # only the pooled token leaves the tower
        if per_block and torch.is_grad_enabled():
            hidden = _checkpointed(functools.partial(_first_of_block, block), hidden, mask, k, v, query_at)
        else:
            hidden = _block(block, hidden, mask, k, v, query_at)[0]
    return tower.project(tower.final_norm(hidden[:, 0]))


def _first_of_block(block: PreNormBlock, hidden: Tensor, mask: Tensor, k: Tensor | None, v: Tensor | None,
                    query_at: Tensor | None) -> Tensor:
    return _block(block, hidden, mask, k, v, query_at)[0]


def usable_prefix(prefix_length: int, deep_prompts: Sequence[Tensor] | None, tokens: Tokens) -> int:
    """The longest prefix that is really shared: per-row deep prompts break sharing after the
    start token, and the end token (where features are pooled) must stay outside."""
    if prefix_length <= 0:
        return 0
    if deep_prompts and any(p.dim() == 3 for p in deep_prompts):
        prefix_length = 1
    shortest = int(tokens.lengths.min())
    return max(0, min(prefix_length, shortest - 1))


def encode_causal(tower: CausalTower, embeddings: Tensor, tokens: Tokens, deep_prompts: Sequence[Tensor] | None,
                  prefix: SharedPrefix, options: TextOptions) -> Tensor:
    """CLIP-style text features [N, E] of prompt embeddings [N, L, D], the promised prefix
    computed once per group (``Backbone.encode_text_embeddings`` calls it for a causal tower).

    Equal to the tower's plain loop (tested for every backbone). The last block and the final
    norm run on the pooled end-of-text token only: nothing else reaches the output.
    """
    tokens = tokens.truncated().to(embeddings.device)
    embeddings = embeddings[:, : tokens.ids.shape[1]]
    prefix.check(len(tokens))
    p = usable_prefix(prefix.length if options.share_prefix else 0, deep_prompts, tokens)
    groups, per_group = prefix.groups, len(tokens) // prefix.groups
    states = _prefix_states(tower, embeddings[::per_group, :p], deep_prompts) if p > 0 else []
    rest, attention_mask = embeddings[:, p:], tokens.attention_mask[:, p:]
    pooled_at = tokens.eot_index - p
    recompute_chunks = torch.is_grad_enabled() and 0 < options.chunk < len(tokens)
    run = functools.partial(_run_rest, tower, options.checkpoint)
    out = []
    for rows, group_rows in _group_chunks(groups, per_group, options.chunk):
        chunk_states = [state[:, group_rows] for state in states]
        args = (rest[rows], attention_mask[rows], pooled_at[rows], _rows(deep_prompts, rows), p, *chunk_states)
        out.append(_checkpointed(run, *args) if recompute_chunks else run(*args))
    return torch.cat(out)


def _group_chunks(groups: int, per_group: int, chunk: int) -> list[tuple[slice, slice]]:
    """(rows, groups) of each pass: at most ``chunk`` rows (0 = all), never mixing a group's
    rows with a prefix other than its own. Whole groups go together when they fit in a chunk;
    a group larger than a chunk is cut inside, every piece with that group's prefix."""
    if chunk <= 0 or chunk >= per_group:
        together = max(1, chunk // per_group) if chunk > 0 else groups
        return [(slice(g.start * per_group, g.stop * per_group), g) for g in _chunks(groups, together)]
    return [(slice(g * per_group + r.start, g * per_group + r.stop), slice(g, g + 1))
            for g in range(groups) for r in _chunks(per_group, chunk)]
