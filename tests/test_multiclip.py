"""Multi-clip: splitting a prompt into shots, sharing the frames and the sound out, and the joined video on the
toy model (exact frame count, audio length, shot times without gaps, each shot its own generation)."""

from __future__ import annotations

import base64
import io
import itertools
import os

import numpy as np
import pytest
from PIL import Image

from pixgen.core.progress import Progress
from pixgen.core.spec import parse_request
from pixgen.engine.ltx2.multiclip import join_audio, plan_shots, shot_sample_lengths, shot_seed
from pixgen.engine.shots import FRAMINGS, MAX_SHOTS, split_sentences, split_shots
from pixgen.media.probe import probe, read_audio

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def multi(prompt: str, duration: int = 2, **fields):
    return parse_request({"prompt": prompt, "duration": duration, "quality": "360p", "seed": 7, "multi_clip": True,
                          "thinking_type": "disabled", **fields})


# -- splitting -------------------------------------------------------------------------------------------------
def test_explicit_shots_are_split_and_share_the_leading_context():
    text = "A rainy city at night. Shot 1: a detective lights a cigarette. Shot 2 - close-up of his eyes. " \
           "SHOT 3) he walks away"
    assert split_shots(text) == ["A rainy city at night. a detective lights a cigarette.",
                                 "A rainy city at night. close-up of his eyes.",
                                 "A rainy city at night. he walks away"]
    assert split_shots("A door opens. Cut to: a bright garden. Cut to - a bird takes off.") == [
        "A door opens.", "a bright garden.", "a bird takes off."]


def test_without_markers_the_prompt_is_split_by_sentences():
    assert split_shots("A cat sleeps! A dog barks? Rain falls.\nThe end") == [
        "A cat sleeps!", "A dog barks?", "Rain falls.", "The end"]
    assert split_sentences("Mr. Smith waves. Dr. Jones nods.") == ["Mr. Smith waves.", "Dr. Jones nods."]
    assert split_shots("a wide shot of a lake. ducks swim") == ["a wide shot of a lake.", "ducks swim"]


def test_surplus_shots_are_merged_in_order_up_to_the_limit():
    six = "One. Two. Three. Four. Five. Six."
    assert split_shots(six) == ["One. Two.", "Three. Four.", "Five.", "Six."]
    assert split_shots(six, limit=2) == ["One. Two. Three.", "Four. Five. Six."]
    assert split_shots("Shot 1: a. Shot 2: b. Shot 3: c.", limit=2) == ["a. b.", "c."]
    assert len(split_shots(" ".join(f"S{i}." for i in range(20)))) == MAX_SHOTS


def test_a_single_sentence_becomes_successive_framings_and_one_second_is_one_shot():
    assert split_shots("a red kite over a beach", limit=4) == [f"{f}: a red kite over a beach" for f in FRAMINGS]
    assert split_shots("a red kite over a beach", limit=2) == [f"{f}: a red kite over a beach" for f in FRAMINGS[:2]]
    assert [s.prompt for s in plan_shots(multi("One. Two. Three.", duration=1))] == ["One. Two. Three."]


# -- timing ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("duration", range(1, 16))
def test_shots_cover_every_frame_once_with_valid_generation_counts(duration):
    shots = plan_shots(multi("One. Two. Three. Four. Five.", duration=duration))
    assert len(shots) == min(duration, MAX_SHOTS)
    assert shots[0].start_frame == 0 and shots[-1].end_frame == duration * 24 + 1
    for a, b in itertools.pairwise(shots):
        assert a.end_frame == b.start_frame
    for shot in shots:
        assert shot.num_frames >= 24  # at least 1 s each
        assert shot.gen_frames % 8 == 1 and shot.gen_frames >= shot.num_frames + shot.run_on
        assert shot.gen_frames - shot.num_frames - shot.run_on < 8
    assert [s.seed for s in shots] == [shot_seed(7, i) for i in range(len(shots))] and shots[0].seed == 7
    assert len({s.seed for s in shots}) == len(shots)


def test_a_request_without_multi_clip_is_one_shot_of_the_whole_video():
    (shot,) = plan_shots(multi("One. Two.", duration=3, multi_clip=False))
    assert (shot.start_frame, shot.num_frames, shot.gen_frames, shot.seed) == (0, 73, 73, 7)


