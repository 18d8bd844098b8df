"""Request bodies as types: each route takes its body as a pydantic model, and ``/openapi.json`` shows that same
model (as cog's ``PredictionRequest`` is both the route's body type and its document).

- ``JsonBody(Model)`` is the route's dependency: the body read as strict JSON (``api.body.read_json``: content type,
  emptiness, a JSON object), validated by ``Model``, any refusal a 400 ``InvalidRequest`` naming the field as the
  client wrote it (never FastAPI's 422). ``FormOrJsonBody`` also takes multipart / urlencoded forms (the OpenAI SDK
  sends them): uploads by their field's media kind, text values typed back by their canonical field.
- ``canonical_fields`` copies ``VideoRequest``'s fields for a surface's body, as each field's ``Role`` says: a media
  field that also takes a URL on the job API documents it, a sibling URL field (``image_url``) or another name
  (``resolution``) is added. The body model checks form and types; the surface's mapping then builds the canonical
  request, whose own checks (prompt rules, keyframes, ...) run as for every surface.
- ``BODIES`` lists every body model, for ``api.openapi`` to put in the document's components.
"""

from __future__ import annotations

import copy
import functools
import operator
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, Any, ClassVar, Generic, TypeVar, Union, get_args, get_origin

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, create_model
from pydantic.fields import FieldInfo

from pixgen.api.body import read_json
from pixgen.api.mapping import renamed
from pixgen.core.fields import HTTP_URL, item_model, role_of, roles, surface_aliases
from pixgen.core.spec import MAX_PROMPT, VideoRequest, invalid_from_error
from pixgen.core.surfaces import ApiSurface
from pixgen.core.text import CheckedStr
from pixgen.errors import InvalidRequest
from pixgen.jobs.webhooks import JOB_EVENTS
from pixgen.media.fetch import MAX_URL

NOT_BLANK = r"\S"  # a prompt must hold more than white space
URL_SCHEMA = {"type": "string", "format": "uri", "pattern": HTTP_URL, "maxLength": MAX_URL}
HttpUrl = Annotated[CheckedStr, WithJsonSchema(URL_SCHEMA)]  # checked for form by media.fetch.check_url

M = TypeVar("M", bound=BaseModel)
BODIES: list[type[BaseModel]] = []  # every route's body model, for the document
FORMS: list[str] = []  # the bodies also sent as forms (multipart / urlencoded), by name


class Body(BaseModel):
    """A request body: unknown fields refused. ``UNKNOWN``: how a body refuses a field it does not take (``{name}``:
    the field), when it says more than "unknown field"."""

    model_config = ConfigDict(extra="forbid")
    UNKNOWN: ClassVar[str] = ""


