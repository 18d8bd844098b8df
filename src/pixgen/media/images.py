"""Start/end frame images: decoded safely from data URIs, oriented, and fitted to the output by centre crop."""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import re
import warnings
from collections.abc import Iterator

from PIL import Image, ImageOps

from pixgen.core.sizes import nearest_aspect_ratio
from pixgen.core.spec import VideoRequest
from pixgen.errors import InvalidRequest

ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP"}
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # stops decompression bombs before the pixels are decoded
ORIENTATION_TAG = 0x0112  # EXIF Orientation
_DATA_URI = re.compile(r"^data:image/(png|jpeg|jpg|webp);base64,", re.IGNORECASE)


def decode_data_uri(uri: str, *, field: str = "image_input") -> bytes:
    return decode_base64_uri(uri, _DATA_URI, "data:image/(png|jpeg|webp);base64,...", MAX_IMAGE_BYTES, field=field)


def decode_base64_uri(uri: str, prefix: re.Pattern[str], form: str, max_bytes: int, *, field: str) -> bytes:
    """The bytes of a base64 data URI that starts with ``prefix`` (``form`` in the error), at most ``max_bytes``."""
    match = prefix.match(uri)
    if not match:
        raise InvalidRequest(f"{field} must be a {form} URI", field=field)
    payload = uri[match.end():]
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise InvalidRequest(f"{field} is larger than {max_bytes // (1024 * 1024)} MB", field=field)
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field} is not valid base64", field=field) from None


def open_image(data: bytes, *, field: str = "image_input") -> Image.Image:
    """Decode PNG/JPEG/WebP bytes into an RGB image with EXIF orientation applied; refuse anything else."""
    with _decoding(field):
        image = _opened(data, field)
        image.load()
    image = ImageOps.exif_transpose(image)
    return image.convert("RGB")


def image_header(data: bytes, *, field: str = "image_input") -> tuple[int, int]:
    """The image's width and height as shown (EXIF orientation applied) from its header alone: PIL opens lazily, so
    a 36-megapixel PNG is refused or measured here without its pixels being decoded. Type, byte and pixel limits
    are checked; whether the pixel data decodes is ``check_image``'s."""
    with _decoding(field):
        image = _opened(data, field)
        return _shown_size(image, loaded=False)


def check_image(data: bytes, *, field: str = "image_input") -> tuple[int, int]:
    """Decode the image once to prove it readable and return its size as shown, keeping nothing: no RGB copy, no
    rotated copy (``open_image`` makes both for the engine), the pixels freed before this returns."""
    with _decoding(field):
        image = _opened(data, field)
        try:
            image.load()
            return _shown_size(image, loaded=True)
        finally:
            image.close()


def _opened(data: bytes, field: str) -> Image.Image:
    """The image opened lazily (header read, no pixels), its type and size within the limits."""
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidRequest(f"{field} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB", field=field)
    image = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
    if image.width * image.height > MAX_PIXELS:
        raise InvalidRequest(f"{field} has {image.width}x{image.height} pixels; at most "
                             f"{MAX_PIXELS:,} pixels", field=field)
    return image


def _shown_size(image: Image.Image, *, loaded: bool) -> tuple[int, int]:
    """Width and height once EXIF orientation is applied (orientations 5 to 8 turn the picture a quarter). Not
    ``loaded``: only EXIF read with the header counts (a PNG's ``getexif`` would decode the pixels to look after
    them)."""
    if loaded:
        exif = image.getexif()
    else:
        exif = Image.Exif()
        if isinstance(raw := image.info.get("exif"), bytes):
            exif.load(raw)
    turned = exif.get(ORIENTATION_TAG, 1) in (5, 6, 7, 8)
    return (image.height, image.width) if turned else (image.width, image.height)


@contextlib.contextmanager
def _decoding(field: str) -> Iterator[None]:
    """PIL's refusals as ``InvalidRequest`` naming ``field``: a decompression bomb, or a broken file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except InvalidRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest(f"{field} has too many pixels", field=field) from None
    except Exception:  # noqa: BLE001 - PIL raises many types for broken files
        raise InvalidRequest(f"{field} is not a readable PNG, JPEG or WebP image", field=field) from None


def image_type(data: bytes) -> str | None:
    """``png``, ``jpeg`` or ``webp`` from the image's first bytes (not its name or declared type); else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def data_uri_from_bytes(data: bytes, *, field: str = "image_input", name: str | None = None) -> str:
    """An image file's bytes as a data URI typed by its bytes; ``InvalidRequest`` for anything but the three types."""
    kind = image_type(data)
    if kind is None:
        raise InvalidRequest(f"{name or field} is not a PNG, JPEG or WebP image", field=field)
    return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"


def image_from_data_uri(uri: str, *, field: str = "image_input") -> Image.Image:
    return open_image(decode_data_uri(uri, field=field), field=field)


def fit_to_size(image: Image.Image, width: int, height: int) -> Image.Image:
    """Centre-crop ``image`` to width:height, then resize to exactly width × height."""
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def check_request_images(request: VideoRequest) -> VideoRequest:
    """Decode a request's start, end and key frames once, when it is submitted.

    An unreadable image is then a 400 before anything is queued or charged, not a failed job later; and with no
    ``aspect_ratio`` the start image's nearest ratio is fixed here (or, without one, a keyframe's at 0 s: the same
    first frame), so every answer reports the real size.
    """
    first = None
    for i, keyframe in enumerate(request.keyframes or ()):
        image = image_from_data_uri(keyframe.image, field=f"keyframes[{i}].image")
        if keyframe.time == 0 and first is None:
            first = image
    if request.image_input is not None:
        first = image_from_data_uri(request.image_input, field="image_input")
    if request.end_image_input is not None:
        image_from_data_uri(request.end_image_input, field="end_image_input")
    if request.aspect_ratio is None and first is not None:
        return request.model_copy(update={"aspect_ratio": nearest_aspect_ratio(*first.size)})
    return request
