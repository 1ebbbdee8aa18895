"""Message templates: compiling {{field|fallback}} text, rendering it per contact, legal footer."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from optout.keywords import fold

# Fields every contact has; CSV attribute columns add more (see campaigns.csvparse).
DEFAULT_FIELDS = ("name", "phone")
MAX_TEMPLATE_CHARS = 4096
OPEN, CLOSE, FALLBACK_MARK = "{{", "}}", "|"

# The refusal instruction Law 6563 requires on every commercial message; a tenant may reword it
# (opt_out_text), never drop it.
OPT_OUT_TEXTS = {
    "tr": "Mesaj almak istemiyorsanız RET yazıp yanıtlayın.",
    "en": "To stop receiving messages, reply STOP.",
}
DEFAULT_LANGUAGE = "tr"

# Letters, digits and underscore in any script; folding below narrows them to [a-z0-9_].
_NAME = re.compile(r"\w+")
_NON_IDENTIFIER = re.compile(r"[^a-z0-9_]+")


class TemplateError(ValueError):
    """A template that cannot be used; `code` is stable, `placeholder` names the culprit."""

    def __init__(self, message: str, code: str = "invalid_template",
                 placeholder: str | None = None):
        super().__init__(message)
        self.code = code
        self.placeholder = placeholder


@dataclass(frozen=True, slots=True)
class Placeholder:
    key: str
    fallback: str | None
    written: str


@dataclass(frozen=True)
class Template:
    """A compiled template: `head`, then each placeholder followed by the literal after it.

    There is no escaping: a literal "{{" cannot be written. A lone "}}" is literal text.
    """

    source: str
    head: str
    parts: tuple[tuple[Placeholder, str], ...]
    placeholders: frozenset[str]


@functools.lru_cache(maxsize=4096)
def field_key(name: str) -> str:
    """Fold a field name the way CSV column keys are made: "Doğum Günü" → "dogum_gunu"."""
    # fold() handles İ/I/ı and drops marks; the cache keeps it off the per-message path.
    key = _NON_IDENTIFIER.sub("", fold(name).replace(" ", "_")).strip("_")
    return f"column_{key}" if key[:1].isdigit() else key


def compile_template(text: str) -> Template:
    """Parse `text` once so render() only looks values up and joins strings."""
    _check_size(text)
    literals: list[str] = []
    slots: list[Placeholder] = []
    position = 0
    while (start := text.find(OPEN, position)) != -1:
        end = _closing(text, start)
        literals.append(text[position:start])
        slots.append(_placeholder(text[start + len(OPEN):end]))
        position = end + len(CLOSE)
    literals.append(text[position:])
    parts = tuple(zip(slots, literals[1:], strict=True))
    return Template(text, literals[0], parts, frozenset(slot.key for slot in slots))


def _check_size(text: str) -> None:
    if not text.strip():
        raise TemplateError("the template is empty")
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"the template has {len(text)} characters; "
                            f"the limit is {MAX_TEMPLATE_CHARS}")


def _closing(text: str, start: int) -> int:
    end = text.find(CLOSE, start + len(OPEN))
    # "{{ hi {{name}}": the first "{{" is the unclosed one, not part of a name.
    if end == -1 or text.find(OPEN, start + len(OPEN), end) != -1:
        snippet = text[start:start + 20]
        raise TemplateError(f"unclosed placeholder at character {start + 1} "
                            f"(\"{snippet}\"); close it with }}}}")
    return end


def _placeholder(inner: str) -> Placeholder:
    written, mark, fallback = inner.partition(FALLBACK_MARK)
    written = written.strip()
    if not written:
        raise TemplateError(f"placeholder {{{{{inner}}}}} has no field name")
    # Names are only ever dictionary keys, so "{{a.b}}" is refused rather than interpreted.
    if not _NAME.fullmatch(written):
        raise TemplateError(f"placeholder {{{{{written}}}}} may contain only letters, digits "
                            f"and underscores", placeholder=written)
    key = field_key(written)
    if not key:
        raise TemplateError(f"placeholder {{{{{written}}}}} has no Latin letters or digits "
                            f"to name a field", placeholder=written)
    return Placeholder(key, fallback.strip() if mark else None, written)


def check_placeholders(template: Template, available: Iterable[str]) -> None:
    """Refuse a placeholder without a fallback that no contact field can fill.

    `available` is the full list of field names, DEFAULT_FIELDS included.
    """
    known = {field_key(name) for name in available}
    for slot, _ in template.parts:
        if slot.fallback is None and slot.key not in known:
            listed = ", ".join(sorted(known - {""})) or "none"
            raise TemplateError(f"unknown placeholder {{{{{slot.written}}}}}; "
                                f"available: {listed}", "unknown_placeholder", slot.key)


def render(template: Template, fields: Mapping[str, str]) -> str:
    """Fill the template for one contact; values go in verbatim and are never re-expanded."""
    values = {field_key(name): value for name, value in fields.items()}
    parts = [template.head]
    for slot, literal in template.parts:
        value = values.get(slot.key)
        if not value or value.isspace():
            value = slot.fallback or ""
        parts.append(value)
        parts.append(literal)
    return "".join(parts)


def footer(sender_name: str, sender_contact: str = "", language: str = DEFAULT_LANGUAGE,
           opt_out_text: str | None = None) -> str:
    """The sender identity and free refusal instruction every commercial message carries."""
    name, contact = sender_name.strip(), sender_contact.strip()
    if not name:
        # Sending without a trade name would break Law 6563; refuse rather than send.
        raise ValueError("a commercial message needs the sender's trade name")
    instruction = (opt_out_text or "").strip() or OPT_OUT_TEXTS[_language(language)]
    identity = f"{name} ({contact})" if contact else name
    return f"{identity} — {instruction}"


def _language(language: str) -> str:
    # "en-GB" → "en"; anything we have no wording for gets Turkish, the law's language.
    primary = language.replace("_", "-").split("-")[0].lower()
    return primary if primary in OPT_OUT_TEXTS else DEFAULT_LANGUAGE


def compose(template: Template, fields: Mapping[str, str], *, commercial: bool,
            sender_name: str, sender_contact: str = "", language: str = DEFAULT_LANGUAGE,
            opt_out_text: str | None = None) -> str:
    """The full message text; commercial messages always end with footer()."""
    body = render(template, fields)
    if not commercial:
        return body
    return f"{body}\n\n{footer(sender_name, sender_contact, language, opt_out_text)}"
