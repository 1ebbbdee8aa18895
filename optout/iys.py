"""İYS API client: OAuth2 token, consent upload (single, bulk), status, changes, retry policy."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from optout.iys_rules import IysConsent
from optout.outbound import ResponseTooLargeError, is_redirect, read_capped, timeouts

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
# Renew this long before the token runs out, so a call never leaves with a dying token.
_REFRESH_MARGIN = 60.0
NOT_FOUND = "not_found"
BAD_RESPONSE = "bad_response"
_T = TypeVar("_T")
# İYS messages sometimes quote the rejected value; numbers and e-mail addresses never leave here.
# (Phone shapes only: digit runs, or 3-4/3/2/2 groups, so dates in messages stay readable.)
_PERSONAL = re.compile(r"[^\s@\"']+@[^\s@\"']+|\+?\d{7,}"
                       r"|\(?\d{3,4}\)?[ -]?\d{3}[ -]?\d{2}[ -]?\d{2}")


@dataclass(frozen=True)
class IysCredentials:
    """One brand's İYS API account. to_json includes the password: wrap it before storing.
    No address: İYS's URL is the operator's (providers.iys_url), and a `base_url` stored by
    older versions is ignored when read."""

    username: str
    password: str = field(repr=False)
    iys_code: str
    brand_code: str

    def to_json(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password,
                "iys_code": self.iys_code, "brand_code": self.brand_code}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IysCredentials:
        # İYS hands out its codes as numbers; paths want them as text either way.
        return cls(username=str(data["username"]), password=str(data["password"]),
                   iys_code=str(data["iys_code"]), brand_code=str(data["brand_code"]))


@dataclass(frozen=True)
class Accepted:
    transaction_id: str


@dataclass(frozen=True)
class Rejected:
    """İYS refused the record or request for good; sending it again gives the same answer."""

    code: str
    message: str


@dataclass(frozen=True)
class Retry:
    """A passing failure (rate limit, outage, network); try again after `after_seconds`."""

    after_seconds: float | None
    reason: str


@dataclass(frozen=True)
class AuthFailed:
    """The account's credentials or rights were refused; an operator has to act."""

    reason: str = "auth_failed"


Outcome = Accepted | Rejected | Retry | AuthFailed
Failure = Rejected | Retry | AuthFailed
_FAILURES = (Rejected, Retry, AuthFailed)


@dataclass(frozen=True)
class Result:
    """What became of the input record at `index` (0-based)."""

    index: int
    outcome: Outcome


class IysError(Exception):
    """A request-level failure of a call that has no per-record answer; see `outcome`."""

    def __init__(self, outcome: Failure):
        super().__init__(f"İYS request failed: {outcome}")
        self.outcome = outcome


@dataclass(frozen=True)
class _Reply:
    status: int
    retry_after: str | None
    body: Any


def classify(reply: _Reply | Exception, *, token_call: bool = False) -> Failure | None:
    """None for a success, else the failure: the one place that reads statuses and error bodies."""
    if isinstance(reply, TimeoutError):
        return Retry(None, "timeout")
    if isinstance(reply, ResponseTooLargeError):
        return Retry(None, "response_too_large")
    if isinstance(reply, aiohttp.ClientConnectorError):  # no connection: nothing was sent
        return Retry(None, "unreachable")
    if isinstance(reply, Exception):
        return Retry(None, "connection")
    status = reply.status
    if 200 <= status < 300:
        return None
    if is_redirect(status):  # not followed; nothing is wrong with the records themselves
        return Retry(None, "redirect_refused")
    if status == 429:
        return Retry(_seconds(reply.retry_after), "rate_limited")
    if status >= 500:
        return Retry(_seconds(reply.retry_after), f"http_{status}")
    if status in (401, 403) or token_call:
        return AuthFailed(f"http_{status}")
    code, message = _first_error(reply.body)
    if status == 404:
        return Rejected(NOT_FOUND, message)
    return Rejected(code or f"http_{status}", message)


