"""Limits every outbound call to a provider holds (İYS here, WhatsApp and Telegram in bot/):
no redirects, connect and read timeouts, and answers read only up to a cap. The addresses
themselves are the operator's configuration (providers.*), never a tenant's."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable

import aiohttp
import sqlalchemy as sa

log = logging.getLogger(__name__)

# Provider answers are small JSON documents (a Graph send answer is ~200 bytes, a full page of
# İYS changes ~300 KiB); anything larger is refused before it is held in memory.
MAX_RESPONSE_BYTES = 1024 * 1024
# A TCP (and TLS) connect to a provider takes milliseconds; five seconds is an outage.
CONNECT_SECONDS = 5.0
_CHUNK = 64 * 1024


class ResponseTooLargeError(aiohttp.ClientPayloadError):
    """The provider's answer is over MAX_RESPONSE_BYTES; what was read of it is dropped."""

    def __init__(self) -> None:
        super().__init__(f"response larger than {MAX_RESPONSE_BYTES} bytes")


def timeouts(total: float, connect: float = CONNECT_SECONDS) -> aiohttp.ClientTimeout:
    """A whole-request limit, a connect limit, and a limit on silence between reads."""
    return aiohttp.ClientTimeout(total=total, sock_connect=min(connect, total),
                                 sock_read=total)


def is_redirect(status: int) -> bool:
    """Redirects are never followed (allow_redirects=False): a provider does not move, and a
    redirect would carry tokens and personal data to an address nobody configured."""
    return 300 <= status < 400


async def read_capped(response: aiohttp.ClientResponse,
                      limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """The body, or ResponseTooLargeError once more than `limit` bytes arrived (or were
    announced): memory stays within the cap plus one chunk, whatever the server sends."""
    if response.content_length is not None and response.content_length > limit:
        raise ResponseTooLargeError
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ResponseTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


# Request and stored-credential fields that would name an address for a provider. Refused in
# tenant requests (by name, so a caller learns why) and dropped from stored credentials.
ADDRESS_FIELDS = ("base_url", "url", "api_url", "endpoint", "api_base", "host", "server")
ADDRESS_FORMAT = 2  # credentials_format of address-free credentials (migration 0014)


def names_an_address(key: str, value: object = None) -> bool:
    """Whether a request field would point a line or İYS at an address: one of ADDRESS_FIELDS,
    a *_url / *_uri / *_endpoint / *_host name, or any string value holding a URL."""
    lowered = key.lower()
    return (lowered in ADDRESS_FIELDS
            or lowered.endswith(("_url", "_uri", "_endpoint", "_host"))
            or (isinstance(value, str) and "://" in value))


def without_addresses(plain_json: bytes) -> bytes | None:
    """The credentials JSON with every address field removed; None when it held none."""
    data = json.loads(plain_json)
    if not isinstance(data, dict) or not any(k in data for k in ADDRESS_FIELDS):
        return None
    return json.dumps({k: v for k, v in data.items() if k not in ADDRESS_FIELDS},
                      separators=(",", ":")).encode()


async def drop_stored_addresses(db, unwrap: Callable[[bytes], bytes],
                                wrap: Callable[[bytes], bytes], table: sa.Table,
                                key: sa.Column, blob: sa.Column, version: sa.Column) -> int:
    """Rewraps every format-1 credential of `table` without its address fields and marks it
    format 2; returns how many were rewritten. Run at start-up, where the master key is (the
    migration cannot read wrapped values). One that cannot be opened is logged and left as it
    is, to be tried again at the next start; reading it ignores its address meanwhile."""
    async with db.connect() as conn:
        rows = list(await conn.execute(sa.select(key, blob).where(version < ADDRESS_FORMAT)))
    rewritten = 0
    for row_key, wrapped in rows:
        values: dict = {version.name: ADDRESS_FORMAT}
        if wrapped is not None:
            try:
                cleaned = without_addresses(unwrap(bytes(wrapped)))
            except Exception as exc:  # a wrong master key or a damaged row: never fatal here
                log.warning("stored credentials not rewrapped", extra={
                    "table": table.name, "error": type(exc).__name__})
                continue
            if cleaned is not None:
                values[blob.name] = wrap(cleaned)
                rewritten += 1
        async with db.begin() as conn:  # only if no other process did it meanwhile
            await conn.execute(table.update().where(
                key == row_key, version < ADDRESS_FORMAT).values(**values))
    if rewritten:
        log.info("provider addresses dropped from stored credentials",
                 extra={"table": table.name, "count": rewritten})
    return rewritten
