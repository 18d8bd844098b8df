"""The checks hostile input meets first, each at its own depth: the request's one checked string type (on every
string field, nested ones and the routes' own included, so the next field cannot miss it), the one bounded number
reader (signed links, ranges, forms, Content-Length), the bounded JSON reader, the Idempotency-Key's check before
SQL, and images measured from their header."""

from __future__ import annotations

import io
import json
import struct
import sys
import types
import zlib
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from PIL import Image
from pydantic import BaseModel

from pixgen.api import cloudflare, jobs_api, openai_videos  # noqa: F401 - registers the route bodies
from pixgen.api.bodies import BODIES
from pixgen.api.body import MAX_JSON_DEPTH, MAX_JSON_VALUES, parse_json
from pixgen.api.media import parse_range, sign_path, verify
from pixgen.core.fields import form_value
from pixgen.core.spec import VideoRequest, parse_request
from pixgen.core.text import TEXT_CHECK, parse_digits, text_problem
from pixgen.errors import Forbidden, InvalidRequest
from pixgen.jobs.store import check_idempotency_key
from pixgen.media.images import check_image, image_header, open_image

NOT_TEXT = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x0e", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f",
            "\ud800", "\udbff", "\udc00", "\udfff"]
TEXT = ["plain", "tab\there", "lines\nand\r\nmore", "émoji 👍🏽 and a zero\u200bwidth space", "日本語", "\u00a0nbsp"]


