"""What every surface maps the same way, written once: the model check, the prompt-required rule, a job's size
and progress as shown, an error's field renamed to the surface's own name, and what the backend can do.

Pure functions over plain values; each surface module calls these from its own mapping functions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pixgen.core.fields import roles, scalar_type
from pixgen.core.keyframes import check_keyframe_latents
from pixgen.core.sizes import output_size
from pixgen.core.spec import MAX_PROMPT, VideoRequest
from pixgen.engine.base import Capabilities
from pixgen.errors import InvalidRequest, ModelNotFound
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Job


def check_model(sent: Any, served: str, *, field: str = "model") -> None:
    """404 ``model_not_found`` unless ``sent`` is the id this surface serves (slashes around it are ignored)."""
    if not isinstance(sent, str) or sent.strip("/") != served:
        raise ModelNotFound(f"model {sent!r} not found; this server runs {served!r}", field=field)


def require_prompt(body: Mapping[str, Any], *, field: str = "prompt", what: str = "") -> None:
    """The rule of the surfaces that always need a prompt (Workers AI, OpenAI, extend, remix): present and not blank.

    The job API's own rule (a start frame may stand without a prompt) is the canonical spec's."""
    prompt = body.get(field)
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise InvalidRequest(f"{field} is required{what} (1 to {MAX_PROMPT} characters)", field=field)


def renamed(exc: InvalidRequest, names: Mapping[str, str] | None = None, *, prefix: str = "") -> InvalidRequest:
    """``exc`` with its field spelled as the caller sent it: ``names`` maps canonical → sent (a message that starts
    with the old name starts with the new one), and ``prefix`` places it (``input.`` in a wrapped body)."""
    renamed_exc = exc.renamed(names or {})
    if prefix:
        field = f"{prefix}{renamed_exc.field}" if renamed_exc.field else prefix.rstrip(".")
        renamed_exc = InvalidRequest(renamed_exc.message, field=field)
    return renamed_exc


def job_size(job: Job) -> tuple[int, int]:
    """The video's width × height: as made once it is made, else what the request will make."""
    if job.width and job.height:
        return job.width, job.height
    return output_size(job.aspect_ratio or "16:9", job.quality)


def job_progress(job: Job) -> int:
    """0..100 as shown to clients: a completed job is 100 whatever its last progress write said."""
    return 100 if job.status is JobStatus.COMPLETED else int(job.progress or 0)


def check_capabilities(request: VideoRequest, capabilities: Capabilities,
                       names: Mapping[str, str] | None = None) -> None:
    """400 naming the field (as sent) for a request the backend cannot make (``pixgen.engine.Capabilities``), read
    from each field's role: ``offered`` (the values this server takes) and ``needs`` (a capability for anything but
    the field's default)."""
    for problem in capability_problems(request, capabilities):
        raise renamed(problem, names or {})
    if request.keyframes and capabilities.keyframes:  # pictures on the backend's latent clock, one per latent
        try:
            check_keyframe_latents(request.keyframes, request.seconds, capabilities.frames_per_latent,
                                   start_image=request.image_input is not None,
                                   end_image=request.end_image_input is not None)
        except InvalidRequest as exc:
            raise renamed(exc, names or {}) from None


def capability_problems(request: VideoRequest, capabilities: Capabilities) -> Iterator[InvalidRequest]:
    for name, role in roles(VideoRequest).items():
        info, value = VideoRequest.model_fields[name], getattr(request, name)
        if value is None:
            continue
        if role.needs is not None and value != info.default and not getattr(capabilities, role.needs.capability):
            yield InvalidRequest(f"this server's model cannot take {role.needs.what}", field=name)
        if role.offered is None:
            continue
        offered = getattr(capabilities, role.offered)
        if scalar_type(info) is int:  # a number: offered as (lowest, highest)
            if not offered[0] <= value <= offered[1]:
                yield InvalidRequest(f"{name} must be {offered[0]} to {offered[1]} on this server", field=name)
        elif value not in offered:
            yield InvalidRequest(f"{name} {value} is not offered on this server; use one of "
                                 f"{', '.join(offered) or 'none'}", field=name)
