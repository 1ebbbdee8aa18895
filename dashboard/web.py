"""The dashboard's plumbing: sessions, roles, CSRF, security headers, templates, and `api()`,
which runs a JSON API handler in-process so pages show and change exactly what the API does
(the dashboard has no business logic of its own)."""
from __future__ import annotations

import asyncio
import functools
import hmac
import io
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.streams import StreamReader
from multidict import CIMultiDict
from yarl import URL

from dashboard import i18n, notices, users
from dashboard.errors import DATABASE_FAULT, error_middleware
from dashboard.inputs import InputError, check_params
from dashboard.keys import (
    ACTOR,
    TENANT,
    db_key,
    hash_slots_key,
    master_key,
    sessions_key,
    settings_key,
)
from dashboard.proxies import HSTS, forwarded_middleware, parse_networks
from dashboard.ratelimit import (
    FailureLimiter,
    HashBusyError,
    HashSlots,
    LoginThrottle,
    TooManyAttemptsError,
    reserve,
)
from store.faults import DatabaseUnavailableError, is_unavailable

log = logging.getLogger(__name__)

SESSION_COOKIE = "izinli_session"
DEVICE_COOKIE = "izinli_device"
PRE_AUTH_COOKIE = "izinli_csrf"  # double-submit token for the login and setup forms
STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
USER = web.RequestKey("user", users.SessionUser)
FORM = web.RequestKey("form", dict)
# Multipart uploads: the reader, positioned after the CSRF field.
UPLOAD = web.RequestKey("upload", object)
PRE_CSRF = web.RequestKey("pre_csrf", str)
setup_state_key = web.AppKey("setup_state", dict)  # {"token": one-time first-run token}
login_limits_key = web.AppKey("login_limits", LoginThrottle)
# Password re-entry attempts, per session (the signed-in user guessing their own password).
reauth_limits_key = web.AppKey("reauth_limits", FailureLimiter)
# Live-progress streams open per session: {session token hash: count}.
live_streams_key = web.AppKey("live_streams", dict)
MAX_STREAMS_PER_SESSION = 5

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ApiResult:
    status: int
    data: Any

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def error(self) -> str:
        if isinstance(self.data, dict) and isinstance(self.data.get("error"), dict):
            return str(self.data["error"].get("message", ""))
        return ""

    @property
    def code(self) -> str:
        if isinstance(self.data, dict) and isinstance(self.data.get("error"), dict):
            return str(self.data["error"].get("code", ""))
        return ""


async def api(request: web.Request, method: str, path: str, *, query: dict | None = None,
              body: Any = None) -> ApiResult:
    """Runs the JSON API operation `method path` as the signed-in user, in-process. The API's
    own validation, error mapping and audit entries apply; the audit names the user."""
    url = URL("/api/v1" + path)
    if query:
        url = url.with_query({k: str(v) for k, v in query.items() if v is not None})
    raw_body = json.dumps(body).encode() if body is not None else b""
    # The page may already have read its own body (a form, an upload): clone regardless,
    # and give the sub-request a stream of its own holding just the JSON body.
    read, request._read_bytes = request._read_bytes, None
    try:
        sub = request.clone(method=method, rel_url=url, headers=CIMultiDict({
            "Content-Type": "application/json", "Content-Length": str(len(raw_body))}))
    finally:
        request._read_bytes = read
    payload = StreamReader(request.protocol, 2 ** 16, loop=asyncio.get_running_loop())
    if raw_body:
        payload.feed_data(raw_body)
    payload.feed_eof()
    sub._payload, sub._read_bytes = payload, raw_body
    match = await request.app.router.resolve(sub)
    if match.http_exception is not None:
        return ApiResult(match.http_exception.status, None)
    match.add_app(request.app)
    sub._match_info = match
    sub[TENANT], sub[ACTOR] = request[TENANT], request[ACTOR]
    response = await error_middleware(sub, match.handler)
    if (fault := response.get(DATABASE_FAULT)) is not None:
        raise DatabaseUnavailableError(fault)  # the page answers a readable 503 too
    raw = getattr(response, "body", None) or b""
    content_type = response.headers.get("Content-Type", "")
    if raw and "json" in content_type:
        return ApiResult(response.status, json.loads(raw))
    return ApiResult(response.status, raw.decode("utf-8", "replace") if raw else None)


