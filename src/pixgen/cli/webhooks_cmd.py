"""``pixgen webhooks list|retry|new-secret``: webhook deliveries (pending, delivered, given up) and secrets."""

from __future__ import annotations

import argparse
import time

from pixgen.cli.keys_cmd import open_database
from pixgen.settings import DB_FLAGS, add_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("webhooks", help="list webhook deliveries, retry given-up ones, make a secret")
    sub = parser.add_subparsers(dest="webhooks_command", required=True)
    listing = sub.add_parser("list", help="the newest deliveries, newest first")
    add_arguments(listing, DB_FLAGS)
    listing.add_argument("--state", choices=("pending", "delivered", "failed"),
                         help="only these (failed = given up)")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=run_list)
    retry = sub.add_parser("retry", help="send a given-up delivery again (same webhook-id)")
    add_arguments(retry, DB_FLAGS)
    retry.add_argument("delivery_id", help="its id (evt_…), from `pixgen webhooks list --state failed`")
    retry.set_defaults(func=run_retry)
    secret = sub.add_parser("new-secret", help="print a new whsec_… secret for --webhook-secret")
    secret.set_defaults(func=run_new_secret)


def run_list(args: argparse.Namespace) -> int:
    from pixgen.jobs.deliveries import recent

    found = recent(open_database(args), state=args.state, limit=args.limit)
    print(f"{len(found)} deliver{'y' if len(found) == 1 else 'ies'}")
    for d in found:
        last = f"last {d.last_status or '-'} {d.last_error or ''}".rstrip()
        print(f"  {d.id}  {d.state:<9} {d.event_type:<16} {d.job_id}  {d.attempts} attempt(s)  {last}  {d.url}")
    return 0


def run_retry(args: argparse.Namespace) -> int:
    from pixgen.jobs.deliveries import retry

    retry(open_database(args), args.delivery_id, time.time())
    print(f"{args.delivery_id}: pending again")
    return 0


def run_new_secret(args: argparse.Namespace) -> int:
    from pixgen.jobs.webhooks import new_secret

    print(new_secret())
    return 0
