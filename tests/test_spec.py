"""Every field of the request spec: defaults, limits, types; each bad form refused naming the field."""

import base64

import pytest

from pixgen.core.spec import DEFAULT_NEGATIVE_PROMPT, MAX_SEED, parse_request
from pixgen.errors import InvalidRequest

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 16).decode()


def test_defaults_follow_the_contract():
    r = parse_request({"prompt": "a cat"})
    assert (r.duration, r.ratio, r.quality, r.seed, r.generate_audio) == (5, "16:9", "720p", None, True)
    assert r.negative_prompt == DEFAULT_NEGATIVE_PROMPT
    assert (r.style, r.thinking_type, r.multi_clip, r.camera_movement) == ("none", "auto", False, None)
    assert r.size == (1280, 720) and r.num_frames == 121


def test_prompt_is_trimmed():
    assert parse_request({"prompt": "  a cat \n"}).prompt == "a cat"


def test_all_fields_accepted_at_their_limits():
    r = parse_request({"prompt": "p" * 2048, "negative_prompt": "n" * 2048, "duration": 15, "aspect_ratio": "21:9",
                       "quality": "1080p", "seed": MAX_SEED, "generate_audio": False, "image_input": PNG,
                       "end_image_input": PNG, "multi_clip": True, "style": "clay", "thinking_type": "enabled",
                       "camera_movement": "whip_pan"})
    assert r.size == (2520, 1080) and r.num_frames == 361 and r.seed == MAX_SEED


def test_prompt_may_be_empty_with_a_start_image():
    assert parse_request({"image_input": PNG}).prompt == ""


def test_with_seed_draws_a_seed_once_and_keeps_a_given_one():
    drawn = parse_request({"prompt": "x"}).with_seed()
    assert 0 <= drawn.seed <= MAX_SEED
    assert drawn.with_seed().seed == drawn.seed
    assert parse_request({"prompt": "x", "seed": 7}).with_seed().seed == 7


BAD = [
    ({}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "p" * 2049}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": "x", "negative_prompt": "n" * 2049}, "negative_prompt"),
    ({"prompt": "x", "negative_prompt": None}, "negative_prompt"),
    ({"prompt": "x", "duration": 0}, "duration"),
    ({"prompt": "x", "duration": 16}, "duration"),
    ({"prompt": "x", "duration": "5"}, "duration"),
    ({"prompt": "x", "duration": 5.5}, "duration"),
    ({"prompt": "x", "duration": True}, "duration"),
    ({"prompt": "x", "aspect_ratio": "5:4"}, "aspect_ratio"),
    ({"prompt": "x", "aspect_ratio": 1.77}, "aspect_ratio"),
    ({"prompt": "x", "quality": "4k"}, "quality"),
    ({"prompt": "x", "quality": 720}, "quality"),
    ({"prompt": "x", "seed": -1}, "seed"),
    ({"prompt": "x", "seed": MAX_SEED + 1}, "seed"),
    ({"prompt": "x", "seed": "42"}, "seed"),
    ({"prompt": "x", "seed": 1.0}, "seed"),
    ({"prompt": "x", "generate_audio": "yes"}, "generate_audio"),
    ({"prompt": "x", "generate_audio": 1}, "generate_audio"),
    ({"prompt": "x", "image_input": "https://example.com/a.png"}, "image_input"),
    ({"prompt": "x", "image_input": "data:image/gif;base64,R0lGOD"}, "image_input"),
    ({"prompt": "x", "image_input": 3}, "image_input"),
    ({"prompt": "x", "end_image_input": PNG}, "end_image_input"),
    ({"prompt": "x", "image_input": PNG, "end_image_input": "data:text/plain;base64,AAAA"}, "end_image_input"),
    ({"prompt": "x", "multi_clip": "true"}, "multi_clip"),
    ({"prompt": "x", "style": "watercolor"}, "style"),
    ({"prompt": "x", "thinking_type": "deep"}, "thinking_type"),
    ({"prompt": "x", "camera_movement": "barrel_roll"}, "camera_movement"),
    ({"prompt": "x", "colour": "red"}, "colour"),
]


@pytest.mark.parametrize("body,field", BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
def test_bad_field_is_refused_naming_the_field(body, field):
    with pytest.raises(InvalidRequest) as info:
        parse_request(body)
    assert info.value.field == field
    assert info.value.status == 400 and info.value.code == "invalid_request"
    assert field in info.value.message or field == "prompt"


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(InvalidRequest) as info:
        parse_request(["prompt"])
    assert info.value.field == "body"