def test_shot_audio_is_joined_on_the_video_clock_with_crossfades():
    shots = plan_shots(multi("One. Two. Three.", duration=3))
    lengths = shot_sample_lengths(shots, 1000, 3.0)
    assert sum(lengths) == 3000 and lengths[0] == round(shots[1].start_frame * 1000 / 24)
    fade = 50
    segments = [np.full((2, n + fade), float(i + 1), np.float32) for i, n in enumerate(lengths)]
    joined = join_audio(segments, lengths, fade)
    assert joined.shape == (2, 3000)
    cut = lengths[0]
    assert np.all(joined[:, : cut] == 1.0) and np.all(joined[:, cut + fade : cut + lengths[1]] == 2.0)
    across = joined[0, cut : cut + fade]  # equal-power: from the outgoing level to the incoming one, never silent
    assert across.min() >= 1.0 and across[-1] == pytest.approx(2.0, abs=0.1) and across[0] == pytest.approx(1.0,
                                                                                                           abs=0.1)


# -- on the toy model ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    from pixgen.engine import load_engine

    return load_engine("tiny")


def test_a_multi_clip_video_has_the_exact_frames_audio_and_shot_times(engine, tmp_path, monkeypatch):
    calls = []
    original = type(engine.pipes.text).__call__

    def spy(pipe, *args, **kwargs):
        calls.append((kwargs["num_frames"], kwargs["generator"].initial_seed()))
        return original(pipe, *args, **kwargs)

    monkeypatch.setattr(type(engine.pipes.text), "__call__", spy)
    progress: list[Progress] = []
    result = engine.generate(multi("A red kite rises over the beach. A dog runs along the surf."),
                             tmp_path / "mc.mp4", on_progress=progress.append)
    # Each shot its own generation and seed: 25 frames + run-on → 33, then the last shot's 24 → 25.
    assert calls == [(33, 7), (25, shot_seed(7, 1))]
    facts = probe(result.path)
    assert (facts.width, facts.height, facts.num_frames, result.num_frames) == (640, 360, 49, 49)
    assert abs(facts.audio_seconds - 48 / 24) <= 0.1
    shots = result.shots
    assert [s.prompt for s in shots] == ["A red kite rises over the beach.", "A dog runs along the surf."]
    assert shots[0].start == 0 and shots[-1].end == pytest.approx(49 / 24, abs=1e-3)
    assert all(a.end == b.start for a, b in itertools.pairwise(shots))
    assert result.prompt == "Shot 1: A red kite rises over the beach. Shot 2: A dog runs along the surf."
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100
    steps = [p.step for p in progress if p.stage == "denoise"]
    assert steps == list(range(1, 2 * engine.recipe.num_inference_steps + 1))

    # The sound runs on across the cut: no drop-out in the 10 ms windows around it.
    audio = read_audio(result.path)
    cut = round(shots[1].start * engine.audio_sample_rate)
    window = engine.audio_sample_rate // 100
    rms = [np.sqrt((audio[:, i : i + window] ** 2).mean()) for i in range(cut - 5 * window, cut + 5 * window, window)]
    assert min(rms) > 0.25 * np.median(rms)


def test_the_start_frame_opens_the_first_shot_and_the_end_frame_closes_the_last(engine, tmp_path, monkeypatch):
    def data_uri(color):
        buf = io.BytesIO()
        Image.new("RGB", (64, 36), color).save(buf, "PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    routes = []
    pipes = engine.pipes
    for pipe, name in ((pipes.text, "text"), (pipes.image, "image"), (pipes.condition, "condition")):
        original = type(pipe).__call__

        def spy(p, *args, _name=name, _original=original, **kwargs):
            routes.append((_name, [c.index for c in kwargs.get("conditions") or []]))
            return _original(p, *args, **kwargs)

        monkeypatch.setattr(type(pipe), "__call__", spy)
    result = engine.generate(multi("Shot 1: a door. Shot 2: a hall. Shot 3: a garden.", duration=3,
                                   image_input=data_uri("red"), end_image_input=data_uri("green"),
                                   generate_audio=False), tmp_path / "se.mp4")
    assert routes == [("image", []), ("text", []), ("condition", [-1])]
    assert probe(result.path).num_frames == 73 and len(result.shots) == 3
