"""What each request field is beyond its type: its roles, declared once on the field, read by generic code.

A ``VideoRequest`` field (``core/spec.py``) carries a ``Role`` in its ``Annotated`` metadata:

- ``media``: it holds a data URI of that kind (image, video, audio): checked and decoded by kind at submit, uploadable
  as a file on the OpenAI form, read from a FILE on the command line, and documented with its data-URI pattern;
- ``url``: the job API also takes an http(s) URL for it, fetched at submit: ``True`` in the field itself, or a
  sibling field's name (``image_url`` for ``image_input``);
- ``private``: its content is removed under zero data retention (every media field is; prompts are too);
- ``cli``: its command-line flag (``Flag``); ``aliases``: another name a surface also takes for it, the value as it
  is (``{ApiSurface.JOBS: "resolution"}``); ``names``: a surface's own field that stands for it, in that surface's
  form (``{ApiSurface.OPENAI: "seconds"}``);
- ``needs``: the ``Capabilities`` flag a value other than the default needs (``end_frame``, ``keyframes``, ...), or
  that one value needs (``Need.value``: ``duration: "auto"`` needs ``auto_duration``);
  ``offered``: the ``Capabilities`` attribute that lists the values this server takes (``qualities``, ...).

A number field may also take keywords (``duration``: an integer or ``"auto"``: ``keywords``); it is still a number
to the generic code (``scalar_type``), which passes its keywords through as they are.

Generic code walks these roles (``roles``, ``media_values``, ``with_values``, ``scrubbed``, ``form_value``): the
job API's URL fetching, the OpenAI form's uploads and text values, the OpenAPI narrowing, the CLI flags, the
capability checks and the zero-data-retention scrub. A new field is one declaration here plus the code that acts
on it (ARCHITECTURE.md, "Adding a request field").
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pixgen.core.surfaces import ApiSurface
from pixgen.core.text import parse_digits, text_problem


class Media(StrEnum):
    """A kind of media a request field carries, always as a data URI inside the canonical request."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"

    @property
    def data_uri_pattern(self) -> str:
        return _DATA_URI_PATTERNS[self]

    @property
    def placeholder(self) -> str:
        """A data URI of the right form standing for media not fetched yet (while the rest of a body is checked)."""
        return _PLACEHOLDERS[self]

    @property
    def described(self) -> str:
        return _DESCRIPTIONS[self]

    def matches(self, value: str) -> bool:
        """``value`` has this kind's data-URI form (only its head and tail are looked at: it may be megabytes)."""
        return bool(re.match(self.data_uri_pattern, value[:64] + value[-8:] if len(value) > 80 else value))


_DATA_URI_PATTERNS = {
    Media.IMAGE: r"^data:image/(png|jpeg|jpg|webp);base64,[A-Za-z0-9+/=\s]+$",
    Media.VIDEO: r"^data:video/mp4;base64,[A-Za-z0-9+/=\s]+$",
    Media.AUDIO: r"^data:audio/(wav|x-wav|wave|mpeg|mp3|aac|mp4|m4a|x-m4a|flac|x-flac|ogg);base64,[A-Za-z0-9+/=\s]+$",
}
_PLACEHOLDERS = {Media.IMAGE: "data:image/png;base64,AAAA", Media.VIDEO: "data:video/mp4;base64,AAAA",
                 Media.AUDIO: "data:audio/wav;base64,AAAA"}
_DESCRIPTIONS = {Media.IMAGE: "a data:image/(png|jpeg|webp);base64,... URI",
                 Media.VIDEO: "a data:video/mp4;base64,... URI",
                 Media.AUDIO: "a data:audio/(wav|mpeg|aac|mp4|flac|ogg);base64,... URI (WAV, MP3, AAC/M4A, "
                              "FLAC or Ogg)"}

HTTP_URL = r"^https?://[^\s/@]"  # http(s), a host, no credentials (media.fetch.check_url)


@dataclass(frozen=True)
class Flag:
    """A field's command-line flag(s). Type, choices and defaults come from the field itself: an integer flag
    takes an integer, a boolean is a switch (``negate``: the flag turns it off), a media field takes a FILE, and a
    repeated field of items (``keyframes``) takes ``KEY=FILE`` per item (KEY: the item's first required field)."""

    flags: tuple[str, ...]
    help: str = ""
    metavar: str | None = None
    negate: bool = False
    example: str = ""  # shown when an item's KEY=FILE does not parse

    @property
    def name(self) -> str:
        """How an error names this flag: its first spelling."""
        return self.flags[0]


