"""The mapping every surface shares, written once: model check, prompt rule, renaming, size and progress of a
job, and refusals of what the backend cannot do, as each surface names the field."""

from __future__ import annotations

import pytest

from pixgen.api import cloudflare, jobs_api, mapping, openai_videos
from pixgen.core.models import CLOUDFLARE_MODEL_ID, MODEL_ID
from pixgen.core.spec import parse_request
from pixgen.engine.base import Capabilities
from pixgen.errors import InvalidRequest, ModelNotFound
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Job

JOB_ROW = {"seq": 1, "id": "job_1", "key_id": "key_1", "model": MODEL_ID, "status": "processing", "request": "{}",
           "request_hash": "h", "idempotency_key": None, "surface": "jobs", "prompt": "p", "original_prompt": "p",
           "seed": 1, "quality": "540p", "aspect_ratio": "9:16", "duration": 2, "credit_cost": 10, "refunded": False,
           "progress": 40, "stage": "denoise", "cancel_requested": False, "attempts": 1, "lease_token": "t",
           "lease_expires_at": 1.0, "worker_id": "w", "error_code": None, "error_message": None, "video_file": None,
           "thumb_file": None, "width": None, "height": None, "seconds": None, "has_audio": None,
           "media_deleted": False, "created_at": 1.0, "started_at": 1.0, "finished_at": None, "updated_at": 1.0,
           "deleted_at": None}


def test_each_surface_refuses_another_model_with_the_same_404():
    messages = set()
    for call in (lambda: mapping.check_model("sora-2", MODEL_ID),  # what the job API route calls
                 lambda: cloudflare.check_model("sora-2"),
                 lambda: openai_videos.to_video_request({"model": "sora-2", "prompt": "x"})):
        with pytest.raises(ModelNotFound) as err:
            call()
        assert err.value.field == "model" and err.value.status == 404
        messages.add(err.value.message.split(";")[0])
    assert messages == {"model 'sora-2' not found"}
    mapping.check_model(f"/{CLOUDFLARE_MODEL_ID}/", CLOUDFLARE_MODEL_ID)


@pytest.mark.parametrize("body", [{}, {"prompt": "  "}, {"prompt": None}])
def test_the_surfaces_that_need_a_prompt_share_one_rule(body):
    for call in (lambda: cloudflare.to_video_request(body), lambda: openai_videos.to_video_request(body),
                 lambda: mapping.require_prompt(body)):
        with pytest.raises(InvalidRequest) as err:
            call()
        assert (err.value.field, err.value.message) == ("prompt", "prompt is required (1 to 2048 characters)")


def test_renaming_spells_the_field_as_sent_and_places_it_under_a_prefix():
    error = InvalidRequest("quality: Input should be '360p', '540p', '720p' or '1080p'", field="quality")
    assert mapping.renamed(error, {"quality": "resolution"}).field == "resolution"
    assert mapping.renamed(error, {"quality": "resolution"}).message.startswith("resolution: ")
    wrapped = mapping.renamed(error, prefix="input.")
    assert (wrapped.field, wrapped.message) == ("input.quality", error.message)
    assert mapping.renamed(InvalidRequest("bad", field=None), prefix="input.").field == "input"


def test_a_jobs_size_and_progress_are_shown_the_same_on_every_surface():
    job = Job.from_row(JOB_ROW)
    assert mapping.job_size(job) == (540, 960) and mapping.job_progress(job) == 40
    shown = jobs_api.job_json(job)
    video = openai_videos.from_job(job)
    assert (shown["width"], shown["height"], shown["progress"]) == (540, 960, 40)
    assert (video["size"], video["progress"]) == ("540x960", 40)
    done = Job.from_row({**JOB_ROW, "status": "completed", "progress": 97, "width": 544, "height": 960})
    assert mapping.job_progress(done) == 100 and mapping.job_size(done) == (544, 960)
    assert done.status is JobStatus.COMPLETED


def test_a_request_the_backend_cannot_make_is_refused_naming_the_field_as_sent():
    narrow = Capabilities(extend=False, end_frame=False, multi_clip=False, audio=True, durations=(1, 10),
                          qualities=("360p", "720p"))
    image = "data:image/png;base64,AAAA"
    cases = [({"prompt": "x", "duration": 12}, {}, "duration"),
             ({"prompt": "x", "quality": "1080p"}, {"quality": "resolution"}, "resolution"),
             ({"prompt": "x", "image_input": image, "end_image_input": image}, {}, "end_image_input"),
             ({"prompt": "x", "multi_clip": True}, {}, "multi_clip")]
    for body, names, field in cases:
        with pytest.raises(InvalidRequest) as err:
            mapping.check_capabilities(parse_request(body), narrow, names)
        assert err.value.field == field
    mapping.check_capabilities(parse_request({"prompt": "x", "duration": 10, "quality": "720p"}), narrow)


def test_models_lists_what_the_backend_can_do_and_its_sizes_without_mutating_anything():
    caps = Capabilities(extend=False, end_frame=True, multi_clip=True, audio=True)
    first = jobs_api.models_json(caps, 10, {"1080p": 20})
    assert "video-extend" not in first["models"][0]["capabilities"]
    assert first["models"][0]["sizes"]["21:9"]["1080p"] == "2520x1080"
    assert jobs_api.models_json(caps, 10, {"1080p": 20}) == first
