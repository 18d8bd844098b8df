"""What every surface maps the same way, written once: the model check, the prompt-required rule, a job's size
and progress as shown, an error's field renamed to the surface's own name, and what the backend can do.

Pure functions over plain values; each surface module calls these from its own mapping functions.
"""

from __future__ import annotations

from typing import Any, Mapping

from pixgen.core.sizes import output_size
from pixgen.core.spec import MAX_PROMPT, VideoRequest
from pixgen.engine.base import Capabilities
from pixgen.errors import InvalidRequest, ModelNotFound
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Job

# Stands in for an image URL not fetched yet while the rest of a body is checked (a data URI of the right form);
# ``service.submit`` fetches the URL and puts the image in its place.
PLACEHOLDER_IMAGE = "data:image/png;base64,AAAA"
PLACEHOLDER_VIDEO = "data:video/mp4;base64,AAAA"  # the same, for a control video given by URL


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
    """400 naming the field (as sent) for a request the backend cannot make (``pixgen.engine.Capabilities``)."""
    names = names or {}
    low, high = capabilities.durations
    problems = []
    if not low <= request.duration <= high:
        problems.append(("duration", f"duration must be {low} to {high} seconds on this server"))
    if request.quality not in capabilities.qualities:
        problems.append(("quality", f"quality {request.quality} is not offered on this server; use one of "
                                    f"{', '.join(capabilities.qualities)}"))
    if request.aspect_ratio is not None and request.aspect_ratio not in capabilities.aspect_ratios:
        problems.append(("aspect_ratio", f"aspect_ratio {request.aspect_ratio} is not offered on this server"))
    if request.end_image_input is not None and not capabilities.end_frame:
        problems.append(("end_image_input", "this server's model cannot take an end frame"))
    if request.keyframes is not None and not capabilities.keyframes:
        problems.append(("keyframes", "this server's model cannot take keyframes"))
    if request.multi_clip and not capabilities.multi_clip:
        problems.append(("multi_clip", "this server's model cannot make multi-clip videos"))
    if request.control_type is not None and request.control_type not in capabilities.control_types:
        offered = ", ".join(capabilities.control_types) or "none"
        problems.append(("control_type", f"control_type {request.control_type!r} is not offered: this server's "
                                         f"model folder has no IC-LoRA for it (offered: {offered})"))
    if problems:
        field, message = problems[0]
        raise renamed(InvalidRequest(message, field=field), names)
