"""A toy-size LTX-2: the real diffusers / transformers classes at a few MB, with random weights.

Its pictures and sounds are noise. It exists so that every layer of pixgen (engine, jobs, HTTP APIs, CLI, tests,
CI) can run the real LTX-2 pipelines end to end on a CPU in well under a second per video, with no network and no
multi-GB checkpoint. The folder is in diffusers format, so the code that loads it is the code that loads the real
model: ``LTX2Pipeline`` / ``LTX2ImageToVideoPipeline`` / ``LTX2ConditionPipeline.from_pretrained(dir)`` and
``LTX2LatentUpsamplerModel.from_pretrained(dir, subfolder="latent_upsampler")``.

The weights come from a fixed torch seed and the tokenizer is a BPE trained here on a fixed corpus, so every build
is byte-identical (every file in the folder).

Two toys (``TOY_MODELS``): ``tiny`` is an LTX-2.0 folder; ``tiny-2.5`` is the same folder plus LTX-2.5's
``duration_head/`` (diffusers' ``LTX2DurationHead`` at toy size, random weights: seconds from the prompt, so
``duration: "auto"`` runs end to end) and a ``pixgen.json`` naming the ``ltx-2.5`` recipe with the same toy
overrides.
"""

# Gotchas when calling the pipelines on this toy model (measured with diffusers 0.42.1, transformers 5.23.0):
# - ``max_sequence_length`` must be a multiple of the connectors' learnable registers (8 here); the pipeline
#   default 1024 works, but TOY_MAX_SEQUENCE_LENGTH (64) is plenty for the toy and faster.
# - ``spatio_temporal_guidance_blocks`` defaults to [28], a block the 2-layer transformer does not have: STG then
#   silently perturbs nothing but still costs an extra transformer pass. Pass ``spatio_temporal_guidance_blocks=[1]``
#   (or ``stg_scale=0.0``; ``audio_stg_scale`` falls back to ``stg_scale`` when it is falsy).
# - width / height must be multiples of 32; ``num_frames`` 8k+1; ``num_inference_steps`` >= 2 (1 step gives NaN
#   with ``shift_terminal``).
# - Image conditions are re-encoded through libx264 (CRF 33) unless the condition has ``crf=0``.
# - The folder's pixgen.json names the LTX-2.0 dev recipe with TOY_SAMPLING as overrides (pixgen.engine.ltx2.recipes).
# - The latent upsampler is not listed in model_index.json; load it with ``subfolder="latent_upsampler"``.

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

TOY_VERSION = "5"
TOY_SEED = 20240607
TOY_VOCAB_SIZE = 512
TOY_MAX_SEQUENCE_LENGTH = 64  # multiple of the connectors' learnable registers (8); the pipeline default 1024 works too
TOY_NUM_LEARNABLE_REGISTERS = 8
# Written to the folder's ``pixgen.json`` (read by pixgen.engine.ltx2.recipes): overrides that suit 2 layers and toy
# sizes, on the LTX-2.0 dev recipe (what its configs are).
TOY_RECIPE = "ltx-2.0-dev"
TOY_SAMPLING = {
    # CFG on (so the negative prompt matters); STG and modality guidance off: each would cost one more
    # transformer pass per step, and at 720p+ the toy's time is all in those passes.
    "num_inference_steps": 3, "guidance_scale": 3.0, "audio_guidance_scale": 3.0, "stg_scale": 0.0,
    "audio_stg_scale": 0.0, "modality_scale": 1.0, "audio_modality_scale": 1.0, "stg_blocks": [1],
    "max_sequence_length": TOY_MAX_SEQUENCE_LENGTH,
    "refine_lora": None,  # the toy ships no stage-2 distilled LoRA (tests add one where they need it)
}

# The toy's IC-LoRA (a real peft adapter with random weights, ``loras/``): one control type, so the control-video
# path runs end to end; its pictures follow the control video no more than its other pictures follow the prompt.
TOY_CONTROL_TYPES = ("depth",)
TOY_IC_LORA = "toy-ic-lora-depth-control.safetensors"

