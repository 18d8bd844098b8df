"""API keys: created with credits, stored as sha256 hashes, checked in constant time; each with its own webhook
signing secret (``jobs.webhooks``), rotatable with a grace period during which the previous one signs too."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import RowMapping, select, update

from pixgen.errors import NotFound, Unauthorized
from pixgen.jobs.db import Database
from pixgen.jobs.schema import api_keys
from pixgen.jobs.webhooks import new_secret

KEY_PREFIX = "pxg_"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    credits: int
    disabled: bool
    created_at: float


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_key(db: Database, *, credits: int = 0, name: str = "") -> tuple[ApiKey, str]:
    """A new key with ``credits``; returns the record and the secret (shown once, never stored)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(id="key_" + secrets.token_hex(8), name=name, prefix=secret[:10], credits=int(credits),
                    disabled=False, created_at=time.time())
    with db.write() as conn:
        conn.execute(api_keys.insert().values(
            id=record.id, name=record.name, key_hash=hash_key(secret), prefix=record.prefix,
            credits=record.credits, disabled=False, created_at=record.created_at, webhook_secret=new_secret()))
    return record, secret


def webhook_secret(db: Database, key_id: str) -> str:
    """The key's current webhook signing secret (``whsec_…``)."""
    with db.read() as conn:
        secret: str | None = conn.execute(select(api_keys.c.webhook_secret).where(api_keys.c.id == key_id)).scalar()
    if secret is None:
        raise NotFound(f"no API key {key_id!r}")
    return secret


def signing_secrets(db: Database, key_id: str, now: float) -> list[str]:
    """The secrets a webhook of this key is signed with: the current one, and the previous one while its grace
    period after a rotation lasts."""
    with db.read() as conn:
        row = conn.execute(select(api_keys.c.webhook_secret, api_keys.c.webhook_secret_previous,
                                  api_keys.c.webhook_secret_previous_until)
                           .where(api_keys.c.id == key_id)).first()
    if row is None or row.webhook_secret is None:
        raise NotFound(f"no API key {key_id!r}")
    previous = row.webhook_secret_previous if (row.webhook_secret_previous_until or 0) > now else None
    return [row.webhook_secret] + ([previous] if previous else [])


def rotate_webhook_secret(db: Database, key_id: str, *, grace: float = 86400.0) -> str:
    """A new signing secret for the key; the old one keeps signing (beside the new) for ``grace`` seconds."""
    secret = new_secret()
    with db.write() as conn:
        current = conn.execute(select(api_keys.c.webhook_secret).where(api_keys.c.id == key_id)
                               .with_for_update()).first()
        if current is None:
            raise NotFound(f"no API key {key_id!r}")
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(
            webhook_secret=secret, webhook_secret_previous=current.webhook_secret if grace > 0 else None,
            webhook_secret_previous_until=time.time() + grace if grace > 0 else None))
    return secret


def authenticate(db: Database, secret: str | None) -> ApiKey:
    """The key behind a bearer secret, or ``Unauthorized``."""
    if not secret:
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    digest = hash_key(secret)
    with db.read() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.key_hash == digest)).mappings().first()
    # The lookup is by hash (its timing says nothing about the secret); compare in constant time all the same.
    if row is None or not hmac.compare_digest(row["key_hash"], digest) or row["disabled"]:
        raise Unauthorized("invalid API key")
    return _to_key(row)


def add_credits(db: Database, key_id: str, amount: int) -> int:
    """Add (or, negative, take) credits; returns the new balance."""
    with db.write() as conn:
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(credits=api_keys.c.credits + amount))
        balance = conn.execute(select(api_keys.c.credits).where(api_keys.c.id == key_id)).scalar()
    if balance is None:
        raise NotFound(f"no API key {key_id!r}")
    return int(balance)


def list_keys(db: Database) -> list[ApiKey]:
    with db.read() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings().all()
    return [_to_key(r) for r in rows]


def _to_key(row: RowMapping) -> ApiKey:
    return ApiKey(id=row["id"], name=row["name"], prefix=row["prefix"], credits=int(row["credits"]),
                  disabled=bool(row["disabled"]), created_at=row["created_at"])