class TakesUrl:
    """``Annotated`` metadata: this media field's string may also be an http(s) URL (the job API fetches it)."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema: dict[str, Any] = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        options = target.get("anyOf", [target])
        for i, option in enumerate(options):
            if option.get("type") == "string":
                branch = {k: v for k, v in option.items() if k != "description"}
                if "anyOf" in target:
                    options[i] = {"anyOf": [branch, URL_SCHEMA]}
                else:
                    for key in branch:
                        target.pop(key)
                    target["anyOf"] = [branch, URL_SCHEMA]
                break
        return schema


# -- canonical fields for a surface's body ----------------------------------------------------------------------
def canonical_fields(*, surface: ApiSurface | None = None, urls: bool = False, only: Iterable[str] | None = None,
                     optional: bool = False, prefix: str = "") -> dict[str, Any]:
    """``VideoRequest``'s fields (``only`` these, in its order) as ``create_model`` definitions for a ``surface``'s
    body: with ``urls`` each media field's URL (in the field, or its sibling), and the surface's other names for a
    field (``resolution``) beside it; ``optional``: every field may be left out. Nested item models are copied the
    same way (``{prefix}Keyframe``)."""
    wanted = set(only) if only is not None else None
    out: dict[str, Any] = {}
    for name, info in VideoRequest.model_fields.items():
        if wanted is not None and name not in wanted:
            continue
        role = role_of(info)
        out[name] = _copied(info, urls=urls, prefix=prefix, optional=optional)
        if urls and role.url_field:
            what = role.media.value if role.media else "media"
            out[role.url_field] = (HttpUrl | None, Field(None, description=f"an http(s) URL of {name}'s {what} "
                                                                            "(fetched at submit)"))
        other = role.aliases.get(surface) if surface is not None else None
        if other and other not in out:  # another name for the same field
            out[other] = (_copied(info, urls=urls, prefix=prefix, optional=True)[0], Field(None))
    return out


def _copied(info: FieldInfo, *, urls: bool, prefix: str, optional: bool) -> tuple[Any, FieldInfo]:
    field = copy.copy(info)
    annotation: Any = info.annotation
    inner = item_model(info)
    if inner is not None:
        copied = item_body(inner, urls=urls, prefix=prefix)
        annotation = _swap(annotation, inner, copied)
    if urls and role_of(info).url_inline:
        field.metadata = [*field.metadata, TakesUrl()]
    if optional and field.is_required():
        field.default = None  # left out: None, for the mapping to fill in; null itself is not taken
    return annotation, field


def item_body(model: type[BaseModel], *, urls: bool, prefix: str) -> type[BaseModel]:
    """The body copy of an item model (``Keyframe``): its fields, media fields taking URLs where ``urls``."""
    if not urls:
        return model
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        field = copy.copy(info)
        if role_of(info).url_inline:
            field.metadata = [*field.metadata, TakesUrl()]
        fields[name] = (info.annotation, field)
    made: type[BaseModel] = create_model(f"{prefix}{model.__name__}", __base__=Body, __doc__=model.__doc__,
                                         **fields)
    return made


def _swap(annotation: Any, old: type, new: type) -> Any:
    """``annotation`` with the model ``old`` replaced by ``new`` (inside ``tuple[old, ...] | None``)."""
    if annotation is old:
        return new
    origin, args = get_origin(annotation), get_args(annotation)
    if not args:
        return annotation
    swapped = tuple(a if a is Ellipsis else _swap(a, old, new) for a in args)
    if origin in (Union, types.UnionType):
        return functools.reduce(operator.or_, swapped)
    return origin[swapped]


def prompt_field(*, required: bool, description: str = "1 to 2048 characters (trimmed)") -> tuple[Any, Any]:
    """``prompt`` as a surface that always needs one takes it (not blank; at most 2048 characters once trimmed); not
    ``required``: left out it is None, but null itself is refused."""
    schema = {"type": "string", "pattern": NOT_BLANK, "maxLength": MAX_PROMPT, "description": description}
    annotation = Annotated[CheckedStr, WithJsonSchema(schema)]
    return annotation, (Field(...) if required else Field(None))


def webhook_fields() -> dict[str, Any]:
    """The job API's ``webhook_url`` and ``webhook_events`` (``jobs.webhooks.parse_subscription`` checks them)."""
    events = Annotated[list[CheckedStr], WithJsonSchema({"type": "array", "minItems": 1,
                                                        "items": {"type": "string", "enum": list(JOB_EVENTS)}})]
    return {
        "webhook_url": (HttpUrl | None, Field(None, description="where this job's events are POSTed, signed per "
                                                                "Standard Webhooks with the key's whsec_ secret")),
        "webhook_events": (events | None, Field(None, description="default: completed, failed, cancelled; needs "
                                                                  "webhook_url")),
    }


def not_both(*pairs: tuple[str, str]) -> dict[str, Any]:
    """JSON schema: pairs of fields that name the same thing, one of each may be given."""
    return {"allOf": [{"not": {"required": list(pair)}} for pair in pairs]}


def surface_pairs(surface: ApiSurface, *, urls: bool) -> list[tuple[str, str]]:
    """The pairs a surface's body may hold only one of: a field and its other name, a field and its URL field."""
    pairs = [(other, name) for name, other in surface_aliases(VideoRequest, surface).items()]
    if urls:
        pairs += [(role.url_field, name) for name, role in roles(VideoRequest).items() if role.url_field]
    return pairs