# The toys by ``--model`` name: the LTX-2 generation each folder is. Only 2.5 has a duration head.
TOY_MODELS = {"tiny": "2.0", "tiny-2.5": "2.5"}
TOY_RECIPES = {"2.0": TOY_RECIPE, "2.5": "ltx-2.5"}
DURATION_HEAD_DIR = "duration_head"  # LTX-2.5's: diffusers' LTX2DurationHead (subfolder of the model folder)
# The toy head's output layer: its bias puts random prompts near exp(0.5) ≈ 1.6 s (short videos keep tests fast), its
# weights scaled up so that different prompts get visibly different lengths (2–3 s: 49–65 frames).
TOY_DURATION_LOG_SECONDS = 0.5
TOY_DURATION_GAIN = 10.0


def toy_generation(model: str | None) -> str | None:
    """The LTX-2 generation of the toy ``model`` names (``tiny``: "2.0", ``tiny-2.5``: "2.5"); None for a folder."""
    return TOY_MODELS.get(model or "tiny")

_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
                   "<start_of_image>", "<end_of_image>", "<image_soft_token>"]

_CORPUS = """
A slow dolly shot moves through a quiet forest at dawn while mist drifts between the tall pine trees.
The camera pans left across a busy city street at night, neon signs reflecting in the wet pavement.
A close up of a cat sitting on a windowsill, its tail flicking as rain streaks down the glass.
Aerial drone footage flies over a rocky coastline where waves crash against the cliffs and seagulls cry.
A handheld camera follows a girl running through a field of tall golden wheat under a bright summer sky.
The scene opens on an empty kitchen; sunlight falls across the table and a kettle begins to whistle.
A tracking shot follows a red car along a winding mountain road as the clouds roll over the peaks.
Slow motion footage of water drops falling into a still pond, each ripple spreading in perfect circles.
The camera zooms in on an old man reading a newspaper on a park bench while pigeons walk around his feet.
A time lapse of the sky over the desert: the sun sets, the stars appear, and the milky way turns overhead.
Wide establishing shot of a snowy village at dusk, warm light glowing in every window, smoke from chimneys.
A chef slices fresh vegetables on a wooden board, the knife tapping steadily, steam rising from a pot.
The video shows a dancer spinning on a dark stage under a single spotlight, her dress swirling around her.
Underwater footage of a coral reef, bright fish darting between the rocks as light ripples from above.
A static shot of a train station platform; a train arrives, doors open, and people step on and off.
The camera tilts up from the wet grass to reveal a huge waterfall thundering into a green valley.
A dog chases a ball across a sandy beach, splashing through the shallow water as the sun goes down.
Cinematic lighting, shallow depth of field, soft focus background, film grain, warm colour grade.
Sound of wind, birds singing, footsteps on gravel, distant traffic, music playing softly in the room.
A musician plays an acoustic guitar by a campfire while friends sing along and sparks float upward.
The first frame shows a closed door; in the last frame the door is open and a bright light pours in.
Smooth orbit around a sculpture in a museum hall, people walking past and voices echoing off the walls.
"""


