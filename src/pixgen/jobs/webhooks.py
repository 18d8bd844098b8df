"""Signed webhooks, the pure part: who subscribes to what, the secrets, the signature, the retry schedule.

Signing follows the Standard Webhooks spec (standardwebhooks.com), which OpenAI's webhooks use too, so the
``standardwebhooks`` library and the ``openai`` SDK's ``client.webhooks.unwrap(body, headers, secret=...)`` verify
our requests unmodified:
- a secret is ``whsec_`` + base64 of 24 random bytes; the HMAC key is the decoded bytes;
- ``webhook-id``: the event's id (``evt_…``), the same on every retry of one event (receivers dedupe on it);
- ``webhook-timestamp``: UNIX seconds of this attempt;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, space-separated when signed
  with several secrets (during a key's secret rotation: the new one and the previous one).

Where events go: a job API job names its own ``webhook_url`` and ``webhook_events`` (signed with its key's secret);
jobs of the OpenAI surface go to the server's ``--webhook-url`` as OpenAI's ``video.completed`` / ``video.failed``
(signed with ``--webhook-secret``). Delivery itself: ``jobs.deliveries`` (the store) and ``api.deliverer`` (the loop).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pixgen.core.surfaces import ApiSurface
from pixgen.errors import ConfigError, InvalidRequest
from pixgen.jobs.events import EventKind
from pixgen.media.fetch import check_url

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24

# The job API's event filter: the event kinds a job may subscribe to (job.<kind> on the wire).
JOB_EVENTS = ("completed", "failed", "cancelled", "started", "progress")
DEFAULT_EVENTS = ("completed", "failed", "cancelled")
# OpenAI's Videos webhook events (the openai SDK's webhook event types): a cancelled video reads as failed.
OPENAI_EVENTS = {EventKind.COMPLETED: "video.completed", EventKind.FAILED: "video.failed",
                 EventKind.CANCELLED: "video.failed"}

KEY_SIGNER, SERVER_SIGNER = "key", "server"


@dataclass(frozen=True)
class Subscription:
    """Where a job's events go and which ones (``JOB_EVENTS`` names)."""

    url: str
    events: tuple[str, ...] = DEFAULT_EVENTS

    def column_values(self) -> dict[str, Any]:
        return {"webhook_url": self.url, "webhook_events": ",".join(self.events)}


def parse_subscription(url: Any, events: Any) -> Subscription | None:
    """The job API's ``webhook_url`` and ``webhook_events`` (absent or null → no webhook, default events).

    Checks form only (http(s), a host, no credentials); the address is checked by the SSRF guard at submit and
    again at every delivery. A bad value is ``InvalidRequest`` naming the field.
    """
    if url is None:
        if events is not None:
            raise InvalidRequest("webhook_events needs a webhook_url", field="webhook_events")
        return None
    checked = str(check_url(url, "webhook_url"))
    if events is None:
        return Subscription(checked)
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise InvalidRequest(f"webhook_events must be a non-empty list of: {', '.join(JOB_EVENTS)}",
                             field="webhook_events")
    unknown = [e for e in events if e not in JOB_EVENTS]
    if unknown:
        raise InvalidRequest(f"webhook_events: unknown event {unknown[0]!r}; choose from {', '.join(JOB_EVENTS)}",
                             field="webhook_events")
    return Subscription(checked, tuple(dict.fromkeys(events)))


def event_type(surface: ApiSurface, kind: EventKind, subscribed: str | None) -> str | None:
    """The wire name of ``kind`` for a job of ``surface`` subscribed to ``subscribed`` (comma list), or None when
    it is not sent."""
    if surface.operator_webhook:
        return OPENAI_EVENTS.get(kind)
    if subscribed and kind.value in subscribed.split(","):
        return f"job.{kind.value}"
    return None


# -- secrets and signatures --------------------------------------------------------------------------------------
def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret; ``ConfigError`` when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError(f"a webhook secret starts with {SECRET_PREFIX} (base64 of 24 to 64 random bytes)",
                          field="webhook_secret")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("the webhook secret after whsec_ must be base64", field="webhook_secret") from None
    if not 24 <= len(key) <= 64:
        raise ConfigError("the webhook secret must hold 24 to 64 bytes", field="webhook_secret")
    return key


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()).decode()


def signed_headers(secrets_: Iterable[str], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt, one signature per secret."""
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signature(s, webhook_id, timestamp, body) for s in secrets_),
            "content-type": "application/json"}


# -- retries ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off: ``base`` seconds after the first failure, doubling up to ``cap``; given up once the
    event is older than ``give_up_after`` seconds (defaults: 10 s, 1 h, 24 h: about 30 attempts)."""

    base: float = 10.0
    cap: float = 3600.0
    give_up_after: float = 86400.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return min(self.cap, self.base * 2.0 ** max(0, min(attempts - 1, 40)))
