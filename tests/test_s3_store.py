"""The S3 media store against an S3-compatible server on loopback (moto's standalone server, started here; the
store itself only knows the endpoint URL): the MediaStore checks, presigned links that serve ranges and expire
with the local store's links, and a whole job through ``pixgen serve`` whose video lives in the bucket and leaves it
on delete and under zero data retention."""

from __future__ import annotations

import io
import time
from urllib.parse import parse_qs, urlsplit

import av
import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from test_media_store import DATA, exercise

from pixgen.errors import ConfigError
from pixgen.settings import load_settings
from pixgen.storage import media_store_for, open_media_store
from pixgen.storage.s3 import S3MediaStore
from pixgen.testing import FAKE_ENGINE, free_port, start_server, wait_for

AWS_ENV = {"AWS_ACCESS_KEY_ID": "pixgen-test", "AWS_SECRET_ACCESS_KEY": "pixgen-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A client of the loopback server; the AWS variables set for this process as an operator would set them."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def bucket(s3):
    name = f"pixgen-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=name)
    return name


def keys_in(s3, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_the_s3_store_does_what_every_media_store_does(s3, bucket, s3_endpoint, tmp_path):
    store = open_media_store(f"s3://{bucket}/videos", local_root=tmp_path / "unused", endpoint_url=s3_endpoint)
    assert isinstance(store, S3MediaStore)
    exercise(store, tmp_path)
    assert keys_in(s3, bucket) == [] and not (tmp_path / "unused").exists()


def test_presigned_links_serve_ranges_and_expire_with_the_local_links(s3, bucket, s3_endpoint, tmp_path):
    settings = load_settings({"data_dir": tmp_path, "media_store": f"s3://{bucket}/p/q",
                              "s3_endpoint_url": s3_endpoint, "media_url_ttl": 600})
    store = media_store_for(settings)
    source = tmp_path / "clip.mp4"
    source.write_bytes(DATA)
    store.put("job_x-ab12.mp4", source, "video/mp4")
    assert keys_in(s3, bucket) == ["p/q/job_x-ab12.mp4"]

    url = store.url("job_x-ab12.mp4", ttl=settings.media_url_ttl, content_type="video/mp4")
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["600"]
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == DATA and whole.headers["content-type"] == "video/mp4"
    part = httpx.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == DATA[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(DATA)}"
    forged = url.replace("p/q/job_x", "p/q/job_y")
    assert httpx.get(forged).status_code == 403


def test_a_link_lifetime_s3_cannot_sign_is_a_configuration_error(tmp_path):
    settings = load_settings({"data_dir": tmp_path, "media_store": "s3://b", "media_url_ttl": 8 * 24 * 3600})
    with pytest.raises(ConfigError) as err:
        media_store_for(settings)
    assert err.value.field == "media_url_ttl"


@pytest.mark.parametrize("location", ["s3://", "s3:///prefix", "s3://b?x=1"])
def test_a_malformed_bucket_location_names_the_setting(location, tmp_path):
    with pytest.raises(ConfigError) as err:
        open_media_store(location, local_root=tmp_path)
    assert err.value.field == "media_store"


def test_a_job_through_pixgen_serve_lives_in_the_bucket_and_leaves_it(s3, bucket, s3_endpoint, tmp_path):
    env = {**AWS_ENV, "PIXGEN_ENGINE": FAKE_ENGINE, "PIXGEN_MODEL": "scale=0.25",
           "PIXGEN_MEDIA_STORE": f"s3://{bucket}/media", "PIXGEN_S3_ENDPOINT_URL": s3_endpoint,
           "PIXGEN_ZERO_DATA_RETENTION": "1", "PIXGEN_OUTPUT_TTL": "10", "PIXGEN_LEASE_SECONDS": "4"}
    server = start_server(tmp_path / "data", workers=1, env=env, ready=True, timeout=120)
    try:
        key = server.new_key()
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        job_id = api.post("/api/v1/models/pixverse-v6/run", json={"prompt": "a red kite", "duration": 1,
                                                                  "quality": "360p"}).json()["jobId"]
        job = wait_for(lambda: (j := api.get(f"/api/v1/jobs/{job_id}").json())["status"] == "completed" and j, 60)

        video_url, thumb_url = job["output"]["video"], job["output"]["thumbnail"]
        assert video_url.startswith(f"{s3_endpoint}/{bucket}/media/{job_id}") and "X-Amz-Signature=" in video_url
        video = httpx.get(video_url)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        with av.open(io.BytesIO(video.content)) as container:
            assert container.streams.video[0].frames > 0 and container.streams.audio
        part = httpx.get(video_url, headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == video.content[:100]
        thumb = httpx.get(thumb_url)
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        assert keys_in(s3, bucket) == sorted(urlsplit(u).path.split("/", 2)[2] for u in (video_url, thumb_url))
        assert not list((tmp_path / "data" / "media").glob("*"))  # nothing kept in the data folder

        # The OpenAI form's DELETE removes the files from the bucket at once.
        second = api.post("/v1/videos", json={"prompt": "a blue kite", "seconds": "4", "size": "1280x720"}).json()
        wait_for(lambda: api.get(f"/v1/videos/{second['id']}").json()["status"] == "completed", 60)
        assert len(keys_in(s3, bucket)) == 4
        content = api.get(f"/v1/videos/{second['id']}/content", headers={"Range": "bytes=10-19"})
        assert content.status_code == 206 and content.headers["content-range"].startswith("bytes 10-19/")
        assert api.delete(f"/v1/videos/{second['id']}").json()["deleted"] is True
        assert len(keys_in(s3, bucket)) == 2

        # Zero data retention: past --output-ttl the worker deletes the first job's objects.
        wait_for(lambda: keys_in(s3, bucket) == [], 30)
        assert httpx.get(video_url).status_code in (403, 404)  # S3 says 403 to a reader that may not list
        assert api.get(f"/api/v1/jobs/{job_id}").json()["output"] is None
    finally:
        server.stop()
