"""Sequence parallelism for LTX-2's transformer: the video tokens split over ``S`` ranks, audio whole on each.

Why not diffusers' context parallelism: in 0.42 ``LTX2VideoTransformer3DModel._cp_plan`` is LTX-1's (no audio, no
per-token timestep, one of four RoPE modules; diffusers issue #14316), its Ulysses path mis-shards the text mask's
heads, and the fixed plan (PR #14317, unmerged) shards audio and text too, so every sequence (audio: ~126 tokens at
5 s) must divide by the degree. Here, as vLLM-Omni and TensorRT-LLM do for LTX-2, only the video stream is split:

- the video tokens (and everything per video token: the timestep when it is per token, the RoPE coordinates, the
  keyframe marker) are padded to a multiple of ``S`` and each rank keeps its slice; every per-token layer (norms,
  modulation, feed-forward, RoPE) then runs on the slice as it would on the whole;
- audio (~1-2 % of the tokens), the text and every audio layer stay whole and identical on every rank;
- the attentions that mix video tokens exchange exactly what they need (``ShardedAttnProcessor``):
  video self-attention (Q, K, V all video) and video→audio (Q audio, K and V video). Text cross-attention and
  audio→video (K and V text or audio, whole everywhere) need nothing;
- the exchange is ``ulysses`` (an all-to-all trades tokens for heads: each rank attends over all tokens for ``H/S``
  heads, then trades back; 4 all-to-alls of ``N/S`` tokens) when the heads divide by ``S``, else ``allgather``
  (every rank gathers all keys and values: ``2N`` tokens). Either way each attention row sees exactly the keys it
  would see on one rank: the padding is cut off the keys before attending, never masked;
- the transformer's video output is gathered back in the caller (``parallel.py``).

Each rank computes the same audio from the same inputs, so audio stays identical across ranks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_ltx2 import apply_interleaved_rotary_emb, apply_split_rotary_emb

from pixgen.engine.parallel_plan import exchange, shard

SELF, VIDEO_KV = "video-self", "video-kv"  # the two kinds of attention that mix video tokens
ROLES = {"attn1": SELF, "video_to_audio_attn": VIDEO_KV}  # LTX2VideoTransformerBlock's attention modules


@dataclass(frozen=True)
class SequenceShard:
    """One forward's split: ``tokens`` video tokens over the ``degree`` ranks of ``group``, this rank ``index``."""

    group: dist.ProcessGroup
    degree: int
    index: int
    tokens: int
    exchange: str = "auto"  # as asked; each attention resolves it against its own head count

    @property
    def per_rank(self) -> int:
        return shard(self.tokens, self.degree)[0]

    @property
    def padded(self) -> int:
        return self.per_rank * self.degree

    def split(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        """This rank's slice of ``t`` along ``dim`` (padded with zeros at the end to a multiple of the degree), laid
        out contiguously as a whole tensor would be (a strided view takes other kernels: other bfloat16 roundings)."""
        pad = self.padded - t.shape[dim]
        if pad:
            shape = list(t.shape)
            shape[dim] = pad
            t = torch.cat([t, t.new_zeros(shape)], dim=dim)
        return t.narrow(dim, self.index * self.per_rank, self.per_rank).contiguous()

    def gather(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        """Every rank's slice of ``t`` along ``dim``, joined, padding cut off."""
        return all_gather(t, dim, self.group).narrow(dim, 0, self.tokens).contiguous()


class ShardState:
    """The split of the forward running now (None: no split, every attention runs as diffusers' own)."""

    def __init__(self) -> None:
        self.current: SequenceShard | None = None

    @contextmanager
    def active(self, shard_: SequenceShard | None) -> Iterator[None]:
        previous, self.current = self.current, shard_
        try:
            yield
        finally:
            self.current = previous


def split_inputs(shard_: SequenceShard, kwargs: dict[str, Any], rope: Any) -> dict[str, Any]:
    """The transformer's keyword arguments with every per-video-token tensor cut to this rank's slice."""
    hidden = kwargs["hidden_states"]
    out = dict(kwargs)
    out["hidden_states"] = shard_.split(hidden, 1)
    coords = kwargs.get("video_coords")
    if coords is None:
        coords = rope.prepare_video_coords(hidden.shape[0], kwargs["num_frames"], kwargs["height"], kwargs["width"],
                                           hidden.device, fps=kwargs.get("fps", 24.0))
    out["video_coords"] = shard_.split(coords, 2)  # (B, 3, N, 2): the RoPE of every video attention follows
    timestep = kwargs["timestep"]
    if timestep.ndim >= 2 and timestep.shape[1] == shard_.tokens:  # per token (conditioned frames at 0)
        out["timestep"] = shard_.split(timestep, 1)
    if kwargs.get("video_keyframes_mask") is not None:
        out["video_keyframes_mask"] = shard_.split(kwargs["video_keyframes_mask"], 1)
    # video_self_attention_mask (IC-LoRA) stays whole: (B, N, N) rows are cut per rank in the attention.
    return out


class ShardedAttnProcessor:
    """diffusers' LTX-2 attention (``LTX2PerturbedAttnProcessor``, which is ``LTX2AudioVideoAttnProcessor`` plus
    STG's perturbation) with the attention step exchanged over the sequence group while a shard is active.
    Without one it computes exactly what diffusers' processor computes."""

    _attention_backend: Any = None  # set by speed.set_mask_free_attention_backend like diffusers' processors
    _parallel_config: Any = None

    def __init__(self, role: str, state: ShardState, attention_backend: Any = None) -> None:
        if role not in (SELF, VIDEO_KV):
            raise ValueError(f"unknown attention role {role!r}")
        self.role, self.state = role, state
        self._attention_backend = attention_backend

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 query_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
                 key_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
                 perturbation_mask: torch.Tensor | None = None, all_perturbed: Any = None) -> torch.Tensor:
        shard_ = self.state.current
        batch_size, sequence_length, _ = (hidden_states.shape if encoder_hidden_states is None
                                          else encoder_hidden_states.shape)
        if attention_mask is not None and shard_ is None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        gate_logits = attn.to_gate_logits(hidden_states) if attn.to_gate_logits is not None else None

        value = attn.to_v(encoder_hidden_states)
        if all_perturbed is None:
            all_perturbed = torch.all(perturbation_mask == 0) if perturbation_mask is not None else False
        if all_perturbed:  # STG: the block's values stand in for its attention (no token is mixed: no exchange)
            hidden_states = value
        else:
            query = attn.norm_q(attn.to_q(hidden_states))
            key = attn.norm_k(attn.to_k(encoder_hidden_states))
            if query_rotary_emb is not None:
                rotate = apply_interleaved_rotary_emb if attn.rope_type == "interleaved" else apply_split_rotary_emb
                query = rotate(query, query_rotary_emb)
                key = rotate(key, key_rotary_emb if key_rotary_emb is not None else query_rotary_emb)
            query, key, value = (x.reshape(*x.shape[:2], attn.heads, -1) for x in (query, key, value))
            if shard_ is None:
                hidden_states = self._attend(query, key, value, attention_mask)
            elif self.role == SELF:
                hidden_states = self._self_attention(shard_, attn.heads, query, key, value, attention_mask)
            else:
                if attention_mask is not None:
                    raise NotImplementedError("a mask on the video→audio attention is not split over ranks")
                hidden_states = self._video_kv_attention(shard_, attn.heads, query, key, value)
            hidden_states = hidden_states.flatten(2, 3).to(query.dtype)
            if perturbation_mask is not None:
                hidden_states = torch.lerp(value.flatten(2, 3), hidden_states, perturbation_mask)

        if gate_logits is not None:  # per token and head: on this rank's tokens, after the exchange back
            hidden_states = hidden_states.reshape(*hidden_states.shape[:2], attn.heads, -1)
            hidden_states = (hidden_states * (2.0 * torch.sigmoid(gate_logits)).unsqueeze(-1)).flatten(2, 3)
        out: torch.Tensor = attn.to_out[1](attn.to_out[0](hidden_states))
        return out

    def _attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        out: torch.Tensor = dispatch_attention_fn(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False,
                                                  backend=self._attention_backend, parallel_config=None)
        return out

    def _self_attention(self, s: SequenceShard, heads: int, query: torch.Tensor, key: torch.Tensor,
                        value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Q, K, V: this rank's video tokens (B, n, H, D) → its tokens' attention over all video tokens."""
        rows = _mask_rows(mask, s)  # (B, N_pad, N) additive, or None
        if exchange(heads, s.degree, s.exchange) == "ulysses":
            query, key, value = (_tokens_for_heads(x, s) for x in (query, key, value))  # (B, N_pad, H/S, D)
            out = self._attend(query, _first(key, s.tokens), _first(value, s.tokens),
                               None if rows is None else rows[:, None])
            return _heads_for_tokens(out, s)  # (B, n, H, D)
        key, value = s.gather(key, 1), s.gather(value, 1)
        if rows is not None:
            rows = rows.narrow(1, s.index * s.per_rank, s.per_rank)[:, None]
        return self._attend(query, key, value, rows)

    def _video_kv_attention(self, s: SequenceShard, heads: int, query: torch.Tensor, key: torch.Tensor,
                            value: torch.Tensor) -> torch.Tensor:
        """Q: all audio tokens (the same on every rank); K, V: this rank's video tokens."""
        if exchange(heads, s.degree, s.exchange) == "ulysses":
            key, value = (_first(_tokens_for_heads(x, s), s.tokens) for x in (key, value))  # (B, N, H/S, D)
            h = heads // s.degree
            out = self._attend(query[:, :, s.index * h:(s.index + 1) * h], key, value, None)  # (B, Na, H/S, D)
            return all_gather(out, 2, s.group)  # every rank's heads, in order
        return self._attend(query, s.gather(key, 1), s.gather(value, 1), None)


def _mask_rows(mask: torch.Tensor | None, s: SequenceShard) -> torch.Tensor | None:
    """The video self-attention mask (additive, ``(B, N, N)`` as the transformer passes it) with its query rows
    padded to ``N_pad`` (the padding rows' results are thrown away)."""
    if mask is None:
        return None
    if mask.ndim != 3:
        raise NotImplementedError(f"a video self-attention mask of shape {tuple(mask.shape)} is not split over ranks")
    pad = s.padded - mask.shape[1]
    return torch.cat([mask, mask.new_zeros(mask.shape[0], pad, mask.shape[2])], dim=1) if pad else mask


def _first(x: torch.Tensor, tokens: int) -> torch.Tensor:
    """The first ``tokens`` along dim 1 (the padding cut off), contiguous."""
    return x if x.shape[1] == tokens else x[:, :tokens].contiguous()


def _tokens_for_heads(x: torch.Tensor, s: SequenceShard) -> torch.Tensor:
    """(B, n, H, D) this rank's tokens, all heads → (B, S·n, H/S, D) all tokens, this rank's heads."""
    b, n, h, d = x.shape
    send = x.reshape(b, n, s.degree, h // s.degree, d).permute(2, 0, 1, 3, 4).contiguous()  # [j]: heads for rank j
    recv = _wait(funcol.all_to_all_single(send, None, None, s.group))  # [j]: rank j's tokens, my heads
    return recv.permute(1, 0, 2, 3, 4).reshape(b, s.degree * n, h // s.degree, d)


def _heads_for_tokens(x: torch.Tensor, s: SequenceShard) -> torch.Tensor:
    """The inverse of ``_tokens_for_heads``: (B, S·n, H/S, D) → (B, n, H, D)."""
    b, sn, h, d = x.shape
    n = sn // s.degree
    send = x.reshape(b, s.degree, n, h, d).permute(1, 0, 2, 3, 4).contiguous()  # [j]: rank j's tokens
    recv = _wait(funcol.all_to_all_single(send, None, None, s.group))  # [j]: my tokens, rank j's heads
    return recv.permute(1, 2, 0, 3, 4).reshape(b, n, s.degree * h, d)


def all_gather(t: torch.Tensor, dim: int, group: dist.ProcessGroup) -> torch.Tensor:
    """Every rank's ``t`` of ``group``, joined along ``dim`` in rank order."""
    whole = _wait(funcol.all_gather_single(t.contiguous(), 0, group))
    return torch.cat(whole.chunk(dist.get_world_size(group), 0), dim=dim) if dim else whole


def _wait(t: torch.Tensor) -> torch.Tensor:
    return t.wait() if isinstance(t, funcol.AsyncCollectiveTensor) else t


def install(transformer: torch.nn.Module, state: ShardState) -> int:
    """Put a ``ShardedAttnProcessor`` on every attention that mixes video tokens (keeping the attention backend
    speed options chose); returns how many."""
    count = 0
    for block in getattr(transformer, "transformer_blocks", ()):
        for name, role in ROLES.items():
            module = getattr(block, name)
            backend = getattr(module.processor, "_attention_backend", None)
            module.set_processor(ShardedAttnProcessor(role, state, backend))
            count += 1
    return count