def _build_tokenizer():
    """A Gemma-style BPE (▁ for spaces, byte fallback, Gemma special tokens) trained on ``_CORPUS``."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import GemmaTokenizer

    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer_tok = Tokenizer(BPE(unk_token="<unk>", byte_fallback=True))
    trainer_tok.normalizer = normalizers.Replace(" ", "▁")
    # Keep merges inside words (with their leading ▁), like sentencepiece does.
    trainer_tok.pre_tokenizer = pre_tokenizers.Split(pattern="▁", behavior="merged_with_next")
    trainer = BpeTrainer(vocab_size=TOY_VOCAB_SIZE, special_tokens=_SPECIAL_TOKENS + byte_tokens,
                         show_progress=False, min_frequency=2)
    lines = [line.strip() for line in _CORPUS.strip().splitlines() if line.strip()]
    trainer_tok.train_from_iterator(lines, trainer=trainer)

    model = json.loads(trainer_tok.to_str())["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    # Like Gemma's own tokenizer, prepend <bos>.
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, model_max_length=1024)


def _build_components(tokenizer) -> dict:
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    vocab = tokenizer.get_vocab()
    torch.manual_seed(TOY_SEED)
    text_config = Gemma3TextConfig(
        vocab_size=TOY_VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
        max_position_embeddings=1024, sliding_window=64,
        pad_token_id=vocab["<pad>"], eos_token_id=vocab["<eos>"], bos_token_id=vocab["<bos>"])
    vision_config = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=16, patch_size=4)
    text_encoder = Gemma3ForConditionalGeneration(Gemma3Config(
        text_config=text_config, vision_config=vision_config, mm_tokens_per_image=4,
        boi_token_index=vocab["<start_of_image>"], eoi_token_index=vocab["<end_of_image>"],
        image_token_index=vocab["<image_soft_token>"]))

    torch.manual_seed(TOY_SEED + 1)
    connectors = LTX2TextConnectors(
        caption_channels=32, text_proj_in_factor=3,
        video_connector_num_attention_heads=4, video_connector_attention_head_dim=8,
        video_connector_num_layers=1, video_connector_num_learnable_registers=TOY_NUM_LEARNABLE_REGISTERS,
        audio_connector_num_attention_heads=4, audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1, audio_connector_num_learnable_registers=TOY_NUM_LEARNABLE_REGISTERS,
        connector_rope_base_seq_len=32, rope_double_precision=False, rope_type="split")

    torch.manual_seed(TOY_SEED + 2)
    # The decoder is twice as wide as the encoder on purpose: PyTorch's CPU conv3d picks its slow native kernel
    # when channels × frames × height is small (a heuristic meant for 2-D), and 8-channel toy stages hit it.
    vae = AutoencoderKLLTX2Video(
        latent_channels=8, block_out_channels=(16, 32, 64), decoder_block_out_channels=(32, 64, 128),
        layers_per_block=(1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True), decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False), downsample_type=("spatiotemporal",) * 3,
        upsample_type=("spatiotemporal",) * 3, upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
        patch_size=4, patch_size_t=1, timestep_conditioning=False, encoder_causal=True, decoder_causal=False,
        spatial_compression_ratio=32, temporal_compression_ratio=8)

    torch.manual_seed(TOY_SEED + 3)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=8, output_channels=2, ch_mult=(1, 2, 4), num_res_blocks=1, in_channels=2, resolution=64,
        latent_channels=2, norm_type="pixel", causality_axis="height", sample_rate=16000, mel_hop_length=160,
        is_causal=True, mel_bins=16)

    torch.manual_seed(TOY_SEED + 4)
    vocoder = LTX2Vocoder(
        in_channels=32, hidden_channels=64, out_channels=2, upsample_kernel_sizes=[16, 15, 8, 4, 4],
        upsample_factors=[6, 5, 2, 2, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
        output_sampling_rate=24000)

    torch.manual_seed(TOY_SEED + 5)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
        audio_in_channels=8, audio_out_channels=8, audio_num_attention_heads=2, audio_attention_head_dim=4,
        audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads", caption_channels=32,
        rope_double_precision=False, rope_type="split")

    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
        max_image_seq_len=4096, shift_terminal=0.1)

    return dict(scheduler=scheduler, vae=vae, audio_vae=audio_vae, text_encoder=text_encoder, tokenizer=tokenizer,
                connectors=connectors, transformer=transformer, vocoder=vocoder)


def _build_upsampler():
    import torch
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

    torch.manual_seed(TOY_SEED + 6)
    return LTX2LatentUpsamplerModel(in_channels=8, mid_channels=32, num_blocks_per_stage=1,
                                    use_rational_resampler=False)


def _build_ic_lora(path: Path) -> None:
    """The toy's IC-LoRA: rank 4 on the self-attention projections of both blocks (diffusers' LTX-2 key layout),
    non-zero on both sides so it changes what the transformer computes."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(TOY_SEED + 7)
    weights = {}
    for block in range(2):
        for proj in ("to_q", "to_k", "to_v"):
            key = f"transformer.transformer_blocks.{block}.attn1.{proj}"
            weights[f"{key}.lora_A.weight"] = torch.randn(4, 16, generator=gen) * 0.1
            weights[f"{key}.lora_B.weight"] = torch.randn(16, 4, generator=gen) * 0.1
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(path), metadata={"reference_downscale_factor": "1"})