# Failures that prove İYS did not take a request: it could not be reached, or it turned the
# request away at the door (429 and 503 come before any processing). Any other passing failure
# (a timeout, a connection dropped mid-answer, a 500 or 504) may come after İYS took it.
_TURNED_AWAY = frozenset({"unreachable", "rate_limited", "http_503"})


def may_have_been_taken(failure: Failure) -> bool:
    """Whether a request that ended in `failure` may still have been processed by İYS, so that
    sending it again could upload its records twice."""
    return isinstance(failure, Retry) and failure.reason not in _TURNED_AWAY


class IysClient:
    """Talks to one brand's consents in İYS at `base_url` (providers.iys_url); per-record
    answers come back as Result values."""

    def __init__(self, credentials: IysCredentials,
                 session_factory: Callable[[], aiohttp.ClientSession] = aiohttp.ClientSession,
                 clock: Callable[[], float] = time.monotonic, *, base_url: str,
                 timeout: float = DEFAULT_TIMEOUT):
        self._credentials = credentials
        self._base_url = base_url.rstrip("/")
        self._session_factory = session_factory
        self._clock = clock
        self._timeout = timeouts(timeout)
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._renew_at = 0.0
        self._token_lock = asyncio.Lock()

    async def __aenter__(self) -> IysClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def add(self, consent: IysConsent) -> Result:
        """Upload one record; never raises for an İYS answer."""
        body = await self._call("POST", "", json=consent.to_json())
        if isinstance(body, _FAILURES):
            return Result(0, body)
        return Result(0, Accepted(_text(body, "transactionId")))

    async def add_bulk(self, consents: Sequence[IysConsent]) -> str:
        """Queue records for asynchronous upload; the request id to poll with bulk_result."""
        if not consents:
            raise ValueError("add_bulk needs at least one consent")
        body = _ok(await self._call("POST", "/request", json=[c.to_json() for c in consents]))
        request_id = _text(body, "requestId")
        if not request_id:
            raise IysError(Rejected(BAD_RESPONSE, "bulk answer without requestId"))
        return request_id

    async def bulk_result(self, request_id: str, expected: int | None = None) -> list[Result]:
        """Per-record results of a bulk request, by input position.

        With `expected` (how many records were sent) every position gets a result: one İYS has
        not reported yet is Retry("pending"), so no record is ever lost between polls.
        """
        body = _ok(await self._call("GET", f"/request/{quote(request_id, safe='')}"))
        items = body if isinstance(body, list) else _field(body, "subRequests", "list")
        if not isinstance(items, list):
            raise IysError(Rejected(BAD_RESPONSE, "bulk result is not a list"))
        return _complete(_bulk_results(items), expected)

    async def status(self, recipient: str, type: str,
                     recipient_type: str = "BIREYSEL") -> IysConsent | None:
        """The record İYS holds for this key, or None when it holds none."""
        query = {"recipient": recipient, "recipientType": recipient_type, "type": type}
        body = await self._call("POST", "/status", json=query)
        if isinstance(body, Rejected) and body.code == NOT_FOUND:
            return None
        body = _ok(body)
        return _record(body) if body else None

    async def changes(self, after: str | None = None, limit: int = 1000, *,
                      source: str = "IYS") -> tuple[list[IysConsent], str | None]:
        """One page of consent changes after the cursor, and the cursor to keep for the next.

        source "IYS" lists what people did in İYS themselves (refusals); "HS" our own uploads.
        """
        params = {"source": source, "limit": str(limit)} | ({"after": after} if after else {})
        body = _ok(await self._call("GET", "/changes", params=params))
        if not isinstance(body, dict):
            raise IysError(Rejected(BAD_RESPONSE, "changes answer is not an object"))
        records = [_record(item) for item in body.get("list") or []]
        return records, body.get("after") or after

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The body of a successful answer, or the Failure; renews the token once on a 401."""
        url = self._consents_url + path
        token = await self._token_for()
        if not isinstance(token, str):
            return token
        reply = await self._send(method, url, token=token, **kwargs)
        if isinstance(reply, _Reply) and reply.status == 401:
            log.info("İYS refused the access token; renewing it once")
            token = await self._token_for(refused=token)
            if not isinstance(token, str):
                return token
            reply = await self._send(method, url, token=token, **kwargs)
        failure = classify(reply)
        if failure is not None:
            log.warning("İYS %s %s: %s", method, path or "/", _describe(failure))
            return failure
        assert isinstance(reply, _Reply)  # classify() passes only replies
        return reply.body

    async def _token_for(self, refused: str | None = None) -> str | Failure:
        # The lock makes concurrent callers share one token request; `refused` stops a second
        # renewal when another caller already replaced the token İYS turned down.
        async with self._token_lock:
            if self._token is None or self._token == refused or self._clock() >= self._renew_at:
                failure = await self._fetch_token()
                if failure is not None:
                    return failure
            assert self._token is not None
            return self._token

    async def _fetch_token(self) -> Failure | None:
        creds = self._credentials
        # The İYS documentation sends this grant as a JSON body, not a form.
        grant = {"username": creds.username, "password": creds.password,
                 "grant_type": "password"}
        self._token = None
        reply = await self._send("POST", self._base_url + "/oauth2/token", json=grant)
        failure = classify(reply, token_call=True)
        if failure is None:
            assert isinstance(reply, _Reply)  # classify() passes only replies
            failure = self._keep_token(reply.body)
        if failure is not None:
            log.warning("İYS token request failed: %s", _describe(failure))
        return failure

    def _keep_token(self, body: Any) -> Failure | None:
        token, lifetime = _text(body, "access_token"), _number(body, "expires_in")
        if not token or lifetime is None:
            return AuthFailed(BAD_RESPONSE)
        self._token = token
        self._renew_at = self._clock() + lifetime - min(_REFRESH_MARGIN, lifetime / 10)
        log.info("İYS access token obtained, valid for %d s", lifetime)
        return None

    async def _send(self, method: str, url: str, *, token: str | None = None,
                    **kwargs: Any) -> _Reply | Exception:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._http().request(method, url, headers=headers, timeout=self._timeout,
                                            allow_redirects=False, **kwargs) as resp:
                body = None if is_redirect(resp.status) else await _body(resp)
                return _Reply(resp.status, resp.headers.get("Retry-After"), body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return exc

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._session_factory()
        return self._session

    @property
    def _consents_url(self) -> str:
        c = self._credentials
        # Quoted: the codes are the tenant's input and may only ever name path segments.
        return (f"{self._base_url}/sps/{quote(c.iys_code, safe='')}/brands/"
                f"{quote(c.brand_code, safe='')}/consents")


async def with_backoff(call: Callable[[], Awaitable[_T]], attempts: int = 5, base: float = 0.5,
                       *, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                       jitter: Callable[[], float] = random.random,
                       max_delay: float = 60.0) -> _T:
    """Run `call`, again after a back-off while its answer is a Retry; only Retry is retried.

    A Retry answer is a Retry value, a Result (or a list of them) holding one, or an IysError
    carrying one. The last answer is returned (or raised) when attempts run out.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(attempts - 1):
        try:
            value = await call()
        except IysError as error:
            if not isinstance(error.outcome, Retry):
                raise
            retry = error.outcome
        else:
            retry = _retry_in(value)
            if retry is None:
                return value
        delay = backoff_delay(retry, attempt, base, jitter(), max_delay)
        log.info("İYS asked to retry (%s); waiting %.2f s", retry.reason, delay)
        await sleep(delay)
    return await call()


