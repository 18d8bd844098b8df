"""Retention: a finished job, its events and its webhook deliveries are deleted ``--keep-jobs`` after it ended,
with its files in the media store (default 30 days; 0 keeps everything).

``prune`` is the one place rows are deleted for age. It works in batches, each one transaction: the finished jobs
whose end is older than the cut (and none of whose webhooks still waits to be sent) are locked (``SKIP LOCKED``:
two workers sweeping at once take different jobs), what the metrics counted from them — jobs by outcome, engine
stage timings, webhook deliveries — is added to the running totals (``jobs.totals``), and then they, their events
and their deliveries are deleted; their files go once that is committed. So ``/metrics`` counters never go down.
Submit attempts past the rate window (``JobStore.admit``) go too. Workers run it from their housekeeping thread
(``Sweep``), at start and then every ``EVERY`` seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import delete, exists, select

from pixgen.jobs import deliveries, stats, totals
from pixgen.jobs.db import Database
from pixgen.jobs.schema import job_events, jobs, submit_attempts, webhook_deliveries
from pixgen.jobs.states import TERMINAL
from pixgen.jobs.store import RATE_WINDOW
from pixgen.storage import MediaStore

log = logging.getLogger("pixgen.retention")

BATCH = 200  # jobs per transaction
EVERY = 600.0  # seconds between a worker's sweeps


@dataclass(frozen=True)
class Pruned:
    jobs: int
    events: int
    deliveries: int
    files: int


def prune(db: Database, media: MediaStore | None, *, keep: float, now: float) -> Pruned:
    """Delete what ended more than ``keep`` seconds before ``now`` (see the module docstring); ``media``: where the
    jobs' files are (None: leave files alone)."""
    counted = {"jobs": 0, "events": 0, "deliveries": 0, "files": 0}
    while True:
        with db.write() as conn:
            waiting = exists().where(webhook_deliveries.c.job_id == jobs.c.id,
                                     webhook_deliveries.c.state == deliveries.PENDING)
            rows = conn.execute(select(jobs.c.id, jobs.c.video_file, jobs.c.thumb_file, jobs.c.preview_file,
                                       jobs.c.media_deleted)
                                .where(jobs.c.finished_at < now - keep,
                                       jobs.c.status.in_([s.value for s in TERMINAL]), ~waiting)
                                .order_by(jobs.c.finished_at).limit(BATCH)
                                .with_for_update(skip_locked=True)).all()
            if not rows:
                break
            ids = [row.id for row in rows]
            totals.add(conn, totals.JOBS, stats.job_tally(conn, jobs.c.id.in_(ids)))
            totals.add(conn, totals.STAGES, stats.stage_tally(conn, db.is_postgres, jobs.c.id.in_(ids)))
            totals.add(conn, totals.WEBHOOKS, deliveries.tally(conn, webhook_deliveries.c.job_id.in_(ids)))
            counted["deliveries"] += conn.execute(delete(webhook_deliveries)
                                                  .where(webhook_deliveries.c.job_id.in_(ids))).rowcount
            counted["events"] += conn.execute(delete(job_events).where(job_events.c.job_id.in_(ids))).rowcount
            counted["jobs"] += conn.execute(delete(jobs).where(jobs.c.id.in_(ids))).rowcount
        if media is not None:
            for row in rows:
                for name in (row.video_file, row.thumb_file, row.preview_file):
                    if name and not row.media_deleted:
                        media.delete(name)
                        counted["files"] += 1
        if len(rows) < BATCH:
            break
    with db.write() as conn:  # submits counted toward a rate long past: a key's next submit would clear its own
        conn.execute(delete(submit_attempts).where(submit_attempts.c.at < now - RATE_WINDOW))
    return Pruned(**counted)


class Sweep:
    """``prune`` at most every ``every`` seconds (the first call runs it): what a worker's housekeeping calls."""

    def __init__(self, db: Database, media: MediaStore | None, keep: float, every: float = EVERY) -> None:
        self.db, self.media, self.keep, self.every = db, media, keep, every
        self._next = 0.0

    def maybe_run(self) -> Pruned | None:
        if not self.keep or time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self.every
        done = prune(self.db, self.media, keep=self.keep, now=time.time())
        if done.jobs:
            log.info("retention: deleted %d job(s) that ended over %g s ago, %d event(s), %d webhook delivery(ies) "
                     "and %d file(s)", done.jobs, self.keep, done.events, done.deliveries, done.files)
        return done
