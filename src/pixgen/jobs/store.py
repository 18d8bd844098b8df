"""The durable job queue: submit, read, cancel (API side) and claim, heartbeat, finish (worker side).

Every state change goes through ``JobStore._move``, inside the caller's transaction:
1. the move must be an edge of ``states.TRANSITIONS`` (else ``IllegalTransition``, a real error);
2. one guarded UPDATE: the row must still have the status and lease token it was read with (``_as_read``), so
   of two actors racing for one move exactly one makes it, and a worker that lost its lease writes nothing;
3. a move to failed or cancelled refunds the charge by flipping ``refunded`` false→true under a guard, so it
   happens exactly once whoever gets there first (a cancel, a worker, a lease sweeper);
4. one event row (``jobs.events``, the outbox webhooks and metrics read) in the same transaction, and with it the
   webhook delivery the job's subscription asks for (``jobs.deliveries``).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, fields
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from pixgen.core.fields import scrubbed as scrubbed_request
from pixgen.core.models import MODEL_ID
from pixgen.core.sizes import frames_duration
from pixgen.core.spec import VideoRequest
from pixgen.core.text import text_problem
from pixgen.engine.base import GenerationResult
from pixgen.errors import (
    Conflict,
    IllegalTransition,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    PixgenError,
    RateLimited,
    Unauthorized,
)
from pixgen.jobs import deliveries, events, queue_order
from pixgen.jobs.db import Database
from pixgen.jobs.events import EventKind
from pixgen.jobs.ids import JobId
from pixgen.jobs.origin import DIRECT, ApiSurface, JobKind, Origin
from pixgen.jobs.schema import api_keys, jobs, submit_attempts
from pixgen.jobs.states import REFUNDING, JobStatus
from pixgen.jobs.webhooks import Subscription

MAX_IDEMPOTENCY_KEY = 255
RATE_WINDOW = 60.0  # seconds of the per-key rate limit (``JobStore.admit``)


@dataclass(frozen=True)
class Job:
    """A job row, read-only. ``status`` is a ``JobStatus``."""

    seq: int
    id: str
    key_id: str
    model: str
    status: JobStatus
    request: str
    request_hash: str
    idempotency_key: str | None
    surface: ApiSurface
    prompt: str | None
    original_prompt: str | None
    seed: int
    quality: str
    aspect_ratio: str | None
    duration: int
    credit_cost: int
    refunded: bool
    progress: int
    stage: str | None
    cancel_requested: bool
    attempts: int
    lease_token: str | None
    lease_expires_at: float | None
    worker_id: str | None
    error_code: str | None
    error_message: str | None
    video_file: str | None
    thumb_file: str | None
    width: int | None
    height: int | None
    seconds: float | None
    has_audio: bool | None
    media_deleted: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    deleted_at: float | None
    # What the job does (``JobKind``: generate, or extend / retake the video of ``source_job_id``); ``remix_of``:
    # the job whose settings and seed it took with a new prompt. ``shots``: JSON list of the multi-clip shots.
    kind: JobKind = JobKind.GENERATE
    source_job_id: str | None = None
    remix_of: str | None = None
    shots: str | None = None
    timings: str | None = None  # JSON {stage: seconds} of the engine's run
    queue_round: int = 0  # the fair claim order: pending jobs are claimed by (queue_round, seq) (jobs.queue_order)
    webhook_url: str | None = None  # where its events are POSTed (jobs.webhooks), with the kinds asked for
    webhook_events: str | None = None
    retake_start: float | None = None  # "retake": the range of ``source_job_id``'s video regenerated (seconds)
    retake_end: float | None = None
    manifest: str | None = None  # JSON: what made the finished video (jobs.manifest)
    preview_file: str | None = None  # the early draft in the media store, once the engine made one
    replay_of: str | None = None  # replay: the job whose manifest this one makes again
    soundtrack: str | None = None  # JSON: how a given soundtrack was fitted (its length, the video's, cut, padded)
    auto_duration: bool = False  # asked with ``duration: "auto"``: the model chose the length (``seconds`` once made)

    @classmethod
    def from_row(cls, row: Any) -> Job:
        values = {name: row[name] for name, required in _JOB_FIELDS if required or name in row}
        values["status"] = JobStatus(values["status"])
        values["surface"] = ApiSurface(values["surface"])
        if "kind" in values:
            values["kind"] = JobKind(values["kind"])
        for name in ("refunded", "cancel_requested", "media_deleted", "auto_duration"):
            if name in values:
                values[name] = bool(values[name])
        return cls(**values)

    def video_request(self) -> VideoRequest:
        return VideoRequest.model_validate_json(self.request)

    def request_dict(self) -> dict[str, Any]:
        """The stored request as a dict (``{}`` if it cannot be read)."""
        try:
            data = json.loads(self.request)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def shot_list(self) -> list[dict[str, Any]] | None:
        """A multi-clip video's shots, ``[{index, prompt, start, end}]`` (times in seconds), else None."""
        if not self.shots:
            return None
        try:
            shots = json.loads(self.shots)
        except ValueError:
            return None
        return shots if isinstance(shots, list) else None

    def manifest_dict(self) -> dict[str, Any] | None:
        """What made the finished video (``jobs.manifest``), else None."""
        try:
            data = json.loads(self.manifest) if self.manifest else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def soundtrack_dict(self) -> dict[str, float] | None:
        """How a given soundtrack was fitted to the video (``SoundtrackFit.as_dict``), else None."""
        try:
            data = json.loads(self.soundtrack) if self.soundtrack else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def timing_dict(self) -> dict[str, float] | None:
        """Seconds per engine stage of the run that made the video, else None."""
        if not self.timings:
            return None
        try:
            data = json.loads(self.timings)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


