"""``GET /metrics``: Prometheus text format through ``prometheus_client``, open unless ``--metrics-token`` is set.

Two kinds of numbers, from two places:
- **fleet-wide**, read from the database at each scrape (``FleetCollector`` over ``jobs.stats`` and
  ``jobs.fleet``): jobs by outcome, surface and quality; the engine's seconds per stage; queue depth, keys waiting
  and the oldest pending job's age; live and busy workers; webhook deliveries once a source is connected.
  Workers serve no HTTP; what they do reaches these numbers through the rows they write. Every API node reports
  the same values: aggregate them across nodes with ``max``, or scrape one node, never ``sum``.
- **this process's own**: HTTP latency by method, route template and status (``HttpMetrics``), and the
  process's CPU and memory. These add up across API nodes.
Each app has its own registry (``app.state.metrics``): nothing global, several apps in one process do not mix.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixgen.api.context import Ctx, bearer_secret
from pixgen.errors import Unauthorized
from pixgen.jobs import deliveries, fleet, stats
from pixgen.jobs.db import Database
from pixgen.jobs.states import TERMINAL

log = logging.getLogger("pixgen.metrics")

router = APIRouter(tags=["metrics"], include_in_schema=False)

# Seconds; a Cloudflare-form call waits for its video and an SSE stream lasts as long as its job.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
UNMATCHED = "unmatched"  # the route label of requests no route matched (scans would otherwise grow the labels)


@dataclass(frozen=True)
class WebhookTally:
    """Webhook deliveries so far, fleet-wide: what a webhook store reports to the metrics."""

    delivered: int  # deliveries a receiver accepted
    given_up: int  # deliveries abandoned after the last retry
    pending: int  # waiting for their first or next attempt
    failed_attempts: int  # attempts that got no 2xx answer, retries included


WebhookSource = Callable[[Database], WebhookTally]


def webhook_tally(db: Database) -> WebhookTally:
    """The tally of the webhook deliveries table (``jobs.deliveries``)."""
    by_state = deliveries.counts(db)
    return WebhookTally(delivered=by_state[deliveries.DELIVERED], given_up=by_state[deliveries.FAILED],
                        pending=by_state[deliveries.PENDING], failed_attempts=deliveries.failed_attempts(db))


@router.get("/metrics")
def metrics(request: Request, ctx: Ctx) -> Response:
    token = ctx.settings.metrics_token
    if token and not secrets.compare_digest((bearer_secret(request) or "").encode(), token.encode()):
        raise Unauthorized("GET /metrics needs Authorization: Bearer <the server's --metrics-token>")
    encode, content_type = choose_encoder(request.headers.get("accept", ""))  # text 0.0.4, or OpenMetrics if asked
    return Response(encode(request.app.state.metrics), media_type=content_type)


def install(app: FastAPI, db: Database, *, lease_seconds: float, webhooks: WebhookSource | None = None) -> None:
    """Give ``app`` its registry (fleet collector, process collector, HTTP latency) and the latency middleware.

    Call it after the other middleware, so that it is the outermost and times (and labels) their answers too.
    ``webhooks``: the webhook store's tally function, when the app has one.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(FleetCollector(db, lease_seconds=lease_seconds, webhooks=webhooks))
    latency = Histogram("pixgen_http_request_duration_seconds", "HTTP requests answered by this API node: seconds "
                        "from the request to the end of the response", ["method", "route", "status"],
                        buckets=HTTP_BUCKETS, registry=registry)
    app.state.metrics = registry
    app.add_middleware(HttpMetrics, latency=latency)