# -- the checked string type ----------------------------------------------------------------------------------
def string_leaves(annotation: Any) -> list[Any]:
    """The ``str`` members of an annotation, each with the metadata around it (through unions, tuples, lists)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *meta = get_args(annotation)
        found = string_leaves(inner)
        return [(kind, [*meta, *more]) for kind, more in found]
    if origin in (Union, types.UnionType, tuple, list, dict):
        return [leaf for arg in get_args(annotation) if arg is not Ellipsis for leaf in string_leaves(arg)]
    if annotation is str:
        return [(str, [])]
    return []


def models_of(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for info in model.model_fields.values():
        for arg in _flat(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in found:
                found += models_of(arg)
    return found


def _flat(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    return [annotation] if not args else [a for arg in args for a in _flat(arg)]


@pytest.mark.parametrize("model", sorted({m for body in [VideoRequest, *BODIES] for m in models_of(body)},
                                         key=lambda m: m.__name__), ids=lambda m: m.__name__)
def test_every_string_field_of_the_request_and_the_bodies_is_checked_text(model):
    """A new field typed ``StrictStr`` (not ``CheckedStr``) fails here, whatever model it is in."""
    for name, info in model.model_fields.items():
        if name == "options" and model.__name__ == "WorkersAIRunRequest":
            continue  # accepted and ignored: never read, never stored
        if name == "input" and model.__name__ == "WorkersAIRunRequest":
            continue  # an object checked as WorkersAIInput (below) once unwrapped
        for _, meta in string_leaves(info.annotation):
            assert TEXT_CHECK in [*meta, *info.metadata], f"{model.__name__}.{name} is a string without the check"


@pytest.mark.parametrize("char", NOT_TEXT, ids=lambda c: f"U+{ord(c):04X}")
def test_the_request_refuses_what_is_not_text_in_every_string_field_naming_it(char):
    image = "data:image/png;base64,iVBORw0KGgo="
    for field, body in [("prompt", {"prompt": f"a{char}b"}), ("negative_prompt", {"prompt": "a",
                                                                                  "negative_prompt": char}),
                        ("image_input", {"prompt": "a", "image_input": image + char}),
                        ("control_type", {"prompt": "a", "control_type": f"dep{char}th"}),
                        ("keyframes[1].image", {"prompt": "a", "keyframes": [{"image": image, "time": 0},
                                                                           {"image": char + image, "time": 1}]})]:
        with pytest.raises(InvalidRequest) as refused:
            parse_request(body)
        assert refused.value.field == field, (field, refused.value.message)


@pytest.mark.parametrize("text", TEXT)
def test_text_is_text(text):
    assert text_problem(text) is None
    assert parse_request({"prompt": text}).prompt == text.strip()


# -- the bounded number reader -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0), ("007", 7), ("123456789012345678", 123456789012345678), (b"42", 42),
    ("1234567890123456789", None), ("9" * 4400, None), ("²", None), ("\u0663", None), ("1_0", None), (" 1", None),
    ("+1", None), ("-1", None), ("", None), (None, None), (b"\xff", None), ("0x10", None), ("1e3", None)])
def test_parse_digits_takes_ascii_digits_within_a_bound(text, expected):
    assert parse_digits(text) == expected


def test_form_numbers_are_read_by_the_bounded_reader():
    duration = VideoRequest.model_fields["duration"]
    assert form_value(duration, "7") == 7 and form_value(duration, " -3 ") == -3
    for text in ("9" * 5000, "²", "\u0663", "7\x00", "7\x0b"):  # left as text: the integer field refuses it
        assert form_value(duration, text) == text
    strength = VideoRequest.model_fields["image_strength"]  # a float field: a form's decimal text as a float
    assert [form_value(strength, t) for t in ("0.5", " 1 ", ".25", "2.5e-1")] == [0.5, 1.0, 0.25, 0.25]
    for text in ("nan", "inf", "1e999", "0x1", "1_0", "\u0661.5", "5" * 30, "0.5\x00"):  # text: the field refuses it
        assert form_value(strength, text) == text


def test_signed_link_exp_is_read_by_the_bounded_reader():
    link, _ = sign_path("secret", "/media/job_x/video.mp4", ttl=60, now=1000)
    exp = link.split("exp=")[1].split("&")[0]
    sig = link.split("sig=")[1]
    verify("secret", "/media/job_x/video.mp4", exp, sig, now=1000)
    for bad in ("²", "9" * 4400, "1_060", " 1060", "\u0661\u0660\u0666\u0660"):
        with pytest.raises(Forbidden) as refused:
            verify("secret", "/media/job_x/video.mp4", bad, sig, now=1000)
        assert refused.value.field == "exp"
    with pytest.raises(Forbidden) as refused:
        verify("secret", "/media/job_x/video.mp4", exp, "x" + sig, now=1000)
    assert refused.value.field == "sig"


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=" + "9" * 5000 + "-", "unsatisfiable"), ("bytes=0-" + "9" * 5000, (0, 999)),
    ("bytes=-" + "9" * 5000, (0, 999)), ("bytes=10-" + "9" * 19, (10, 999)), ("bytes=\u0661-2", None),
    ("bytes=²-", None)])
def test_range_numbers_of_any_length_are_read_without_a_crash(header, expected):
    assert parse_range(header, 1000) == expected


# -- JSON, idempotency keys ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
                                 b"[" * 100_000 + b"]" * 100_000, b"[" + b"0," * MAX_JSON_VALUES + b"0]",
                                 b'{"a": NaN}', b'{"a": -Infinity}', b"9" * 5000, b'{"a": "\xff"}'])
def test_json_past_its_bounds_is_400_naming_the_body(raw):
    assert sys.getrecursionlimit() < 100_000  # the deep one would be a RecursionError inside json
    with pytest.raises(InvalidRequest) as refused:
        parse_json(raw)
    assert refused.value.field == "body"


def test_json_within_its_bounds_reads():
    deep: Any = "leaf"
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = [deep]
    assert parse_json(json.dumps({"a": deep}).encode()) == {"a": deep}


@pytest.mark.parametrize("value", ["a\x00b", "a\x85b", "\x7f", "", "x" * 256])
def test_idempotency_keys_that_would_reach_sql_are_checked_first(value):
    with pytest.raises(InvalidRequest) as refused:
        check_idempotency_key(value)
    assert refused.value.field == "Idempotency-Key"
    check_idempotency_key("order-1234 ünïcode")


# -- images measured from the header ----------------------------------------------------------------------------
def encoded(image: Image.Image, kind: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


def test_image_header_gives_the_size_as_shown_without_decoding():
    image = Image.new("RGB", (40, 20), (10, 200, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotated a quarter turn
    for kind in ("JPEG", "PNG", "WEBP"):
        data = encoded(image, kind, exif=exif)
        assert image_header(data) == check_image(data) == open_image(data).size == (20, 40), kind
    truncated = encoded(Image.new("RGB", (64, 64)), "PNG")[:60]  # the header is whole, the pixels are not
    assert image_header(truncated) == (64, 64)
    with pytest.raises(InvalidRequest, match="not a readable"):
        check_image(truncated)
    with pytest.raises(InvalidRequest, match="pixels"):
        image_header(png_claiming(9000, 9000))  # 81 MP by its header: refused before a byte of it is decoded


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` and whose pixel data is one byte."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")