_JOB_FIELDS = tuple((f.name, f.default is MISSING) for f in fields(Job))  # (name, required) for ``from_row``


@dataclass(frozen=True)
class Submitted:
    job: Job
    credits_remaining: int
    replayed: bool  # True: an earlier job returned for the same Idempotency-Key and body


@dataclass(frozen=True)
class Claim:
    job: Job
    token: str  # the lease token: every later write by this worker must present it


@dataclass(frozen=True)
class Beat:
    lease_ok: bool  # False: the lease was lost (expired and taken over, or the job ended): stop, write nothing
    cancel_requested: bool


@dataclass(frozen=True)
class Outcome:
    """What a finished generation reports back to the store."""

    video_file: str
    thumb_file: str | None
    width: int
    height: int
    seconds: float
    has_audio: bool
    seed: int
    prompt: str
    original_prompt: str
    shots: list[dict[str, Any]] | None = None  # multi-clip: [{index, prompt, start, end}]
    timings: dict[str, float] | None = None  # seconds per engine stage
    manifest: dict[str, Any] | None = None  # jobs.manifest.build_manifest
    preview_file: str | None = None  # the early draft, when one was stored
    soundtrack: dict[str, float] | None = None  # a given soundtrack's fit (``SoundtrackFit.as_dict``)
    duration: int | None = None  # ``duration: "auto"``: the length chosen, in whole seconds (``jobs.duration``)

    @classmethod
    def from_result(cls, result: GenerationResult, *, video_file: str, thumb_file: str | None,
                    preview_file: str | None = None, manifest: dict[str, Any] | None = None,
                    auto_duration: bool = False) -> Outcome:
        """The engine's typed result, as the store keeps it (file names inside the media store); with
        ``auto_duration`` the length the model chose replaces the longest one the job was queued with."""
        chosen = max(1, round(frames_duration(result.num_frames))) if auto_duration else None
        return cls(duration=chosen, video_file=video_file, thumb_file=thumb_file, width=result.width,
                   height=result.height,
                   seconds=result.seconds, has_audio=result.has_audio, seed=result.seed, prompt=result.prompt,
                   original_prompt=result.original_prompt,
                   shots=[shot.as_dict() for shot in result.shots] or None,
                   timings=result.timings.as_dict() or None, preview_file=preview_file, manifest=manifest,
                   soundtrack=result.soundtrack.as_dict() if result.soundtrack else None)


