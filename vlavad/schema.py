"""One validation layer for everything a user can hand us: settings, model files, prompt pools,
annotations and presets.

Each file format is a small declared schema (pydantic models: types, ranges, no unknown keys),
so a bad value ends as one line that names the field, e.g.

    model.json: normaliser.static_std: must be greater than 0 (got 0.0)

rather than as a traceback from wherever the value is first used. Strict mode: a number written
as a string ("0.5") is refused rather than guessed at, because a file that says so was not
written by vlavad and may mean something else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import VlavadError

T = TypeVar("T", bound=BaseModel)

MAX_JSON_BYTES = 20_000_000  # no file we write comes near this; a bigger one is not ours


class Schema(BaseModel):
    """Base of every declared schema: immutable, unknown keys refused, no type coercion."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_default=True)


def validate(schema: type[T], data, what: str, error: type[VlavadError] = VlavadError) -> T:
    """`data` as a `schema` instance, or `error` with one line naming `what` and the bad field."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise error(f"{what}: {describe_error(exc)}") from None


def describe_error(exc: ValidationError) -> str:
    """The first problem of a pydantic ValidationError as `field.path: message (got value)`;
    the count of further problems, if any, is appended."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if not first["loc"] and first["type"] == "model_type":
        return f"expected a JSON object, got {_json_type(first.get('input'))}"
    where = ".".join(_location(part) for part in first["loc"]).replace(".[", "[") or "value"
    message = first["msg"]
    if first["type"] == "value_error":  # our own checks: their message already names the value
        message = str(first["ctx"]["error"])
    message = message[0].lower() + message[1:] if message else "invalid"
    got = first.get("input")
    silent = first["type"] in ("missing", "extra_forbidden", "value_error") or isinstance(got, (dict, list))
    shown = "" if silent else f" (got {_short(got)})"
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    more = f"; and {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
    return f"{where}: {message}{shown}{more}"


def _json_type(value) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true/false", int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _location(part) -> str:
    return f"[{part}]" if isinstance(part, int) else str(part)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_json_file(path: str | Path, what: str, error: type[VlavadError] = VlavadError):
    """Parsed JSON of a file we are asked to read, with one-line errors for a missing, huge,
    unreadable or malformed file. Never unpickles anything: JSON only."""
    import json

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise error(f"{what} {path.name} is {size / 1e6:.0f} MB; files of this kind are far smaller, so it is not one.")
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise error(f"{what} not found: {path.name}") from None
    except IsADirectoryError:
        raise error(f"{what} {path.name} is a folder, not a file.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path.name} is not valid JSON ({exc.__class__.__name__}: {exc}).") from None
    except OSError as exc:
        raise error(f"Cannot read {what} {path.name}: {exc.strerror}") from None
