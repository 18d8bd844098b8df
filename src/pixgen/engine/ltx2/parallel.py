"""One LTX-2 job over several ranks: the transformer's forward, wrapped, on every rank of a group.

Every rank runs the same engine code on the same request (the text, the conditions, the pipelines' loops); only
the transformer's work is shared, and only rank 0 decodes and writes the video (``writes_output``). Each call of
the transformer that is not already answered:

1. **Agrees**: every rank shares (cancel?, a digest of the call's shape); rank 0's cancel ends the job on every
   rank at the same call (``Cancelled``), and ranks that disagree on the call stop with a clear error instead of
   waiting on each other.
2. **Takes rank 0's inputs**: its tensors are broadcast from rank 0, so every rank computes on the same numbers
   even if something before the transformer (a sampled prompt rewrite, a GPU kernel) came out differently.
3. **Splits** (``parallel_plan.choose_layout``): a guided step's passes (``guidance_kwargs`` tells the wrapper which
   the pipeline will make: CFG's batch, STG, modality) go side by side to ``G`` groups, each pass's video tokens
   over the ``S`` ranks of its group (``sequence_parallel.py``). The step's first call (CFG's batch, or the
   positive pass) returns at once with its own result; the STG and modality calls that follow are answered from
   what the other groups computed, once checked to be exactly the call that was foreseen (else computed then).

Outputs are identical on every rank (gathered), so the pipelines' scheduler steps stay in lockstep.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from diffusers.models.transformers.transformer_ltx2 import AudioVisualModelOutput

from pixgen.engine.base import EngineOptions, never_cancelled
from pixgen.engine.distributed import collective, subgroups
from pixgen.engine.ltx2.recipes import Guidance
from pixgen.engine.ltx2.sequence_parallel import SequenceShard, ShardState, all_gather, install, split_inputs
from pixgen.engine.parallel_plan import COND, MODALITY, STG, UNCOND, Layout, bins, choose_layout, guidance_pieces, shard
from pixgen.errors import Cancelled, GenerationError

if TYPE_CHECKING:
    from pixgen.engine.ltx2.engine import LTX2Engine

log = logging.getLogger("pixgen.parallel")

PLAN_KEY = "pixgen_guidance_pieces"  # rides in the pipelines' attention_kwargs to the wrapped forward


@dataclass
class ParallelRuntime:
    """This rank's view of its group: the sub-groups of every layout, the options, the cancel source (rank 0)."""

    rank: int
    world: int
    device: torch.device
    guidance_parallel: bool
    exchange: str
    # per layout: (this rank's sequence group, its guidance group); None where the group would be one rank
    groups: dict[Layout, tuple[dist.ProcessGroup | None, dist.ProcessGroup | None]] = field(default_factory=dict)
    state: ShardState = field(default_factory=ShardState)
    cancel: Callable[[], bool] = never_cancelled  # rank 0: the job's cancel flag, read at every shared call
    _logged: set[tuple[int, int, int]] = field(default_factory=set)

    @classmethod
    def create(cls, device: torch.device, options: EngineOptions) -> ParallelRuntime:
        """This rank's runtime over the sub-groups made when it joined (``distributed.init_rank_group``)."""
        return cls(dist.get_rank(), dist.get_world_size(), device, options.guidance_parallel != "off",
                   options.sequence_exchange, subgroups())

    @property
    def writes_output(self) -> bool:
        """Only rank 0 decodes and writes the video; the others take part in the denoising only."""
        return self.rank == 0

    def layout(self, pieces: int) -> Layout:
        return choose_layout(self.world, pieces, guidance_parallel=self.guidance_parallel)

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world} ({'guidance + ' if self.guidance_parallel else ''}sequence " \
               f"parallel, {self.exchange} exchange)"

    def note(self, tokens: int, layout: Layout) -> None:
        """Log each new split once (rank 0), the padding of a token count that does not divide included."""
        key = (tokens, layout.guidance, layout.sequence)
        if self.rank != 0 or key in self._logged:
            return
        self._logged.add(key)
        per_rank, pad = shard(tokens, layout.sequence)
        padding = f"; {tokens} does not divide by {layout.sequence}: padded by {pad}" if pad else ""
        log.info("transformer split %s: %d video tokens, %d per rank%s", layout.describe(), tokens, per_rank,
                 padding)


