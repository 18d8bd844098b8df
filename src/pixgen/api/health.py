"""``/health`` (the process answers) and ``/health/ready`` (the database answers and a worker is live)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from pixgen.api.context import Ctx
from pixgen.jobs import fleet

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    workers: int | None = None
    reason: str | None = None




@router.get("/health", response_model=Health)
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "the database does not answer or no worker is live"}})
def ready(ctx: Ctx) -> JSONResponse:
    try:
        with ctx.db.read() as conn:
            conn.execute(text("SELECT 1"))
        live = fleet.live_workers(ctx.db, within=fleet.live_after(ctx.settings.lease_seconds))
    except Exception as exc:  # noqa: BLE001 - readiness reports, it does not raise
        return JSONResponse({"status": "unavailable", "reason": f"database: {type(exc).__name__}"}, status_code=503)
    if not live:
        return JSONResponse({"status": "unavailable", "reason": "no live worker", "workers": 0}, status_code=503)
    return JSONResponse({"status": "ready", "workers": len(live)})