class FleetCollector:
    """The fleet-wide metrics, computed from the database at each scrape."""

    def __init__(self, db: Database, *, lease_seconds: float, webhooks: WebhookSource | None = None) -> None:
        self.db, self.lease_seconds, self.webhooks = db, lease_seconds, webhooks

    def collect(self) -> Iterator[Metric]:
        try:
            families = [*self._jobs(), self._stages(), *self._queue(), *self._workers(), *self._webhooks()]
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer: %s", exc)
            families = []
        yield GaugeMetricFamily("pixgen_database_up", "1 when the fleet metrics could be read from the database",
                                value=1 if families else 0)
        yield from families

    def _jobs(self) -> Iterator[Metric]:
        outcomes = CounterMetricFamily("pixgen_jobs", "Jobs that ended, by outcome (completed, failed, cancelled), "
                                       "surface and quality", labels=["outcome", "surface", "quality"])
        submitted = CounterMetricFamily("pixgen_jobs_submitted", "Jobs accepted (queued and charged), by surface "
                                        "and quality", labels=["surface", "quality"])
        per_surface: dict[tuple[str, str], int] = {}
        for row in stats.job_counts(self.db):
            per_surface[row.surface, row.quality] = per_surface.get((row.surface, row.quality), 0) + row.count
            if row.status in {s.value for s in TERMINAL}:
                outcomes.add_metric([row.status, row.surface, row.quality], row.count)
        for (surface, quality), count in sorted(per_surface.items()):
            submitted.add_metric([surface, quality], count)
        yield from (outcomes, submitted)

    def _stages(self) -> Metric:
        family = HistogramMetricFamily("pixgen_job_stage_seconds", "Seconds the engine spent in each stage of a "
                                       "completed job (text, denoise, upsample, refine, audio, decode, encode...), "
                                       "by quality", labels=["stage", "quality"])
        for hist in stats.stage_histograms(self.db):
            buckets = [(_le(le), n) for le, n in zip(stats.STAGE_BUCKETS, hist.cumulative, strict=True)]
            family.add_metric([hist.stage, hist.quality], [*buckets, ("+Inf", hist.count)], hist.total_seconds)
        return family

    def _queue(self) -> Iterator[Metric]:
        now = stats.queue_now(self.db, time.time())
        yield GaugeMetricFamily("pixgen_queue_pending_jobs", "Jobs waiting for a worker", value=now.pending)
        yield GaugeMetricFamily("pixgen_queue_processing_jobs", "Jobs a worker is running", value=now.processing)
        yield GaugeMetricFamily("pixgen_queue_keys_waiting", "API keys with at least one job waiting",
                                value=now.keys_waiting)
        yield GaugeMetricFamily("pixgen_queue_oldest_pending_age_seconds", "How long the longest-waiting pending "
                                "job has waited (0 when none waits)", value=now.oldest_pending_age)

    def _workers(self) -> Iterator[Metric]:
        live = fleet.live_workers(self.db, within=fleet.live_after(self.lease_seconds))
        yield GaugeMetricFamily("pixgen_workers_live", "Workers whose heartbeat is recent", value=len(live))
        yield GaugeMetricFamily("pixgen_workers_busy", "Live workers running a job",
                                value=sum(1 for w in live if w.job_id))

    def _webhooks(self) -> Iterator[Metric]:
        if self.webhooks is None:
            return
        tally = self.webhooks(self.db)
        deliveries = CounterMetricFamily("pixgen_webhook_deliveries", "Webhook deliveries that ended: delivered, "
                                         "or given up after the last retry", labels=["result"])
        deliveries.add_metric(["delivered"], tally.delivered)
        deliveries.add_metric(["given_up"], tally.given_up)
        yield deliveries
        yield CounterMetricFamily("pixgen_webhook_failed_attempts", "Webhook attempts that got no 2xx answer, "
                                  "retries included", value=tally.failed_attempts)
        yield GaugeMetricFamily("pixgen_webhook_deliveries_pending", "Webhook deliveries waiting for their first "
                                "or next attempt", value=tally.pending)


class HttpMetrics:
    """ASGI middleware: each request's seconds, labelled by method, route template (not the raw path) and status."""

    def __init__(self, app: ASGIApp, *, latency: Histogram) -> None:
        self.app, self.latency = app, latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # the app raised before answering

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.latency.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The path template of the route that served (or would have served) the request, e.g. ``/api/v1/jobs/{job_id}``.

    FastAPI leaves the matched route in the scope; a request answered before routing (a body over the size cap)
    is matched here against the app's routes.
    """
    route = scope.get("route")
    if route is None and "app" in scope:
        route = next((r for r in _flat_routes(scope["app"].router.routes) if r.matches(scope)[0] is Match.FULL), None)
    return getattr(route, "path_format", None) or UNMATCHED


def _flat_routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)  # FastAPI's included routers
        if inner is not None:
            yield from _flat_routes(inner)
        else:
            yield route


def _le(bound: float) -> str:
    return repr(float(bound))
