"""A job's id, one checked type: ``job_`` + 24 lowercase hex characters (``JobId.new``; CONTRACT.md).

Every route's path or query parameter that names a job is a ``JobId`` (FastAPI validates it through
``__get_pydantic_core_schema__``, and ``/openapi.json`` shows its pattern), and every store lookup checks its id
with ``JobId.is_valid`` before any SQL: NUL bytes, ``%00`` or 4 KB of garbage never reach the database. Text that is
not an id is refused as ``not_a_job_id``; ``api.errors`` answers it 404 naming the path parameter (no job has that
name) or 400 naming the query parameter.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

PREFIX = "job_"
PATTERN = r"^job_[0-9a-f]{24}$"
_ID = re.compile(PATTERN)
NOT_A_JOB_ID = "not_a_job_id"  # the validation error's type, for the error handler


class JobId(str):
    """A string known to be a job id's form (not that the job exists)."""

    __slots__ = ()

    @classmethod
    def new(cls) -> JobId:
        return cls(PREFIX + secrets.token_hex(12))

    @staticmethod
    def is_valid(value: object) -> bool:
        return isinstance(value, str) and _ID.fullmatch(value) is not None

    @classmethod
    def _validate(cls, value: str) -> JobId:
        if not cls.is_valid(value):
            shown = repr(value if len(value) <= 40 else value[:40] + "...")
            raise PydanticCustomError(NOT_A_JOB_ID, "no job {shown}: a job id is job_ and 24 hex characters",
                                      {"shown": shown})
        return cls(value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(cls._validate, core_schema.str_schema())

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"type": "string", "pattern": PATTERN, "description": "a job id: job_ and 24 hex characters"}
