"""The engine contract: a registry of production backends by id with static capabilities, a typed result, and
``pixgen.testing.FakeEngine`` (a backend outside the registry, ``pixgen.testing:FAKE_BACKEND``) implementing the
whole protocol, retake included, with real MP4s."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from pixgen.core.progress import Progress
from pixgen.core.spec import parse_request
from pixgen.engine import BACKENDS, backend, load_engine
from pixgen.engine.base import Engine, GenerationResult, Timings
from pixgen.errors import Cancelled, ConfigError, GenerationError, InvalidRequest
from pixgen.media.probe import probe, read_frames
from pixgen.testing import FAKE_BACKEND, FAKE_ENGINE, FakeEngine

PROTOCOL = ("load", "generate", "extend", "retake")


def test_every_backend_is_described_without_importing_its_module():
    code = ("import sys; from pixgen.engine import BACKENDS; "
            "caps = {k: b.capabilities for k, b in BACKENDS.items()}; "
            "assert caps['ltx2'].extend and caps['ltx2'].sizes()['21:9']['1080p'] == '2520x1080'; "
            "assert 'torch' not in sys.modules and 'pixgen.testing' not in sys.modules; print(sorted(caps))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['ltx2']"  # the fake engine is no production backend


def test_a_backend_from_elsewhere_is_named_by_module_and_read_without_torch():
    code = ("import sys; from pixgen.engine import backend; "
            f"b = backend({FAKE_ENGINE!r}); assert b.capabilities.retake is not None and b.capabilities.stages; "
            "assert 'torch' not in sys.modules; print(b.id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == FAKE_ENGINE
    for wrong in ("fake", "pixgen.testing:FakeEngine", "pixgen.nowhere:X"):
        with pytest.raises(ConfigError) as err:
            backend(wrong)
        assert err.value.field == "engine"


def test_an_unknown_backend_is_a_configuration_error_naming_the_setting():
    with pytest.raises(ConfigError) as err:
        backend("wan22")
    assert err.value.field == "engine" and "ltx2" in err.value.message


def test_each_engine_class_has_the_protocol_and_its_backends_capabilities():
    for entry in (*BACKENDS.values(), FAKE_BACKEND):
        cls = entry.engine_class()
        for member in PROTOCOL:
            assert callable(getattr(cls, member)), (entry.id, member)
        assert cls.capabilities is entry.capabilities
        assert entry.capabilities.retake is not None and entry.capabilities.stages  # both retake; both report
    assert set(Engine.__dict__) >= set(PROTOCOL)


def test_load_engine_builds_the_fake_backend_from_its_options():
    engine = load_engine("steps=2,step_seconds=0,scale=0.25", backend_id=FAKE_ENGINE)
    assert isinstance(engine, FakeEngine) and (engine.steps, engine.scale) == (2, 0.25)
    with pytest.raises(InvalidRequest) as err:
        load_engine("speed=9", backend_id=FAKE_ENGINE)
    assert err.value.field == "model"


def test_the_result_is_typed_and_timings_refuse_unknown_stages():
    assert Timings.from_mapping({"text": 1, "denoise": 2.5}).as_dict() == {"text": 1.0, "denoise": 2.5}
    with pytest.raises(ValueError, match="denoize"):
        Timings.from_mapping({"denoize": 1.0})
    with pytest.raises(TypeError):  # keywords only: a positional mix-up cannot go unnoticed
        GenerationResult("x.mp4", 2, 2, 1, 1.0, 0, False, "p", "p")  # type: ignore[misc]
    assert not hasattr(GenerationResult, "extra")


def test_fake_engine_writes_the_contract_frames_with_sound_and_reports_progress(tmp_path):
    seen: list[Progress] = []
    request = parse_request({"prompt": "a boat", "duration": 1, "quality": "360p", "aspect_ratio": "9:16",
                             "seed": 5, "multi_clip": True})
    result = FakeEngine(steps=3).generate(request, tmp_path / "a.mp4", seen.append)
    facts = probe(result.path)
    assert (facts.width, facts.height, facts.num_frames, facts.video_codec) == (360, 640, 25, "h264")
    assert facts.audio_codec == "aac" and abs(facts.audio_seconds - 25 / 24) <= 0.1
    assert [p.step for p in seen if p.stage == "denoise"] == [1, 2, 3] and seen[-1].percent == 100
    assert result.seed == 5 and len(result.shots) == 2 and result.shots[1].end == pytest.approx(25 / 24)
    assert result.timings.denoise is not None and result.timings.encode is not None


def test_fake_engine_stops_within_one_step_of_a_cancel_and_leaves_no_file(tmp_path):
    flag = threading.Event()
    engine = FakeEngine(steps=50, on_step=lambda step: step == 2 and flag.set())
    with pytest.raises(Cancelled):
        engine.generate(parse_request({"prompt": "x", "duration": 1, "quality": "360p"}), tmp_path / "c.mp4",
                        should_cancel=flag.is_set)
    assert engine.steps_run == 3 and not (tmp_path / "c.mp4").exists()


def test_fake_engine_extends_a_video_into_the_whole_longer_one_and_can_fail(tmp_path):
    engine = FakeEngine(steps=1, scale=0.25)
    source = engine.generate(parse_request({"prompt": "x", "duration": 1, "quality": "360p"}), tmp_path / "s.mp4")
    longer = engine.extend(source.path, parse_request({"prompt": "y", "duration": 2, "quality": "360p"}),
                           tmp_path / "l.mp4")
    assert probe(longer.path).num_frames == 25 + 48 == longer.num_frames
    assert (longer.width, longer.height) == (160, 90) and longer.extension.source_frames == 25
    with pytest.raises(GenerationError, match="out of memory"):
        FakeEngine(fail="out of memory").generate(parse_request({"prompt": "x", "duration": 1}), tmp_path / "f.mp4")


def test_fake_engine_retakes_a_range_keeping_every_other_frame_of_the_source(tmp_path):
    engine = FakeEngine(steps=2, scale=0.25)
    source = engine.generate(parse_request({"prompt": "x", "duration": 2, "quality": "360p", "seed": 1}),
                             tmp_path / "s.mp4")
    seen: list[Progress] = []
    result = engine.retake(source.path, parse_request({"prompt": "y", "seed": 200}), 0.5, 1.0, tmp_path / "r.mp4",
                           seen.append)
    assert (result.retake.start_frame, result.retake.end_frame, result.retake.source_frames) == (12, 24, 49)
    before, after = read_frames(source.path).astype(int), read_frames(result.path).astype(int)
    assert before.shape == after.shape and result.num_frames == 49 and result.has_audio
    assert abs(after[:12] - before[:12]).max() <= 2 and abs(after[24:] - before[24:]).max() <= 2  # the source's
    assert abs(after[12:24] - before[12:24]).mean() > 50  # the range is new
    assert [p.step for p in seen if p.stage == "denoise"] == [1, 2] and seen[-1].percent == 100
    with pytest.raises(InvalidRequest) as err:
        engine.retake(source.path, parse_request({"prompt": "y"}), 1.5, 1.0, tmp_path / "bad.mp4")
    assert err.value.field == "end"