# Aggregate reads (campaign counts, today's figures) kept per tenant for a few seconds, so a
# team refreshing the same pages does not repeat them; the dashboard forgets a tenant's
# entries after each change it makes, and the campaign page's live progress is never cached.
_read_cache: dict[tuple, tuple[float, ApiResult]] = {}


async def api_cached(request: web.Request, seconds: float, path: str, *,
                     query: dict | None = None) -> ApiResult:
    key = (request[TENANT], path, tuple(sorted((query or {}).items())))
    cached = _read_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < seconds:
        return cached[1]
    result = await api(request, "GET", path, query=query)
    if result.ok:
        if len(_read_cache) > 10_000:
            _read_cache.clear()
        _read_cache[key] = (time.monotonic(), result)
    return result


def forget_reads(tenant_id: str) -> None:
    for key in [k for k in _read_cache if k[0] == tenant_id]:
        _read_cache.pop(key, None)


# --- pages ------------------------------------------------------------------------------------

_PAGES: list[tuple[str, str, Page]] = []


def page(method: str, path: str, role: str = "viewer", *, public: bool = False,
         reauth: bool = False):
    """Registers a page. Signed-in users only (unless `public`), at least `role`; unsafe
    methods need the session's CSRF token; `reauth` pages need the password re-entered."""
    def wrap(handler: Page) -> Page:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            if public:
                return await _safely(handler, request)
            user = await users.session_user(request.app[db_key],
                                            request.cookies.get(SESSION_COOKIE, ""),
                                            cache=request.app.get(sessions_key))
            if user is None:
                if request.headers.get("HX-Request"):
                    return web.Response(status=401, headers={"HX-Redirect": "/login"})
                raise web.HTTPSeeOther("/login")
            request[USER], request[TENANT] = user, user.tenant_id
            request[ACTOR] = f"user:{user.user_id}"
            if (request.method not in ("GET", "HEAD")
                    and not await _csrf_ok(request, user.csrf)):
                return error_page(request, 403, i18n.t(request, "csrf"))
            if not user.can(role):
                return error_page(request, 403, i18n.t(request, "forbidden"))
            if reauth and request.method == "POST":
                refused = await _reauth_refused(request, user)
                if refused is not None:
                    return refused
            return await _safely(handler, request)
        _PAGES.append((method, path, guarded))
        return guarded
    return wrap


async def _reauth_refused(request: web.Request, user: users.SessionUser
                          ) -> web.StreamResponse | None:
    """None when the re-entered password is right; otherwise the page to answer with. The
    attempt is counted per session before the hash, and forgiven when it is right."""
    password = request.get(FORM, {}).get("password", "")
    if not password:
        return error_page(request, 403, i18n.t(request, "reauth_failed"))
    try:
        attempt = reserve((request.app[reauth_limits_key], user.token_hash.hex()))
        ok = await users.verify_password(request.app[db_key], user.user_id, password,
                                         run=request.app[hash_slots_key].run)
    except TooManyAttemptsError as exc:
        return too_many(request, exc.retry_after)
    except HashBusyError:
        attempt.forgive()
        return too_many(request, 1)
    if not ok:
        return error_page(request, 403, i18n.t(request, "reauth_failed"))
    attempt.forgive()
    return None


def too_many(request: web.Request, retry_after: int) -> web.Response:
    response = error_page(request, 429, i18n.t(request, "too_many_attempts"))
    response.headers["Retry-After"] = str(retry_after)
    return response


async def _safely(handler: Page, request: web.Request) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except InputError as exc:
        return error_page(request, 400, exc.message)
    except Exception as exc:
        if is_unavailable(exc):
            raise  # error_middleware answers a readable 503 with Retry-After
        log.exception("page failed", extra={"path": request.path})
        return error_page(request, 500, i18n.t(request, "server_error"))


async def _csrf_ok(request: web.Request, expected: str) -> bool:
    given = request.headers.get("X-CSRF-Token")
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        part = await reader.next()
        if given is None and part is not None and getattr(part, "name", None) == "csrf":
            given = (await part.read(decode=True)).decode("utf-8", "replace")
            part = None
        request[UPLOAD] = (reader, part)
    else:
        form = dict(await request.post())
        request[FORM] = _text_fields(form)
        given = given or request[FORM].get("csrf")
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def render(request: web.Request, template: str, status: int = 200, **context) -> web.Response:
    user = request.get(USER)
    context.update(user=user, csrf=user.csrf if user else request.get(PRE_CSRF, ""),
                   lang=i18n.language(request), _=functools.partial(i18n.t, request),
                   path=request.path)
    return aiohttp_jinja2.render_template(template, request, context, status=status)


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    if request.headers.get("HX-Request"):
        return render(request, "_message.html", status=status, kind="error", message=message)
    return render(request, "error.html", status=status, message=message)


