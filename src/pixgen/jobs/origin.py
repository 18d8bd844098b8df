"""Where a job comes from: what it does (``JobKind``), the surface it was asked through (``ApiSurface``, from
``core.surfaces``), and the job it was made from (``Origin``). The database keeps the enums' values (``jobs.kind``,
``jobs.surface``), as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pixgen.core.surfaces import ApiSurface

__all__ = ["DIRECT", "ApiSurface", "JobKind", "Origin"]


class JobKind(StrEnum):
    """What a job does with its request."""

    GENERATE = "generate"  # a new video (a remix or a replay of a generated one too)
    EXTEND = "extend"  # continue the video of ``source_job_id``; the result is the whole video
    RETAKE = "retake"  # regenerate a range of the video of ``source_job_id``; the result is the whole video
    # new sound under the frames of ``source_job_id``'s video (or of the request's ``video``), the frames kept
    SOUND = "sound"

    @property
    def works_on_a_video(self) -> bool:
        """The job takes a finished video (``source_job_id``) as well as its request."""
        return self is not JobKind.GENERATE


@dataclass(frozen=True)
class Origin:
    """How a submitted job came to be, beside its request: the surface, the kind, and the jobs it was made from.

    ``duration``: the whole output's length in seconds when it is not the request's (an extension's: the source's
    and the new seconds); ``retake``: the range (start, end seconds) of ``source_job_id``'s video a retake makes again.
    """

    surface: ApiSurface = ApiSurface.JOBS
    kind: JobKind = JobKind.GENERATE
    source_job_id: str | None = None
    remix_of: str | None = None
    replay_of: str | None = None
    duration: int | None = None
    retake: tuple[float, float] | None = None


DIRECT = Origin()  # a new video asked for on the job API
