"""The job store on SQLite and PostgreSQL: state machine, credits, idempotency, leases, attempts."""

from __future__ import annotations

import threading

import pytest

from pixgen.core.spec import parse_request
from pixgen.errors import InsufficientCredits, InvalidRequest, NotFound, RateLimited, Unauthorized
from pixgen.jobs.db import connect
from pixgen.jobs.keys import authenticate, create_key
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import JobStore, Outcome

REQ = parse_request({"prompt": "a red fox in snow", "duration": 1, "quality": "360p"})


@pytest.fixture
def store(db, clock):
    return JobStore(db, lease_seconds=30, max_attempts=3, rate_limit_per_minute=100, max_concurrent_jobs=100,
                    clock=clock)


def outcome(name: str = "v.mp4") -> Outcome:
    return Outcome(video_file=name, thumb_file=None, width=640, height=360, seconds=1.0, has_audio=True, seed=7,
                   prompt="used", original_prompt="a red fox in snow")


def test_submit_charges_at_acceptance_and_reports_exact_balance(db, store):
    key, _ = create_key(db, credits=25)
    first = store.submit(key.id, REQ, cost=10)
    second = store.submit(key.id, REQ, cost=10)
    assert (first.credits_remaining, second.credits_remaining) == (15, 5)
    assert store.credits(key.id) == 5
    with pytest.raises(InsufficientCredits):
        store.submit(key.id, REQ, cost=10)
    assert store.credits(key.id) == 5  # a refused submit charges nothing and queues nothing
    assert len(store.list_jobs(key.id)) == 2


def test_submit_draws_and_keeps_a_seed_when_none_is_given(db, store):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    assert job.status is JobStatus.PENDING
    assert 0 <= job.seed <= 2_147_483_647
    assert job.video_request().seed == job.seed


def test_api_key_is_stored_hashed_and_authenticates(db):
    key, secret = create_key(db, credits=3, name="ci")
    assert authenticate(db, secret).id == key.id
    from sqlalchemy import select

    from pixgen.jobs.schema import api_keys

    with db.read() as conn:
        stored = conn.execute(select(api_keys.c.key_hash)).scalar_one()
    assert secret not in stored and len(stored) == 64
    for bad in (None, "", secret + "x", "pxg_nope"):
        with pytest.raises(Unauthorized):
            authenticate(db, bad)


def test_pending_cancel_refunds_once_and_is_idempotent(db, store):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    assert store.credits(key.id) == 0
    assert store.cancel(job.id, key.id).status is JobStatus.CANCELLED
    assert store.cancel(job.id, key.id).status is JobStatus.CANCELLED
    assert store.credits(key.id) == 10
    assert store.get(job.id).refunded


def test_cancel_of_another_keys_job_is_not_found(db, store):
    owner, _ = create_key(db, credits=10)
    other, _ = create_key(db, credits=10)
    job = store.submit(owner.id, REQ, cost=10).job
    with pytest.raises(NotFound):
        store.cancel(job.id, other.id)
    with pytest.raises(NotFound):
        store.get(job.id, other.id)


def test_processing_cancel_is_flagged_then_ends_cancelled_with_one_refund(db, store):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    claim = store.claim("w1")
    assert store.cancel(job.id, key.id).status is JobStatus.PROCESSING
    beat = store.heartbeat(job.id, claim.token, progress=30, stage="denoise")
    assert beat.lease_ok and beat.cancel_requested
    assert store.finish_cancelled(job.id, claim.token)
    assert not store.finish_cancelled(job.id, claim.token)
    assert not store.fail(job.id, claim.token, "internal_error", "late")
    assert store.get(job.id).status is JobStatus.CANCELLED
    assert store.credits(key.id) == 10


def test_completed_job_keeps_its_charge(db, store):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    claim = store.claim("w1")
    assert store.complete(job.id, claim.token, outcome())
    done = store.get(job.id)
    assert (done.status, done.progress, done.video_file, done.prompt) == (JobStatus.COMPLETED, 100, "v.mp4", "used")
    assert store.cancel(job.id, key.id).status is JobStatus.COMPLETED
    assert store.credits(key.id) == 0