def request_hash(request: VideoRequest, origin: Origin = DIRECT, webhook: Subscription | None = None) -> str:
    """Hash of the request as asked (before a seed is drawn): equal bodies → equal hashes, whatever the key order.

    An extension, remix, retake or replay hashes where it comes from too, and a job with a webhook its
    subscription, so one Idempotency-Key cannot stand for two different jobs (or one job whose events go to two
    different places).
    """
    data: dict[str, Any] = request.model_dump(mode="json")
    made_from = origin.remix_of or origin.replay_of
    if origin.kind is not JobKind.GENERATE or origin.source_job_id or made_from or webhook is not None:
        data = {"request": data, "kind": origin.kind.value, "source_job_id": origin.source_job_id,
                "remix_of": made_from}
        if origin.retake is not None:
            data["retake"] = list(origin.retake)
        if webhook is not None:
            data["webhook"] = webhook.column_values()
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class JobStore:
    def __init__(
        self,
        db: Database,
        *,
        lease_seconds: float = 60.0,
        max_attempts: int = 3,
        rate_limit_per_minute: int = 60,
        max_concurrent_jobs: int = 0,
        zero_data_retention: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.rate_limit_per_minute = rate_limit_per_minute
        self.max_concurrent_jobs = max_concurrent_jobs
        self.zero_data_retention = zero_data_retention
        self.clock = clock

    @classmethod
    def from_settings(cls, db: Database, settings: Any) -> JobStore:
        return cls(db, lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts,
                   rate_limit_per_minute=settings.rate_limit_per_minute,
                   max_concurrent_jobs=settings.max_concurrent_jobs,
                   zero_data_retention=settings.zero_data_retention)

    # -- API side ---------------------------------------------------------------------------------------------
    def submit(
        self,
        key_id: str,
        request: VideoRequest,
        *,
        cost: int,
        origin: Origin = DIRECT,
        idempotency_key: str | None = None,
        model: str = MODEL_ID,
        webhook: Subscription | None = None,
    ) -> Submitted:
        """Queue ``request`` and charge ``cost`` credits, in one transaction.

        ``origin``: the surface, the kind (an extension continues the video of ``origin.source_job_id``, a retake
        regenerates ``origin.retake`` of it) and the jobs it was made from (``Origin``); ``webhook``: where the
        job's events go (``jobs.webhooks``).
        The job takes its turn in the fair order across keys (``queue_order``); it is not refused for waiting.
        Raises ``InsufficientCredits``, ``RateLimited`` (the concurrency cap, when one is set), or
        ``InvalidRequest`` when ``idempotency_key`` was used before with another body. The rate limit is counted
        by ``admit``, which the service runs first, before any work is done for the request.
        """
        check_idempotency_key(idempotency_key)
        digest = request_hash(request, origin, webhook)
        columns = {"surface": origin.surface.value, "kind": origin.kind.value, "source_job_id": origin.source_job_id,
                   "remix_of": origin.remix_of, "replay_of": origin.replay_of,
                   # for "auto" the longest until the job has run (the queue's time estimates are then upper
                   # bounds), replaced by the chosen length at completion (``Outcome.duration``)
                   "duration": request.longest_seconds if origin.duration is None else origin.duration,
                   "auto_duration": request.auto_duration,
                   **(webhook.column_values() if webhook is not None else {})}
        if origin.retake is not None:
            columns.update(retake_start=origin.retake[0], retake_end=origin.retake[1])
        try:
            return self._submit_once(key_id, request, digest, cost, idempotency_key, model, columns)
        except IntegrityError:
            # Another node inserted the same Idempotency-Key between our check and our insert: ours rolled back
            # (charge included); answer with theirs.
            if idempotency_key is None:
                raise
            with self.db.read() as conn:
                replayed = self._replay(conn, key_id, idempotency_key, digest)
            if replayed is None:  # theirs is gone again (deleted in between): ours still failed
                raise
            return replayed

    def admit(self, key_id: str, *, cost: int | None, idempotency_key: str | None = None) -> None:
        """The cheap checks before any work is done for a submit (``cost``: its price) or an estimate (None): the
        attempt is counted toward the key's rate (``rate_limit_per_minute`` attempts a minute, refused ones
        included: a key refused for credits or bad media uses up its rate like any other), then the concurrency
        cap and the credits. ``RateLimited`` / ``InsufficientCredits`` / ``Unauthorized``; a submit that replays an
        earlier job by its ``idempotency_key`` is let through to ``submit`` (which answers with that job).

        ``submit`` checks the cap and the credits again, under the key's lock, when it charges."""
        check_idempotency_key(idempotency_key)
        now = self.clock()
        problem: PixgenError | None = None
        with self.db.write() as conn:  # the attempt is recorded even when a check below refuses it
            key = conn.execute(select(api_keys.c.credits, api_keys.c.disabled).where(api_keys.c.id == key_id)
                               .with_for_update()).first()
            if key is None or key.disabled:
                raise Unauthorized("invalid API key")
            since = now - RATE_WINDOW
            conn.execute(delete(submit_attempts).where(submit_attempts.c.key_id == key_id,
                                                       submit_attempts.c.at <= since))
            recent, oldest = conn.execute(select(func.count(), func.min(submit_attempts.c.at)).where(
                submit_attempts.c.key_id == key_id)).one()
            if self.rate_limit_per_minute and recent >= self.rate_limit_per_minute:
                wait = max(1, math.ceil(oldest + RATE_WINDOW - now))
                raise RateLimited(f"at most {self.rate_limit_per_minute} submits per minute per key, refused ones "
                                  "included", retry_after=wait)
            conn.execute(submit_attempts.insert().values(key_id=key_id, at=now))
            replay = idempotency_key is not None and conn.execute(select(jobs.c.id).where(
                jobs.c.key_id == key_id, jobs.c.idempotency_key == idempotency_key)).first() is not None
            if cost is not None and not replay:
                try:
                    self._check_cap(conn, key_id)
                except RateLimited as exc:
                    problem = exc
                if problem is None and key.credits < cost:
                    problem = InsufficientCredits(f"this video costs {cost} credits; {key.credits} remaining")
        if problem is not None:
            raise problem

    def _submit_once(self, key_id: str, request: VideoRequest, digest: str, cost: int,
                     idempotency_key: str | None, model: str, columns: dict[str, Any]) -> Submitted:
        now = self.clock()
        with self.db.write() as conn:
            # Lock the key's row first: submits of one key are serialised, so the caps and the balance hold.
            key = conn.execute(select(api_keys.c.credits, api_keys.c.disabled).where(api_keys.c.id == key_id)
                               .with_for_update()).first()
            if key is None or key.disabled:
                raise Unauthorized("invalid API key")
            if idempotency_key is not None:
                replay = self._replay(conn, key_id, idempotency_key, digest)
                if replay is not None:
                    return replay
            self._check_cap(conn, key_id)
            if key.credits < cost:
                raise InsufficientCredits(f"this video costs {cost} credits; {key.credits} remaining")
            seeded = request.with_seed()
            job_id = JobId.new()
            conn.execute(jobs.insert().values(
                id=job_id, key_id=key_id, model=model, status=JobStatus.PENDING.value,
                request=seeded.model_dump_json(), request_hash=digest, idempotency_key=idempotency_key,
                prompt=seeded.prompt, original_prompt=seeded.prompt, seed=seeded.seed,
                quality=seeded.quality, aspect_ratio=seeded.aspect_ratio, credit_cost=cost, refunded=False,
                progress=0, stage=None, cancel_requested=False, attempts=0, media_deleted=False, created_at=now,
                updated_at=now, queue_round=queue_order.next_round(conn, key_id), **columns))
            conn.execute(update(api_keys).where(api_keys.c.id == key_id)
                         .values(credits=api_keys.c.credits - cost))
            job = self._get(conn, job_id)
            self._event(conn, job, EventKind.CREATED, job.status, now, {"charged": cost})
            return Submitted(job=job, credits_remaining=int(key.credits - cost), replayed=False)

    def _replay(self, conn: Connection, key_id: str, idempotency_key: str, digest: str) -> Submitted | None:
        row = conn.execute(select(jobs).where(jobs.c.key_id == key_id,
                                              jobs.c.idempotency_key == idempotency_key)).mappings().first()
        if row is None:
            return None
        if row["request_hash"] != digest:
            raise InvalidRequest("this Idempotency-Key was already used with a different request body",
                                 field="Idempotency-Key")
        credits = conn.execute(select(api_keys.c.credits).where(api_keys.c.id == key_id)).scalar_one()
        return Submitted(job=Job.from_row(row), credits_remaining=int(credits), replayed=True)

    def _check_cap(self, conn: Connection, key_id: str) -> None:
        """``RateLimited`` when the key has ``max_concurrent_jobs`` jobs queued or running (no cap when 0)."""
        if not self.max_concurrent_jobs:
            return
        active = conn.execute(select(func.count()).select_from(jobs).where(
            jobs.c.key_id == key_id,
            jobs.c.status.in_([JobStatus.PENDING.value, JobStatus.PROCESSING.value]))).scalar_one()
        if active >= self.max_concurrent_jobs:
            raise RateLimited(f"{active} jobs of this key are queued or running (at most "
                              f"{self.max_concurrent_jobs}); wait for one to finish", retry_after=5)

    def get(self, job_id: str, key_id: str | None = None) -> Job:
        """The job, or ``NotFound`` (also when it belongs to another key: ids are not an oracle)."""
        with self.db.read() as conn:
            return self._owned(conn, job_id, key_id)

    def get_with_position(self, job_id: str, key_id: str | None = None) -> tuple[Job, int | None]:
        """The job and, while it is pending, its 1-based place in the fair claim order (1 = next to run).

        The status poll: one prepared statement, one round trip (the count runs only for a pending job).
        """
        row = None
        if JobId.is_valid(job_id):  # anything else is no job's name, and never reaches SQL
            with self.db.read() as conn:
                row = conn.execute(_GET_WITH_POSITION, {"job_id": job_id}).mappings().first()
        if row is None or (key_id is not None and row["key_id"] != key_id):
            raise NotFound(f"no job {job_id!r}")
        ahead = row["ahead"]
        return Job.from_row(row), None if ahead is None else int(ahead) + 1

    def list_jobs(self, key_id: str, *, limit: int = 20, surface: ApiSurface | None = None, after: str | None = None,
                  order: str = "desc") -> list[Job]:
        """The key's jobs, newest first (``order="asc"``: oldest first); ``after`` (a job id) pages on past it."""
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be 'asc' or 'desc'", field="order")
        query = select(jobs).where(jobs.c.key_id == key_id, jobs.c.deleted_at.is_(None))
        if surface is not None:
            query = query.where(jobs.c.surface == surface.value)
        with self.db.read() as conn:
            if after is not None:
                anchor = conn.execute(select(jobs.c.seq).where(jobs.c.id == after, jobs.c.key_id == key_id)
                                      ).scalar() if JobId.is_valid(after) else None
                if anchor is None:
                    raise InvalidRequest(f"no job {after!r} to page after", field="after")
                query = query.where(jobs.c.seq > anchor if order == "asc" else jobs.c.seq < anchor)
            ordering = jobs.c.seq.asc() if order == "asc" else jobs.c.seq.desc()
            rows = conn.execute(query.order_by(ordering).limit(limit)).mappings().all()
        return [Job.from_row(r) for r in rows]

    def credits(self, key_id: str) -> int:
        with self.db.read() as conn:
            value = conn.execute(select(api_keys.c.credits).where(api_keys.c.id == key_id)).scalar()
        if value is None:
            raise NotFound(f"no API key {key_id!r}")
        return int(value)

    def cancel(self, job_id: str, key_id: str | None = None) -> Job:
        """Pending → cancelled and refunded now; processing → flagged, the worker stops within one step.

        A finished job is returned as it is.
        """
        now = self.clock()
        with self.db.write() as conn:
            job = self._owned(conn, job_id, key_id, lock=True)
            if job.status is JobStatus.PENDING:
                self._move(conn, job, JobStatus.CANCELLED, now, error_code="cancelled",
                           error_message="cancelled by the user")
            elif job.status is JobStatus.PROCESSING and not job.cancel_requested:
                flagged = conn.execute(update(jobs).where(*_as_read(job)).values(cancel_requested=True,
                                                                                updated_at=now))
                if flagged.rowcount == 1:
                    self._event(conn, job, EventKind.CANCEL_REQUESTED, job.status, now)
            return self._get(conn, job_id)

    def delete(self, job_id: str, key_id: str | None = None) -> Job:
        """Hide a finished job for good (``Conflict`` while it is pending or running: cancel it first).

        Returns the job as it was, so the caller can remove its files from the media store.
        """
        now = self.clock()
        with self.db.write() as conn:
            job = self._owned(conn, job_id, key_id, lock=True)
            if not job.status.is_terminal():
                raise Conflict(f"job {job_id} is {job.status.value}; cancel it and wait for it to stop first")
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                deleted_at=now, media_deleted=True, updated_at=now, **_scrubbed(job)))
        return job

    # -- worker side ------------------------------------------------------------------------------------------
    def claim(self, worker_id: str) -> Claim | None:
        """Take the next pending job in the fair order (``queue_order``) under a fresh lease (attempt counted), or
        None when the queue is empty."""
        now = self.clock()
        token = secrets.token_hex(16)
        with self.db.write() as conn:
            # PostgreSQL: SKIP LOCKED lets many workers claim at once without waiting on each other's row.
            # SQLite: ignored; BEGIN IMMEDIATE already makes this the only writer.
            row = conn.execute(select(jobs).where(jobs.c.status == JobStatus.PENDING.value)
                               .order_by(*queue_order.CLAIM_ORDER).limit(1).with_for_update(skip_locked=True)
                               ).mappings().first()
            if row is None:
                return None
            job = Job.from_row(row)
            self._move(conn, job, JobStatus.PROCESSING, now, lease_token=token,
                       lease_expires_at=now + self.lease_seconds, worker_id=worker_id,
                       attempts=jobs.c.attempts + 1, progress=0, stage="queued", started_at=now)
            job = self._get(conn, job.id)
        return Claim(job=job, token=token)

    def live_attempts(self, job_ids: Iterable[str], token_chars: int) -> set[tuple[str, str]]:
        """``(job id, first token_chars of its lease token)`` of those jobs that run now: processing, under a
        lease (``jobs.workdir`` keeps their files)."""
        ids = [job_id for job_id in job_ids if JobId.is_valid(job_id)]
        if not ids:
            return set()
        with self.db.read() as conn:
            rows = conn.execute(select(jobs.c.id, jobs.c.lease_token).where(
                jobs.c.id.in_(ids), jobs.c.status == JobStatus.PROCESSING.value)).all()
        return {(job_id, token[:token_chars]) for job_id, token in rows if token}

    def heartbeat(self, job_id: str, token: str, *, progress: int | None = None, stage: str | None = None,
                  preview_file: str | None = None) -> Beat:
        """Renew the lease and record progress (and the early draft's stored name, once there is one); says whether
        the lease still holds and whether to cancel.

        A new stage, or progress into the next tenth, is also a ``progress`` event; a new draft a ``preview``
        event."""
        now = self.clock()
        values: dict[str, Any] = {"lease_expires_at": now + self.lease_seconds, "updated_at": now}
        if progress is not None:
            values["progress"] = max(0, min(100, int(progress)))
        if stage is not None:
            values["stage"] = stage
        if preview_file is not None:
            values["preview_file"] = preview_file
        with self.db.write() as conn:
            # Read without a lock: a worker that lost its lease must not hold up a claim of its (pending) job.
            job = self._find(conn, job_id)
            if not _holds_lease(job, token):
                return Beat(lease_ok=False, cancel_requested=False)
            assert job is not None
            if conn.execute(update(jobs).where(*_as_read(job)).values(**values)).rowcount != 1:
                return Beat(lease_ok=False, cancel_requested=False)
            new_progress, new_stage = values.get("progress", job.progress), values.get("stage", job.stage)
            if new_stage != job.stage or new_progress // 10 != job.progress // 10:
                self._event(conn, job, EventKind.PROGRESS, job.status, now,
                            {"progress": new_progress, "stage": new_stage})
            if preview_file is not None and preview_file != job.preview_file:
                self._event(conn, job, EventKind.PREVIEW, job.status, now)
        return Beat(lease_ok=True, cancel_requested=job.cancel_requested)

    def cancel_requested(self, job_id: str, token: str) -> bool:
        """A cheap read between heartbeats: True when a cancel was asked (or the lease is gone)."""
        with self.db.read() as conn:
            job = self._find(conn, job_id)
        return not _holds_lease(job, token) or bool(job and job.cancel_requested)

    def complete(self, job_id: str, token: str, outcome: Outcome) -> bool:
        """processing → completed with the result; False (nothing written) when the lease was lost."""
        shots = outcome.shots
        if shots is not None and self.zero_data_retention:
            shots = [{k: v for k, v in shot.items() if k != "prompt"} for shot in shots]
        return self._end(job_id, token, JobStatus.COMPLETED, progress=100, stage="done",
                         video_file=outcome.video_file, thumb_file=outcome.thumb_file, width=outcome.width,
                         height=outcome.height, seconds=outcome.seconds, has_audio=outcome.has_audio,
                         seed=outcome.seed, prompt=outcome.prompt, original_prompt=outcome.original_prompt,
                         shots=json.dumps(shots) if shots is not None else None,
                         timings=json.dumps(outcome.timings, sort_keys=True) if outcome.timings else None,
                         manifest=json.dumps(outcome.manifest) if outcome.manifest else None,
                         soundtrack=json.dumps(outcome.soundtrack, sort_keys=True) if outcome.soundtrack else None,
                         **({"preview_file": outcome.preview_file} if outcome.preview_file else {}),
                         **({"duration": outcome.duration} if outcome.duration is not None else {}))

    def fail(self, job_id: str, token: str, code: str, message: str) -> bool:
        """processing → failed and refunded; False when the lease was lost."""
        return self._end(job_id, token, JobStatus.FAILED, error_code=code, error_message=message)

    def finish_cancelled(self, job_id: str, token: str) -> bool:
        """processing → cancelled and refunded (the worker stopped on a cancel request)."""
        return self._end(job_id, token, JobStatus.CANCELLED, error_code="cancelled",
                         error_message="cancelled by the user")

    def release(self, job_id: str, token: str) -> bool:
        """processing → pending, attempt not counted: the worker is shutting down cleanly, another will run it."""
        return self._end(job_id, token, JobStatus.PENDING, attempts=jobs.c.attempts - 1)

    def hand_back(self, job_id: str, token: str) -> bool:
        """A stopping worker gives its running job up now (it may still be computing): back to pending, attempt not
        counted, for another worker to restart; or cancelled and refunded when a cancel was asked meanwhile. One
        locked transaction, so a cancel request cannot slip in between. False when the lease was lost."""
        now = self.clock()
        with self.db.write() as conn:
            job = self._find(conn, job_id, lock=True)
            if not _holds_lease(job, token):
                return False
            assert job is not None
            if job.cancel_requested:
                return self._move(conn, job, JobStatus.CANCELLED, now, error_code="cancelled",
                                  error_message="cancelled by the user")
            return self._move(conn, job, JobStatus.PENDING, now, attempts=jobs.c.attempts - 1)

    def retry_broken(self, job_id: str, token: str, reason: str) -> bool:
        """processing → pending, attempt counted: the worker's group of GPUs broke mid-job and restarts (failed and
        refunded instead once ``max_attempts`` attempts have ended so). False when the lease was lost."""
        with self.db.write() as conn:
            job = self._find(conn, job_id, lock=True)
            if not _holds_lease(job, token):
                return False
            assert job is not None
            if job.attempts >= self.max_attempts:
                return self._move(conn, job, JobStatus.FAILED, self.clock(), error_code="internal_error",
                                  error_message=f"the worker's GPUs failed on all {job.attempts} attempts: {reason}")
            return self._move(conn, job, JobStatus.PENDING, self.clock())

    def requeue_expired(self) -> list[str]:
        """Jobs whose lease ran out (their worker died or hung): back to pending, or — after ``max_attempts``
        attempts, or when a cancel was asked — ended and refunded. Returns the ids touched."""
        now = self.clock()
        touched = []
        with self.db.write() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.status == JobStatus.PROCESSING.value,
                                                   jobs.c.lease_expires_at < now)
                                .with_for_update(skip_locked=True)).mappings().all()
            for row in rows:
                job = Job.from_row(row)
                if job.cancel_requested:
                    self._move(conn, job, JobStatus.CANCELLED, now, error_code="cancelled",
                               error_message="cancelled by the user")
                elif job.attempts >= self.max_attempts:
                    self._move(conn, job, JobStatus.FAILED, now, error_code="internal_error",
                               error_message=f"the worker stopped responding on each of {job.attempts} attempts")
                else:
                    self._move(conn, job, JobStatus.PENDING, now)
                touched.append(job.id)
        return touched

    # -- zero data retention ----------------------------------------------------------------------------------
    def expired_outputs(self, ttl: float, limit: int = 100) -> list[Job]:
        """Finished jobs whose media outlived ``ttl`` seconds and is not deleted yet."""
        with self.db.read() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.media_deleted.is_(False), jobs.c.finished_at.is_not(None),
                                                   jobs.c.finished_at < self.clock() - ttl,
                                                   jobs.c.video_file.is_not(None))
                                .order_by(jobs.c.seq).limit(limit)).mappings().all()
        return [Job.from_row(r) for r in rows]

    def mark_media_deleted(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            with self.db.write() as conn:
                conn.execute(update(jobs).where(jobs.c.id.in_(ids)).values(media_deleted=True,
                                                                           updated_at=self.clock()))

    # -- internals --------------------------------------------------------------------------------------------
    def _end(self, job_id: str, token: str, to: JobStatus, **values: Any) -> bool:
        """The worker's own move of its job (lease ``token``): False, nothing written, when the lease is lost."""
        now = self.clock()
        with self.db.write() as conn:
            job = self._find(conn, job_id, lock=True)
            if not _holds_lease(job, token):
                return False
            assert job is not None
            return self._move(conn, job, to, now, **values)

    def _move(self, conn: Connection, job: Job, to: JobStatus, now: float, **values: Any) -> bool:
        """THE state move: ``job`` (as read in this transaction) → ``to``, with ``values`` written alongside.

        Checks the transition table, guards the row against a concurrent change (``_as_read``), clears the lease
        on leaving processing, refunds at most once on failed/cancelled, scrubs under zero data retention and
        records the event; all in the caller's transaction. False when another actor changed the row first.
        """
        if not job.status.can_become(to):
            raise IllegalTransition(f"job {job.id}: {job.status.value} → {to.value} is not a move of the job "
                                    f"state machine")
        values.update(status=to.value, updated_at=now)
        if job.status is JobStatus.PROCESSING:  # the lease ends with the move
            values.update(lease_token=None, lease_expires_at=None)
        if to is JobStatus.PENDING:  # back in the queue, as if never started
            values.update(worker_id=None, progress=0, stage=None, preview_file=None)
        if to.is_terminal():
            values["finished_at"] = now
            if self.zero_data_retention:
                values.update(_scrubbed(job))
        result = conn.execute(update(jobs).where(*_as_read(job)).values(**values))
        if result.rowcount != 1:
            return False
        data: dict[str, Any] = {}
        if to in REFUNDING:
            flipped = conn.execute(update(jobs).where(jobs.c.id == job.id, jobs.c.refunded.is_(False))
                                   .values(refunded=True))
            if flipped.rowcount == 1:
                conn.execute(update(api_keys).where(api_keys.c.id == job.key_id)
                             .values(credits=api_keys.c.credits + job.credit_cost))
                data["refunded"] = job.credit_cost
            data.update(error_code=values.get("error_code"), error_message=values.get("error_message"))
        self._event(conn, job, EventKind.of_move(to), to, now, data)
        return True

    def _event(self, conn: Connection, job: Job, kind: EventKind, status: JobStatus, now: float,
               data: dict[str, Any] | None = None) -> None:
        event_id = events.record(conn, job_id=job.id, key_id=job.key_id, kind=kind, status=status, now=now,
                                 data={"surface": job.surface.value, "quality": job.quality, **(data or {})})
        deliveries.enqueue(conn, event_id=event_id, job=job, kind=kind, now=now)

    def _owned(self, conn: Connection, job_id: str, key_id: str | None, *, lock: bool = False) -> Job:
        """The job, or ``NotFound`` (also when it belongs to another key than ``key_id``)."""
        job = self._find(conn, job_id, lock=lock)
        if job is None or (key_id is not None and job.key_id != key_id):
            raise NotFound(f"no job {job_id!r}")
        return job

    def _find(self, conn: Connection, job_id: str, *, lock: bool = False) -> Job | None:
        if not JobId.is_valid(job_id):  # anything else is no job's name, and never reaches SQL
            return None
        row = conn.execute(_FIND_FOR_UPDATE if lock else _FIND, {"job_id": job_id}).mappings().first()
        return Job.from_row(row) if row is not None else None

    def _get(self, conn: Connection, job_id: str) -> Job:
        job = self._find(conn, job_id)
        assert job is not None
        return job


def check_idempotency_key(value: str | None) -> None:
    """An ``Idempotency-Key`` reaches SQL: 1..255 characters of text (no NUL, no control character), else 400."""
    if value is None:
        return
    if not 0 < len(value) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} characters", field="Idempotency-Key")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidRequest(f"Idempotency-Key {problem}", field="Idempotency-Key")


