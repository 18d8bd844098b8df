"""Start/end frame images: decoded safely from data URIs, oriented, and fitted to the output by centre crop."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, ImageOps

from pixgen.errors import InvalidRequest

ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP"}
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # stops decompression bombs before the pixels are decoded
_DATA_URI = re.compile(r"^data:image/(png|jpeg|jpg|webp);base64,", re.IGNORECASE)


def decode_data_uri(uri: str, *, field: str = "image_input") -> bytes:
    match = _DATA_URI.match(uri)
    if not match:
        raise InvalidRequest(f"{field} must be a data:image/(png|jpeg|webp);base64,... URI", field=field)
    payload = uri[match.end():]
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise InvalidRequest(f"{field} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB", field=field)
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field} is not valid base64", field=field) from None


def open_image(data: bytes, *, field: str = "image_input") -> Image.Image:
    """Decode PNG/JPEG/WebP bytes into an RGB image with EXIF orientation applied; refuse anything else."""
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidRequest(f"{field} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB", field=field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
            if image.width * image.height > MAX_PIXELS:
                raise InvalidRequest(f"{field} has {image.width}x{image.height} pixels; at most "
                                     f"{MAX_PIXELS:,} pixels", field=field)
            image.load()
    except InvalidRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest(f"{field} has too many pixels", field=field) from None
    except Exception:  # noqa: BLE001 - PIL raises many types for broken files
        raise InvalidRequest(f"{field} is not a readable PNG, JPEG or WebP image", field=field) from None
    image = ImageOps.exif_transpose(image)
    return image.convert("RGB")


def image_from_data_uri(uri: str, *, field: str = "image_input") -> Image.Image:
    return open_image(decode_data_uri(uri, field=field), field=field)


def fit_to_size(image: Image.Image, width: int, height: int) -> Image.Image:
    """Centre-crop ``image`` to width:height, then resize to exactly width × height."""
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
