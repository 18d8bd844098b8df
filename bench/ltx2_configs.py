"""Full-size LTX-2 architectures, as published (the configs of the diffusers-format folders: Lightricks/LTX-2 for
2.0, diffusers/LTX-2.3-Diffusers for 2.3), and Gemma-3-12B, the text encoder of both.

The GPU benchmark builds these with random weights directly on the GPU: the real shapes, hence the real cost, of
every stage, without downloading 70 GB. ``python bench/gpu_bench.py --sizes`` builds them on the ``meta`` device
and prints their parameter counts (2.0: transformer 18.876 B, connectors 1.431 B, text encoder 12.187 B).
"""

from __future__ import annotations

from typing import Any

_TRANSFORMER_COMMON: dict[str, Any] = dict(
    in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32, attention_head_dim=128,
    cross_attention_dim=4096, vae_scale_factors=(8, 32, 32), pos_embed_max_pos=20, base_height=2048, base_width=2048,
    audio_in_channels=128, audio_out_channels=128, audio_patch_size=1, audio_patch_size_t=1,
    audio_num_attention_heads=32, audio_attention_head_dim=64, audio_cross_attention_dim=2048, audio_scale_factor=4,
    audio_pos_embed_max_pos=20, audio_sampling_rate=16000, audio_hop_length=160, num_layers=48,
    activation_fn="gelu-approximate", qk_norm="rms_norm_across_heads", norm_elementwise_affine=False, norm_eps=1e-6,
    caption_channels=3840, attention_bias=True, attention_out_bias=True, rope_theta=10000.0,
    rope_double_precision=True, causal_offset=1, timestep_scale_multiplier=1000,
    cross_attn_timestep_scale_multiplier=1000, rope_type="split",
)

TRANSFORMER = {
    "2.0": {**_TRANSFORMER_COMMON, "gated_attn": False, "cross_attn_mod": False, "audio_gated_attn": False,
            "audio_cross_attn_mod": False, "use_prompt_embeddings": True, "perturbed_attn": False},
    "2.3": {**_TRANSFORMER_COMMON, "gated_attn": True, "cross_attn_mod": True, "audio_gated_attn": True,
            "audio_cross_attn_mod": True, "use_prompt_embeddings": False, "perturbed_attn": True},
}

CONNECTORS = {
    "2.0": dict(caption_channels=3840, text_proj_in_factor=49, video_connector_num_attention_heads=30,
                video_connector_attention_head_dim=128, video_connector_num_layers=2,
                video_connector_num_learnable_registers=128, video_gated_attn=False,
                audio_connector_num_attention_heads=30, audio_connector_attention_head_dim=128,
                audio_connector_num_layers=2, audio_connector_num_learnable_registers=128, audio_gated_attn=False,
                connector_rope_base_seq_len=4096, rope_theta=10000.0, rope_double_precision=True,
                causal_temporal_positioning=False, rope_type="split", per_modality_projections=False,
                proj_bias=False),
    "2.3": dict(caption_channels=3840, text_proj_in_factor=49, video_connector_num_attention_heads=32,
                video_connector_attention_head_dim=128, video_connector_num_layers=8,
                video_connector_num_learnable_registers=128, video_gated_attn=True,
                audio_connector_num_attention_heads=32, audio_connector_attention_head_dim=64,
                audio_connector_num_layers=8, audio_connector_num_learnable_registers=128, audio_gated_attn=True,
                connector_rope_base_seq_len=4096, rope_theta=10000.0, rope_double_precision=True,
                causal_temporal_positioning=False, rope_type="split", per_modality_projections=True,
                video_hidden_dim=4096, audio_hidden_dim=2048, proj_bias=True),
}

_VAE_COMMON: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=128, down_block_types=("LTX2VideoDownBlock3D",) * 4,
    spatio_temporal_scaling=(True, True, True, True), downsample_type=("spatial", "temporal", "spatiotemporal",
                                                                       "spatiotemporal"),
    timestep_conditioning=False, patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6, encoder_causal=True,
    decoder_causal=False, encoder_spatial_padding_mode="zeros", spatial_compression_ratio=32,
    temporal_compression_ratio=8,
)