def _holds_lease(job: Job | None, token: str) -> bool:
    """The lease check, in Python, on a row read in this transaction: the job runs under ``token``."""
    return job is not None and job.status is JobStatus.PROCESSING and job.lease_token == token


def _as_read(job: Job) -> tuple[Any, ...]:
    """The lease guard, in SQL: the row still has the status and lease token ``job`` was read with."""
    token = jobs.c.lease_token.is_(None) if job.lease_token is None else jobs.c.lease_token == job.lease_token
    return (jobs.c.id == job.id, jobs.c.status == job.status.value, token)


# Statements of the hot paths, built once: SQLAlchemy then skips rebuilding them and their cache keys per call.
_FIND = select(jobs).where(jobs.c.id == bindparam("job_id"), jobs.c.deleted_at.is_(None))
_FIND_FOR_UPDATE = _FIND.with_for_update()
_ahead = jobs.alias("ahead")
_GET_WITH_POSITION = select(jobs, case((jobs.c.status == JobStatus.PENDING.value, select(func.count())
                                        .select_from(_ahead)
                                        .where(queue_order.ahead_of(_ahead, jobs.c.queue_round, jobs.c.seq))
                                        .scalar_subquery()), else_=None).label("ahead")) \
    .where(jobs.c.id == bindparam("job_id"), jobs.c.deleted_at.is_(None))


def _scrubbed(job: Job) -> dict[str, Any]:
    """Zero data retention: keep the shape of the request (for billing and support), not its content: every field
    the request type marks private (prompts, and every image, video or sound it carries) is emptied."""
    data = scrubbed_request(VideoRequest, job.request_dict())
    scrubbed: dict[str, Any] = {"request": json.dumps(data), "prompt": None, "original_prompt": None,
                                "manifest": None}  # it holds the prompts as used
    if job.shots:  # shot times stay, their prompts go
        try:
            scrubbed["shots"] = json.dumps([{k: v for k, v in s.items() if k != "prompt"}
                                            for s in json.loads(job.shots)])
        except (ValueError, AttributeError):
            scrubbed["shots"] = None
    return scrubbed
