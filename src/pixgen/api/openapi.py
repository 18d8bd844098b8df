"""The OpenAPI document (``/openapi.json``), made to tell the truth: clients generate SDKs from it.

FastAPI writes the document from the routes: their typed parameters (a job id's pattern, query models), their
``response_model``s and the statuses each route lists with its surface's error body (``errors(...)``). The rest is
added here:

- request bodies: each route's body is a pydantic model (``api.bodies``), read through a dependency so that every
  refusal keeps its surface's error body; the route's ``openapi_extra`` points at the model, and its JSON schema
  (nested models too) goes into the components as pydantic writes it — the document shows the types that
  validate. Then each body is narrowed to what this server's backend offers (``Capabilities``), by the roles of the
  canonical fields it holds (``core.fields``): a field whose ``needs`` is off is left out (or held to its default),
  an ``offered`` list narrows its values. A surface with fields of its own (OpenAI's ``seconds`` and ``size``)
  narrows those itself (``Surface.narrow``). A form variant (``…Form``) is derived for bodies sent as
  multipart/form-data.
- FastAPI's 422, which no route returns (validation errors are 400 here), is removed;
- links: a created job's id feeds the routes that take it;
- the bearer key as the security scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pixgen.core.fields import roles, scalar_type, surface_aliases
from pixgen.core.spec import VideoRequest
from pixgen.core.surfaces import ApiSurface
from pixgen.engine.base import Capabilities
from pixgen.jobs.store import MAX_IDEMPOTENCY_KEY

JSON = "application/json"
REF = "#/components/schemas/{model}"
Narrower = Callable[[dict[str, dict[str, Any]], Capabilities], None]  # (component schemas, capabilities)

DESCRIPTIONS = {
    200: "Success", 206: "One byte range of the file", 400: "Bad input; the error names the field",
    401: "Missing or unknown API key", 402: "Not enough credits; nothing was charged",
    404: "No such job, video or model", 409: "Conflicts with the job's state or an earlier request with this "
    "Idempotency-Key", 413: "Request body over the server's limit", 416: "Byte range past the end of the file",
    429: "Too many requests; see Retry-After", 500: "The job failed (Workers AI waits for it)",
    503: "Not ready to run jobs",
}


# -- what routes declare ---------------------------------------------------------------------------------------
def errors(model: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries: each status with the surface's error body."""
    return {status: {"model": model, "description": DESCRIPTIONS[status]} for status in statuses}


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
def install(app: FastAPI, capabilities: Capabilities, *, bodies: Sequence[type[BaseModel]],
            forms: Iterable[str] = (), form_files: Iterable[str] = (), narrowers: Iterable[Narrower] = ()) -> None:
    """Serve the true document from ``app.openapi()`` (built once, on first request). ``bodies``: every route's
    body model; ``forms``: the bodies also sent as forms, whose ``form_files`` fields take an uploaded file;
    ``narrowers``: the surfaces' own narrowing."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = finish(doc, capabilities, bodies=bodies, forms=tuple(forms),
                                        form_files=tuple(form_files), narrowers=tuple(narrowers))
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]  # FastAPI's own way to replace its document builder


def finish(doc: dict[str, Any], capabilities: Capabilities, *, bodies: Sequence[type[BaseModel]],
           forms: Iterable[str] = (), form_files: Iterable[str] = (),
           narrowers: Iterable[Narrower] = ()) -> dict[str, Any]:
    """FastAPI's document with the request bodies, no 422s, links and the bearer scheme."""
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(body_schemas(bodies, capabilities, narrowers))
    for name in forms:
        schemas[f"{name}Form"] = form_schema(schemas[name], schemas, files=form_files)
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


# -- request bodies, from their models -----------------------------------------------------------------------
def body_schemas(bodies: Sequence[type[BaseModel]], caps: Capabilities,
                 narrowers: Iterable[Narrower] = ()) -> dict[str, dict[str, Any]]:
    """The body models' JSON schemas (and the models they hold) as components, narrowed to ``caps``."""
    _, defs = models_json_schema([(model, "validation") for model in bodies], ref_template=REF)
    schemas: dict[str, dict[str, Any]] = _untitled(defs.get("$defs", {}))
    for model in bodies:
        narrow(schemas[model.__name__], caps)
    for narrower in narrowers:
        narrower(schemas, caps)
    return schemas