VAE = {
    "2.0": {**_VAE_COMMON, "block_out_channels": (256, 512, 1024, 2048), "decoder_block_out_channels": (256, 512, 1024),
            "layers_per_block": (4, 6, 6, 2, 2), "decoder_layers_per_block": (5, 5, 5, 5),
            "decoder_spatio_temporal_scaling": (True, True, True), "decoder_inject_noise": (False,) * 4,
            "upsample_type": ("spatiotemporal",) * 3, "upsample_residual": (True, True, True),
            "upsample_factor": (2, 2, 2), "decoder_spatial_padding_mode": "reflect"},
    "2.3": {**_VAE_COMMON, "block_out_channels": (256, 512, 1024, 1024),
            "decoder_block_out_channels": (256, 512, 512, 1024), "layers_per_block": (4, 6, 4, 2, 2),
            "decoder_layers_per_block": (4, 6, 4, 2, 2), "decoder_spatio_temporal_scaling": (True,) * 4,
            "decoder_inject_noise": (False,) * 5,
            "upsample_type": ("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
            "upsample_residual": (False,) * 4, "upsample_factor": (2, 2, 1, 2),
            "decoder_spatial_padding_mode": "zeros"},
}

AUDIO_VAE = dict(base_channels=128, output_channels=2, ch_mult=(1, 2, 4), num_res_blocks=2, attn_resolutions=None,
                 in_channels=2, resolution=256, latent_channels=8, norm_type="pixel", causality_axis="height",
                 dropout=0.0, mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True,
                 mel_bins=64, double_z=True)

VOCODER = {
    "2.0": ("LTX2Vocoder", dict(
        in_channels=128, hidden_channels=1024, out_channels=2, upsample_kernel_sizes=[16, 15, 8, 4, 4],
        upsample_factors=[6, 5, 2, 2, 2], resnet_kernel_sizes=[3, 7, 11], resnet_dilations=[[1, 3, 5]] * 3,
        act_fn="leaky_relu", leaky_relu_negative_slope=0.1, antialias=False, final_act_fn="tanh", final_bias=True,
        output_sampling_rate=24000)),
    "2.3": ("LTX2VocoderWithBWE", dict(
        in_channels=128, hidden_channels=1536, out_channels=2, upsample_kernel_sizes=[11, 4, 4, 4, 4, 4],
        upsample_factors=[5, 2, 2, 2, 2, 2], resnet_kernel_sizes=[3, 7, 11], resnet_dilations=[[1, 3, 5]] * 3,
        act_fn="snakebeta", leaky_relu_negative_slope=0.1, antialias=True, antialias_ratio=2,
        antialias_kernel_size=12, final_act_fn=None, final_bias=False, bwe_in_channels=128,
        bwe_hidden_channels=512, bwe_out_channels=2, bwe_upsample_kernel_sizes=[12, 11, 4, 4, 4],
        bwe_upsample_factors=[6, 5, 2, 2, 2], bwe_resnet_kernel_sizes=[3, 7, 11],
        bwe_resnet_dilations=[[1, 3, 5]] * 3, bwe_act_fn="snakebeta", bwe_leaky_relu_negative_slope=0.1,
        bwe_antialias=True, bwe_antialias_ratio=2, bwe_antialias_kernel_size=12, bwe_final_act_fn=None,
        bwe_final_bias=False, filter_length=512, hop_length=80, window_length=512, num_mel_channels=64,
        input_sampling_rate=16000, output_sampling_rate=48000)),
}

UPSAMPLER = {
    "2.0": dict(in_channels=128, mid_channels=1024, num_blocks_per_stage=4, dims=3, spatial_upsample=True,
                temporal_upsample=False, rational_spatial_scale=2.0, use_rational_resampler=True),
    "2.3": dict(in_channels=128, mid_channels=1024, num_blocks_per_stage=4, dims=3, spatial_upsample=True,
                temporal_upsample=False, rational_spatial_scale=2.0, use_rational_resampler=False),
}

# The dev folders' scheduler (the distilled ones ship it without dynamic shifting and terminal stretch).
SCHEDULER = dict(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
                 max_image_seq_len=4096, shift_terminal=0.1)

# google/gemma-3-12b-it (as shipped with LTX-2.0/2.3, the QAT-unquantized bf16 weights).
GEMMA3_TEXT = dict(vocab_size=262_208, hidden_size=3840, intermediate_size=15_360, num_hidden_layers=48,
                   num_attention_heads=16, num_key_value_heads=8, head_dim=256, query_pre_attn_scalar=256,
                   sliding_window=1024, max_position_embeddings=131_072, rope_theta=1_000_000.0,
                   rope_local_base_freq=10_000.0, rope_scaling={"rope_type": "linear", "factor": 8.0},
                   pad_token_id=0, eos_token_id=1, bos_token_id=2)
SIGLIP = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
              image_size=896, patch_size=14, vision_use_head=False)
GEMMA3 = dict(mm_tokens_per_image=256, boi_token_index=255_999, eoi_token_index=256_000,
              image_token_index=262_144)
