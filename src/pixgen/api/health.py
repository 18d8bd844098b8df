"""``/health`` (the process answers) and ``/health/ready`` (the database answers, enough workers are live, and the
process is not shutting down).

Shutting down (``pixgen serve`` on SIGTERM, ``ShutdownState``): readiness answers 503 at once while every other
route is still served, so a load balancer or Kubernetes takes the node out of rotation before it stops accepting.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from pixgen.api.context import Ctx
from pixgen.api.jobs_schemas import JobApiError
from pixgen.api.openapi import errors
from pixgen.jobs import fleet

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    workers: int | None = None
    reason: str | None = None


class ShutdownState:
    """Whether the app is shutting down, and what its readiness probes have seen (read by ``pixgen serve`` to
    decide when it may stop accepting)."""

    def __init__(self) -> None:
        self.started = threading.Event()  # shutting down: readiness answers 503
        self.probed = threading.Event()  # a readiness probe came in (someone routes traffic by it)
        self.seen = threading.Event()  # a probe has been answered 503 since the shutdown began

    def begin(self) -> None:
        self.started.set()


def shutdown_state(app: FastAPI) -> ShutdownState:
    """The app's one ``ShutdownState`` (made on first use)."""
    state = getattr(app.state, "shutdown", None)
    if state is None:
        state = app.state.shutdown = ShutdownState()
    return state


@router.get("/health", response_model=Health)
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready", response_model=Readiness,
            responses={**errors(JobApiError, 400),
                       503: {"model": Readiness, "description": "shutting down, the database does not answer, or "
                                                                "no worker is live (unless workers=0)"}})
def ready(request: Request, ctx: Ctx,
          workers: Annotated[int, Query(ge=0, le=1, description=(
              "1 (default): ready only while a worker is live; 0: the API alone (a fleet whose workers scale to "
              "zero still takes jobs into its queue)"))] = 1) -> JSONResponse:
    shutdown = shutdown_state(request.app)
    shutdown.probed.set()
    if shutdown.started.is_set():
        shutdown.seen.set()
        return JSONResponse({"status": "unavailable", "reason": "shutting down"}, status_code=503)
    try:
        with ctx.db.read() as conn:
            conn.execute(text("SELECT 1"))
        live = fleet.live_workers(ctx.db, within=fleet.live_after(ctx.settings.lease_seconds))
    except Exception as exc:  # noqa: BLE001 - readiness reports, it does not raise
        return JSONResponse({"status": "unavailable", "reason": f"database: {type(exc).__name__}"}, status_code=503)
    if len(live) < workers:
        return JSONResponse({"status": "unavailable", "reason": "no live worker", "workers": 0}, status_code=503)
    return JSONResponse({"status": "ready", "workers": len(live)})