@dataclass(frozen=True)
class Need:
    """A capability a field's non-default value needs: ``capability`` is a ``Capabilities`` attribute (true when the
    backend can), ``what`` the words for the refusal ("this server's model cannot take {what}"). With ``value``, only
    that value needs it (``duration: "auto"``), every other value being the field's ordinary ones."""

    capability: str
    what: str
    value: Any = None

    def applies(self, value: Any, default: Any) -> bool:
        """Whether ``value`` (not None) needs the capability."""
        return bool(value == self.value if self.value is not None else value != default)


@dataclass(frozen=True)
class Role:
    """A request field's roles (see the module docstring). Frozen, hashable: it sits in ``Annotated`` metadata."""

    media: Media | None = None
    url: bool | str = False
    private: bool = False
    cli: Flag | None = None
    aliases: Mapping[ApiSurface, str] = field(default_factory=dict)
    names: Mapping[ApiSurface, str] = field(default_factory=dict)
    needs: Need | None = None
    offered: str | None = None

    @property
    def is_private(self) -> bool:
        """Removed under zero data retention: every media field, and the fields marked private (prompts)."""
        return self.private or self.media is not None

    @property
    def url_field(self) -> str | None:
        """The sibling field of the job API that takes this one's http(s) URL, if any."""
        return self.url if isinstance(self.url, str) else None

    @property
    def url_inline(self) -> bool:
        """The job API takes an http(s) URL in this very field."""
        return self.url is True

    def __hash__(self) -> int:  # ``names`` is a dict: hash what identifies the role
        return hash((self.media, self.url, self.private, self.cli, tuple(sorted(self.aliases.items())),
                     tuple(sorted(self.names.items())), self.needs, self.offered))

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        """A media field's JSON schema: its data-URI pattern on the string (the validators check the same form)."""
        schema: dict[str, Any] = handler(core_schema)
        if self.media is not None:
            target = handler.resolve_ref_schema(schema)
            for option in target.get("anyOf", [target]):
                if option.get("type") == "string":
                    option["pattern"] = self.media.data_uri_pattern
            target.setdefault("description", self.media.described)
        return schema


NO_ROLE = Role()


# -- reading the roles ------------------------------------------------------------------------------------------
def role_of(info: FieldInfo) -> Role:
    return next((m for m in info.metadata if isinstance(m, Role)), NO_ROLE)


def roles(model: type[BaseModel]) -> dict[str, Role]:
    """``{field: Role}`` of ``model``'s fields, in declaration order (fields without one get ``NO_ROLE``)."""
    return {name: role_of(info) for name, info in model.model_fields.items()}


def role_at(model: type[BaseModel], path: str) -> Role:
    """The role of the field at ``path`` (``image_input``, ``keyframes[1].image``); ``NO_ROLE`` for a path that names
    no field."""
    head, _, rest = path.partition(".")
    match = _STEP.fullmatch(head)
    info = model.model_fields.get(match[1]) if match else None
    if info is None:
        return NO_ROLE
    if not rest:
        return role_of(info)
    inner = item_model(info)
    return role_at(inner, rest) if inner is not None else NO_ROLE


def item_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model a field holds, alone or as the items of a tuple or list (``Keyframe`` for ``keyframes``)."""
    for arg in _flat_args(info.annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def scalar_type(info: FieldInfo) -> type | None:
    """``int``, ``float``, ``bool`` or ``str`` for a field of that type (optional or not; a ``Literal`` of strings
    is ``str``; a number that also takes keywords, ``int | Literal["auto"]``, is the number), else None."""
    args = [a for a in _flat_args(info.annotation) if a is not type(None)]
    kinds = {a for a in args if isinstance(a, type)}
    if len(kinds) == 1 and kinds <= {int, float} and keywords(info):
        return kinds.pop()
    found = {type(a) if get_origin(a) is None and not isinstance(a, type) else a for a in args}
    if len(found) == 1 and (kind := found.pop()) in (int, float, bool, str):
        return kind
    return None


def keywords(info: FieldInfo) -> tuple[str, ...]:
    """The words a number field also takes (``duration``: ``("auto",)``): the strings of a ``Literal`` beside a
    number type; ``()`` for any other field."""
    args = [a for a in _flat_args(info.annotation) if a is not type(None)]
    words = tuple(a for a in args if isinstance(a, str))
    numbers = [a for a in args if isinstance(a, type)]
    return words if words and numbers and all(a in (int, float) for a in numbers) else ()


def choices(info: FieldInfo) -> tuple[Any, ...]:
    """The values of a ``Literal`` field (optional or not), else ``()``."""
    return tuple(a for a in _literal_args(info.annotation))


def allows_none(info: FieldInfo) -> bool:
    return type(None) in _flat_args(info.annotation)


def _flat_args(annotation: Any) -> Iterator[Any]:
    """The types inside an annotation: through ``Annotated``, unions, tuples and lists; a ``Literal``'s values."""
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _flat_args(get_args(annotation)[0])
    elif origin in (Union, types.UnionType, tuple, list):
        for arg in get_args(annotation):
            if arg is not Ellipsis:
                yield from _flat_args(arg)
    elif origin is Literal:
        yield from get_args(annotation)
    else:
        yield annotation