def attach_parallel(engine: LTX2Engine, options: EngineOptions) -> ParallelRuntime | None:
    """Wrap ``engine``'s transformer for the rank group this process is in; None (nothing changed) outside one."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return None
    if options.step_cache != "none" and options.guidance_parallel != "off":
        # A step cache keeps its state per guidance pass (diffusers' cache contexts, set around each pipeline
        # call): a rank computing another pass ahead, inside the first pass's context, would mix them.
        log.warning("step cache %s: the guidance passes run one after another (tokens split only)",
                    options.step_cache)
        options = replace(options, guidance_parallel="off")
    runtime = parallelize(getattr(engine.pipes.text, "transformer"), engine.device, options)  # noqa: B009
    engine.speed["parallel"] = runtime.describe()  # for the manifest: the numbers differ in the last bits
    log.info("%s", runtime.describe())
    return runtime


def parallelize(transformer: torch.nn.Module, device: torch.device, options: EngineOptions) -> ParallelRuntime:
    """Make ``transformer`` (shared by every pipeline) run over this process's group."""
    runtime = ParallelRuntime.create(device, options)
    install(transformer, runtime.state)
    transformer.forward = ParallelForward(transformer, runtime)
    return runtime


def guidance_kwargs(runtime: ParallelRuntime | None, guidance: Guidance) -> dict[str, Any]:
    """Pipeline arguments that tell the wrapped transformer which passes each step makes (none outside a group)."""
    if runtime is None:
        return {}
    sent = guidance.pipeline_kwargs()  # as the pipeline will read them (its do_* properties)
    pieces = guidance_pieces(cfg=sent["guidance_scale"] > 1 or sent["audio_guidance_scale"] > 1,
                             stg=sent["stg_scale"] > 0 or sent["audio_stg_scale"] > 0,
                             modality=sent["modality_scale"] > 1 or sent["audio_modality_scale"] > 1)
    return {"attention_kwargs": {PLAN_KEY: StepPlan(pieces, sent["spatio_temporal_guidance_blocks"])}}


@dataclass(frozen=True)
class StepPlan:
    """The passes of each step of one pipeline call, and the blocks its STG pass perturbs."""

    pieces: tuple[str, ...]
    stg_blocks: list[int] | None = None


class DiscardWriter:
    """What a rank that writes no video writes into: the MP4 writer's interface, nothing kept."""

    frames_written = 0

    def write_audio(self, audio: Any) -> None:
        pass

    def write_frames(self, frames: Any) -> None:
        pass


@dataclass
class _Foreseen:
    """A pass computed ahead (STG or modality) and the call it answers, as this rank's pipeline will make it."""

    call: dict[str, Any]
    video: torch.Tensor
    audio: torch.Tensor


