"""A worker process: loads the engine once, then claims jobs and runs them under a lease until told to stop.

Threads in a worker: the main thread generates (with ``--overlap-jobs`` a generate job's decode and encode run on a
finishing thread while the main thread starts the next job: ``_Finisher``); a lease thread (one per job) renews the
lease, writes progress, picks up cancel requests and hands the job back when a drain runs out; a housekeeping
thread keeps the worker's own heartbeat row fresh, puts jobs of dead workers back in the queue, under zero data
retention deletes outputs past their TTL, and deletes jobs past ``--keep-jobs`` (``jobs.retention``). At start and
at each claim the main thread sweeps ``work/`` of the files of attempts no longer running (``jobs.workdir``: a
killed worker's partial MP4).

Stopping (``drain``, on SIGTERM): no new claims; the running job (and one finishing aside) may finish within
``--drain-seconds``; past that the lease thread hands it back at once (``JobStore.hand_back``, another worker
restarts it) and the engine stops at its next cancel check. A second signal hands it back now.
The engine (torch) is imported here only inside ``run``, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pixgen.core.progress import Progress
from pixgen.engine.base import Engine, Finish, FinishesAside, GenerationResult, Preview
from pixgen.errors import Cancelled, GenerationError, NotFound, PixgenError, RankGroupBroken
from pixgen.jobs import fleet, retention, workdir
from pixgen.jobs.db import Database, connect, migrate
from pixgen.jobs.gpus import worker_environment
from pixgen.jobs.manifest import ModelIdentity, build_manifest, model_identity
from pixgen.jobs.origin import JobKind
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Claim, Job, JobStore, Outcome
from pixgen.jobs.thumbnail import make_thumbnail
from pixgen.settings import Settings
from pixgen.storage import MediaStore, media_store_for

log = logging.getLogger("pixgen.worker")

CANCEL_POLL = 0.1  # seconds between looks at the cancel flag while a job runs
PROGRESS_EVERY = 0.5  # at most this often a progress write (the lease is renewed on its own schedule)
T = TypeVar("T")


class Worker:
    def __init__(self, settings: Settings, *, engine_factory: Callable[[], Engine] | None = None,
                 worker_id: str | None = None) -> None:
        self.settings = settings
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.stop = threading.Event()  # set: no more claims (set directly, the running job is handed back at once)
        self._hand_back_at: float | None = None  # a drain's deadline (time.monotonic()); None: as soon as stopping
        self._engine_factory = engine_factory or self._load_engine
        self._current: str | None = None
        self.db: Database | None = None
        self.store: JobStore | None = None
        self.media: MediaStore = media_store_for(settings)
        self.model: ModelIdentity | None = None  # known once the engine is loaded (the toy is built by then)

    def _load_engine(self) -> Engine:
        from pixgen.engine import load_engine  # torch arrives here, in the worker process only

        return load_engine(self.settings.model, backend_id=self.settings.engine, cache_dir=self.settings.cache_dir,
                           options=self.settings.engine_options())

    # -- stopping ---------------------------------------------------------------------------------------------
    def drain(self, seconds: float | None = None) -> None:
        """Stop claiming; the running job gets ``seconds`` (default ``--drain-seconds``) to finish, then it is
        handed back. Called again (a second SIGTERM / Ctrl-C), the job is handed back now."""
        grace = self.settings.drain_seconds if seconds is None else seconds
        self._hand_back_at = time.monotonic() + (0.0 if self.stop.is_set() else grace)
        self.stop.set()

    def hand_back_due(self) -> bool:
        """True once the running job must go back to the queue: stopping, and the drain (if any) has run out."""
        if not self.stop.is_set():
            return False
        deadline = self._hand_back_at
        return deadline is None or time.monotonic() >= deadline

    # -- main loop --------------------------------------------------------------------------------------------
    def run(self, *, max_jobs: int | None = None) -> int:
        """Serve jobs until ``stop`` is set (or ``max_jobs`` have run); returns the number of jobs run."""
        self.db = connect(self.settings.database_url, pool_size=3)
        migrate(self.db)
        self.store = JobStore.from_settings(self.db, self.settings)
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        workdir.sweep(self.settings.work_dir, self.store)  # what a killed worker left behind
        engine = self._engine_factory()
        self.model = model_identity(self.settings.engine, self.settings.model, self.settings.cache_dir)
        fleet.register_worker(self.db, self.id, self.settings.model)
        log.info("worker %s ready (model %s)", self.id, self.settings.model)
        housekeeping = threading.Thread(target=self._housekeeping, name="pixgen-housekeeping", daemon=True)
        housekeeping.start()
        done = 0
        aside = self._finisher(engine)
        try:
            warm_up = getattr(engine, "warm_up", None)  # no job claimed before its shapes ran (none: serves cold)
            if warm_up is not None:
                warm_up(on_state=lambda state: fleet.set_warmup(self.db, self.id, state.to_json()),
                        should_cancel=self.stop.is_set)
            while not self.stop.is_set() and (max_jobs is None or done < max_jobs):
                claim = self.store.claim(self.id)
                if claim is None:
                    self.stop.wait(self.settings.poll_interval)
                    continue
                workdir.sweep(self.settings.work_dir, self.store)  # a job taken over leaves its last attempt's files
                self._run_job(engine, claim, aside)
                done += 1
            if aside is not None:
                aside.wait()
        finally:
            self.stop.set()
            if aside is not None:
                aside.wait(reraise=False)  # its job's lease hands it back if the worker is stopping
            housekeeping.join(timeout=5)
            fleet.stop_worker(self.db, self.id)
            self.db.dispose()
        return done

    def _finisher(self, engine: Engine) -> _Finisher | None:
        """With ``--overlap-jobs``, where the engine can: the thread that finishes one job beside the next."""
        if not self.settings.overlap_jobs:
            return None
        if isinstance(engine, FinishesAside) and engine.finishes_aside:
            return _Finisher()
        log.warning("worker %s: --overlap-jobs is on, but this engine, as loaded, cannot finish a job beside the "
                    "next (LTX-2: a memory mode that moves the VAE, or a job over several GPUs); jobs run one "
                    "after the other", self.id)
        return None

    def _run_job(self, engine: Engine, claim: Claim, aside: _Finisher | None = None) -> None:
        """One attempt at a claimed job. With ``aside``, a generate job's last part (decode and encode) is handed to
        it and this returns as soon as the next job may start."""
        job, token = claim.job, claim.token
        # One file name per attempt: a worker that lost its lease and still runs never writes over the new one, and
        # a sweep knows whose it is (``jobs.workdir``).
        stem = workdir.attempt_stem(job.id, token)
        lease = _Lease(self._store, job.id, token, self.settings.heartbeat_interval, self.hand_back_due)
        attempt = _Attempt(job, token, stem, self.settings.work_dir / f"{stem}.mp4", lease,
                           _PreviewSink(self.media, job.id, lease))
        self._current = job.id
        lease.start()
        log.info("job %s: attempt %d", job.id, job.attempts)
        try:
            work = self._guarded(attempt, lambda: self._start(engine, attempt, aside is not None))
        finally:
            self._current = None
            if attempt.source is not None and attempt.source.parent == self.settings.work_dir / stem:
                shutil.rmtree(attempt.source.parent, ignore_errors=True)  # a download (the local store hands its own)
        if isinstance(work, GenerationResult) or work is None:
            self._complete(attempt, work)
        else:  # the decode and encode, beside the next job
            assert aside is not None
            finish = work
            aside.start(lambda: self._complete(attempt, self._guarded(attempt, finish)))

    def _start(self, engine: Engine, attempt: _Attempt, aside: bool) -> GenerationResult | Finish:
        """The engine's work for the job's kind; a generate job's ends in a ``Finish`` when it may run ``aside``."""
        job, video, lease = attempt.job, attempt.video, attempt.lease
        match job.kind:
            case JobKind.EXTEND:  # continue the source's video; the result is the whole video
                if not engine.capabilities.extend:
                    raise GenerationError("this model backend cannot extend videos")
                attempt.source = self._source_video(job, attempt.stem)
                return engine.extend(attempt.source, job.video_request(), video, lease.on_progress,
                                     lease.should_cancel)
            case JobKind.RETAKE:  # regenerate a range of the source's video; the result is the whole video
                if not engine.capabilities.retake or job.retake_start is None or job.retake_end is None:
                    raise GenerationError("this model backend cannot retake videos")
                attempt.source = self._source_video(job, attempt.stem)
                return engine.retake(attempt.source, job.video_request(), job.retake_start, job.retake_end, video,
                                     lease.on_progress, lease.should_cancel)
            case JobKind.SOUND:  # new sound under the frames of the source job's video, or the request's
                if not engine.capabilities.sound_for_video:
                    raise GenerationError("this model backend cannot make new sound for a video")
                attempt.source = self._source_video(job, attempt.stem) if job.source_job_id else None
                return engine.sound(attempt.source, job.video_request(), video, lease.on_progress,
                                    lease.should_cancel)
            case JobKind.GENERATE:
                preview = None if self.settings.no_preview else attempt.preview
                if aside:
                    assert isinstance(engine, FinishesAside)
                    return engine.start_generate(job.video_request(), video, lease.on_progress, lease.should_cancel,
                                                 on_preview=preview)
                return engine.generate(job.video_request(), video, lease.on_progress, lease.should_cancel,
                                       on_preview=preview)

    def _guarded(self, attempt: _Attempt, work: Callable[[], T]) -> T | None:
        """``work()``, or None when it failed: the failure recorded as the job's (cancelled, handed back, failed),
        its files removed. A failure of one job never ends the worker."""
        store, job, token, lease = self._store, attempt.job, attempt.token, attempt.lease
        try:
            return work()
        except RankGroupBroken as exc:  # a rank of this worker's group died or hung: not the job's fault
            attempt.discard()
            log.error("job %s: %s; handing it back, the group restarts", job.id, exc.message)
            store.retry_broken(job.id, token, exc.message)
            self.stop.set()
        except Cancelled:
            attempt.discard()
            if lease.handed_back:
                log.info("job %s: handed back to the queue (worker stopping)", job.id)
            elif lease.lost:
                log.warning("job %s: lease lost; another worker has it", job.id)
            elif lease.cancel_requested:
                store.finish_cancelled(job.id, token)
            else:  # stopped for no reason the lease thread recorded: give the job back all the same
                store.hand_back(job.id, token)
        except Exception as exc:  # any failure of one job must not kill the worker
            attempt.discard()
            if isinstance(exc, PixgenError):
                code, message = exc.code, exc.message
            else:
                log.exception("job %s failed", job.id)
                code, message = "internal_error", f"generation failed: {type(exc).__name__}: {exc}"
            store.fail(job.id, token, code, message)
        return None

    def _complete(self, attempt: _Attempt, result: GenerationResult | None) -> None:
        """The job's result stored and the job completed (nothing more to do if it failed: ``_guarded``)."""
        if result is None:
            return
        attempt.lease.close()
        self._finish(attempt.job, attempt.token, result, attempt.video, attempt.stem, attempt.preview)

    @property
    def _store(self) -> JobStore:
        assert self.store is not None  # ``run`` opened it
        return self.store

    def _finish(self, job: Job, token: str, result: GenerationResult, video: Path, stem: str,
                preview: _PreviewSink) -> None:
        """Thumbnail, both files into the media store, then the move to completed (undone if the lease is lost).
        The move names the stored draft too, in case the job ended before a heartbeat recorded it."""
        assert self.store is not None
        thumb_path = self.settings.work_dir / f"{stem}.jpg"
        thumb: Path | None = thumb_path
        try:
            make_thumbnail(video, thumb_path)
        except Exception:  # a video without a thumbnail is still a result
            log.exception("job %s: no thumbnail", job.id)
            thumb = None
        try:
            self.media.put(video.name, video, "video/mp4")
            if thumb is not None:
                self.media.put(thumb.name, thumb, "image/jpeg")
        except Exception as exc:  # storage down: the job fails (refunded), the worker goes on
            log.exception("job %s: could not store the video", job.id)
            _remove(video)
            if thumb is not None:
                _remove(thumb)
            self.store.fail(job.id, token, "internal_error", f"the video could not be stored: {type(exc).__name__}")
            preview.discard()
            return
        manifest = None if self.settings.zero_data_retention or self.model is None else build_manifest(
            result, self.model, kind=job.kind, source_job_id=job.source_job_id)
        outcome = Outcome.from_result(result, video_file=video.name, thumb_file=thumb.name if thumb else None,
                                      preview_file=preview.stored, manifest=manifest,
                                      auto_duration=job.auto_duration)
        if not self.store.complete(job.id, token, outcome):
            log.warning("job %s: finished after losing its lease; result dropped", job.id)
            self.media.delete(video.name)
            if thumb is not None:
                self.media.delete(thumb.name)
            preview.discard()

    def _source_video(self, job: Job, stem: str) -> Path:
        """The finished MP4 an extend or retake job works on (it may have been deleted since the job was queued)."""
        assert self.store is not None
        try:
            source = self.store.get(job.source_job_id or "")
        except NotFound:
            raise GenerationError(f"job {job.source_job_id}, whose video this one {job.kind}s, was deleted") from None
        gone = GenerationError(f"the video of job {source.id} to {job.kind} is no longer kept")
        if source.status is not JobStatus.COMPLETED or source.media_deleted or not source.video_file:
            raise gone
        try:
            return self.media.local_copy(source.video_file, self.settings.work_dir / stem)  # a folder of the attempt
        except FileNotFoundError:
            raise gone from None

    def _housekeeping(self) -> None:
        assert self.db is not None and self.store is not None
        period = fleet.beat_period(self.settings.lease_seconds)
        pruning = retention.Sweep(self.db, self.media, self.settings.keep_jobs)
        # The first sweep runs at once: a worker started to replace a dead one takes its expired job without
        # waiting a period more.
        first = True
        while first or not self.stop.wait(period):
            first = False
            try:
                fleet.beat_worker(self.db, self.id, self._current)
                for job_id in self.store.requeue_expired():
                    log.warning("job %s: lease expired, put back or ended", job_id)
                if self.settings.zero_data_retention:
                    self._purge_outputs()
                pruning.maybe_run()
            except Exception:  # a database hiccup must not end housekeeping
                log.exception("housekeeping failed; retrying")

    def _purge_outputs(self) -> None:
        assert self.store is not None
        expired = self.store.expired_outputs(self.settings.output_ttl)
        for job in expired:
            for name in (job.video_file, job.thumb_file, job.preview_file):
                if name:
                    self.media.delete(name)
        self.store.mark_media_deleted(j.id for j in expired)


