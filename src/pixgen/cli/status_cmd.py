"""``pixgen status``: queue depth, running jobs and live workers, straight from the database."""

from __future__ import annotations

import argparse
import time

from pixgen.settings import DB_FLAGS, add_arguments, settings_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="show queue depth, running jobs and live workers")
    add_arguments(parser, (*DB_FLAGS, "lease_seconds"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pixgen.engine.warmup import WarmupState
    from pixgen.jobs.db import connect, migrate
    from pixgen.jobs.deliveries import counts
    from pixgen.jobs.fleet import live_after, queue_stats

    settings = settings_from_args(args, secret=False)
    db = connect(settings.database_url, pool_size=1)
    migrate(db)
    stats = queue_stats(db, live_within=live_after(settings.lease_seconds))  # live: beat within 3 beat periods
    now = time.time()
    print(f"queue: {stats.pending} pending, {stats.processing} running")
    for job_id, worker_id, progress, stage in stats.running:
        print(f"  {job_id}  {progress:>3}%  {stage or '-':<10} on {worker_id}")
    print(f"workers: {len(stats.workers)} live")
    for w in stats.workers:
        doing = w.job_id or "idle"
        print(f"  {w.id}  {w.hostname} pid {w.pid}  model {w.model}  beat {now - w.heartbeat_at:.1f}s ago  {doing}")
        warmup = WarmupState.from_json(w.warmup)
        if warmup is not None:
            print(f"    {warmup.describe()}")
    hooks = counts(db)
    print(f"webhooks: {hooks['pending']} pending, {hooks['delivered']} delivered, {hooks['failed']} given up "
          f"(pixgen webhooks list)")
    return 0
