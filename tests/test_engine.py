"""The LTX-2 engine end to end on the toy model: routes, sizes, MP4 facts read back, seeds, progress, cancel."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pixgen.core.progress import Progress
from pixgen.core.spec import parse_request
from pixgen.errors import Cancelled, InvalidRequest, ModelError
from pixgen.media.probe import probe, read_audio, read_frames

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def engine():
    from pixgen.engine import load_engine

    return load_engine("tiny")


def data_uri(color, size=(96, 96), fmt="PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def small(**fields):
    return parse_request({"prompt": "a red kite over a beach", "duration": 1, "quality": "360p", "seed": 7,
                          **fields})


def test_text_to_video_writes_the_contract_mp4(engine, tmp_path):
    result = engine.generate(small(), tmp_path / "t.mp4")
    facts = probe(result.path)
    assert (facts.video_codec, facts.pix_fmt, facts.fps) == ("h264", "yuv420p", 24.0)
    assert (facts.width, facts.height, facts.num_frames) == (640, 360, 25)
    assert facts.audio_codec == "aac" and facts.audio_channels == 2
    assert abs(facts.audio_seconds - 25 / 24) <= 0.1
    assert (result.width, result.height, result.num_frames, result.seed, result.has_audio) == (640, 360, 25, 7,
                                                                                               True)
    # thinking "auto" (the default) rewrites this short prompt; the original leads the prompt as used.
    assert result.original_prompt == "a red kite over a beach" and result.prompt.startswith("a red kite over a beach")


def test_a_second_job_reuses_the_host_memory_the_first_freed(engine, tmp_path):
    """A model process keeps freed blocks in its heap (``host_memory.reuse_freed_memory``, at ``load_engine``): a
    toy job's layers then reuse pages instead of faulting in fresh zeroed ones (~170,000 page faults a job
    without; a few thousand with)."""
    import resource

    engine.generate(small(), tmp_path / "first.mp4")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    engine.generate(small(), tmp_path / "second.mp4")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 30_000


def test_no_audio_means_no_audio_track(engine, tmp_path):
    result = engine.generate(small(generate_audio=False, aspect_ratio="9:16"), tmp_path / "silent.mp4")
    facts = probe(result.path)
    assert facts.audio_codec is None and not result.has_audio
    assert (facts.width, facts.height, facts.num_frames) == (360, 640, 25)


def test_duration_sets_frames_and_audio_length(engine, tmp_path):
    result = engine.generate(small(duration=2, aspect_ratio="21:9"), tmp_path / "two.mp4")
    facts = probe(result.path)
    assert (facts.width, facts.height, facts.num_frames) == (840, 360, 49)
    assert abs(facts.audio_seconds - 49 / 24) <= 0.1


def test_start_frame_sets_the_ratio_from_the_image_and_changes_the_video(engine, tmp_path):
    plain = engine.generate(small(aspect_ratio="1:1"), tmp_path / "plain.mp4")
    red = engine.generate(small(image_input=data_uri("red", (300, 290))), tmp_path / "red.mp4")
    blue = engine.generate(small(image_input=data_uri("blue", (300, 290))), tmp_path / "blue.mp4")
    assert red.aspect_ratio == "1:1"
    assert probe(red.path).width == probe(red.path).height == 360
    frames = {k: read_frames(r.path).astype(np.int16) for k, r in
              {"plain": plain, "red": red, "blue": blue}.items()}
    assert np.abs(frames["red"] - frames["blue"]).mean() > 1.0
    assert np.abs(frames["red"] - frames["plain"]).mean() > 1.0


def test_start_and_end_frame_route_through_the_condition_pipeline(engine, tmp_path, monkeypatch):
    calls = []
    original = engine.pipes.condition.__call__.__func__

    def spy(pipe, *args, **kwargs):
        calls.append([(c.index, c.frames.shape) for c in kwargs["conditions"]])
        return original(pipe, *args, **kwargs)

    monkeypatch.setattr(type(engine.pipes.condition), "__call__", spy)
    result = engine.generate(small(image_input=data_uri("red"), end_image_input=data_uri("green"),
                                   aspect_ratio="16:9"), tmp_path / "se.mp4")
    assert calls == [[(0, (1, 384, 640, 3)), (-1, (1, 384, 640, 3))]]  # the grid covering 640x360
    assert probe(result.path).num_frames == 25


def test_1080p_goes_two_stage_and_lands_on_the_exact_size(engine, tmp_path):
    """4:3 (1440×1080 out of 1472×1088, cropped on both axes) rather than 16:9: its decode still runs in overlapping
    spatial tiles (wider than ``SPATIAL_TILING_ABOVE``) and in two temporal tiles, with the real tile sizes, at 57 %
    of 16:9's decode work (12 spatial tiles of 6 latent frames, not 15 of 8); 1 s is the fewest frames a job has."""
    progress: list[Progress] = []
    result = engine.generate(small(quality="1080p", aspect_ratio="4:3", generate_audio=False),
                             tmp_path / "hd.mp4", on_progress=progress.append)
    assert result.two_stage is True and result.generation_size == (1472, 1088)
    facts = probe(result.path)
    assert (facts.width, facts.height, facts.num_frames) == (1440, 1080, 25)
    stages = [p.stage for p in progress]
    assert "upsample" in stages
    steps = [p.step for p in progress if p.stage == "denoise"]
    total = engine.recipe.num_inference_steps + len(engine.recipe.refine_sigmas)
    assert steps == list(range(1, total + 1))


