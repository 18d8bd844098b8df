"""The OpenAPI document (``/openapi.json``), made to tell the truth: clients generate SDKs from it.

FastAPI writes the document from the routes. Our routes read their bodies themselves (each surface has its own
error shape and field names), so FastAPI cannot see them; this module supplies what it cannot:

- request bodies: routes name a component (``body("JobRunRequest")``); the components are built here from the
  canonical ``VideoRequest``'s own JSON schema and limits (``core.spec``), narrowed to what the server's backend
  offers (``Capabilities``), so the document and the validation cannot drift apart;
- responses: each route lists the statuses it really answers with its surface's error body (``errors(...)``);
  FastAPI's 422, which no route returns (validation errors are 400 here), is removed;
- links: a created job's id feeds the routes that take it;
- the bearer key as the security scheme.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from pixgen.core.fields import item_model, role_of, roles, surface_names
from pixgen.core.models import CLOUDFLARE_MODEL_ID, MODEL_ID
from pixgen.core.retake import MAX_SECONDS as MAX_RETAKE_SECONDS
from pixgen.core.sizes import output_size
from pixgen.core.spec import DATA_URI_PATTERN, MAX_PROMPT, VideoRequest
from pixgen.engine.base import Capabilities
from pixgen.jobs.store import MAX_IDEMPOTENCY_KEY
from pixgen.jobs.webhooks import JOB_EVENTS
from pixgen.media.fetch import MAX_URL

JSON = "application/json"
NOT_BLANK = r"\S"  # a prompt must hold more than white space
HTTP_URL = r"^https?://[^\s/@]"  # http(s), a host, no credentials (media.fetch.check_url)
VIDEO_DATA_URI_PATTERN = r"^data:video/mp4;base64,[A-Za-z0-9+/=\s]+$"  # control_video's form

DESCRIPTIONS = {
    200: "Success", 206: "One byte range of the file", 400: "Bad input; the error names the field",
    401: "Missing or unknown API key", 402: "Not enough credits; nothing was charged",
    404: "No such job, video or model", 409: "Conflicts with the job's state or an earlier request with this "
    "Idempotency-Key", 413: "Request body over the server's limit", 416: "Byte range past the end of the file",
    429: "Too many requests; see Retry-After", 500: "The job failed (Workers AI waits for it)",
    503: "Not ready to run jobs",
}


# -- what routes declare ---------------------------------------------------------------------------------------
def body(component: str, *, form: bool = False, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads its body itself: the body is the schema ``component``."""
    ref = {"$ref": f"#/components/schemas/{component}"}
    content = {JSON: {"schema": ref}}
    if form:  # the openai SDK sends multipart/form-data; the same fields, every value as text or a file
        content["multipart/form-data"] = {"schema": {"$ref": f"#/components/schemas/{component}Form"}}
    return {"requestBody": {"required": required, "content": content}}


