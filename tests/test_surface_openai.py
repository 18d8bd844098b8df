"""OpenAI Videos form: mapping on saved examples (no server), then the official SDK against a real server."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai._models import construct_type
from PIL import Image

from pixgen.api import openai_videos as oa
from pixgen.errors import InvalidRequest, PixgenError, RateLimited
from pixgen.media.images import data_uri_from_bytes

EXAMPLES = Path(__file__).parent / "examples"


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (20, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_uri(width: int, height: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(width, height)).decode()


PNG_1X1 = png_bytes(1, 1)


def _examples(prefix: str) -> list[Path]:
    found = sorted(EXAMPLES.glob(f"{prefix}*.json"))
    assert found, f"no {prefix}*.json examples"
    return found


# -- mapping on saved examples ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", _examples("openai_request_"), ids=lambda p: p.stem)
def test_saved_request_maps_to_the_canonical_spec(path: Path) -> None:
    example = json.loads(path.read_text())
    request = oa.to_video_request(example["body"], form=example["form"])
    for name, value in example["request"].items():
        assert getattr(request, name) == value, name


@pytest.mark.parametrize("path", _examples("openai_invalid_") + _examples("openai_model_not_found"),
                         ids=lambda p: p.stem)
def test_saved_bad_request_gets_the_saved_error_body(path: Path) -> None:
    example = json.loads(path.read_text())
    with pytest.raises(PixgenError) as caught:
        oa.to_video_request(example["body"], form=example["form"])
    assert caught.value.status == example["status"]
    body = oa.error_body(caught.value)
    expected = example["response"]
    if expected["error"]["message"] is None:  # long messages: only the structure is saved
        assert body["error"]["message"]
        expected = {"error": {**expected["error"], "message": body["error"]["message"]}}
    assert body == expected


def test_every_size_of_the_contract_table_maps_back_to_its_ratio_and_quality() -> None:
    assert len(oa.SIZES) == 32
    assert oa.parse_size("1280x720") == ("16:9", "720p")
    assert oa.parse_size("720x1280") == ("9:16", "720p")
    assert oa.parse_size("2520x1080") == ("21:9", "1080p")
    assert oa.parse_size("810x540") == ("3:2", "540p")


@pytest.mark.parametrize("value", ["0", "16", "4.0", "", "four", 4.0, True, None, -1])
def test_bad_seconds_are_refused_naming_seconds(value) -> None:
    with pytest.raises(InvalidRequest) as caught:
        oa.parse_seconds(value)
    assert caught.value.field == "seconds"


@pytest.mark.parametrize("value", ["1", "15", 1, 15, " 8 "])
def test_seconds_as_string_or_integer(value) -> None:
    assert oa.parse_seconds(value) == int(value)


def test_uploaded_image_becomes_a_data_uri_typed_by_its_bytes() -> None:
    uri = data_uri_from_bytes(PNG_1X1)
    assert uri.startswith("data:image/png;base64,iVBORw0KGgo")
    assert data_uri_from_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 ").startswith("data:image/webp;base64,")
    assert data_uri_from_bytes(b"\xff\xd8\xff\xe0rest").startswith("data:image/jpeg;base64,")
    with pytest.raises(InvalidRequest) as caught:
        data_uri_from_bytes(b"GIF89a...", field="input_reference")
    assert caught.value.field == "input_reference"


def test_file_id_reference_is_refused_naming_it() -> None:
    with pytest.raises(InvalidRequest) as caught:
        oa.to_video_request({"prompt": "a cat", "input_reference": {"file_id": "file_123"}})
    assert caught.value.field == "input_reference.file_id"


@pytest.mark.parametrize("form", [{"input_reference": "x", "input_reference[image_url]": "y"},
                                  {"input_reference[image_url]": "y", "input_reference": "x"}])
def test_a_field_given_twice_in_a_form_is_refused(form) -> None:
    with pytest.raises(InvalidRequest) as caught:
        oa.to_video_request({"prompt": "a cat", **form}, form=True)
    assert caught.value.field == "input_reference"


def test_list_params_defaults_and_refusals() -> None:
    assert oa.parse_list_params({}) == oa.ListParams(after=None, limit=20, order="desc")
    assert oa.parse_list_params({"after": "job_" + "a" * 24, "limit": "2", "order": "asc"}).limit == 2
    for query, field in (({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "x"}, "limit"),
                         ({"order": "up"}, "order"), ({"page": "2"}, "page"),
                         ({"after": "job_1"}, "after"), ({"after": "job_\x00" + "a" * 23}, "after")):
        with pytest.raises(InvalidRequest) as caught:
            oa.parse_list_params(query)
        assert caught.value.field == field


def test_error_types_follow_openai() -> None:
    assert oa.error_body(RateLimited("slow down"))["error"] == {
        "message": "slow down", "type": "rate_limit_error", "param": None, "code": "rate_limited"}
    assert oa.error_type(401) == "authentication_error"
    assert oa.error_type(500) == "server_error"


def _job(data: dict):
    from pixgen.jobs.store import Job

    return Job.from_row(data)


@pytest.mark.parametrize("path", _examples("openai_video_"), ids=lambda p: p.stem)
def test_saved_job_reads_as_the_saved_video_object(path: Path) -> None:
    example = json.loads(path.read_text())
    video = oa.from_job(_job(example["job"]), expires_at=example["expires_at"])
    assert video == example["response"]
    # What the official SDK makes of it (its own lenient parsing: our sizes are outside its Literal of four).
    parsed = construct_type(type_=openai.types.Video, value=video)
    assert parsed.status == video["status"] and parsed.seconds == video["seconds"]


def test_list_page_names_its_first_and_last_ids() -> None:
    example = json.loads((EXAMPLES / "openai_video_queued.json").read_text())
    video = oa.from_job(_job(example["job"]))
    page = oa.to_list([video, {**video, "id": "job_2"}], has_more=True)
    assert page["object"] == "list" and page["first_id"] == video["id"] and page["last_id"] == "job_2"
    assert page["has_more"] is True
    assert oa.to_list([], has_more=False) == {"object": "list", "data": [], "first_id": None, "last_id": None,
                                              "has_more": False}


def test_deleted_object() -> None:
    assert oa.deleted("job_1") == {"id": "job_1", "object": "video.deleted", "deleted": True}


# -- the official SDK against a real server --------------------------------------------------------------------
SHORT = {"seconds": "1", "size": "640x360"}
PROMPT = "A cinematic shot of ocean waves crashing at golden hour"


def sdk(server, key: str, **options) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", **options)


def credits_of(server, key: str) -> int:
    response = httpx.get(f"{server.url}/api/v1/jobs", headers={"Authorization": f"Bearer {key}"})
    return response.json()["creditsRemaining"]


def test_sdk_create_queues_a_video_and_retrieve_reads_it_back(api_server):
    key = api_server.new_key(credits=100)
    client = sdk(api_server, key)
    video = client.videos.create(prompt="a lighthouse in a storm", model="pixverse-v6", **SHORT,
                                 extra_body={"seed": 42, "generate_audio": False, "style": "anime"})
    assert (video.object, video.model, video.status, video.progress) == ("video", "pixverse-v6", "queued", 0)
    assert (video.seconds, video.size, video.prompt, video.error) == ("1", "640x360", "a lighthouse in a storm", None)
    assert video.seed == 42 and video.original_prompt == "a lighthouse in a storm"
    again = client.videos.retrieve(video.id)
    assert again.id == video.id and again.status == "queued" and again.created_at == video.created_at
    job = httpx.get(f"{api_server.url}/api/v1/jobs/{video.id}", headers={"Authorization": f"Bearer {key}"}).json()
    assert (job["duration"], job["quality"], job["aspectRatio"], job["seed"]) == (1, "360p", "16:9", 42)
    assert credits_of(api_server, key) == 90


def test_sdk_upload_of_input_reference_is_taken_as_the_start_frame(api_server):
    client = sdk(api_server, api_server.new_key())
    video = client.videos.create(prompt="the frame comes alive", input_reference=("start.png", PNG_1X1, "image/png"),
                                 seconds="1")
    assert video.status == "queued"
    assert video.size == "720x720"  # no size asked: 720p, at the ratio nearest the 1×1 image's, fixed at submit
    wide = client.videos.create(prompt="a cat", extra_body={"input_reference": png_uri(600, 400)}, seconds="1")
    assert wide.size == "1080x720"  # 600×400 is 3:2
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(prompt="a cat", input_reference=("a.gif", b"GIF89a" + bytes(40), "image/gif"))
    assert caught.value.param == "input_reference" and caught.value.code == "invalid_request"
    with pytest.raises(openai.BadRequestError) as caught:  # the right form, bytes that are no image: refused now
        client.videos.create(prompt="a cat", extra_body={"input_reference": "data:image/png;base64,AAAA"})
    assert caught.value.param == "input_reference"
    assert len(client.videos.list().data) == 2


def test_sdk_errors_name_the_param_in_openai_shape(api_server):
    key = api_server.new_key(credits=5)
    client = sdk(api_server, key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(prompt="a cat", size="1792x1024")
    assert (caught.value.param, caught.value.type, caught.value.code) == ("size", "invalid_request_error",
                                                                         "invalid_request")
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(prompt="a cat", seconds="16")
    assert caught.value.param == "seconds"
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(prompt="a cat", extra_body={"camera_movement": "barrel_roll"})
    assert caught.value.param == "camera_movement"
    with pytest.raises(openai.NotFoundError) as caught:
        client.videos.create(prompt="a cat", model="sora-2")
    assert (caught.value.param, caught.value.code) == ("model", "model_not_found")
    with pytest.raises(openai.APIStatusError) as caught:  # 10 credits a video, 5 on the key
        client.videos.create(prompt="a cat", **SHORT)
    assert caught.value.status_code == 402 and caught.value.code == "insufficient_credits"
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(api_server, "pxg_not-a-key").videos.list()
    assert caught.value.type == "authentication_error"
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve("job_000000000000000000000000")
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.list(limit=1000)
    assert caught.value.param == "limit"
    assert credits_of(api_server, key) == 5  # nothing refused was charged


def test_body_over_the_limit_is_413_in_openai_shape(api_server):
    client = sdk(api_server, api_server.new_key(), max_retries=0)
    big = PNG_1X1 + bytes(100 * 1024)  # the api_server takes 64 KiB bodies
    with pytest.raises(openai.APIStatusError) as caught:
        client.videos.create(prompt="a cat", input_reference=("big.png", big, "image/png"))
    assert caught.value.status_code == 413 and caught.value.code == "payload_too_large"


def test_sdk_list_pages_with_after_both_orders(api_server):
    client = sdk(api_server, api_server.new_key(credits=100))
    made = [client.videos.create(prompt=f"clip {i}", **SHORT).id for i in range(3)]
    first = client.videos.list(limit=2)
    assert [v.id for v in first.data] == made[::-1][:2] and first.has_more is True
    assert first.last_id == made[1]
    assert [v.id for v in client.videos.list(limit=1)] == made[::-1]  # the SDK's auto-paging follows `after`
    assert [v.id for v in client.videos.list(order="asc", limit=2)] == made
    page = client.videos.list(order="asc", after=made[0])
    assert [v.id for v in page.data] == made[1:] and page.has_more is False


def test_sdk_delete_of_a_queued_video_cancels_refunds_and_forgets_it(api_server):
    key = api_server.new_key(credits=100)
    client = sdk(api_server, key)
    video = client.videos.create(prompt="a cat", **SHORT)
    with pytest.raises(openai.NotFoundError):  # nothing to download yet
        client.videos.download_content(video.id)
    assert credits_of(api_server, key) == 90
    gone = client.videos.delete(video.id)
    assert (gone.id, gone.object, gone.deleted) == (video.id, "video.deleted", True)
    assert credits_of(api_server, key) == 100
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.delete(video.id)


@pytest.mark.slow
def test_sdk_create_and_poll_then_download_list_and_delete(server, tmp_path):
    from pixgen.media.probe import probe

    key = server.new_key(credits=100)
    client = sdk(server, key, timeout=600)
    video = client.videos.create_and_poll(prompt=PROMPT, model="pixverse-v6", **SHORT, poll_interval_ms=250,
                                          extra_body={"generate_audio": False, "seed": 42})
    assert video.status == "completed", video.error
    assert (video.progress, video.seconds, video.size, video.seed) == (100, "1", "640x360", 42)
    assert video.completed_at >= video.created_at and video.prompt and video.original_prompt == PROMPT

    content = client.videos.download_content(video.id)
    path = tmp_path / "video.mp4"
    content.write_to_file(path)
    facts = probe(path)
    assert (facts.width, facts.height, facts.video_codec, facts.audio_codec) == (640, 360, "h264", None)
    assert abs(facts.num_frames - 25) <= 1
    thumbnail = client.videos.download_content(video.id, variant="thumbnail")
    assert thumbnail.response.headers["content-type"] == "image/jpeg" and thumbnail.content[:3] == b"\xff\xd8\xff"
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.download_content(video.id, variant="spritesheet")
    assert caught.value.param == "variant"

    assert video.id in [v.id for v in client.videos.list()]
    assert len(list((server.data_dir / "media").glob(f"{video.id}*"))) == 2  # video and thumbnail
    assert client.videos.delete(video.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video.id)
    assert not list((server.data_dir / "media").glob(f"{video.id}*"))
    assert credits_of(server, key) == 90  # a finished video stays paid for


@pytest.mark.slow
def test_sdk_delete_of_a_running_video_stops_it_and_refunds(server):
    key = server.new_key(credits=100)
    client = sdk(server, key, timeout=600)
    video = client.videos.create(prompt=PROMPT, seconds="3", size="640x360")
    deadline = time.monotonic() + 300
    while (seen := client.videos.retrieve(video.id)).status == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.videos.delete(video.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    # Stopped within a denoising step and refunded; unless it had already finished when the delete came.
    assert credits_of(server, key) == (90 if seen.status == "completed" else 100)
    assert seen.status == "in_progress"  # (the 3 s clip is long enough to catch it running)