def narrow(schema: dict[str, Any], caps: Capabilities) -> None:
    """A body's canonical fields (and a surface's other name for one, ``resolution``) held to what ``caps`` offers,
    by each field's role; a field left out takes its URL field along, and the keywords that named it."""
    props = schema.get("properties", {})
    aliases = {other: name for surface in ApiSurface for name, other in surface_aliases(VideoRequest, surface).items()}
    for prop_name in list(props):
        name = aliases.get(prop_name, prop_name)
        role = roles(VideoRequest).get(name)
        if role is None or prop_name not in props:
            continue
        info = VideoRequest.model_fields[name]
        if role.needs is not None and role.needs.value is not None:  # one value needs it (duration "auto")
            if not getattr(caps, role.needs.capability):
                _without_value(props[prop_name], role.needs.value)
        elif role.needs is not None and not getattr(caps, role.needs.capability):
            if info.default is None:
                for gone in (prop_name, role.url_field):
                    props.pop(gone or "", None)
            else:
                props[prop_name].update(enum=[info.default], description=f"this server's model cannot take "
                                                                         f"{role.needs.what}")
            continue
        if role.offered is not None:
            _offer(props, prop_name, getattr(caps, role.offered), number=scalar_type(info) is int)
    _drop_dangling(schema)


def _without_value(prop: dict[str, Any], value: Any) -> None:
    """``prop`` no longer taking ``value`` (an option of its ``anyOf`` that is that constant)."""
    options = [o for o in prop.get("anyOf", ()) if o.get("const") != value and o.get("enum") != [value]]
    if len(options) == 1:
        prop.pop("anyOf")
        prop.update(options[0])
    elif options:
        prop["anyOf"] = options


def _offer(props: dict[str, dict[str, Any]], name: str, offered: Any, *, number: bool) -> None:
    """``props[name]`` held to ``offered``: a (lowest, highest) range for a number, else the values listed (a field
    none of whose values is offered is left out)."""
    prop = props[name]
    if number:  # the number's own option when it also takes words (duration: an integer or "auto")
        target = next((o for o in prop.get("anyOf", ()) if o.get("type") in ("integer", "number")), prop)
        target.update(minimum=max(offered[0], target.get("minimum", offered[0])),
                      maximum=min(offered[1], target.get("maximum", offered[1])))
        return
    if not offered:
        props.pop(name)
        return
    for option in prop.get("anyOf", [prop]):
        if option.get("type") == "string":
            option["enum"] = [v for v in option.get("enum", offered) if v in offered]


def _drop_dangling(schema: dict[str, Any]) -> None:
    """Keywords that name a property no longer there go with it (``required``, ``dependentRequired``, pairs)."""
    props = set(schema.get("properties", {}))
    if "required" in schema:
        schema["required"] = [n for n in schema["required"] if n in props]
    if "dependentRequired" in schema:
        schema["dependentRequired"] = {k: v for k, v in schema["dependentRequired"].items()
                                       if k in props and set(v) <= props}
    if "allOf" in schema:
        schema["allOf"] = [c for c in schema["allOf"] if set(c.get("not", {}).get("required", [])) <= props]
    for keyword in ("required", "dependentRequired", "allOf"):
        if keyword in schema and not schema[keyword]:
            del schema[keyword]


def _untitled(node: Any) -> Any:
    """pydantic's schemas without its ``title``s of properties (the names say it)."""
    if isinstance(node, dict):
        return {k: _untitled(v) for k, v in node.items() if not (k == "title" and isinstance(v, str)
                                                                 and "properties" not in node)}
    if isinstance(node, list):
        return [_untitled(v) for v in node]
    return node


def form_schema(schema: dict[str, Any], schemas: dict[str, dict[str, Any]], *,
                files: Iterable[str]) -> dict[str, Any]:
    """The multipart form of a body: its fields as text (numbers and booleans written out), an object field as its
    bracketed text fields (``input_reference[image_url]``), and ``files`` as uploads."""
    files = set(files)
    fields: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if name in files:
            fields[name] = {"type": "string", "format": "binary", "description": "an uploaded file"}
        elif "anyOf" in prop or "$ref" in prop or prop.get("type") == "array":
            fields[name] = {"type": "string", "description": prop.get("description", "")}
        else:
            fields[name] = {k: v for k, v in prop.items() if k != "default"}
    return {"type": "object", "properties": fields, "required": list(schema.get("required", [])),
            "additionalProperties": False}