def backoff_delay(retry: Retry, attempt: int, base: float, jitter: float,
                  max_delay: float = 60.0) -> float:
    """base·2^attempt scaled by a jitter in [0.5, 1), capped; never shorter than Retry-After."""
    # Jitter spreads the workers that all saw the same outage, so they do not return together.
    backoff = min(base * 2**attempt * (0.5 + jitter / 2), max_delay)
    return max(backoff, retry.after_seconds or 0.0)


def _retry_in(value: object) -> Retry | None:
    if isinstance(value, Retry):
        return value
    if isinstance(value, Result):
        return value.outcome if isinstance(value.outcome, Retry) else None
    if isinstance(value, list | tuple):
        return next((r for r in map(_retry_in, value) if r is not None), None)
    return None


def _ok(body: Any) -> Any:
    if isinstance(body, _FAILURES):
        raise IysError(body)
    return body


def _bulk_results(items: list[Any]) -> dict[int, Result]:
    # The İYS documentation numbers a three-record batch 1, 2, 3; a 0 in the answer means it
    # counts from zero after all, and then positions are taken as they are.
    indexes = [i.get("index") for i in items if isinstance(i, dict)]
    base = 0 if 0 in indexes else 1
    results: dict[int, Result] = {}
    for item in items:
        index = item.get("index") if isinstance(item, dict) else None
        if isinstance(index, int) and index >= base:
            results[index - base] = Result(index - base, _record_outcome(item))
        else:
            log.warning("İYS bulk result without a usable index; its record stays pending")
    return results