def test_failed_job_is_refunded(db, store):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    claim = store.claim("w1")
    assert store.fail(job.id, claim.token, "internal_error", "boom")
    assert store.get(job.id).error_message == "boom"
    assert store.credits(key.id) == 10


def test_claim_takes_oldest_first_and_reports_queue_positions(db, store):
    key, _ = create_key(db, credits=100)
    ids = [store.submit(key.id, REQ, cost=1).job.id for _ in range(3)]
    assert [store.get_with_position(i)[1] for i in ids] == [1, 2, 3]
    assert store.claim("w1").job.id == ids[0]
    assert store.get_with_position(ids[0])[1] is None
    assert [store.get_with_position(i)[1] for i in ids[1:]] == [1, 2]


def test_expired_lease_is_requeued_and_the_stale_worker_cannot_overwrite(db, store, clock):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    stale = store.claim("w-old")
    clock.now += 31
    assert store.requeue_expired() == [job.id]
    assert store.get(job.id).status is JobStatus.PENDING
    fresh = store.claim("w-new")
    assert fresh.job.attempts == 2
    # The old worker comes back to life: every write it tries is refused.
    assert not store.heartbeat(job.id, stale.token, progress=90).lease_ok
    assert not store.complete(job.id, stale.token, outcome("old.mp4"))
    assert not store.fail(job.id, stale.token, "internal_error", "old")
    assert store.complete(job.id, fresh.token, outcome("new.mp4"))
    done = store.get(job.id)
    assert (done.status, done.video_file, done.worker_id) == (JobStatus.COMPLETED, "new.mp4", "w-new")
    assert store.credits(key.id) == 0


def test_heartbeat_keeps_the_lease_alive(db, store, clock):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    claim = store.claim("w1")
    for _ in range(5):
        clock.now += 20
        assert store.heartbeat(job.id, claim.token).lease_ok
        assert store.requeue_expired() == []
    assert store.get(job.id).status is JobStatus.PROCESSING


def test_job_that_keeps_losing_its_worker_fails_after_max_attempts_with_one_refund(db, store, clock):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    for attempt in range(1, 4):
        claim = store.claim(f"w{attempt}")
        assert claim is not None and claim.job.attempts == attempt
        clock.now += 31
        store.requeue_expired()
    failed = store.get(job.id)
    assert failed.status is JobStatus.FAILED and "3 attempts" in failed.error_message
    assert store.claim("w4") is None
    assert store.credits(key.id) == 10
    clock.now += 100
    assert store.requeue_expired() == []
    assert store.credits(key.id) == 10


def test_cancel_requested_on_a_dead_workers_job_ends_it_at_lease_expiry(db, store, clock):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    store.claim("w1")
    store.cancel(job.id, key.id)
    clock.now += 31
    store.requeue_expired()
    assert store.get(job.id).status is JobStatus.CANCELLED
    assert store.credits(key.id) == 10


def test_release_on_clean_shutdown_does_not_count_the_attempt(db, store):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    claim = store.claim("w1")
    assert store.release(job.id, claim.token)
    again = store.claim("w2")
    assert again.job.id == job.id and again.job.attempts == 1


def test_idempotency_key_same_body_same_job_other_body_refused(db, store):
    key, _ = create_key(db, credits=100)
    first = store.submit(key.id, REQ, cost=10, idempotency_key="abc")
    again = store.submit(key.id, parse_request({"quality": "360p", "duration": 1, "prompt": "a red fox in snow "}),
                         cost=10, idempotency_key="abc")
    assert again.replayed and again.job.id == first.job.id and again.credits_remaining == 90
    with pytest.raises(InvalidRequest) as err:
        store.submit(key.id, parse_request({"prompt": "another"}), cost=10, idempotency_key="abc")
    assert err.value.field == "Idempotency-Key"
    other, _ = create_key(db, credits=100)  # keys are per API key
    assert store.submit(other.id, REQ, cost=10, idempotency_key="abc").job.id != first.job.id
    assert store.credits(key.id) == 90


