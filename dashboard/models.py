"""Request models: each operation declares its JSON body once, as a frozen dataclass whose
fields carry their rules (`rule(...)`). `schema_of(Model)` is the body's JSON Schema in the
OpenAPI document and `parse(Model, body)` the checked instance — both read the same
declaration, so the document cannot drift from what is enforced.

Pure (no aiohttp): a refusal is an InputError with the API's codes — missing_field,
invalid_field (wrong type, out of bounds, not one of the choices), unknown_field (a closed
model), and check_value's invalid_text / invalid_number — and a message naming the field
(never its value); the web layer answers it with a 400."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from dashboard.inputs import MAX_INT, InputError, check_value


class _Absent:
    """The value of an optional field the body did not give (see `given`)."""

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT: Any = _Absent()
_RULE = "izinli_rule"
_OPTIONS = "__request_model__"

_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object",
          list: "array"}
_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "an object", list: "an array"}


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one field of a request may hold. `kind`: str, int, float, bool, dict, list, a
    request model (a nested object), a tuple of those (any of them), or None (any JSON).
    Bounds, choices and `check` are enforced unless `service_checks` says the service
    refuses such values itself with codes of its own (they are then documented only)."""
    kind: Any
    required: bool = True
    default: Any = None
    alias: str | None = None  # the JSON name when it is not a Python name ("from")
    min_length: int | None = None  # strings and arrays
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple | None = None
    items: Any = None  # an array's item kind (as `kind`)
    check: Callable[[Any], None] | None = None  # raises InputError
    service_checks: bool = False
    description: str | None = None
    schema: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # more of the schema


_REQUIRED: Any = object()  # rule() without a default


def rule(kind: Any, *, required: bool | None = None, default: Any = _REQUIRED, **options):
    """A model field: required unless a `default` is given (ABSENT: optional, and `given`
    leaves it out when the body did not give it)."""
    if required is None:
        required = default is _REQUIRED
    default = ABSENT if default is _REQUIRED else default
    found = Rule(kind, required=required, default=None if default is ABSENT else default,
                 **options)
    if required:
        return dataclasses.field(metadata={_RULE: found})
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={_RULE: found})
    return dataclasses.field(default=default, metadata={_RULE: found})


def request_model(cls=None, *, closed: bool = False, nulls: bool = True,
                  screen: Callable[[dict], None] | None = None, description: str | None = None):
    """Makes `cls` a request model (a frozen, keyword-only dataclass). `closed`: fields it
    does not declare are refused (unknown_field). `nulls`: null counts as absent (False: null
    is checked like any value). `screen(body)` runs before anything else is checked (e.g.
    refusing provider addresses, which must win over every other complaint)."""
    def wrap(inner):
        made = dataclasses.dataclass(frozen=True, kw_only=True)(inner)
        setattr(made, _OPTIONS, {"closed": closed, "nulls": nulls, "screen": screen,
                                 "description": description})
        return made
    return wrap if cls is None else wrap(cls)


def is_model(kind: Any) -> bool:
    return isinstance(kind, type) and hasattr(kind, _OPTIONS)


def _fields(model) -> list[tuple[str, str, Rule]]:
    """(attribute, JSON name, rule) of each field, in declaration order."""
    found = []
    for f in dataclasses.fields(model):
        r = f.metadata[_RULE]
        found.append((f.name, r.alias or f.name, r))
    return found


# --- the schema ----------------------------------------------------------------------------

def schema_of(model) -> dict:
    """The model's JSON Schema (OpenAPI 3.1)."""
    options = getattr(model, _OPTIONS)
    properties = {name: _rule_schema(r) for _, name, r in _fields(model)}
    schema: dict = {"type": "object"}
    required = [name for _, name, r in _fields(model) if r.required]
    if required:
        schema["required"] = required
    schema["properties"] = properties
    if options["closed"]:
        schema["additionalProperties"] = False
    if options["description"]:
        schema["description"] = options["description"]
    return schema


def _kind_schema(kind: Any) -> dict:
    if kind is None:
        return {}
    if is_model(kind):
        return schema_of(kind)
    if isinstance(kind, tuple):
        return {"type": [_TYPES[k] for k in kind]}
    return {"type": _TYPES[kind]}