def _record_outcome(item: dict[str, Any]) -> Outcome:
    status = str(item.get("status", "")).lower()
    if status == "success":
        return Accepted(_text(item, "transactionId"))
    if status == "failure":
        code, message = _error_fields(item.get("error"))
        return Rejected(code or "failure", message)
    # "enqueue" and anything new: not final yet, so poll again rather than guess.
    return Retry(None, "processing")


def _complete(results: dict[int, Result], expected: int | None) -> list[Result]:
    if expected is None:
        return [results[i] for i in sorted(results)]
    if any(i >= expected for i in results):
        log.warning("İYS reported more bulk records than were sent; extra ones ignored")
    return [results.get(i) or Result(i, Retry(None, "pending")) for i in range(expected)]


def _record(data: Any) -> IysConsent:
    # Raising (instead of skipping) keeps the caller's cursor where it was: a change we cannot
    # read must stop the sync loudly, never be stepped over, or a refusal could be missed.
    try:
        return IysConsent.from_json(data)
    except (ValueError, TypeError, AttributeError):
        raise IysError(Rejected(BAD_RESPONSE, "unreadable consent record")) from None


def _first_error(body: Any) -> tuple[str, str]:
    errors = _field(body, "errors")
    if isinstance(errors, list) and errors:
        return _error_fields(errors[0])
    if isinstance(body, dict) and "error" in body:  # OAuth2 shape
        return str(body["error"]), _scrub(str(body.get("error_description", "")))
    return "", ""


def _error_fields(error: Any) -> tuple[str, str]:
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code", "")), _scrub(str(error.get("message", "")))


def _scrub(text: str) -> str:
    return _PERSONAL.sub("***", text)[:300]


def _describe(failure: Failure) -> str:
    detail = failure.code if isinstance(failure, Rejected) else failure.reason
    return f"{type(failure).__name__}({detail})"


def _field(body: Any, *names: str) -> Any:
    if not isinstance(body, dict):
        return None
    return next((body[n] for n in names if n in body), None)


def _text(body: Any, name: str) -> str:
    value = _field(body, name)
    return "" if value is None else str(value)


def _number(body: Any, name: str) -> float | None:
    value = _field(body, name)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _seconds(retry_after: str | None) -> float | None:
    # Retry-After may also be an HTTP date; İYS is not known to send one, so that reads as None
    # and the exponential back-off applies.
    try:
        return max(0.0, float(retry_after)) if retry_after is not None else None
    except ValueError:
        return None


async def _body(resp: aiohttp.ClientResponse) -> Any:
    text = (await read_capped(resp)).decode("utf-8", "replace")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text