def test_idempotency_race_from_many_threads_makes_one_job_and_one_charge(db_url):
    # Each thread has its own engine (as separate API nodes would) and submits the same key + body at once.
    setup = connect(db_url, pool_size=1)
    key, _ = create_key(setup, credits=100)
    setup.dispose()
    barrier = threading.Barrier(6)
    results, errors = [], []

    def submit() -> None:
        db = connect(db_url, pool_size=1)
        try:
            barrier.wait()
            results.append(JobStore(db).submit(key.id, REQ, cost=10, idempotency_key="race").job.id)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1 and len(results) == 6
    check = connect(db_url, pool_size=1)
    assert JobStore(check).credits(key.id) == 90
    check.dispose()


def test_concurrent_claims_never_hand_one_job_to_two_workers(db_url):
    setup = connect(db_url, pool_size=1)
    key, _ = create_key(setup, credits=1000)
    for _ in range(12):
        JobStore(setup, max_concurrent_jobs=0).submit(key.id, REQ, cost=1)
    setup.dispose()
    claimed: list[str] = []
    lock = threading.Lock()

    def drain() -> None:
        db = connect(db_url, pool_size=1)
        store = JobStore(db)
        while (claim := store.claim("w")) is not None:
            with lock:
                claimed.append(claim.job.id)
        db.dispose()

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 12 and len(set(claimed)) == 12


def test_concurrency_cap_and_rate_limit_answer_with_retry_after(db, clock):
    key, _ = create_key(db, credits=1000)
    store = JobStore(db, max_concurrent_jobs=2, rate_limit_per_minute=3, clock=clock)

    def submit():  # as the service does: the attempt admitted (counted), then the job charged and queued
        store.admit(key.id, cost=1)
        return store.submit(key.id, REQ, cost=1).job

    a = submit()
    submit()
    with pytest.raises(RateLimited) as capped:
        submit()  # third attempt: over the cap of two running, and counted all the same
    assert capped.value.retry_after >= 1
    with pytest.raises(RateLimited):
        store.submit(key.id, REQ, cost=1)  # the cap holds at the charge too, under the key's lock
    store.cancel(a.id)
    clock.now += 10
    with pytest.raises(RateLimited) as limited:
        submit()  # the fourth attempt in the minute, the refused one counted
    assert limited.value.retry_after == 50  # the oldest of the three leaves the window in 50 s
    assert store.credits(key.id) == 1000 - 2 + 1  # refused attempts cost nothing; the cancel refunded
    clock.now += 51
    submit()


def test_admission_counts_refused_attempts_lets_replays_through_and_estimates_need_no_credits(db, clock):
    key, _ = create_key(db, credits=10)
    store = JobStore(db, rate_limit_per_minute=4, clock=clock)
    store.admit(key.id, cost=10)  # attempt 1
    job = store.submit(key.id, REQ, cost=10, idempotency_key="order-1").job
    with pytest.raises(InsufficientCredits):
        store.admit(key.id, cost=10)  # attempt 2: refused, counted
    store.admit(key.id, cost=10, idempotency_key="order-1")  # attempt 3: a replay needs no credits
    replay = store.submit(key.id, REQ, cost=10, idempotency_key="order-1")
    assert replay.replayed and replay.job.id == job.id
    store.admit(key.id, cost=None)  # attempt 4: an estimate checks no credits
    with pytest.raises(RateLimited) as limited:
        store.admit(key.id, cost=None)
    assert limited.value.retry_after == 60
    clock.now += 61
    store.admit(key.id, cost=None)
    with pytest.raises(InvalidRequest) as bad_key:
        store.admit(key.id, cost=10, idempotency_key="a\x00b")  # checked before it reaches SQL
    assert bad_key.value.field == "Idempotency-Key"
    assert store.credits(key.id) == 0 and len(store.list_jobs(key.id)) == 1
    with pytest.raises(Unauthorized):
        store.admit("key_missing", cost=10)