def _literal_args(annotation: Any) -> Iterator[Any]:
    origin = get_origin(annotation)
    if origin is Literal:
        yield from get_args(annotation)
    elif origin in (Annotated, Union, types.UnionType):
        for arg in get_args(annotation)[:1] if origin is Annotated else get_args(annotation):
            yield from _literal_args(arg)


# -- walking values ---------------------------------------------------------------------------------------------
def media_values(model: type[BaseModel], data: Mapping[str, Any]) -> Iterator[tuple[str, Role, Any]]:
    """``(path, role, value)`` of every media field set in ``data`` (a body or a dumped request), nested items
    included: ``("image_input", role, uri)``, ``("keyframes[1].image", role, uri)``. Values are as given (any
    type): the caller checks their form."""
    for name, info in model.model_fields.items():
        value = data.get(name)
        if value is None:
            continue
        role, inner = role_of(info), item_model(info)
        if role.media is not None:
            yield name, role, value
        elif inner is not None:
            items = value if isinstance(value, list | tuple) else [value]
            for i, item in enumerate(items):
                if isinstance(item, Mapping):
                    prefix = f"{name}[{i}]" if isinstance(value, list | tuple) else name
                    for path, sub_role, sub_value in media_values(inner, item):
                        yield f"{prefix}.{path}", sub_role, sub_value


def with_values(data: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with each ``path`` of ``values`` (as ``media_values`` names them) set to its value."""
    out: dict[str, Any] = dict(data)
    for path, value in values.items():
        _set_path(out, path, value)
    return out


_STEP = re.compile(r"(\w+)(?:\[(\d+)\])?")
# A form's decimal number ("0.5", "1", ".25", "2.5e-1"): ASCII, bounded, no "nan" / "inf" (left as text, refused).
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][+-]?[0-9]{1,3})?", re.ASCII)


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    match = _STEP.fullmatch(head)
    if match is None:
        raise ValueError(f"not a field path: {path!r}")
    name, index = match[1], match[2]
    if not rest:
        data[name] = value
        return
    if index is None:
        data[name] = child = dict(data[name])
    else:
        items = list(data[name])
        items[int(index)] = child = dict(items[int(index)])
        data[name] = items
    _set_path(child, rest, value)


def scrubbed(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """Zero data retention: ``data`` (a dumped request) with every private field's content removed — the emptiest
    value its type takes: None where it may be null, else ``""`` — nested items included; the rest (the request's
    shape: sizes, times, settings) kept."""
    out = dict(data)
    for name, info in model.model_fields.items():
        value = out.get(name)
        if value is None:
            continue
        inner = item_model(info)
        if role_of(info).is_private:
            if value:
                out[name] = None if allows_none(info) else ""
        elif inner is not None:
            if isinstance(value, list | tuple):
                out[name] = [scrubbed(inner, v) if isinstance(v, Mapping) else v for v in value]
            elif isinstance(value, Mapping):
                out[name] = scrubbed(inner, value)
    return out


def form_value(info: FieldInfo, text: Any) -> Any:
    """A form field's text as the field's own type (forms send every value as a string): ``"7"`` → 7 for an integer
    field, ``"true"`` → True for a boolean one; anything else (or text that does not parse) as given, for the spec
    to refuse naming the field; ``"0.5"`` → 0.5 for a float one."""
    if not isinstance(text, str) or text_problem(text) is not None:  # no text (a NUL, ...): left for the type to refuse
        return text
    kind = scalar_type(info)
    if kind is int:
        sign, digits = (-1, text.strip()[1:]) if text.strip().startswith("-") else (1, text.strip())
        number = parse_digits(digits)  # ASCII digits, bounded: "²" or 5,000 digits stay text, refused as such
        if number is not None:
            return sign * number
    if kind is float and _DECIMAL.fullmatch(text.strip()) and math.isfinite(decimal := float(text.strip())):
        return decimal  # "1e999" (inf) stays text, refused as such
    if kind is bool and text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    return text


def surface_names(model: type[BaseModel], surface: ApiSurface) -> dict[str, str]:
    """``{canonical field: the surface's own field that stands for it}`` (OpenAI's ``seconds`` for ``duration``)."""
    return {name: role.names[surface] for name, role in roles(model).items() if surface in role.names}


def surface_aliases(model: type[BaseModel], surface: ApiSurface) -> dict[str, str]:
    """``{canonical field: another name the surface also takes for it}`` (the job API's ``resolution``)."""
    return {name: role.aliases[surface] for name, role in roles(model).items() if surface in role.aliases}