def see_other(location: str) -> web.Response:
    """A 303 to return (not raise) when cookies must be set on it."""
    return web.Response(status=303, headers={"Location": location})


def form(request: web.Request) -> dict[str, str]:
    return request.get(FORM, {})


def _text_fields(posted) -> dict[str, str]:
    """A form's text fields. A NUL (the one character a urlencoded form carries that no text
    column takes; aiohttp already replaces undecodable bytes) is a 400 before any page runs."""
    fields = {k: v for k, v in posted.items() if isinstance(v, str)}
    check_params(fields.items(), "form field")
    return fields


async def spooled_upload(request: web.Request, field: str, limit: int):
    """The uploaded file `field` read into memory (at most `limit` bytes); (buffer, filename)
    or None. Never a temporary file: an upload is plaintext personal data, and a spool on disk
    would outlive the request in the file system. The caller closes the buffer."""
    reader, part = request[UPLOAD]
    while True:
        if part is None:
            part = await reader.next()
        if part is None:
            return None
        if getattr(part, "name", None) == field:
            spool = io.BytesIO()
            size = 0
            while chunk := await part.read_chunk(256 * 1024):
                size += len(chunk)
                if size > limit:
                    spool.close()
                    raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
                spool.write(chunk)
            return spool, part.filename or "upload.csv"
        await part.release()
        part = None


# --- sign-in, first run, language ------------------------------------------------------------

def _pre_auth(request: web.Request) -> str:
    token = request.cookies.get(PRE_AUTH_COOKIE) or secrets.token_urlsafe(24)
    request[PRE_CSRF] = token
    return token


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
                max_age: int | None = None) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", secure=request.secure,
                        max_age=max_age, path="/")


