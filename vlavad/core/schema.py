"""One validation layer for everything a user can hand us: settings, model files, prompt pools,
annotations and presets.

Each file format is a small declared schema (pydantic models: types, ranges, no unknown keys),
so a bad value ends as one line that names the field, e.g.

    model.json: normaliser.static_std: must be greater than 0 (got 0.0)

rather than as a traceback from wherever the value is first used. Strict mode: a number written
as a string ("0.5") is refused rather than guessed at, because a file that says so was not
written by vlavad and may mean something else. Floats must be finite everywhere: NaN and
infinity (which Python's JSON reader accepts) are refused, since every number here feeds a
computation or a comparison that they would silently break.

JSON is read through `parse_json`, which measures the nesting depth before parsing: Python's
parser recurses once per level, so a file of 100,000 brackets would end in a RecursionError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from vlavad.core.errors import VlavadError

T = TypeVar("T", bound=BaseModel)

MAX_JSON_BYTES = 20_000_000  # no file we write comes near this; a bigger one is not ours
MAX_JSON_DEPTH = 64  # our files nest 6 levels at most (a model's settings); a deeper one is not ours


class Schema(BaseModel):
    """Base of every declared schema: immutable, unknown keys refused, no type coercion."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)


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


_CHUNK = 1 << 22


def json_depth(text: bytes | str) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings do not count),
    found without parsing: the two escapes that can hide a quote (an escaped backslash, an escaped
    quote) are dropped, then every quote left opens or closes a string and the running bracket
    depth outside strings is summed in NumPy, 4 MB at a time. A 20 MB file takes about 0.15 s,
    where Python's parser takes 0.2-2.6 s. Malformed text gets a number too; the parser that reads
    it afterwards says what is wrong with it."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    if b"\\" in data:
        # bytes.replace pairs backslashes from the left, as a JSON reader does: in \\\" the first
        # two are one escaped backslash and the quote is escaped by the third.
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    depth = deepest = 0
    in_string = False
    for start in range(0, len(data), _CHUNK):
        chunk = np.frombuffer(data, np.uint8, count=min(_CHUNK, len(data) - start), offset=start)
        outside = np.logical_xor.accumulate(chunk == ord('"'))  # True after an odd number of quotes
        if not in_string:
            np.logical_not(outside, out=outside)
        folded = chunk | 0x20  # "[" and "]" fold onto "{" and "}"
        step = ((folded == ord("{")) & outside).view(np.int8) - ((folded == ord("}")) & outside).view(np.int8)
        running = np.cumsum(step, dtype=np.int32)
        running += depth
        deepest, depth, in_string = max(deepest, int(running.max())), int(running[-1]), not bool(outside[-1])
    return deepest


def parse_json(text: bytes | str, what: str, error: type[VlavadError] = VlavadError, *, max_depth: int = MAX_JSON_DEPTH):
    """Parsed JSON of `text` (what a user or a file handed us), or `error` with one line naming
    `what`: malformed text, or nesting deeper than `max_depth`."""
    depth = json_depth(text)
    if depth > max_depth:
        raise error(f"{what} nests {depth} levels deep; files of this kind nest at most {max_depth}, so it is not one.")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} is not valid JSON ({exc.__class__.__name__}: {exc}).") from None


def read_json_file(path: str | Path, what: str, error: type[VlavadError] = VlavadError):
    """Parsed JSON of a file we are asked to read, with one-line errors for a missing, huge,
    unreadable, malformed or deeply nested file. Never unpickles anything: JSON only."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise error(f"{what} {path.name} is {size / 1e6:.0f} MB; files of this kind are far smaller, so it is not one.")
        text = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} not found: {path.name}") from None
    except IsADirectoryError:
        raise error(f"{what} {path.name} is a folder, not a file.") from None
    except OSError as exc:
        raise error(f"Cannot read {what} {path.name}: {exc.strerror}") from None
    return parse_json(text, f"{what} {path.name}", error)
