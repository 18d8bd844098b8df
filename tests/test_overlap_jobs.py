"""``--overlap-jobs``: a worker starts its next job while the last one's video is decoded and encoded.

The worker's side runs on ``FakeEngine`` (its steps, then its MP4 written as the ``Finish``): the jobs really overlap
(the next one is claimed before the last one completed; without the flag, never), a cancel or a drain reaches the
job that is finishing, and an engine that cannot finish aside runs jobs one after the other. The engine's side
runs the toy LTX-2 in float32 and bfloat16: videos made with the overlap (a start frame's VAE encode and the
next job's denoising beside the last one's VAE decode) are the same frames and samples as without.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
from hostile_tools import png_uri

from pixgen.core.spec import parse_request
from pixgen.engine import load_engine
from pixgen.jobs.db import connect, migrate
from pixgen.jobs.keys import create_key
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Job, JobStore
from pixgen.jobs.worker import Worker
from pixgen.media.probe import read_audio, read_frames
from pixgen.settings import Settings
from pixgen.testing import FakeEngine, wait_for

REQ = {"prompt": "a paper boat", "duration": 1, "quality": "360p"}


@pytest.fixture
def settings(tmp_path, db_url):
    return Settings(data_dir=tmp_path, database_url=db_url, lease_seconds=2, poll_interval=0.05,
                    overlap_jobs=True, no_preview=True)


@pytest.fixture
def store(settings):
    db = connect(settings.database_url, pool_size=2)
    migrate(db)
    yield JobStore.from_settings(db, settings)
    db.dispose()


def submit_all(store: JobStore, requests: list[dict]) -> tuple[str, list[str]]:
    key, _ = create_key(store.db, credits=10 * len(requests))
    return key.id, [store.submit(key.id, parse_request(r), cost=10).job.id for r in requests]


def wait_until(predicate, timeout: float = 30):
    return wait_for(predicate, timeout, every=0.02)


def in_order(store: JobStore, ids: list[str]) -> list[Job]:
    return [store.get(i) for i in ids]


def overlapped(jobs: list[Job]) -> list[bool]:
    """For each job after the first: was it claimed before the one before it completed?"""
    return [b.started_at < a.finished_at for a, b in itertools.pairwise(jobs)]  # type: ignore[operator]


# The steps take 0.2 s and the MP4 0.5 s: a job's finish is long enough to see the next one start beside it.
def fake() -> FakeEngine:
    return FakeEngine(steps=4, step_seconds=0.05, scale=0.25, encode_seconds=0.5)


def test_the_next_job_starts_while_the_last_one_finishes_and_every_job_completes(settings, store):
    key_id, ids = submit_all(store, [{**REQ, "seed": s} for s in (1, 2, 3)])
    engine = fake()
    assert Worker(settings, engine_factory=lambda: engine).run(max_jobs=3) == 3  # returns once the last finished
    jobs = in_order(store, ids)
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * 3 and engine.jobs_run == 3
    assert overlapped(jobs) == [True, True]
    assert all((settings.media_dir / j.video_file).stat().st_size > 0 for j in jobs)  # type: ignore[operator]
    assert store.credits(key_id) == 0


def test_without_the_flag_each_job_completes_before_the_next_is_claimed(settings, store):
    _, ids = submit_all(store, [{**REQ, "seed": s} for s in (1, 2, 3)])
    settings = settings.model_copy(update={"overlap_jobs": False})
    assert Worker(settings, engine_factory=fake).run(max_jobs=3) == 3
    assert overlapped(in_order(store, ids)) == [False, False]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_job_cancelled_while_it_finishes_aside_is_cancelled_and_refunded_and_the_next_completes(settings, store):
    key_id, ids = submit_all(store, [{**REQ, "seed": 1, "duration": 3}, {**REQ, "seed": 2}])
    engine = fake()
    worker = Worker(settings, engine_factory=lambda: engine)
    thread = threading.Thread(target=worker.run, kwargs={"max_jobs": 2}, daemon=True)
    thread.start()
    wait_until(lambda: store.get(ids[0]).stage == "encode" and store.get(ids[1]).status is JobStatus.PROCESSING)
    store.cancel(ids[0], key_id)
    thread.join(timeout=30)
    assert not thread.is_alive()
    first, second = in_order(store, ids)
    assert first.status is JobStatus.CANCELLED and first.refunded and first.video_file is None
    assert not list(settings.work_dir.glob(f"{ids[0]}*")) and not list(settings.media_dir.glob(f"{ids[0]}*"))
    assert second.status is JobStatus.COMPLETED
    assert store.credits(key_id) == 10  # the cancelled job's back


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_drain_lets_the_finishing_job_and_the_started_one_complete_and_claims_no_other(settings, store):
    _, ids = submit_all(store, [{**REQ, "seed": s} for s in (1, 2, 3)])
    settings = settings.model_copy(update={"drain_seconds": 30})
    engine = FakeEngine(steps=10, step_seconds=0.05, scale=0.25, encode_seconds=1.0)
    worker = Worker(settings, engine_factory=lambda: engine)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    # the first job finishing aside, the second one denoising: then the drain
    wait_until(lambda: store.get(ids[0]).stage == "encode" and store.get(ids[1]).stage == "denoise")
    worker.drain()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [j.status for j in in_order(store, ids)] == [JobStatus.COMPLETED, JobStatus.COMPLETED,
                                                         JobStatus.PENDING]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_engine_that_cannot_finish_aside_runs_jobs_one_after_the_other(settings, store, caplog):
    _, ids = submit_all(store, [{**REQ, "seed": s} for s in (1, 2)])
    engine = fake()
    engine.finishes_aside = False  # as LTX-2 in a memory mode that moves its VAE on and off the GPU
    with caplog.at_level("WARNING", logger="pixgen.worker"):
        assert Worker(settings, engine_factory=lambda: engine).run(max_jobs=2) == 2
    assert overlapped(in_order(store, ids)) == [False]
    assert "cannot finish a job beside the next" in caplog.text


# -- the engine's side: the toy LTX-2 ----------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def toy(request):
    return load_engine("tiny", device="cpu", dtype=request.param)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_overlapped_toy_jobs_make_the_same_frames_and_sound_as_jobs_one_after_the_other(settings, store, toy):
    assert toy.finishes_aside  # CPU: memory mode "full"
    # the second job's start frame is VAE-encoded while the first one's video is VAE-decoded
    requests = [{**REQ, "seed": 5, "prompt": "a lighthouse at dusk"},
                {**REQ, "seed": 6, "prompt": "waves on rocks", "image_input": png_uri(96, 64)}]
    outputs = {}
    for overlap in (False, True):
        _, ids = submit_all(store, requests)
        run = settings.model_copy(update={"overlap_jobs": overlap})
        assert Worker(run, engine_factory=lambda: toy).run(max_jobs=2) == 2
        jobs = in_order(store, ids)
        assert [j.status for j in jobs] == [JobStatus.COMPLETED] * 2, [j.error_message for j in jobs]
        assert overlapped(jobs) == [overlap]
        outputs[overlap] = [(read_frames(settings.media_dir / j.video_file),  # type: ignore[operator]
                             read_audio(settings.media_dir / j.video_file)) for j in jobs]  # type: ignore[operator]
    for (frames, audio), (frames_aside, audio_aside) in zip(outputs[False], outputs[True], strict=True):
        assert frames.shape[0] == 25 and np.array_equal(frames, frames_aside)
        assert audio is not None and audio_aside is not None and np.array_equal(audio, audio_aside)