def errors(model: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries: each status with the surface's error body."""
    return {status: {"model": model, "description": DESCRIPTIONS[status]} for status in statuses}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A query parameter a route reads from ``request.query_params`` itself (for ``openapi_extra``)."""
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


# Links: operation → {link name: (target operation, {parameter: runtime expression})}.
# Operations are named "METHOD path" as in the document; the links hang off their 200 answer.
_JOB = "$response.body#/jobId"
_VIDEO = "$response.body#/id"
_JOB_LINKS = {
    "GetJob": ("GET /api/v1/jobs/{job_id}", {"job_id": _JOB}),
    "CancelJob": ("POST /api/v1/jobs/{job_id}/cancel", {"job_id": _JOB}),
    "JobEvents": ("GET /api/v1/jobs/{job_id}/events", {"job_id": _JOB}),
    "ExtendJob": ("POST /api/v1/jobs/{job_id}/extend", {"job_id": _JOB}),
    "RemixJob": ("POST /api/v1/jobs/{job_id}/remix", {"job_id": _JOB}),
    "RetakeJob": ("POST /api/v1/jobs/{job_id}/retake", {"job_id": _JOB}),
    "JobManifest": ("GET /api/v1/jobs/{job_id}/manifest", {"job_id": _JOB}),
    "ReplayJob": ("POST /api/v1/jobs/{job_id}/replay", {"job_id": _JOB}),
}
_VIDEO_LINKS = {
    "RetrieveVideo": ("GET /v1/videos/{video_id}", {"video_id": _VIDEO}),
    "DeleteVideo": ("DELETE /v1/videos/{video_id}", {"video_id": _VIDEO}),
    "DownloadContent": ("GET /v1/videos/{video_id}/content", {"video_id": _VIDEO}),
    "RemixVideo": ("POST /v1/videos/{video_id}/remix", {"video_id": _VIDEO}),
}
LINKS = {
    "GET /api/v1/models": {"RunModel": ("POST /api/v1/models/{model_id}/run",
                                        {"model_id": "$response.body#/models/0/id"})},
    "POST /api/v1/models/{model_id}/run": _JOB_LINKS,
    "POST /api/v1/jobs/{job_id}/extend": _JOB_LINKS,
    "POST /api/v1/jobs/{job_id}/remix": _JOB_LINKS,
    "POST /api/v1/jobs/{job_id}/retake": _JOB_LINKS,
    "POST /api/v1/jobs/{job_id}/replay": _JOB_LINKS,
    "POST /v1/videos": _VIDEO_LINKS,
    "POST /v1/videos/extensions": _VIDEO_LINKS,
    "POST /v1/videos/{video_id}/remix": _VIDEO_LINKS,
}
PUBLIC = ("/health", "/health/ready")  # the operations that need no key


# -- the document ----------------------------------------------------------------------------------------------
def install(app: FastAPI, capabilities: Capabilities, form_files: Iterable[str] = ()) -> None:
    """Serve the true document from ``app.openapi()`` (built once, on first request); ``form_files``: the
    multipart fields that take an uploaded image."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = finish(doc, capabilities, tuple(form_files))
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def finish(doc: dict[str, Any], capabilities: Capabilities, form_files: Iterable[str] = ()) -> dict[str, Any]:
    """FastAPI's document with the request bodies, no 422s, links and the bearer scheme."""
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(request_schemas(capabilities, form_files))
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                "description": "an API key made by `pixgen keys create`"}}
    ids = {f"{method.upper()} {path}": op["operationId"] for path, ops in doc["paths"].items()
           for method, op in ops.items()}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            op["responses"].pop("422", None)
            for param in op.get("parameters", ()):
                if param["name"] == "Idempotency-Key":
                    param["schema"] = {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY,
                                       "description": "the same key and body answer the same job, once"}
            if path not in PUBLIC:
                op["security"] = [{"bearer": []}]
            links = LINKS.get(f"{method.upper()} {path}")
            if links:
                op["responses"]["200"]["links"] = {
                    name: {"operationId": ids[target], "parameters": params}
                    for name, (target, params) in links.items()}
    return doc


# -- request bodies, from the canonical request ----------------------------------------------------------------
def canonical_properties(caps: Capabilities) -> dict[str, dict[str, Any]]:
    """``VideoRequest``'s fields as JSON schema (limits, enums, media patterns: from the type itself), narrowed to
    what ``caps`` offers by each field's role: ``offered`` narrows its values, a field whose ``needs`` is off is
    left out (or held to its default, when it has one)."""
    props = _inline(VideoRequest.model_json_schema())["properties"]
    props["prompt"].update(maxLength=MAX_PROMPT, description="1 to 2048 characters (trimmed)")  # checked trimmed
    for name, role in roles(VideoRequest).items():
        default = VideoRequest.model_fields[name].default
        if role.needs is not None and not getattr(caps, role.needs.capability):
            if default is None:
                props.pop(name)
            else:
                props[name].update(enum=[default], description=f"this server's model cannot take {role.needs.what}")
            continue
        if role.offered is not None:
            _narrow(props, name, getattr(caps, role.offered))
    return props