class ParallelForward:
    """The transformer's ``forward`` on a rank of a group (see the module's docstring)."""

    def __init__(self, transformer: torch.nn.Module, runtime: ParallelRuntime) -> None:
        self.forward: Callable[..., Any] = transformer.forward
        self.rope: Any = transformer.rope
        self.runtime = runtime
        self.foreseen: list[_Foreseen] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError("the parallel transformer takes keyword arguments only (as diffusers' pipelines pass)")
        return_dict = kwargs.pop("return_dict", True)
        extra = dict(kwargs.get("attention_kwargs") or {})
        plan = extra.pop(PLAN_KEY, None) or StepPlan((COND,))
        kwargs["attention_kwargs"] = extra or None
        answer = self._answered(kwargs)
        if answer is None:
            local = kwargs
            kwargs = self._agree(kwargs)
            answer = self._compute(kwargs, local, plan)
        video, audio = answer
        return AudioVisualModelOutput(sample=video, audio_sample=audio) if return_dict else (video, audio)

    # -- 1.-2. agree and share rank 0's inputs --------------------------------------------------------------
    def _agree(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        rt = self.runtime
        cancel = rt.rank == 0 and rt.cancel()
        control = torch.tensor([int(cancel), _digest(kwargs)], dtype=torch.int64, device=rt.device)
        everyone = dist.group.WORLD
        assert everyone is not None  # inside a group
        with collective("the ranks' agreement on a transformer call"):
            seen = all_gather(control, 0, everyone).view(rt.world, 2).tolist()
        if seen[0][0]:
            raise Cancelled("cancelled during denoising")
        if len({digest for _, digest in seen}) > 1:
            raise GenerationError("the ranks of this group are not making the same transformer call (a bug): "
                                  f"digests {[d for _, d in seen]}")
        names = sorted(k for k, v in kwargs.items() if isinstance(v, torch.Tensor))
        out = dict(kwargs)
        by_dtype: dict[torch.dtype, list[str]] = {}
        for name in names:
            by_dtype.setdefault(kwargs[name].dtype, []).append(name)
        with collective("the broadcast of a transformer call's inputs"):
            for dtype, group in by_dtype.items():
                flat = torch.cat([kwargs[n].to(rt.device).reshape(-1) for n in group]) if rt.rank == 0 else \
                    torch.empty(sum(kwargs[n].numel() for n in group), dtype=dtype, device=rt.device)
                dist.broadcast(flat.view(torch.uint8) if dtype == torch.bool else flat, src=0)
                for name, part in zip(group, torch.split(flat, [kwargs[n].numel() for n in group]), strict=True):
                    out[name] = part.view(kwargs[name].shape).to(kwargs[name].device)
        return out

    # -- 3. split --------------------------------------------------------------------------------------------
    def _compute(self, kwargs: dict[str, Any], local: dict[str, Any],
                 plan: StepPlan) -> tuple[torch.Tensor, torch.Tensor]:
        self.foreseen = []
        pieces = plan.pieces
        batch = kwargs["hidden_states"].shape[0]
        if batch != (2 if UNCOND in pieces else 1):  # not the call the plan describes: this one alone
            pieces = (COND,)
        layout = self.runtime.layout(len(pieces))
        if layout.guidance == 1:
            return self._sharded(kwargs, layout)
        my_bin = bins(pieces, layout.guidance)[self.runtime.rank // layout.sequence]
        videos, audios = [], []
        for call in _calls_for(my_bin, kwargs, plan):
            video, audio = self._sharded(call, layout)
            videos.append(video)
            audios.append(audio)
        _, guidance_group = self.runtime.groups[layout]
        assert guidance_group is not None  # a layout of G > 1 groups has one
        with collective("the exchange of guidance passes"):
            video_all = all_gather(torch.cat(videos), 0, guidance_group)
            audio_all = all_gather(torch.cat(audios), 0, guidance_group)
        index = {piece: i for i, piece in enumerate(pieces)}
        first = [p for p in (UNCOND, COND) if p in pieces]
        for piece in (STG, MODALITY):
            if piece in pieces:
                self.foreseen.append(_Foreseen(_piece_call(piece, local, plan), video_all[index[piece]][None],
                                               audio_all[index[piece]][None]))
        rows = [index[p] for p in first]
        return video_all[rows], audio_all[rows]

    def _sharded(self, kwargs: dict[str, Any], layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
        """One call, its video tokens over this rank's sequence group of ``layout``."""
        tokens = kwargs["hidden_states"].shape[1]
        self.runtime.note(tokens, layout)
        group, _ = self.runtime.groups[layout]
        if group is None:
            video, audio = self.forward(**kwargs, return_dict=False)
            return video, audio
        s = SequenceShard(group, layout.sequence, self.runtime.rank % layout.sequence, tokens,
                          self.runtime.exchange)
        with collective("a sequence-parallel transformer pass"), self.runtime.state.active(s):
            video, audio = self.forward(**split_inputs(s, kwargs, self.rope), return_dict=False)
            return s.gather(video, 1), audio

    def _answered(self, kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The result computed ahead for this very call, if it is one (every rank decides alike: each compares
        its own pipeline's call with its own foresight)."""
        for i, f in enumerate(self.foreseen):
            if _same_call(kwargs, f.call):
                del self.foreseen[i]
                return f.video, f.audio
        if self.foreseen:
            log.warning("a guidance pass came out unlike the one computed ahead; computing it in turn")
            self.foreseen = []
        return None


def _calls_for(pieces: tuple[str, ...], kwargs: dict[str, Any], plan: StepPlan) -> list[dict[str, Any]]:
    """The transformer calls that make ``pieces``: CFG's negative and positive together as the pipeline batches
    them (so a rank that has both computes exactly what one rank would), every other piece alone."""
    if pieces[:2] == (UNCOND, COND):
        return [kwargs, *(_piece_call(p, kwargs, plan) for p in pieces[2:])]
    return [_piece_call(p, kwargs, plan) for p in pieces]


def _piece_call(piece: str, kwargs: dict[str, Any], plan: StepPlan) -> dict[str, Any]:
    """The batch-1 call of ``piece`` from a step's first call ``kwargs``: the pipelines' STG and modality calls take
    the positive half of CFG's batch, with STG's blocks or with the modalities isolated."""
    batch = kwargs["hidden_states"].shape[0]
    row = 0 if piece == UNCOND else batch - 1
    call = {k: (v[row:row + 1] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == batch else v)
            for k, v in kwargs.items()}
    if piece == STG:
        call["spatio_temporal_guidance_blocks"] = plan.stg_blocks
    if piece == MODALITY:
        call["isolate_modalities"] = True
    return call


def _same_call(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for k, v in a.items():
        w = b[k]
        if isinstance(v, torch.Tensor) or isinstance(w, torch.Tensor):
            if not (isinstance(v, torch.Tensor) and isinstance(w, torch.Tensor) and v.shape == w.shape
                    and v.dtype == w.dtype and torch.equal(v, w)):
                return False
        elif v != w:
            return False
    return True


def _digest(kwargs: dict[str, Any]) -> int:
    """A number that two ranks making the same call agree on: names, shapes, dtypes and the plain values."""
    parts = []
    for k in sorted(kwargs):
        v = kwargs[k]
        parts.append(f"{k}:{tuple(v.shape)}:{v.dtype}" if isinstance(v, torch.Tensor) else f"{k}={v!r}")
    return zlib.crc32("|".join(parts).encode())
