"""Text and numbers from outside, checked once at the type: ``CheckedStr`` and ``parse_digits``.

- ``CheckedStr`` is the request's string type (every string field of ``VideoRequest`` and of the routes' bodies,
  nested items included): a ``StrictStr`` that holds no NUL, no other control character but tab, newline and
  carriage return (a browser's form sends its line breaks as CR LF), and no lone surrogate (``"\\ud800"`` is valid
  JSON but no text: it cannot be stored or written back as UTF-8). PostgreSQL refuses NUL in text, so nothing that
  reaches SQL may hold one; a refusal is pydantic's ``invalid_text`` error, which the surfaces answer as a 400
  naming the field (``keyframes[0].image``, ``input.prompt``).
- ``parse_digits`` is the one reader of a number written in a URL or a header (a signed link's ``exp``, a
  ``Range``, a form's text): ASCII digits only (``str.isdigit`` also takes ``"²"``, ``int`` also takes ``"٣"``,
  ``" 7"`` and ``"1_0"``) and at most ``max_digits`` of them (``int`` refuses more than 4,300 digits with a
  ``ValueError``; long before that the number means nothing here).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StrictStr
from pydantic_core import PydanticCustomError

# Tab, newline and carriage return are text; every other C0 control, DEL, the C1 controls and lone surrogates are
# not.
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_DIGITS = re.compile(r"[0-9]+")
INVALID_TEXT = "invalid_text"  # the pydantic error type of a refusal


def text_problem(value: str) -> str | None:
    """What makes ``value`` no text (its first bad character, named and placed), or None when it is text."""
    found = _NOT_TEXT.search(value)
    if found is None:
        return None
    char = found.group()
    what = "a lone surrogate" if "\ud800" <= char <= "\udfff" else \
        "a NUL character" if char == "\x00" else "a control character"
    return (f"holds {what} (U+{ord(char):04X}) at position {found.start()}; text may hold tab, newline and "
            "carriage return but no other control character")


def _checked(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise PydanticCustomError(INVALID_TEXT, problem)
    return value


TEXT_CHECK = AfterValidator(_checked)
CheckedStr = Annotated[StrictStr, TEXT_CHECK]
# A constrained variant puts its constraints before the check, where the JSON schema shows them:
# ``Annotated[StrictStr, StringConstraints(pattern=...), TEXT_CHECK]`` (a pattern after the check is enforced but
# left out of the schema).


def parse_digits(text: str | bytes | None, *, max_digits: int = 18) -> int | None:
    """``text`` as a non-negative integer when it is 1 to ``max_digits`` ASCII digits (leading zeros count), else
    None: no sign, no space, no other digit than 0-9, nothing longer."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    if text is None or not 0 < len(text) <= max_digits or _DIGITS.fullmatch(text) is None:
        return None
    return int(text)