@dataclass
class _Attempt:
    """One attempt at a job, from its claim to its end: what its failure removes and its completion stores."""

    job: Job
    token: str
    stem: str  # its files' name in the work folder
    video: Path
    lease: _Lease
    preview: _PreviewSink
    source: Path | None = None  # the video an extend, retake or sound job works on (a copy in the work folder)

    def discard(self) -> None:
        """The attempt failed: its partial video, its lease thread and its stored draft go."""
        _remove(self.video)
        self.lease.close()
        self.preview.discard()


class _Finisher:
    """``--overlap-jobs``: one job's last part (``Finish``: decode, encode, storing) at a time on a thread of its own,
    while the main thread starts the next job. ``start`` waits for the one before, so at most two jobs are in
    hand: one denoising, one finishing. An error outside the job's own (its store unreachable when completing)
    is raised on the main thread at the next ``start`` or ``wait``, as it would be without the overlap."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    def start(self, work: Callable[[], None]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(work,), name="pixgen-finish", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:  # noqa: BLE001  # raised again on the main thread (``wait``)
            self._error = exc

    def wait(self, *, reraise: bool = True) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            if not reraise:
                log.error("finishing a job failed", exc_info=error)
                return
            raise error


class _PreviewSink:
    """Takes the engine's early draft (on the generating thread): into the media store, then its name to the lease
    thread, which records it with its next heartbeat (at once: a new draft is a change)."""

    def __init__(self, media: MediaStore, job_id: str, lease: _Lease) -> None:
        self.media, self.job_id, self.lease = media, job_id, lease
        self.stored: str | None = None

    def __call__(self, preview: Preview) -> None:
        try:
            self.media.put(preview.path.name, preview.path, "video/mp4")
        except Exception:  # a draft that cannot be stored is skipped, the job goes on
            log.exception("job %s: could not store the preview", self.job_id)
            _remove(preview.path)
            return
        self.stored = preview.path.name
        self.lease.on_preview(preview.path.name)

    def discard(self) -> None:
        """The job did not complete: its draft goes too."""
        if self.stored is not None:
            self.media.delete(self.stored)


class _Lease:
    """Renews one job's lease, writes its progress (throttled), watches for a cancel and, once ``hand_back_due()``,
    hands the job back to the queue, on its own thread."""

    def __init__(self, store: JobStore, job_id: str, token: str, renew_every: float,
                 hand_back_due: Callable[[], bool]):
        self.store, self.job_id, self.token = store, job_id, token
        self.renew_every = renew_every
        self.hand_back_due = hand_back_due
        self.lost = False
        self.cancel_requested = False
        self.handed_back = False  # the job went back to the queue (or was cancelled, if asked) from this thread
        self._progress: Progress | None = None
        self._written: tuple[int, str] | None = None
        self._preview: str | None = None  # a stored draft's name, until a heartbeat has recorded it
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"pixgen-lease-{job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)

    def on_progress(self, progress: Progress) -> None:
        self._progress = progress  # read by the lease thread; the generating thread never touches the database

    def on_preview(self, name: str) -> None:
        self._preview = name  # recorded by the lease thread, like progress

    def should_cancel(self) -> bool:
        return self.lost or self.cancel_requested or self.handed_back

    def _hand_back(self) -> None:
        """The job back to the queue now, whatever the engine is doing; its later writes are refused (no lease)."""
        try:
            self.handed_back = self.store.hand_back(self.job_id, self.token)
        except Exception:  # try again next tick
            log.exception("job %s: hand-back failed; retrying", self.job_id)
            return
        self.lost = not self.handed_back

    def _loop(self) -> None:
        last_write = 0.0
        while not self._closed.wait(CANCEL_POLL):
            if self.hand_back_due():
                self._hand_back()
                if self.handed_back or self.lost:
                    return
                continue
            now = time.monotonic()
            current = self._progress
            changed = current is not None and (current.percent, current.stage) != self._written
            # A new stage is written at once (a handful per job: watchers see "denoise" start without waiting out
            # the throttle); progress within a stage at most every PROGRESS_EVERY seconds.
            new_stage = changed and current is not None and (self._written is None
                                                             or current.stage != self._written[1])
            preview = self._preview
            if (now - last_write >= self.renew_every or new_stage or preview is not None
                    or (changed and now - last_write >= PROGRESS_EVERY)):
                try:
                    beat = self.store.heartbeat(self.job_id, self.token,
                                                progress=current.percent if current else None,
                                                stage=current.stage if current else None, preview_file=preview)
                except Exception:  # try again next tick; the lease has slack for it
                    log.exception("job %s: heartbeat failed", self.job_id)
                    continue
                last_write = now
                if preview is not None and self._preview == preview:
                    self._preview = None
                if current is not None:
                    self._written = (current.percent, current.stage)
                self.lost = not beat.lease_ok
                self.cancel_requested = beat.cancel_requested
                if self.lost:
                    return
            elif not self.cancel_requested:
                try:
                    self.cancel_requested = self.store.cancel_requested(self.job_id, self.token)
                except Exception:
                    log.exception("job %s: cancel check failed", self.job_id)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def run_worker(settings: Settings) -> int:
    """Entry point of ``pixgen worker``: run until SIGTERM / SIGINT, then drain (``Worker.drain``); a second signal
    hands the running job back at once."""
    if settings.ranks > 1:  # each job over several GPUs (or CPU processes): pixgen.jobs.group runs the ranks
        from pixgen.jobs.group import run_group_worker

        return run_group_worker(settings)
    if settings.gpu_list:  # --gpus N: this worker's one GPU, before CUDA starts
        os.environ.update(worker_environment(settings.gpus, os.environ))
    worker = Worker(settings)

    def _stop(signum: int, _frame: object) -> None:
        again = worker.stop.is_set()
        log.info("worker %s: signal %d, %s", worker.id, signum,
                 "handing the running job back now" if again else
                 f"draining: no new jobs; the running one gets {settings.drain_seconds:g} s to finish")
        worker.drain()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker.run()
    return 0
