"""Sound: the one crossfade used at multi-clip cuts and at an extension's join, and a given soundtrack
(``audio``, video made to it): typed by its bytes, checked at submit (decoded once, nothing kept), decoded and
resampled straight from the file by the engine (PyAV / FFmpeg; no torch here)."""

from __future__ import annotations

import base64
import io
import re

import av
import numpy as np

from pixgen.errors import InvalidRequest
from pixgen.media.images import decode_base64_uri

CROSSFADE_SECONDS = 0.05  # long enough to hide a click, short enough not to smear a cut


def crossfade(outgoing: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """Equal-power crossfade of two (channels, n) pieces of the same length: ``outgoing`` fades out as
    ``incoming`` fades in (sin/cos ramps, so the summed power stays level)."""
    n = outgoing.shape[1]
    t = (np.arange(n, dtype=np.float32) + 0.5) / n
    return outgoing * np.cos(t * np.pi / 2) + incoming * np.sin(t * np.pi / 2)


# -- a given soundtrack (``audio``): typed by its bytes, checked at submit, decoded and resampled by the engine ----
FIELD = "audio"
MAX_AUDIO_BYTES = 20 * 1024 * 1024
MAX_AUDIO_SECONDS = 15.0
# An encoder's priming and padding (MP3, AAC: a frame or two) may take a 15.000 s recording a little past 15 s:
# that much more is taken, and cut with the rest.
AUDIO_SLACK_SECONDS = 0.1
_DATA_URI = re.compile(r"^data:audio/[a-z0-9.+-]{1,16};base64,", re.IGNORECASE)
AUDIO_FORMATS = ("wav", "mp3", "aac", "m4a", "flac", "ogg")  # what ``audio_type`` tells apart
_SUBTYPES = {"wav": "wav", "mp3": "mpeg", "aac": "aac", "m4a": "mp4", "flac": "flac", "ogg": "ogg"}


def audio_type(data: bytes) -> str | None:
    """The kind of audio file ``data`` is, by its first bytes: wav, mp3, aac (ADTS), m4a (an MP4 box), flac, ogg."""
    if len(data) >= 12 and data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "ogg"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "m4a"
    if data[:3] == b"ID3":
        return "mp3"
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0:  # ADTS: sync word, layer 0
        return "aac"
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # an MPEG audio frame's sync
        return "mp3"
    return None


def audio_data_uri(data: bytes, *, field: str = FIELD) -> str:
    """Audio file bytes (typed by their bytes, not a declared type) as a ``data:audio/...;base64,`` URI."""
    kind = audio_type(data)
    if kind is None:
        raise InvalidRequest(f"{field} is not a WAV, MP3, AAC/M4A, FLAC or Ogg audio file", field=field)
    if len(data) > MAX_AUDIO_BYTES:
        raise InvalidRequest(f"{field} is larger than {MAX_AUDIO_BYTES // (1024 * 1024)} MB", field=field)
    return f"data:audio/{_SUBTYPES[kind]};base64," + base64.b64encode(data).decode("ascii")


def decode_audio_uri(uri: str, *, field: str = FIELD) -> bytes:
    """The file bytes of an ``audio`` data URI: base64, at most ``MAX_AUDIO_BYTES``, of a kind pixgen reads."""
    data = decode_base64_uri(uri, _DATA_URI, "data:audio/(wav|mpeg|aac|mp4|flac|ogg);base64,...", MAX_AUDIO_BYTES,
                             field=field)
    if not data:
        raise InvalidRequest(f"{field} is empty", field=field)
    if audio_type(data) is None:
        raise InvalidRequest(f"{field} is not a WAV, MP3, AAC/M4A, FLAC or Ogg audio file", field=field)
    return data


def decode_audio(data: bytes, rate: int | None = None, *, field: str = FIELD) -> tuple[np.ndarray, int]:
    """The sound of an audio file as float32 stereo ``(2, n)`` in [-1, 1] and its rate: resampled straight from the
    file's own samples to ``rate`` when one is given (one resampling, by FFmpeg), else at the file's rate. Refused
    (400 naming ``field``) when it is no audio, cannot be decoded, holds no samples, or runs past
    ``MAX_AUDIO_SECONDS`` (decoding stops there)."""
    pieces: list[np.ndarray] = []
    samples = 0
    limit = MAX_AUDIO_SECONDS + AUDIO_SLACK_SECONDS
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise InvalidRequest(f"{field} has no audio track", field=field)
            stream = container.streams.audio[0]
            out_rate = rate or stream.codec_context.sample_rate or 0
            if out_rate <= 0:
                raise InvalidRequest(f"{field} has no sample rate", field=field)
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=out_rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray())
                    samples += out.samples
                if samples > limit * out_rate:
                    raise InvalidRequest(f"{field} is longer than {MAX_AUDIO_SECONDS:g} s", field=field)
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray())
                samples += out.samples
    except InvalidRequest:
        raise
    except (av.error.FFmpegError, ValueError, OSError):
        raise InvalidRequest(f"{field} is not a readable audio file", field=field) from None
    if samples == 0:
        raise InvalidRequest(f"{field} holds no sound (0 samples)", field=field)
    if samples > limit * out_rate:
        raise InvalidRequest(f"{field} is longer than {MAX_AUDIO_SECONDS:g} s", field=field)
    sound = np.concatenate(pieces, axis=1).astype(np.float32, copy=False)
    return np.clip(np.nan_to_num(sound), -1.0, 1.0), out_rate


def check_audio(uri: str, *, field: str = FIELD) -> float:
    """Decode an ``audio`` data URI once (nothing kept) and return its length in seconds; the refusals of
    ``decode_audio``."""
    sound, rate = decode_audio(decode_audio_uri(uri, field=field), field=field)
    return sound.shape[1] / rate
