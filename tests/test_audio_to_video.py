"""Video made to a given soundtrack (``audio``) on the toy LTX-2: the MP4 carries the given sound (not the
vocoder's), its audio latents are the input's encoding at every transformer call of both stages (float32 and
bfloat16), the picture changes with the seed, the length follows the sound or the duration (cut or padded, said
in the result); the files a soundtrack may be are told apart by their bytes and refused by their faults."""

from __future__ import annotations

import base64
import io
import os
import wave

import numpy as np
import pytest
import torch

from pixgen.core.sizes import frames_for_audio
from pixgen.core.spec import parse_request
from pixgen.errors import InvalidRequest
from pixgen.media.probe import probe, read_audio, read_frames

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tones(seconds: float, rate: int) -> np.ndarray:
    """Stereo test sound: a warbling 440 Hz tone left, a 660 Hz one fading in right; float32 (2, n)."""
    t = np.arange(round(seconds * rate)) / rate
    left = 0.4 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    right = 0.3 * np.sin(2 * np.pi * 660 * t) * np.minimum(1.0, t / max(seconds, 1e-9))
    return np.stack([left, right]).astype(np.float32)


def wav_bytes(sound: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(sound.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.round(sound.T * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def audio_uri(data: bytes, subtype: str = "wav") -> str:
    return f"data:audio/{subtype};base64," + base64.b64encode(data).decode()


def request(audio: str, **fields):
    return parse_request({"prompt": "a drummer on a rooftop at dusk", "quality": "360p", "seed": 11,
                          "thinking_type": "disabled", "audio": audio, **fields})


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.shape[-1], b.shape[-1])
    a, b = a[..., :n].ravel(), b[..., :n].ravel()
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


@pytest.fixture(scope="module")
def engine():
    from pixgen.engine import load_engine

    return load_engine("tiny")


def test_the_mp4_carries_the_given_sound_as_long_as_it_and_the_video_follows_its_length(engine, tmp_path):
    rate = engine.audio_sample_rate  # the vocoder's: the MP4's track
    given = tones(1.5, rate)  # 36 frames exactly
    result = engine.generate(request(audio_uri(wav_bytes(given, rate))), tmp_path / "a2v.mp4")

    facts = probe(result.path)
    assert facts.num_frames == 37 == result.num_frames  # 1.5 s × 24 + the first frame
    assert facts.audio_codec == "aac" and facts.audio_sample_rate == rate
    assert facts.audio_seconds == pytest.approx(1.5, abs=0.05)
    heard = read_audio(result.path)
    assert heard is not None and heard.shape[0] == 2
    assert correlation(heard, given) >= 0.99
    assert result.soundtrack is not None and result.soundtrack.given_seconds == pytest.approx(1.5)
    assert result.soundtrack.cut_seconds == 0 and result.soundtrack.padded_seconds == 0


def sound_of(engine, seconds: float) -> tuple[np.ndarray, str]:
    """``tones(seconds)`` at the vocoder's rate (the MP4's), and as a WAV data URI."""
    given = tones(seconds, engine.audio_sample_rate)
    return given, audio_uri(wav_bytes(given, engine.audio_sample_rate))


@pytest.fixture(scope="module")
def cut(engine, tmp_path_factory):
    """A 1 s job to 1.5 s of ``tones`` (seed 11): read by the cut/pad test and, as the first seed, the seed test."""
    return engine.generate(request(sound_of(engine, 1.5)[1], duration=1), tmp_path_factory.mktemp("cut") / "cut.mp4")


def test_a_duration_cuts_or_pads_the_sound_with_silence_and_says_so(engine, cut, tmp_path):
    rate = engine.audio_sample_rate
    given, uri = sound_of(engine, 1.5)
    assert probe(cut.path).num_frames == 25
    assert (cut.soundtrack.cut_seconds, cut.soundtrack.padded_seconds) == (pytest.approx(0.5), 0)
    assert correlation(read_audio(cut.path), given[:, :rate]) >= 0.99

    padded = engine.generate(request(uri, duration=2), tmp_path / "padded.mp4")
    heard = read_audio(padded.path)
    assert probe(padded.path).num_frames == 49 and probe(padded.path).audio_seconds == pytest.approx(2.0, abs=0.05)
    assert (padded.soundtrack.cut_seconds, padded.soundtrack.padded_seconds) == (0, pytest.approx(0.5))
    assert correlation(heard, given) >= 0.99
    tail = heard[:, int(1.6 * rate):int(1.95 * rate)]
    assert np.abs(tail).max() < 0.01  # silence after the sound


def test_the_video_differs_by_seed_and_the_sound_does_not(engine, cut, tmp_path):
    one = cut  # seed 11
    two = engine.generate(request(sound_of(engine, 1.5)[1], duration=1, seed=2), tmp_path / "two.mp4")
    assert not np.array_equal(read_frames(one.path), read_frames(two.path))
    np.testing.assert_array_equal(read_audio(one.path), read_audio(two.path))


def test_no_audio_track_when_generate_audio_is_off_but_the_video_still_follows_the_sound(engine, tmp_path):
    rate = engine.audio_sample_rate
    result = engine.generate(request(audio_uri(wav_bytes(tones(1.25, rate), rate)), generate_audio=False),
                             tmp_path / "silent.mp4")
    facts = probe(result.path)
    assert facts.audio_codec is None and facts.num_frames == 31 and not result.has_audio


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_audio_latents_are_the_inputs_encoding_at_every_step_of_both_stages(toy_variant, tmp_path, dtype):
    from pixgen.engine import load_engine
    from pixgen.engine.ltx2.hold import hold_audio
    from pixgen.engine.ltx2.soundtrack import audio_latent_frames, encode_soundtrack

    engine = load_engine(str(toy_variant("ltx-2.0-dev", {"num_inference_steps": 3,
                                                         "two_stage_qualities": ["360p"]})), dtype=dtype)
    vae_rate = engine.audio_vae_rate  # a file at the VAE's own rate reaches the encoder unresampled
    given = tones(1.0, vae_rate)
    pipe = engine.pipes.text
    # What the encoder must see: the file's samples (int16 / 32768) on the video's clock, encoded by the audio VAE.
    samples = np.round(given * 32767) / 32768
    expected = hold_audio(pipe, encode_soundtrack(pipe, samples.astype(np.float32), audio_latent_frames(pipe, 25)))
    seen = []
    handle = pipe.transformer.register_forward_hook(
        lambda module, args, kwargs, out: seen.append((kwargs["audio_hidden_states"].clone(),
                                                       kwargs["audio_timestep"].clone(),
                                                       float(kwargs["timestep"].max()))),
        with_kwargs=True)
    try:
        result = engine.generate(request(audio_uri(wav_bytes(given, vae_rate))), tmp_path / "held.mp4")
    finally:
        handle.remove()
    assert result.two_stage and result.num_frames == 25
    steps = list(dict.fromkeys(t for _, _, t in seen))
    assert len(steps) == 6  # 3 steps of stage 1, 3 of stage 2, every one of them with the audio held
    for tokens, audio_timestep, _ in seen:
        want = expected.tokens.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        torch.testing.assert_close(tokens, want, rtol=0, atol=1e-6 if dtype == "float32" else 0)
        assert torch.count_nonzero(audio_timestep) == 0
    assert expected.tokens.abs().max() > 0 and expected.tokens.std() > 0.01  # a real encoding, not silence


def test_the_length_rule_rounds_up_to_whole_frames_within_one_to_fifteen_seconds():
    assert frames_for_audio(1.5) == 37 and frames_for_audio(1.3) == 33 and frames_for_audio(2.0000001) == 49
    assert frames_for_audio(0.2) == 25 and frames_for_audio(15.05) == 361


# -- the files a soundtrack may be (media/audio.py, no torch) -------------------------------------------------
def encoded(codec: str, container: str, seconds: float = 1.0, rate: int = 44100) -> bytes:
    """``tones`` encoded by FFmpeg into ``container`` with ``codec`` (as a user's file would be)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        sound = tones(seconds, rate)
        fmt = stream.codec_context.codec.audio_formats[0].name
        step = 1152
        for start in range(0, sound.shape[1], step):
            frame = av.AudioFrame.from_ndarray(sound[:, start:start + step], format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            if fmt != "fltp":
                frame = av.AudioResampler(format=fmt, layout="stereo", rate=rate).resample(frame)[0]
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


@pytest.mark.parametrize("codec,container,kind", [
    ("mp3", "mp3", "mp3"), ("aac", "adts", "aac"), ("aac", "ipod", "m4a"), ("flac", "flac", "flac"),
    ("libvorbis", "ogg", "ogg"), ("libopus", "ogg", "ogg"),
])
def test_each_kind_of_file_is_typed_by_its_bytes_and_decoded_to_its_length(codec, container, kind):
    import av

    from pixgen.media.audio import audio_data_uri, audio_type, check_audio

    try:
        data = encoded(codec, container, rate=48000 if codec == "libopus" else 44100)
    except (av.error.FFmpegError, ValueError) as exc:  # an FFmpeg build without this encoder
        pytest.skip(f"no {codec} encoder: {exc}")
    assert audio_type(data) == kind
    assert check_audio(audio_data_uri(data)) == pytest.approx(1.0, abs=0.06)


@pytest.mark.parametrize("data,message", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a WAV"),
    (wav_bytes(tones(15.5, 8000), 8000), "longer than 15 s"),
    (wav_bytes(np.zeros((2, 0), np.float32), 8000), "no sound"),
    (b"RIFF\x24\0\0\0WAVEfmt " + b"\xff" * 40, "not a readable audio file"),
])
def test_bad_audio_is_refused_naming_the_field(data, message):
    from pixgen.media.audio import check_audio

    with pytest.raises(InvalidRequest, match=message) as caught:
        check_audio(audio_uri(data))
    assert caught.value.field == "audio"