def _rule_schema(r: Rule) -> dict:
    schema = {} if r.enum is not None else _kind_schema(r.kind)
    if r.enum is not None:
        schema["enum"] = list(r.enum)
    is_array = r.kind is list
    if r.items is not None:
        schema["items"] = _kind_schema(r.items)
    for key, value in (("minItems" if is_array else "minLength", r.min_length),
                       ("maxItems" if is_array else "maxLength", r.max_length),
                       ("minimum", r.minimum), ("maximum", r.maximum)):
        if value is not None:
            schema[key] = value
    if not r.required and r.default is not None:
        schema["default"] = r.default
    if r.description:
        schema["description"] = r.description
    return schema | dict(r.schema)


# --- parsing -------------------------------------------------------------------------------

def parse(model, body: Any, where: str = ""):
    """The body checked against the model: an instance, or InputError naming the first field
    that is wrong (`where` prefixes nested names: "iys_credentials.username")."""
    options = getattr(model, _OPTIONS)
    if not isinstance(body, dict):
        raise InputError("invalid_field", f"'{where[:-1]}' must be an object" if where
                         else "request body must be a JSON object")
    if options["screen"] is not None:
        options["screen"](body)
    fields = _fields(model)
    if options["closed"]:
        known = {name for _, name, _ in fields}
        unknown = sorted(str(k) for k in body if k not in known)
        if unknown:
            raise InputError("unknown_field", f"unknown field '{where}{unknown[0][:64]}'")
    values = {}
    for attribute, name, r in fields:
        if name not in body or (body[name] is None and options["nulls"]):
            if r.required:
                raise InputError("missing_field", f"'{where}{name}' is required")
            continue  # the dataclass default
        values[attribute] = _value(r, body[name], where + name)
    return model(**values)


def given(instance) -> dict:
    """The fields the body gave, by JSON name (a partial change: PATCH)."""
    return {name: getattr(instance, attribute) for attribute, name, _ in _fields(type(instance))
            if getattr(instance, attribute) is not ABSENT}


def _value(r: Rule, value: Any, name: str):
    value = _typed(r.kind, value, name)
    if r.items is not None:
        value = [_typed(r.items, item, f"{name}[]") for item in value]
    if not r.service_checks:
        _bounds(r, value, name)
        if r.check is not None:
            r.check(value)
    return value


def _typed(kind: Any, value: Any, name: str):
    """`value` if it is of `kind` (no bool for a number, no int for a string), a nested model
    parsed; finite numbers and clean text only."""
    if kind is None:
        check_value(value)
        return value
    if is_model(kind):
        return parse(kind, value, f"{name}.")
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) <= MAX_INT else math.inf
    if not any(isinstance(value, k) and (k is bool or not isinstance(value, bool))
               for k in kinds):
        raise InputError("invalid_field", f"'{name}' must be "
                         + " or ".join(_KIND_NAMES[k] for k in kinds))
    try:
        check_value(value)
    except InputError as exc:
        raise InputError(exc.code, f"'{name}': {exc.message}") from None
    return value


def _bounds(r: Rule, value: Any, name: str) -> None:
    if r.enum is not None and value not in r.enum:
        raise InputError("invalid_field",
                         f"'{name}' must be one of {', '.join(map(str, r.enum))}")
    if isinstance(value, (str, list)):
        what = "characters" if isinstance(value, str) else "items"
        if r.min_length is not None and len(value) < r.min_length:
            raise InputError("invalid_field", f"'{name}' needs at least {r.min_length} {what}")
        if r.max_length is not None and len(value) > r.max_length:
            raise InputError("invalid_field", f"'{name}' is over {r.max_length} {what}")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and ((r.minimum is not None and value < r.minimum)
                   or (r.maximum is not None and value > r.maximum)):
        raise InputError("invalid_field", f"'{name}' must be from {r.minimum} to {r.maximum}")


def model_of(name: str, fields: list[tuple[str, Rule]], **options):
    """A request model built at run time (fields that depend on the registered channels)."""
    namespace: dict[str, Any] = {"__annotations__": {}}
    for field_name, r in fields:
        attribute = field_name if field_name.isidentifier() else f"f_{len(namespace)}"
        if r.alias is None and attribute != field_name:
            r = dataclasses.replace(r, alias=field_name)
        default = {} if r.required else {"default": ABSENT}
        namespace["__annotations__"][attribute] = Any
        namespace[attribute] = dataclasses.field(metadata={_RULE: r}, **default)
    return request_model(type(name, (), namespace), **options)
