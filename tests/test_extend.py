"""Extend: continuing a finished video from its last frames; the result is the whole video with its sound."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pixgen.core.spec import parse_request
from pixgen.engine.ltx2.extend import context_frames, read_source, stitch_audio
from pixgen.errors import Cancelled, InvalidRequest
from pixgen.media.mp4 import Mp4Writer
from pixgen.media.probe import probe, read_audio, read_frames

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RATE = 24000


def write_source(path, *, frames=13, width=360, height=480, fps=24, audio_rate=RATE, channels=2):
    """A smooth synthetic clip (moving gradient) with a sine tone: re-encoding it loses little."""
    y, x = np.mgrid[0:height, 0:width]
    video = np.stack([np.stack([(x + 6 * i) % 256, (y + 3 * i) % 256, np.full_like(x, 128)], -1)
                      for i in range(frames)]).astype(np.uint8)
    t = np.arange(round((frames - 1) / fps * audio_rate)) / audio_rate
    tone = (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    with Mp4Writer(path, width, height, fps=fps, audio_sample_rate=audio_rate if channels else None,
                   audio_channels=channels or 2) as writer:
        if channels:
            writer.write_audio(np.tile(tone, (channels, 1)))
        writer.write_frames(video)
    return path


def request(**fields):
    return parse_request({"prompt": "the camera keeps moving as the colours drift", "duration": 1, "seed": 5,
                          "thinking_type": "disabled", **fields})


# -- the rule and its pieces -----------------------------------------------------------------------------------
def test_the_context_is_17_frames_or_the_largest_8k_plus_1_the_source_has():
    assert [context_frames(n) for n in (1, 8, 9, 13, 17, 25, 361)] == [1, 1, 9, 9, 17, 17, 17]


def test_reading_a_source_keeps_its_last_frames_and_resamples_its_sound(tmp_path):
    path = write_source(tmp_path / "mono.mp4", audio_rate=44100, channels=1)
    source = read_source(path, sample_rate=RATE)
    decoded = read_frames(path)
    assert (source.width, source.height, source.num_frames) == (360, 480, 13)
    assert np.array_equal(source.tail, decoded[-9:])
    assert source.audio.shape == (2, RATE // 2)  # stereo at the engine's rate, (13 - 1) / 24 s


def test_a_source_that_is_not_24_fps_is_refused_naming_the_video(tmp_path):
    with pytest.raises(InvalidRequest) as info:
        read_source(write_source(tmp_path / "30.mp4", fps=30), sample_rate=RATE)
    assert info.value.field == "video"
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(InvalidRequest):
        read_source(tmp_path / "junk.mp4", sample_rate=RATE)


def test_stitched_audio_is_source_then_new_with_a_crossfade_into_the_join():
    source = np.full((2, 100), 1.0, np.float32)
    new = np.full((2, 80), 2.0, np.float32)
    out = stitch_audio(source, new, start=30, length=40, fade=10)
    assert out.shape == (2, 140)
    assert np.all(out[:, :90] == 1.0) and np.all(out[:, 100:] == 2.0)
    assert np.all(out[0, 90:100] >= 1.0) and out[0, 99] == pytest.approx(2.0, abs=0.1)


# -- on the toy model ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    from pixgen.engine import load_engine

    return load_engine("tiny")


def test_extend_returns_the_whole_video_at_the_sources_size(engine, tmp_path):
    source = write_source(tmp_path / "src.mp4")  # 3:4, 13 frames: context 9
    result = engine.extend(source, request(quality="720p", aspect_ratio="16:9"), tmp_path / "ext.mp4")
    facts = probe(result.path)
    assert (facts.width, facts.height, facts.num_frames) == (360, 480, 13 + 24)
    assert (result.width, result.height, result.num_frames, result.seed) == (360, 480, 37, 5)
    assert result.extension.context_frames == 9 and result.generation_size == (384, 480)
    frames = read_frames(result.path).astype(np.int16)
    assert np.abs(frames[:13] - read_frames(source)).mean() < 3.0  # the source, re-encoded (CRF 20)
    assert np.abs(frames[13:] - frames[12]).mean() > 5.0  # then new (toy noise) frames
    assert abs(facts.audio_seconds - 36 / 24) <= 0.1
    audio, tone = read_audio(result.path), read_audio(source)
    before_join = round(0.45 * RATE)
    assert np.abs(audio[:, :before_join] - tone[:, :before_join]).max() < 0.1  # the source's sound, then new sound
    assert np.sqrt((audio[:, RATE // 2 + 1200 :] ** 2).mean()) > 0.01


def test_extending_a_generated_video_continues_it(engine, tmp_path):
    first = engine.generate(parse_request({"prompt": "a red kite over a beach", "duration": 1, "quality": "360p",
                                           "seed": 7, "thinking_type": "disabled"}), tmp_path / "one.mp4")
    result = engine.extend(first.path, request(prompt="the kite climbs", duration=1, thinking_type="auto"),
                           tmp_path / "two.mp4")
    facts = probe(result.path)
    assert (facts.width, facts.height, facts.num_frames) == (640, 360, 25 + 24)
    assert abs(facts.audio_seconds - 48 / 24) <= 0.1
    frames = read_frames(result.path).astype(np.int16)
    assert np.abs(frames[:25] - read_frames(first.path)).mean() < 8.0  # noise re-encoded: codec tolerance
    assert result.original_prompt == "the kite climbs" and result.prompt.startswith("the kite climbs.")


def test_cancelling_an_extension_leaves_no_file(engine, tmp_path):
    source = write_source(tmp_path / "src.mp4")
    with pytest.raises(Cancelled):
        engine.extend(source, request(), tmp_path / "c.mp4", should_cancel=lambda: True)
    assert not (tmp_path / "c.mp4").exists()