def test_progress_goes_through_the_stages_in_order_and_reaches_100(engine, tmp_path):
    progress: list[Progress] = []
    engine.generate(small(aspect_ratio="1:1"), tmp_path / "p.mp4", on_progress=progress.append)
    order = list(dict.fromkeys(p.stage for p in progress))
    assert order == ["prepare", "text", "denoise", "decode", "encode"]
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100
    assert [p.step for p in progress if p.stage == "denoise"] == list(range(1, engine.recipe.num_inference_steps
                                                                            + 1))


def test_cancel_stops_within_one_denoising_step_and_leaves_no_file(engine, tmp_path):
    steps = []

    def on_progress(p):
        if p.stage == "denoise":
            steps.append(p.step)

    with pytest.raises(Cancelled):
        engine.generate(small(), tmp_path / "c.mp4", on_progress=on_progress, should_cancel=lambda: bool(steps))
    assert steps == [1]
    assert not (tmp_path / "c.mp4").exists()


def test_same_seed_same_video_other_seed_other_video(engine, tmp_path):
    a = engine.generate(small(seed=11, aspect_ratio="1:1"), tmp_path / "a.mp4")  # 1:1: the smallest 360p frames
    b = engine.generate(small(seed=11, aspect_ratio="1:1"), tmp_path / "b.mp4")
    c = engine.generate(small(seed=12, aspect_ratio="1:1"), tmp_path / "c.mp4")
    assert np.array_equal(read_frames(a.path), read_frames(b.path))
    np.testing.assert_allclose(read_audio(a.path), read_audio(b.path), atol=1e-4)
    assert not np.array_equal(read_frames(a.path), read_frames(c.path))


def test_a_missing_seed_is_drawn_and_reported(engine, tmp_path):
    request = parse_request({"prompt": "x", "duration": 1, "quality": "360p", "aspect_ratio": "1:1"})
    result = engine.generate(request, tmp_path / "s.mp4")
    assert 0 <= result.seed <= 2_147_483_647


def test_a_broken_start_image_is_refused_naming_the_field(engine, tmp_path):
    bad = "data:image/png;base64," + base64.b64encode(b"not a png at all").decode()
    with pytest.raises(InvalidRequest) as info:
        engine.generate(small(image_input=data_uri("red"), end_image_input=bad), tmp_path / "x.mp4")
    assert info.value.field == "end_image_input"


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    from pixgen.engine import load_engine

    with pytest.raises(ModelError) as info:
        load_engine(str(tmp_path))
    assert "model_index.json" in info.value.message
    with pytest.raises(ModelError):
        load_engine(str(tmp_path / "nope"))


def test_seed_determinism_across_two_processes(engine, tmp_path):
    """A fresh ``pixgen generate`` process and this one (its engine warm from the jobs before) make the same video
    from the same seed: nothing of a process (hash seed, threads, what ran before) reaches the pictures or sound."""
    out = tmp_path / "cli.mp4"
    proc = subprocess.run([sys.executable, "-m", "pixgen", "generate", "a lighthouse at night", "--duration", "1",
                           "--quality", "360p", "--aspect-ratio", "1:1", "--seed", "99", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "seed 99" in proc.stdout and "360x360, 25 frames" in proc.stdout
    here = engine.generate(parse_request({"prompt": "a lighthouse at night", "duration": 1, "quality": "360p",
                                          "aspect_ratio": "1:1", "seed": 99}), tmp_path / "here.mp4")
    assert np.array_equal(read_frames(out), read_frames(here.path))
    np.testing.assert_allclose(read_audio(out), read_audio(here.path), atol=1e-4)


def test_cli_refuses_bad_input_before_loading_the_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pixgen", "generate", "x", "--duration", "16", "-o",
                           str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "duration" in proc.stderr
    assert not (tmp_path / "x.mp4").exists()
