"""Reading JSON objects the way Go's encoding/json fills a struct.

Go matches object keys to struct fields case-insensitively (an exact match wins), ignores
unknown keys and treats `null` as "absent". The helpers here give that behaviour to the
plain dicts that `json.loads` returns, and produce clear messages for type mismatches.
"""

from typing import Any


class FieldError(ValueError):
    """A field of the wrong JSON type or shape; the message names the field path."""


def fields(obj: Any, path: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Pick the known `names` out of JSON object `obj`, matching keys like Go does.

    Returns only the present, non-null fields.
    """
    if not isinstance(obj, dict):
        raise FieldError(f"{path or 'payload'}: expected a JSON object, got {_json_type(obj)}")
    picked: dict[str, Any] = {}
    for name in names:
        if name in obj:
            value = obj[name]
        else:
            folded = [k for k in obj if k.lower() == name]
            if not folded:
                continue
            value = obj[folded[0]]
        if value is not None:
            picked[name] = value
    return picked


def as_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise FieldError(f"{path}: expected a string, got {_json_type(value)}")
    return value


def as_int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{path}: expected an integer, got {_json_type(value)}")
    if not -(2**63) <= value < 2**63:
        raise FieldError(f"{path}: {value} does not fit a 64-bit integer")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