def _build_duration_head():
    """LTX-2.5's duration head at toy size: reads both connector outputs (32 wide), as diffusers' own tests build it,
    with its output bias set so the toy predicts a few seconds."""
    import torch
    from diffusers.pipelines.ltx2 import LTX2DurationHead

    torch.manual_seed(TOY_SEED + 8)
    head = LTX2DurationHead(video_cross_attention_dim=32, audio_cross_attention_dim=32, pooler_hidden_dim=16,
                            num_queries=1, num_pooler_heads=2, mlp_hidden_dim=16)
    with torch.no_grad():
        head.mlp_out.bias.fill_(TOY_DURATION_LOG_SECONDS)
        head.mlp_out.weight.mul_(TOY_DURATION_GAIN)
    return head


def _normalise_json_files(root: Path) -> None:
    """Rewrite every JSON file with sorted keys and no build-specific paths, so builds compare byte for byte."""
    for path in sorted(root.rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data.pop("_name_or_path", None)
        path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def build_tiny_model(out_dir: Path, generation: str = "2.0") -> Path:
    """Build the toy LTX-2 (``generation`` "2.0", or "2.5" with a duration head) into ``out_dir`` (created) and return
    it. Leaves the caller's RNG state untouched."""
    if generation not in TOY_RECIPES:
        raise ValueError(f"no toy LTX-{generation}; toys: {sorted(TOY_RECIPES)}")
    import torch
    from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline  # its module: the top level types as a dummy

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards" bar
    try:
        with torch.random.fork_rng(devices=[]):
            tokenizer = _build_tokenizer()
            components = _build_components(tokenizer)
            if generation == "2.5":
                components["duration_head"] = _build_duration_head()  # listed in model_index.json, as LTX-2.5's is
            pipe = LTX2Pipeline(**components)
            pipe.save_pretrained(out_dir, safe_serialization=True)
            _build_upsampler().save_pretrained(out_dir / "latent_upsampler", safe_serialization=True)
            _build_ic_lora(out_dir / "loras" / TOY_IC_LORA)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    (out_dir / "pixgen.json").write_text(json.dumps({"recipe": TOY_RECIPES[generation], "sampling": TOY_SAMPLING}),
                                        encoding="utf-8")
    _normalise_json_files(out_dir)
    for path in out_dir.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # safetensors writes 0600
    return out_dir


def _default_cache_dir() -> Path:
    env = os.environ.get("PIXGEN_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pixgen"


def tiny_model_path(cache_dir: Path | None = None, generation: str = "2.0") -> Path:
    """Where the toy model folder of ``generation`` is (or will be) built; nothing is built here."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    return root / (f"tiny-ltx2-{TOY_VERSION}" if generation == "2.0" else f"tiny-ltx{generation}-{TOY_VERSION}")


def tiny_model_dir(cache_dir: Path | None = None, generation: str = "2.0") -> Path:
    """The cached toy model folder of ``generation``, built once (safe when several processes race to build it)."""
    target = tiny_model_path(cache_dir, generation)
    root = target.parent
    if (target / "model_index.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    os.chmod(tmp, 0o755)
    try:
        build_tiny_model(tmp, generation)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first (target exists and is non-empty): use theirs.
            if not (target / "model_index.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