def test_zero_data_retention_scrubs_prompt_when_the_job_ends(db, clock):
    key, _ = create_key(db, credits=10)
    store = JobStore(db, zero_data_retention=True, clock=clock)
    job = store.submit(key.id, REQ, cost=10).job
    assert store.get(job.id).prompt == "a red fox in snow"  # kept while it runs
    claim = store.claim("w1")
    store.complete(job.id, claim.token, outcome())
    done = store.get(job.id)
    assert done.prompt is None and done.original_prompt is None and "fox" not in done.request
    assert store.expired_outputs(ttl=60) == []
    clock.now += 61
    assert [j.id for j in store.expired_outputs(ttl=60)] == [job.id]
    store.mark_media_deleted([job.id])
    assert store.get(job.id).media_deleted and store.expired_outputs(ttl=60) == []


def test_delete_hides_a_finished_job_and_refuses_a_running_one(db, store):
    from pixgen.errors import Conflict

    key, _ = create_key(db, credits=20)
    running = store.submit(key.id, REQ, cost=10).job
    store.claim("w1")
    with pytest.raises(Conflict):
        store.delete(running.id, key.id)
    done = store.submit(key.id, REQ, cost=10).job
    store.cancel(done.id, key.id)
    before = store.delete(done.id, key.id)
    assert before.id == done.id and before.status is JobStatus.CANCELLED
    with pytest.raises(NotFound):
        store.get(done.id)
    assert [j.id for j in store.list_jobs(key.id)] == [running.id]
    assert store.credits(key.id) == 10


