"""What every route needs, built once per app by ``create_app`` and reached through FastAPI dependencies.

Routes take ``ctx: Ctx`` (the ``AppContext``) and ``key: AuthKey`` (the caller's API key, 401 otherwise).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from pixgen.engine import backend
from pixgen.engine.base import Capabilities
from pixgen.errors import Unauthorized
from pixgen.jobs.db import Database
from pixgen.jobs.keys import ApiKey, authenticate, hash_key
from pixgen.jobs.store import JobStore
from pixgen.settings import Settings
from pixgen.storage import MediaStore, media_store_for


class KeyCache:
    """Keys authenticated in the last ``ttl`` seconds, so a status poll costs one database read instead of two.

    A key disabled in the database is refused at most ``ttl`` seconds later. The cached record's ``credits`` are
    not used for anything (balances are always read from the store).
    """

    def __init__(self, db: Database, ttl: float = 2.0, max_size: int = 10_000) -> None:
        self.db, self.ttl, self.max_size = db, ttl, max_size
        self._hits: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()

    def cached(self, secret: str | None) -> ApiKey | None:
        """The key when it was authenticated less than ``ttl`` seconds ago (no database read), else None.

        Looked up by the secret's sha256, so the lookup's timing says nothing about the secret.
        """
        if not secret:
            return None
        hit = self._hits.get(hash_key(secret))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def authenticate(self, secret: str | None) -> ApiKey:
        if not secret:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        key = self.cached(secret)
        if key is not None:
            return key
        digest = hash_key(secret)
        now = time.monotonic()
        key = authenticate(self.db, secret)
        with self._lock:
            if len(self._hits) >= self.max_size:
                self._hits = {d: h for d, h in self._hits.items() if h[0] > now}
                if len(self._hits) >= self.max_size:
                    self._hits.clear()
            self._hits[digest] = (now + self.ttl, key)
        return key


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    db: Database
    store: JobStore
    keys: KeyCache = field(init=False)
    capabilities: Capabilities = field(init=False)  # of the configured backend and model folder: no torch
    media: MediaStore = field(init=False)  # where finished videos are kept (shared with the workers)
    # Requests whose media this process decodes at once (``service.prepare``); the rest wait without a thread.
    decodes: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", KeyCache(self.db))
        object.__setattr__(self, "decodes", asyncio.Semaphore(self.settings.decode_concurrency))
        object.__setattr__(self, "media", media_store_for(self.settings))
        object.__setattr__(self, "capabilities", backend(self.settings.engine).capabilities_for(
            self.settings.model, self.settings.cache_dir))


# The dependencies are ``async def``: FastAPI runs a plain ``def`` dependency on the thread pool, one thread hop per
# dependency per request. Only a key missing from the cache goes to the database, on the thread pool.
async def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def bearer_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return secret.strip() or None


async def require_key(request: Request, ctx: Annotated[AppContext, Depends(get_ctx)]) -> ApiKey:
    """The auth dependency: ``Authorization: Bearer <key>`` → the key record, or 401 ``unauthorized``."""
    secret = bearer_secret(request)
    key = ctx.keys.cached(secret)
    if key is None:
        key = await run_in_threadpool(ctx.keys.authenticate, secret)
    request.state.api_key = key
    return key


Ctx = Annotated[AppContext, Depends(get_ctx)]
AuthKey = Annotated[ApiKey, Depends(require_key)]
