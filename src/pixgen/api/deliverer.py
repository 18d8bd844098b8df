"""The webhook deliverer: a thread in every API node that works off ``webhook_deliveries`` (the outbox's webhooks).

Loop: a cheap read (anything due?), then claim a batch under a lease (``jobs.deliveries.claim``: SKIP LOCKED, so
nodes share the work and never send one row at once), then POST each through the SSRF guard
(``media.fetch.post_checked``, pinned to the checked address, ``--webhook-timeout``), signed per Standard Webhooks
with the key's secret(s) or the server's ``--webhook-secret`` (``jobs.webhooks``). A 2xx is delivered; anything
else is retried with exponential back-off under the same ``webhook-id`` and the same body, until given up.

Bodies (built at the first attempt, then fixed):
- job API: ``{"id", "type": "job.<kind>", "timestamp", "created_at", "data": <the job as GET /api/v1/jobs/{id}
  shows it, with status and progress as they were at the event>}``;
- OpenAI surface: OpenAI's own event, ``{"id", "object": "event", "created_at", "type": "video.completed",
  "data": {"id": <video id>}}``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx

from pixgen.api import jobs_api
from pixgen.api.context import AppContext
from pixgen.api.media import media_url
from pixgen.errors import NotFound, PixgenError
from pixgen.jobs import deliveries, events, keys
from pixgen.jobs.deliveries import Claimed
from pixgen.jobs.webhooks import KEY_SIGNER, SERVER_SIGNER, RetryPolicy, signed_headers
from pixgen.media.fetch import FetchPolicy, post_checked

log = logging.getLogger("pixgen.webhooks")

POLL = 0.5  # seconds between looks for due deliveries while idle
THREADS = 4  # deliveries sent at once by one node
LEASE_MARGIN = 30.0  # seconds a claim outlives the delivery's timeout


class Deliverer:
    def __init__(self, ctx: AppContext, *, poll: float = POLL, threads: int = THREADS,
                 clock: Callable[[], float] = time.time) -> None:
        self.ctx, self.poll, self.clock = ctx, poll, clock
        settings = ctx.settings
        self.retry = RetryPolicy(base=settings.webhook_retry_base, cap=settings.webhook_retry_max,
                                 give_up_after=settings.webhook_give_up_after)
        self.guard = FetchPolicy.from_settings(settings.fetch_allow_hosts, settings.webhook_timeout)
        # The operator's own receiver may sit on a private network: its host is allowed (metadata never is).
        server_host = httpx.URL(settings.webhook_url).host if settings.webhook_url else ""
        self.server_guard = FetchPolicy.from_settings([*self.guard.allow_hosts, server_host],
                                                      settings.webhook_timeout)
        # A node without the server's secret leaves the OpenAI surface's webhooks to the nodes that have it.
        self.signers = (KEY_SIGNER, SERVER_SIGNER) if settings.webhook_secret else (KEY_SIGNER,)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pixgen-webhook")
        self._threads = threads
        self._thread = threading.Thread(target=self._loop, name="pixgen-deliverer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.guard.timeout + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
            except Exception:  # a database hiccup must not end delivery for the node's lifetime
                log.exception("webhook deliverer: pass failed")
                sent = 0
            if not sent:
                self._stop.wait(self.poll)

    def run_once(self) -> int:
        """Claim what is due and send it; returns how many attempts were made."""
        db, now = self.ctx.db, self.clock()
        if not deliveries.due(db, now, self.signers):
            return 0
        claimed = deliveries.claim(db, now, lease=self.guard.timeout + LEASE_MARGIN, limit=self._threads * 2,
                                   signers=self.signers)
        list(self._pool.map(self.deliver, claimed))
        return len(claimed)

    def deliver(self, claimed: Claimed) -> str:
        """One attempt of one delivery; returns its new state."""
        d, db = claimed.delivery, self.ctx.db
        try:
            body = d.body or deliveries.set_body(db, claimed, self.body(d))
            timestamp = int(self.clock())
            headers = signed_headers(self._secrets(d), d.id, timestamp, body.encode())
            guard = self.server_guard if d.signer == SERVER_SIGNER else self.guard
            response = post_checked(d.url, body.encode(), headers, guard)
        except (httpx.HTTPError, PixgenError) as exc:
            error = exc.message if isinstance(exc, PixgenError) else f"{type(exc).__name__}: {exc}"
            state = deliveries.finish(db, claimed, self.clock(), self.retry, ok=False, error=error)
        else:
            ok = 200 <= response.status_code < 300
            state = deliveries.finish(db, claimed, self.clock(), self.retry, ok=ok, status=response.status_code)
        if state == deliveries.FAILED:
            log.warning("webhook %s (%s of %s) given up after %d attempts", d.id, d.event_type, d.job_id,
                        d.attempts)
        return state

    def _secrets(self, d: deliveries.Delivery) -> list[str]:
        if d.signer == SERVER_SIGNER:
            return [self.ctx.settings.webhook_secret]
        return keys.signing_secrets(self.ctx.db, d.key_id, self.clock())

    # -- bodies -----------------------------------------------------------------------------------------------
    def body(self, d: deliveries.Delivery) -> str:
        event = events.get(self.ctx.db, d.id)
        created = event.created_at if event is not None else d.created_at
        if d.signer == SERVER_SIGNER:
            payload: dict[str, Any] = {"id": d.id, "object": "event", "created_at": int(created),
                                       "type": d.event_type, "data": {"id": d.job_id}}
        else:
            payload = {"id": d.id, "type": d.event_type,
                       "timestamp": datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z"),
                       "created_at": int(created), "data": self._job_data(d, event)}
        return json.dumps(payload, separators=(",", ":"))

    def _job_data(self, d: deliveries.Delivery, event: events.Event | None) -> dict[str, Any]:
        """The job as the job API shows it, with its status and progress as they were at the event."""
        try:
            job = self.ctx.store.get(d.job_id)
        except NotFound:  # deleted since
            return {"jobId": d.job_id, "status": event.status.value if event else None}
        settings = self.ctx.settings
        base = (settings.public_base_url or f"http://{settings.host}:{settings.port}").rstrip("/")
        # no request here (hence the ignore): with ``base`` given, media_url reads none
        video, thumb = (media_url(self.ctx, None, job, variant, base=base)  # type: ignore[arg-type]
                        for variant in ("video.mp4", "thumbnail.jpg"))
        data = jobs_api.job_json(job, video_url=video, thumbnail_url=thumb,
                                 status_url=f"{base}{jobs_api.PREFIX}/jobs/{job.id}")
        if event is not None and not event.status.is_terminal():
            data.update(status=event.status.value, progress=event.data.get("progress", 0),
                        stage=event.data.get("stage"), output=None)
            data.pop("queuePosition", None)
        return data
