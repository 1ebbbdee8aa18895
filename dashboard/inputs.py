"""Client input checked once at the edge: JSON text, query strings, path parts and form fields.

Pure functions (no aiohttp): they raise `InputError` with a stable code; the web layer turns it
into a 400. What they refuse would otherwise fail deep inside — a lone surrogate cannot be
encoded for sealing, PostgreSQL text cannot hold NUL, Python's json recurses on nesting,
`datetime` overflows on 1e308 — and answer 500."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping

MAX_DEPTH = 32
# BIGINT is the widest integer column; nothing larger is a meaningful count or id.
MAX_INT = 2 ** 63 - 1
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


class InputError(ValueError):
    """Client input the service will not take; `code` is stable, the message names no value."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def bad_text(text: str) -> bool:
    """A NUL character or a lone surrogate (UTF-16 half): neither survives storage."""
    return _BAD_TEXT.search(text) is not None


def _reject_constant(name: str):
    raise InputError("invalid_number", f"{name} is not a number JSON allows")


def parse_json(raw: bytes):
    """JSON text → a value holding only finite numbers and clean strings, at most MAX_DEPTH
    deep; InputError otherwise."""
    value = _loads(raw)
    check_value(value)
    return value


def parse_provider_json(raw: bytes):
    """A provider's webhook body: like parse_json, except that NULs are dropped and lone
    surrogates become U+FFFD instead of refusing the body — a person's STOP must not be lost
    to a stray character (no provider sends them, but the text is the sender's)."""
    value = _loads(raw)
    check_value(value, text_ok=True)
    return _cleaned(value)


def _loads(raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except InputError:
        raise
    except RecursionError:
        raise InputError("too_deep", f"JSON is nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError):  # ValueError: also ints past 4300 digits
        raise InputError("invalid_json", "the body is not valid JSON") from None


def _cleaned(value):
    # Recursion is bounded: check_value has already refused anything deeper than MAX_DEPTH.
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(k): _cleaned(v) for k, v in value.items()}
    return value


def clean_text(text: str) -> str:
    if not bad_text(text):
        return text
    return text.replace("\x00", "").encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def check_value(value, text_ok: bool = False) -> None:
    """Walks a parsed JSON value without recursion; the first problem found is raised.
    `text_ok`: strings are not checked (the caller cleans them)."""
    stack = [(value, 1, None)]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise InputError("too_deep", f"JSON is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, inner in item.items():
                    if not text_ok:
                        _check_key(key, where)
                    stack.append((inner, depth + 1, where or key))
            else:
                stack.extend((inner, depth + 1, where) for inner in item)
        elif not (text_ok and isinstance(item, str)):
            check_scalar(item, where)


def _check_key(key: str, where: str | None) -> None:
    if bad_text(key):
        raise InputError("invalid_text", f"{_name(where)}has a key with a NUL character or "
                                         "a lone surrogate")


def check_scalar(item, where: str | None = None) -> None:
    if isinstance(item, str):
        if bad_text(item):
            raise InputError("invalid_text", f"{_name(where)}holds a NUL character or a lone "
                                             "surrogate")
    elif isinstance(item, bool) or item is None:
        return
    elif isinstance(item, int):
        if abs(item) > MAX_INT:
            raise InputError("invalid_number", f"{_name(where)}holds an integer out of range")
    elif isinstance(item, float) and not math.isfinite(item):
        raise InputError("invalid_number", f"{_name(where)}holds a number out of range")


def _name(where: str | None) -> str:
    # The top-level field only: its name is the client's own, never their data.
    return f"'{where[:64]}' " if where is not None and not bad_text(where) else ""


def check_params(pairs: Iterable[tuple[str, str]], kind: str) -> None:
    """Query parameters, path parts or form fields: NUL or a lone surrogate is refused."""
    for key, value in pairs:
        if bad_text(key) or (isinstance(value, str) and bad_text(value)):
            name = f"'{key[:64]}'" if not bad_text(key) else "a"
            raise InputError("invalid_text", f"{name} {kind} holds a NUL character or a lone "
                                             "surrogate")


def int_param(params: Mapping[str, str], name: str, default: int | None, low: int,
              high: int = MAX_INT) -> int | None:
    """An integer query parameter in [low, high]; absent or empty gives `default`."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.strip(), 10) if raw.strip().lstrip("+-").isdigit() else None
    except ValueError:  # more digits than Python converts
        value = None
    if value is None:
        raise InputError("invalid_field", f"'{name}' must be an integer")
    if not low <= value <= high:
        raise InputError("invalid_field", f"'{name}' must be from {low} to {high}")
    return value


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "an object", list: "an array"}


def field(body: Mapping, name: str, kind: type, required: bool = True, default=None):
    """body[name] checked strictly against `kind` (no bool for a number, no int for a string,
    finite numbers only); InputError naming the field otherwise (missing_field, invalid_field,
    or check_value's code)."""
    if name not in body or body[name] is None:
        if required:
            raise InputError("missing_field", f"'{name}' is required")
        return default
    value = body[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) <= MAX_INT else math.inf
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InputError("invalid_field", f"'{name}' must be {_KIND_NAMES.get(kind, kind)}")
    try:
        check_value(value)
    except InputError as exc:
        raise InputError(exc.code, f"'{name}': {exc.message}") from None
    return value