def body_model(name: str, fields: Mapping[str, Any], *, doc: str = "", unknown: str = "",
               schema: Mapping[str, Any] | None = None) -> type[Body]:
    """A body model named ``name`` (its name in the document), registered for ``/openapi.json``; ``schema``: JSON
    schema keywords the fields cannot say alone (fields that go together or exclude each other)."""
    config = ConfigDict(extra="forbid", json_schema_extra=dict(schema)) if schema else ConfigDict(extra="forbid")
    base = type(f"{name}Base", (Body,), {"model_config": config, "UNKNOWN": unknown, "__doc__": doc or None})
    model: type[Body] = create_model(name, __base__=base, __doc__=doc or None, **dict(fields))
    BODIES.append(model)
    return model


def register(model: type[M]) -> type[M]:
    """A body model declared as a class, registered for ``/openapi.json``."""
    BODIES.append(model)
    return model


# -- the route's dependency -------------------------------------------------------------------------------------
class JsonBody(Generic[M]):
    """``Depends(JsonBody(Model))``: the request's JSON body as ``Model``; ``required=False``: a missing body is
    ``None``. ``openapi``: the route's ``openapi_extra``."""

    def __init__(self, model: type[M], *, required: bool = True, form: bool = False) -> None:
        self.model, self.required, self.form = model, required, form

    @property
    def openapi(self) -> dict[str, Any]:
        ref = {"$ref": f"#/components/schemas/{self.model.__name__}"}
        content: dict[str, Any] = {"application/json": {"schema": ref}}
        if self.form:  # the openai SDK sends multipart/form-data; the same fields, every value as text or a file
            content["multipart/form-data"] = {"schema": {"$ref": f"#/components/schemas/{self.model.__name__}Form"}}
        return {"requestBody": {"required": self.required, "content": content}}

    async def __call__(self, request: Request) -> M | None:
        if not self.required and not (await request.body()).strip():
            return None
        return self.validate(await self.read(request))

    async def read(self, request: Request) -> dict[str, Any]:
        return await read_json(request)

    def validate(self, data: Mapping[str, Any], names: Mapping[str, str] | None = None) -> M:
        """``data`` as the model, or the first problem as a 400 naming the field (``names``: canonical → sent). A
        field the body does not take is named before one it misses (it is likely the missing one misspelt)."""
        try:
            return self.model.model_validate(dict(data))
        except ValidationError as exc:
            raise renamed(self._problem(exc), names or {}) from None

    def _problem(self, exc: ValidationError) -> InvalidRequest:
        found = exc.errors()
        kinds = [e.get("type") for e in found]
        first = found[kinds.index("extra_forbidden")] if "missing" in kinds and "extra_forbidden" in kinds \
            else found[0]
        # A value no member of a union takes: the member it came closest to says most (``video.kind`` for
        # ``{"id": ..., "kind": ...}`` rather than "video: not a string"), a field it does not take before one it
        # misses.
        same_field = [e for e in found if e.get("loc", ())[:1] == first.get("loc", ())[:1]]
        first = max(same_field, key=lambda e: (len(e.get("loc", ())), e.get("type") == "extra_forbidden"),
                    default=first)
        problem = invalid_from_error(first, self.model)
        if first.get("type") == "extra_forbidden" and len(first.get("loc", ())) == 1:
            unknown = getattr(self.model, "UNKNOWN", "")
            if unknown:
                return InvalidRequest(unknown.format(name=problem.field), field=problem.field)
        prompt = self.model.model_fields.get("prompt")
        if problem.field == "prompt" and prompt is not None and prompt.is_required() and (
                first.get("type") == "missing" or first.get("input") is None):  # the surfaces that always need one
            return InvalidRequest(f"prompt is required (1 to {MAX_PROMPT} characters)", field="prompt")
        return problem


Reader = Callable[[Request], Awaitable[tuple[dict[str, Any], bool]]]


class FormOrJsonBody(JsonBody[M]):
    """A body sent as JSON or as a form (``read``: the surface's reader, giving ``(fields, is_form)``); a form's
    fields are turned into the JSON body's shape by ``from_form`` before they are validated."""

    def __init__(self, model: type[M], read: Reader, from_form: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        super().__init__(model, form=True)
        self._read, self._from_form = read, from_form
        FORMS.append(model.__name__)

    async def read(self, request: Request) -> dict[str, Any]:
        data, form = await self._read(request)
        return self._from_form(data) if form else data