def test_migrations_build_exactly_the_declared_schema(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from pixgen.jobs.schema import metadata

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_list_pages_newest_first_or_oldest_first(db, store):
    key, _ = create_key(db, credits=100)
    ids = [store.submit(key.id, REQ, cost=1).job.id for _ in range(5)]
    assert [j.id for j in store.list_jobs(key.id, limit=2)] == ids[:-3:-1]
    assert [j.id for j in store.list_jobs(key.id, limit=2, after=ids[3])] == [ids[2], ids[1]]
    assert [j.id for j in store.list_jobs(key.id, limit=2, order="asc", after=ids[1])] == [ids[2], ids[3]]
    with pytest.raises(InvalidRequest):
        store.list_jobs(key.id, after="job_nope")


# -- zero data retention over EVERY field of the request type ------------------------------------------------------
def _content_free(info) -> bool:
    """A field whose type cannot hold a user's content: a number, a switch, a choice, or an identifier pattern."""
    from pixgen.core.fields import choices, scalar_type

    kind = scalar_type(info)
    pattern = next((m.pattern for m in _metadata(info) if getattr(m, "pattern", None)), None)
    return kind in (int, float, bool) or bool(choices(info)) or (kind is str and pattern is not None
                                                                  and pattern.startswith("^[a-z]"))


def _metadata(info) -> list:
    """The field's metadata and the metadata inside its type (a constrained string type: ``control_type``)."""
    from typing import Annotated, get_args, get_origin

    def inside(annotation) -> list:
        args = get_args(annotation)
        if get_origin(annotation) is Annotated:
            return [*args[1:], *inside(args[0])]
        return [m for arg in args for m in inside(arg)]

    return [*info.metadata, *inside(info.annotation)]


def _every_field_set(sound_only: bool = False):
    """A request with every field of ``VideoRequest`` that can carry content (and the items it holds) set, with the
    settings away from their defaults; each value that carries content holds a marker of its own, returned with it.
    A field added later gets a marker of its own when its role says it carries content. ``sound_only``: the request
    for new sound instead (its ``video``, without what makes a picture), since the two cannot be one request."""
    import base64

    from pixgen.core.fields import Media, media_values, roles, with_values
    from pixgen.core.spec import SOUND_ONLY_EXCLUDES, VideoRequest

    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    values = {
        "prompt": "MARK-prompt a lighthouse", "negative_prompt": "MARK-negative blur", "duration": 3,
        "aspect_ratio": "1:1", "quality": "360p", "seed": 5, "generate_audio": False, "image_input": png,
        "end_image_input": png, "multi_clip": False, "style": "anime", "thinking_type": "disabled",
        "camera_movement": "zoom_in", "control_video": "data:video/mp4;base64,AAAA", "control_type": "depth",
        "keyframes": [{"image": png, "time": 1.0, "strength": 0.5}],
    }
    if sound_only:
        values = {name: value for name, value in values.items() if name not in SOUND_ONLY_EXCLUDES
                  and name not in ("control_type", "generate_audio")} | {"sound_only": True}
    for name, role in roles(VideoRequest).items():  # a field added since: content of its own when it takes any
        if (name == "video" and not sound_only) or (sound_only and name in SOUND_ONLY_EXCLUDES):
            continue  # new sound's video: the other request; what makes a picture: not in new sound's
        if name not in values and role.media is not None:
            values[name] = role.media.placeholder
        elif name not in values and role.private:
            values[name] = f"MARK-{name}"
    media = {path: role.media for path, role, _ in media_values(VideoRequest, values)}
    markers = {path: f"MARK-{path}" for path in media}
    for path, kind in media.items():  # each media value made unique: its marker, base64-encoded, at the end
        tail = base64.b64encode(markers[path].encode()).decode()
        values = with_values(values, {path: png + tail if kind is Media.IMAGE else kind.placeholder[:-4] + tail})
    markers.update({name: value for name, value in values.items() if isinstance(value, str)
                    and value.startswith("MARK-")}, prompt="MARK-prompt", negative_prompt="MARK-negative")
    return parse_request(values), markers


@pytest.mark.parametrize("sound_only", [False, True])
@pytest.mark.parametrize("end", ["completed", "failed", "cancelled"])
def test_zero_data_retention_keeps_no_content_of_any_request_field(db, clock, end, sound_only):
    """Walks every field of the request type: each one that can carry content (text, an image, a video, sound, in
    the request or in the items it holds) is marked private, and none of it is left in the job's row once the job
    ends; the request's shape (its settings, the keyframes' times) stays."""
    import base64
    import json

    from sqlalchemy import select

    from pixgen.core.fields import item_model, role_of
    from pixgen.core.spec import VideoRequest
    from pixgen.jobs.schema import jobs

    for model in (VideoRequest, *(m for i in VideoRequest.model_fields.values() if (m := item_model(i)))):
        for name, info in model.model_fields.items():
            carries_items = item_model(info) is not None  # its items' fields are walked in turn
            assert role_of(info).is_private or carries_items or _content_free(info), \
                f"{model.__name__}.{name} can carry content: mark it private (Role) so zero data retention removes it"
    request, markers = _every_field_set(sound_only)
    key, _ = create_key(db, credits=10)
    store = JobStore(db, zero_data_retention=True, clock=clock)
    job = store.submit(key.id, request, cost=10).job
    stored = json.loads(store.get(job.id).request)
    assert all(base64.b64encode(m.encode()).decode() in json.dumps(stored) or m in json.dumps(stored)
               for m in markers.values())  # kept while it waits
    if end == "cancelled":
        store.cancel(job.id, key.id)
    else:
        claim = store.claim("w1")
        if end == "failed":
            store.fail(job.id, claim.token, "internal_error", "boom")
        else:
            store.complete(job.id, claim.token, Outcome(
                video_file="v.mp4", thumb_file=None, width=360, height=360, seconds=3.0, has_audio=False, seed=5,
                prompt="MARK-prompt, as used", original_prompt="MARK-prompt",
                shots=[{"index": 0, "prompt": "MARK-prompt shot", "start": 0, "end": 3}],
                manifest={"prompt": "MARK-prompt"}))
    with db.read() as conn:
        row = dict(conn.execute(select(jobs).where(jobs.c.id == job.id)).mappings().one())
    everything = json.dumps(row, default=str)
    for path, marker in markers.items():
        assert marker not in everything and base64.b64encode(marker.encode()).decode() not in everything, path
    kept = json.loads(row["request"])
    if sound_only:
        assert kept["sound_only"] is True and kept["video"] is None and kept["style"] == "anime"
        return
    assert kept["duration"] == 3 and kept["style"] == "anime" and kept["keyframes"][0]["time"] == 1.0
    assert kept["image_input"] is None and kept["keyframes"][0]["image"] == "" and kept["prompt"] == ""
