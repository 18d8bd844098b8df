"""Each kind of media a request field carries (``core.fields.Media``), and what is done with one of that kind: a
file's bytes as its data URI, the data URI checked (decoded once, at submit), an http(s) URL fetched through the SSRF
guard. The generic code of every surface (the job API's URLs, the OpenAI form's uploads, the command line's FILE
flags, the submit-time checks) goes through here, so a field of an existing kind needs nothing more, and a new kind
is one row of ``KINDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pixgen.core.fields import Media
from pixgen.errors import InvalidRequest
from pixgen.media import audio, control_video, fetch, images

Size = tuple[int, int]


@dataclass(frozen=True)
class MediaKind:
    """``from_bytes`` and ``peek`` are cheap (no decode: they run before the credit check and under no bound);
    ``check`` decodes, after ``peek`` has passed every value of the request, under the API's decode bound."""

    from_bytes: Callable[[bytes, str, str | None], str]  # (file bytes, field, file name) → data URI
    check: Callable[[str, str], Size | None]  # (data URI, field) → its picture's size (None: no picture)
    fetch: Callable[[str, fetch.FetchPolicy, str], str]  # (URL, policy, field) → data URI
    # (data URI, field): the limits its header shows (type, bytes, pixels); None: the kind has no cheap look
    peek: Callable[[str, str], None] | None = None


def _image_bytes(data: bytes, field: str, name: str | None) -> str:
    return images.data_uri_from_bytes(data, field=field, name=name)


def _image_peek(uri: str, field: str) -> None:
    images.image_header(images.decode_data_uri(uri, field=field), field=field)


def _image_check(uri: str, field: str) -> Size:
    return images.check_image(images.decode_data_uri(uri, field=field), field=field)


def _image_fetch(url: str, policy: fetch.FetchPolicy, field: str) -> str:
    return fetch.fetch_image(url, policy, field=field)


def _video_bytes(data: bytes, field: str, name: str | None) -> str:
    return control_video.video_data_uri(data, field=field)  # decoded by ``check`` at submit, not while uploading


def _video_peek(uri: str, field: str) -> None:
    control_video.decode_video_uri(uri, field=field)  # base64, the byte limit, an MP4's first box


def _video_check(uri: str, field: str) -> Size:
    facts = control_video.check_control_video(uri, field=field)
    return facts.width, facts.height


def _video_fetch(url: str, policy: fetch.FetchPolicy, field: str) -> str:
    return fetch.fetch_video(url, policy, field=field)


def _audio_bytes(data: bytes, field: str, name: str | None) -> str:
    return audio.audio_data_uri(data, field=field)


def _audio_peek(uri: str, field: str) -> None:
    audio.decode_audio_uri(uri, field=field)  # base64, the byte limit, a kind of audio file by its first bytes


def _audio_check(uri: str, field: str) -> None:
    audio.check_audio(uri, field=field)  # decodes it: no track, unreadable, empty, longer than 15 s


def _audio_fetch(url: str, policy: fetch.FetchPolicy, field: str) -> str:
    return fetch.fetch_audio(url, policy, field=field)


KINDS: dict[Media, MediaKind] = {
    Media.IMAGE: MediaKind(_image_bytes, _image_check, _image_fetch, peek=_image_peek),
    Media.VIDEO: MediaKind(_video_bytes, _video_check, _video_fetch, peek=_video_peek),
    Media.AUDIO: MediaKind(_audio_bytes, _audio_check, _audio_fetch, peek=_audio_peek),
}


def kind(media: Media, field: str) -> MediaKind:
    """What this pixgen does with ``media``; a kind it cannot handle yet is refused naming the field."""
    try:
        return KINDS[media]
    except KeyError:
        raise InvalidRequest(f"{field}: this server cannot take {media.value} yet", field=field) from None
