"""``pixgen keys create|list|credits|webhook-secret|rotate-webhook-secret``: API keys, their credits and their
webhook signing secrets."""

from __future__ import annotations

import argparse

from pixgen.settings import DB_FLAGS, add_arguments, settings_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="create and list API keys")
    sub = parser.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="create a key; prints it alone on the last line")
    add_arguments(create, DB_FLAGS)
    create.add_argument("--credits", type=int, default=100, help="starting credits (default 100)")
    create.add_argument("--name", default="", help="a label for the key")
    create.set_defaults(func=run_create)
    listing = sub.add_parser("list", help="list keys with their credits")
    add_arguments(listing, DB_FLAGS)
    listing.set_defaults(func=run_list)
    credit = sub.add_parser("credits", help="add (or with a negative number, take) credits")
    add_arguments(credit, DB_FLAGS)
    credit.add_argument("key_id", help="the key's id (key_…), from `pixgen keys list`")
    credit.add_argument("amount", type=int)
    credit.set_defaults(func=run_credits)
    show = sub.add_parser("webhook-secret", help="print the key's webhook signing secret (whsec_…)")
    add_arguments(show, DB_FLAGS)
    show.add_argument("key_id", help="the key's id (key_…)")
    show.set_defaults(func=run_webhook_secret)
    rotate = sub.add_parser("rotate-webhook-secret",
                            help="give the key a new webhook signing secret; prints webhook_secret=whsec_… last")
    add_arguments(rotate, DB_FLAGS)
    rotate.add_argument("key_id", help="the key's id (key_…)")
    rotate.add_argument("--grace", type=float, default=86400.0,
                        help="seconds during which webhooks are signed with both the new and the old secret "
                             "(default 86400; 0 = the old one stops at once)")
    rotate.set_defaults(func=run_rotate)


def open_database(args: argparse.Namespace):
    """The database the flags name, migrated (for the commands that work on it directly)."""
    from pixgen.jobs.db import connect, migrate

    db = connect(settings_from_args(args, secret=False).database_url, pool_size=1)
    migrate(db)
    return db


def run_create(args: argparse.Namespace) -> int:
    from pixgen.jobs.keys import create_key, webhook_secret

    db = open_database(args)
    record, secret = create_key(db, credits=args.credits, name=args.name)
    print(f"created {record.id} ({record.name or 'no name'}) with {record.credits} credits")
    print(f"webhook_secret={webhook_secret(db, record.id)}")
    print("the key is shown once, on the next line:")
    print(secret)  # last: scripts take it with `tail -1`
    return 0


def run_list(args: argparse.Namespace) -> int:
    from pixgen.jobs.keys import list_keys

    for key in list_keys(open_database(args)):
        state = " disabled" if key.disabled else ""
        print(f"{key.id}  {key.prefix}…  {key.credits:>8} credits  {key.name}{state}")
    return 0


def run_credits(args: argparse.Namespace) -> int:
    from pixgen.jobs.keys import add_credits

    print(f"{args.key_id}: {add_credits(open_database(args), args.key_id, args.amount)} credits")
    return 0


def run_webhook_secret(args: argparse.Namespace) -> int:
    from pixgen.jobs.keys import webhook_secret

    print(webhook_secret(open_database(args), args.key_id))
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    from pixgen.jobs.keys import rotate_webhook_secret

    secret = rotate_webhook_secret(open_database(args), args.key_id, grace=args.grace)
    print(f"{args.key_id}: new webhook secret; the old one also signs for {args.grace:g} more seconds")
    print(f"webhook_secret={secret}")
    return 0