def _narrow(props: dict[str, dict[str, Any]], name: str, offered: Any) -> None:
    """``props[name]`` held to ``offered``: a (lowest, highest) range for a number, else the values listed (a field
    none of whose values is offered is left out)."""
    prop = props[name]
    if prop.get("type") == "integer":
        prop.update(minimum=max(offered[0], prop.get("minimum", offered[0])),
                    maximum=min(offered[1], prop.get("maximum", offered[1])))
        return
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") == "string"]
    if not offered:
        props.pop(name)
        return
    for option in options:
        option["enum"] = [v for v in option.get("enum", offered) if v in offered]


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` put in place of their ``$ref``s and pydantic's titles dropped."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items() if k not in ("title", "$defs")}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(copy.deepcopy(schema))


def request_schemas(caps: Capabilities, form_files: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """The named request bodies; ``form_files``: the multipart fields that take an uploaded image."""
    props = canonical_properties(caps)
    needs_start = {"end_image_input": ["image_input"]} if "end_image_input" in props else {}
    prompt = {**props["prompt"], "pattern": NOT_BLANK}
    schemas: dict[str, dict[str, Any]] = {}

    # Job API: the canonical fields, plus resolution (= quality) and image URLs fetched at submit.
    job = {**props, **{other: props[name] for name, other in surface_names(VideoRequest, "jobs").items()}}
    webhook = {
        "webhook_url": {"anyOf": [_url(), {"type": "null"}], "description": "where this job's events are POSTed, "
                        "signed per Standard Webhooks with the key's whsec_ secret"},
        "webhook_events": {"anyOf": [{"type": "array", "minItems": 1,
                                      "items": {"type": "string", "enum": list(JOB_EVENTS)}}, {"type": "null"}],
                           "description": "default: completed, failed, cancelled; needs webhook_url"}}
    job.update(webhook)
    for path in _url_paths(job):  # where the job API also takes an http(s) URL, fetched at submit
        _with_url(job, path)
    for name, role in roles(VideoRequest).items():  # ... or a sibling field takes it (image_url)
        if role.url_field and name in props:
            job[role.url_field] = {"anyOf": [_url(), {"type": "null"}],
                                   "description": f"an http(s) URL of {name}'s {role.media.value} "  # type: ignore
                                                  "(fetched at submit)"}
    schemas["JobRunRequest"] = _object(job, anyOf=[
        {"required": ["prompt"], "properties": {"prompt": prompt}},
        {"required": ["image_input"], "properties": {"image_input": {"type": "string"}}},
        {"required": ["image_url"], "properties": {"image_url": _url()}}],
        dependentRequired={**needs_start, "webhook_events": ["webhook_url"]},
        **_not_both(("image_url", "image_input"), ("end_image_url", "end_image_input"),
                    ("resolution", "quality")),
        description="A video request. prompt is required unless a start frame (image_input or image_url) is "
                    "given.")
    extend = {name: props[name] for name in ("prompt", "duration", "negative_prompt", "seed", "style",
                                             "thinking_type", "camera_movement")}
    extend["prompt"] = {**prompt, "description": "default: the prompt of the video continued"}
    extend["duration"] = {**props["duration"], "description": "seconds added (the whole video stays within the "
                          "longest duration)"}
    needs_url = {"webhook_events": ["webhook_url"]}
    schemas["JobExtendRequest"] = _object({**extend, **webhook}, dependentRequired=needs_url,
                                          description="All optional; the body may be absent.")
    schemas["JobReplayRequest"] = _object(dict(webhook), dependentRequired=needs_url,
                                          description="All optional; the body may be absent.")
    schemas["RemixRequest"] = _object({"prompt": prompt}, required=["prompt"])
    schemas["JobRemixRequest"] = _object({"prompt": prompt, **webhook}, required=["prompt"],
                                         dependentRequired=needs_url)
    # the route stays even where the model cannot retake (it answers 400 naming jobId then)
    seconds_on_clock = {"type": "number", "minimum": 0, "description": "seconds on the video's clock"}
    schemas["RetakeRequest"] = _object({
        "start": seconds_on_clock, "end": {**seconds_on_clock, "description": "seconds on the video's clock; "
                                           f"end - start from 8 frames to {MAX_RETAKE_SECONDS} s"},
        "prompt": {**prompt, "description": "default: the prompt of the source job"},
        "seed": props["seed"], **webhook}, required=["start", "end"], dependentRequired=needs_url)

    # Workers AI: the canonical fields with a prompt always; the wrapped form puts them under ``input``.
    schemas["WorkersAIInput"] = _object({**props, "prompt": prompt}, required=["prompt"],
                                        dependentRequired=needs_start)
    schemas["WorkersAIRunRequest"] = _object({
        "model": {"type": "string", "enum": [CLOUDFLARE_MODEL_ID]},
        "input": {"$ref": "#/components/schemas/WorkersAIInput"},
        "options": {"anyOf": [{"type": "object"}, {"type": "null"}], "description": "accepted and ignored"},
    }, required=["model", "input"])

    # OpenAI Videos: seconds and size stand for duration, aspect_ratio and quality; input_reference for image_input.
    low, high = props["duration"]["minimum"], props["duration"]["maximum"]
    seconds = {"anyOf": [{"type": "integer", "minimum": low, "maximum": high},
                         {"type": "string", "enum": [str(n) for n in range(low, high + 1)]}],
               "description": "length in seconds"}
    sizes = ["{}x{}".format(*output_size(r, q)) for r in caps.aspect_ratios for q in props["quality"]["enum"]]
    reference = {"anyOf": [
        {"type": "string", "pattern": DATA_URI_PATTERN}, _url(),
        _object({"image_url": {"anyOf": [{"type": "string", "pattern": DATA_URI_PATTERN}, _url()]}},
                required=["image_url"])],
        "description": "the start frame: a data URI, an http(s) URL, or {image_url}; an uploaded file in a form"}
    model = {"type": "string", "enum": [MODEL_ID]}
    create = {"model": model, "prompt": prompt, "seconds": seconds, "size": {"type": "string", "enum": sizes},
              "input_reference": reference,
              **{k: v for k, v in props.items() if k not in ("prompt", "image_input")},
              "image_input": props["image_input"]}
    schemas["VideoCreateRequest"] = _object(create, required=["prompt"], dependentRequired=needs_start,
                                            **_not_both(("seconds", "duration"), ("size", "aspect_ratio"),
                                                        ("size", "quality"), ("input_reference", "image_input")))
    schemas["VideoCreateRequestForm"] = _form(create, required=["prompt"], files=form_files)
    video = {"anyOf": [{"type": "string", "minLength": 1, "pattern": NOT_BLANK},
                       _object({"id": {"type": "string", "pattern": NOT_BLANK}}, required=["id"])],
             "description": "the completed video to continue: {id} or its id"}
    extension = {"model": model, "video": video, "seconds": seconds, **extend}
    schemas["VideoExtensionRequest"] = _object(extension, required=["video", "prompt"],
                                               **_not_both(("seconds", "duration")))
    schemas["VideoExtensionRequestForm"] = _form({**extension, "video": {"type": "string", "pattern": NOT_BLANK}},
                                                 required=["video", "prompt"], files=form_files)
    schemas["RemixRequestForm"] = _form({"prompt": prompt}, required=["prompt"], files=form_files)
    return schemas


def _url_paths(props: dict[str, Any]) -> list[str]:
    """The media fields (nested ones as ``keyframes.image``) whose role takes an http(s) URL in the field itself."""
    paths = []
    for name, info in VideoRequest.model_fields.items():
        inner = item_model(info)
        if name in props and role_of(info).url_inline:
            paths.append(name)
        elif name in props and inner is not None:
            paths += [f"{name}.{sub}" for sub, role in roles(inner).items() if role.url_inline]
    return paths


def _with_url(props: dict[str, Any], path: str) -> None:
    """The string branch of the property at ``path`` (through arrays of items) also takes an http(s) URL."""
    head, _, rest = path.partition(".")
    prop = props[head] = copy.deepcopy(props[head])
    options = prop.get("anyOf", [prop])
    for option in options:
        if rest and option.get("type") == "array":
            _with_url(option["items"]["properties"], rest)
        elif not rest and option.get("type") == "string":
            branch = dict(option)
            option.clear()
            option["anyOf"] = [branch, _url()]


def _url() -> dict[str, Any]:
    return {"type": "string", "format": "uri", "pattern": HTTP_URL, "maxLength": MAX_URL}


def _object(properties: dict[str, Any], *, required: Iterable[str] = (), **more: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    schema.update({k: v for k, v in more.items() if v})
    return schema


def _not_both(*pairs: tuple[str, str]) -> dict[str, Any]:
    """Pairs of fields that name the same thing: one of each may be given."""
    return {"allOf": [{"not": {"required": list(pair)}} for pair in pairs]}


def _form(properties: dict[str, Any], *, required: Iterable[str], files: Iterable[str]) -> dict[str, Any]:
    """The multipart form of a body: text fields (numbers and booleans written out) and image files."""
    fields: dict[str, Any] = {}
    for name, prop in properties.items():
        if name in files:
            fields[name] = {"type": "string", "format": "binary", "description": "a PNG, JPEG or WebP file"}
        elif name in ("seconds", "video") or "anyOf" in prop:
            fields[name] = {"type": "string", "description": prop.get("description", "")}
        else:
            fields[name] = {k: v for k, v in prop.items() if k != "default"}
    return {"type": "object", "properties": fields, "required": list(required), "additionalProperties": False}


def _nullable_enum(prop: dict[str, Any], allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    for option in prop.get("anyOf", ()):
        if "enum" in option:
            option["enum"] = [v for v in option["enum"] if v in allowed]