async def _pre_auth_ok(request: web.Request) -> bool:
    request[FORM] = _text_fields(await request.post())
    cookie, given = request.cookies.get(PRE_AUTH_COOKIE, ""), request[FORM].get("csrf", "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), given.encode())


@page("GET", "/login", public=True)
async def login_form(request: web.Request) -> web.StreamResponse:
    if _setup_token(request) and await users.tenant_count(request.app[db_key]) == 0:
        raise web.HTTPSeeOther("/setup")
    token = _pre_auth(request)
    response = render(request, "login.html", error=None)
    _set_cookie(request, response, PRE_AUTH_COOKIE, token)
    return response


@page("POST", "/login", public=True)
async def login(request: web.Request) -> web.StreamResponse:
    token = _pre_auth(request)
    if not await _pre_auth_ok(request):
        return error_page(request, 403, i18n.t(request, "csrf"))
    email, password = form(request).get("email", ""), form(request).get("password", "")
    throttle = request.app[login_limits_key]
    account_key = email.strip().casefold()[:254]
    ip_key = request.remote or "?"
    cookie = request.cookies.get(DEVICE_COOKIE, "")
    device = cookie if await users.known_device(request.app[db_key], request.app[master_key],
                                                email, cookie) else None
    try:
        attempt = throttle.reserve(account_key, ip_key, device)
        user = await users.authenticate(request.app[db_key], request.app[master_key], email,
                                        password, request.app[settings_key].kdf,
                                        run=request.app[hash_slots_key].run)
    except TooManyAttemptsError as exc:
        return _login_refused(request, token, 429, exc.retry_after)
    except HashBusyError:
        attempt.forgive()  # nothing was checked: this attempt does not count
        return _login_refused(request, token, 429, 1)
    if user is None:
        return _login_refused(request, token, 401)
    throttle.succeeded(attempt, account_key, ip_key, device)
    return await _signed_in(request, user, see_other("/"))


def _login_refused(request: web.Request, token: str, status: int,
                   retry_after: int | None = None) -> web.Response:
    response = render(request, "login.html", status=status,
                      error=i18n.t(request, "login_failed"))
    _set_cookie(request, response, PRE_AUTH_COOKIE, token)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def _signed_in(request: web.Request, user, response: web.StreamResponse
                     ) -> web.StreamResponse:
    device = request.cookies.get(DEVICE_COOKIE) or secrets.token_urlsafe(24)
    token, new_device = await users.start_session(request.app[db_key], user, device,
                                                  i18n.language(request))
    if new_device:
        await notify_owner(request, user.tenant_id, "security_login")
    _set_cookie(request, response, SESSION_COOKIE, token)
    _set_cookie(request, response, DEVICE_COOKIE, device, max_age=400 * 86400)
    response.del_cookie(PRE_AUTH_COOKIE, path="/")
    return response


async def notify_owner(request: web.Request, tenant_id: str, kind: str) -> None:
    """A security notice to the tenant's operators through the operator bot, when linked."""
    await notices.security_notice(request.app, tenant_id, kind)


@page("POST", "/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    await users.end_session(request.app[db_key], request[USER].token_hash,
                            request.app.get(sessions_key))
    response = see_other("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@page("GET", "/setup", public=True)
async def setup_form(request: web.Request) -> web.StreamResponse:
    if not _setup_token(request) or await users.tenant_count(request.app[db_key]):
        raise web.HTTPSeeOther("/login")
    given = request.query.get("token", "")
    token = _pre_auth(request)
    response = render(request, "setup.html", error=None, token=given)
    _set_cookie(request, response, PRE_AUTH_COOKIE, token)
    return response


@page("POST", "/setup", public=True)
async def setup(request: web.Request) -> web.StreamResponse:
    from dashboard import accounts
    token = _pre_auth(request)
    expected = _setup_token(request)
    if not await _pre_auth_ok(request):
        return error_page(request, 403, i18n.t(request, "csrf"))
    data = form(request)
    if (not expected or not hmac.compare_digest(data.get("token", "").encode(),
                                                expected.encode())
            or await users.tenant_count(request.app[db_key])):
        return error_page(request, 403, i18n.t(request, "setup_closed"))
    settings = request.app[settings_key]
    master = request.app[master_key]
    slots = request.app[hash_slots_key]
    try:
        users.check_email(data.get("email", ""))
        users.check_password(data.get("password", ""))
        tenant_id, api_key = await accounts.create_tenant(
            request.app[db_key], master, data.get("business", ""), data.get("passphrase", ""),
            kdf=settings.kdf, min_length=settings.min_passphrase_length, run=slots.run)
        await users.create_user(request.app[db_key], master, tenant_id, data["email"],
                                data["password"], "owner", "setup", kdf=settings.kdf,
                                run=slots.run)
    except HashBusyError:
        return too_many(request, 1)
    except accounts.AccountError as exc:
        response = render(request, "setup.html", status=400, error=str(exc),
                          token=data.get("token", ""))
        _set_cookie(request, response, PRE_AUTH_COOKIE, token)
        return response
    request.app[setup_state_key]["token"] = ""
    # Not through the slots: the business exists now, and its owner must be signed in.
    user = await users.authenticate(request.app[db_key], master, data["email"],
                                    data["password"], settings.kdf)
    welcome = render(request, "welcome.html", api_key=api_key)
    return await _signed_in(request, user, welcome)


def _setup_token(request: web.Request) -> str:
    return request.app[setup_state_key].get("token", "")


@page("POST", "/language")
async def language(request: web.Request) -> web.StreamResponse:
    chosen = form(request).get("language", "tr")
    if chosen in i18n.LANGUAGES:
        await users.set_language(request.app[db_key], request[USER].token_hash, chosen,
                                 request.app.get(sessions_key))
    raise web.HTTPSeeOther(form(request).get("back", "/") if form(request).get(
        "back", "/").startswith("/") and not form(request).get("back", "/").startswith("//")
        else "/")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    if request.secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)


def setup_web(app: web.Application) -> None:
    """Templates, static files, security headers and every page module's routes."""
    from dashboard import pages  # noqa: F401  (registers the pages)
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES),
                         autoescape=jinja2.select_autoescape(default=True),
                         undefined=jinja2.StrictUndefined)
    app.on_response_prepare.append(_security_headers)
    settings = app[settings_key]
    # Outermost: everything after it (cookies, the sign-in throttle) sees the client's scheme
    # and address as the trusted proxy reported them.
    app.middlewares.insert(0, forwarded_middleware(parse_networks(settings.trusted_proxies)))
    app[hash_slots_key] = HashSlots(settings.kdf_concurrency)
    app[login_limits_key] = LoginThrottle()
    app[reauth_limits_key] = FailureLimiter(5, 900)
    app[live_streams_key] = {}
    app[setup_state_key] = {"token": ""}
    app.router.add_static("/static/", STATIC, append_version=True)
    for method, path, handler in _PAGES:
        app.router.add_route(method, path, handler)
