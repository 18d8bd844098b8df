"""``create_app(settings)``: the one FastAPI app serving the job API, the Cloudflare and OpenAI forms, media,
health and the web page. No globals: everything a route needs hangs off ``app.state.ctx``.

This module and everything it imports stay free of torch: the model runs in worker processes only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from fastapi import FastAPI

from pixgen import __version__, web
from pixgen.api import bodies, cloudflare, health, jobs_api, media, metrics, openai_videos, openapi
from pixgen.api.body import BodyLimit
from pixgen.api.context import AppContext
from pixgen.api.deliverer import Deliverer
from pixgen.api.errors import ErrorRegistry, install_error_handlers, job_api_error
from pixgen.api.surface import Surface
from pixgen.host_memory import return_large_blocks_at_free
from pixgen.jobs.db import connect, migrate
from pixgen.jobs.store import JobStore
from pixgen.settings import Settings

# Every surface, each built in its own module: its router and the error shape under its URL prefix.
SURFACES = (jobs_api.SURFACE, cloudflare.SURFACE, openai_videos.SURFACE, Surface(media.router),
            Surface(health.router), Surface(metrics.router), Surface(web.router))


def create_app(settings: Settings, *, surfaces: Sequence[Surface] = ()) -> FastAPI:
    settings = settings.with_secret()
    return_large_blocks_at_free()  # memory decoded at submit goes back to the system after a burst
    db = connect(settings.database_url)
    migrate(db)
    ctx = AppContext(settings=settings, db=db, store=JobStore.from_settings(db, settings))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        deliverer = Deliverer(ctx)  # sends the outbox's webhooks, sharing the work with the other API nodes
        deliverer.start()
        try:
            yield
        finally:
            deliverer.stop()
            db.dispose()

    app = FastAPI(title="pixgen", version=__version__, lifespan=lifespan, redoc_url=None,
                  description="Self-hosted text/image-to-video: PixelDojo job API, Cloudflare Workers AI form, "
                              "OpenAI Videos form.")
    app.state.ctx = ctx
    registry = ErrorRegistry(default=job_api_error)
    for surface in (*SURFACES, *surfaces):
        app.include_router(surface.router)
        if surface.prefix and surface.error_response:
            registry.register(surface.prefix, surface.error_response)
    install_error_handlers(app, registry)
    every = (*SURFACES, *surfaces)
    openapi.install(app, ctx.capabilities, bodies=bodies.BODIES, forms=bodies.FORMS,
                    form_files=openai_videos.FILE_FIELDS, narrowers=[s.narrow for s in every if s.narrow])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, respond=registry.respond)
    # outermost: times every answer
    metrics.install(app, db, lease_seconds=settings.lease_seconds, webhooks=metrics.webhook_tally)
    return app
