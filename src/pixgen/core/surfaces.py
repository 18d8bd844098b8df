"""The HTTP surfaces a request can come through; request fields name their other names per surface
(``core.fields.Role``), and a job records the one it came through (``jobs.origin``, the ``jobs.surface`` column)."""

from __future__ import annotations

from enum import StrEnum


class ApiSurface(StrEnum):
    JOBS = "jobs"  # the job API (PixelDojo form), and the web page
    CLOUDFLARE = "cloudflare"  # the Workers AI form
    OPENAI = "openai"  # the OpenAI Videos form

    @property
    def operator_webhook(self) -> bool:
        """Its jobs' events go to the server's ``--webhook-url`` (signed with ``--webhook-secret``), as OpenAI's
        ``video.completed`` / ``video.failed``; a job of another surface names its own ``webhook_url``."""
        return self is ApiSurface.OPENAI
