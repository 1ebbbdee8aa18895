"""The dashboard's plumbing: sessions, roles, CSRF, security headers and templates. Pages hold
no business logic: they call the same application services as the JSON API
(dashboard.services), never the API itself."""
from __future__ import annotations

import functools
import hmac
import io
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from accounts import users
from dashboard import i18n, labels, notices
from dashboard.errors import known_failure
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
from store.faults import is_unavailable

log = logging.getLogger(__name__)

SESSION_COOKIE = "izinli_session"
DEVICE_COOKIE = "izinli_device"
PRE_AUTH_COOKIE = "izinli_csrf"  # double-submit token for the login and setup forms
STATIC = Path(__file__).parent.parent / "static"
TEMPLATES = Path(__file__).parent.parent / "templates"
USER = web.RequestKey("user", users.SessionUser)
FORM = web.RequestKey("form", dict)
# Multipart uploads: the reader, positioned after the CSRF field.
UPLOAD = web.RequestKey("upload", object)
PRE_CSRF = web.RequestKey("pre_csrf", str)
ZONE = web.RequestKey("zone", str)  # the business's time zone (labels.when)
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


def forget_reads(tenant_id: str) -> None:
    """Drops the tenant's short-lived aggregate reads after a change made from a page."""
    from dashboard.services import reads  # services import this module
    reads.forget(tenant_id)


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
            request[ZONE] = await labels.tenant_zone(request.app[db_key], user.tenant_id)
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
        return error_page(request, 400, labels.said(request, exc))
    except Exception as exc:
        if is_unavailable(exc):
            raise  # error_middleware answers a readable 503 with Retry-After
        refused = known_failure(exc)  # a service's refusal the page did not handle itself
        if refused is not None:
            status, code, message = refused
            return error_page(request, status,
                              labels.error_text(code, message, i18n.language(request)))
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
                   path=request.path, tz=request.get(ZONE, labels.DEFAULT_ZONE))
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
    from accounts import AccountError, WeakPassphraseError
    from dashboard.services import accounts as account_services
    token = _pre_auth(request)
    expected = _setup_token(request)
    if not await _pre_auth_ok(request):
        return error_page(request, 403, i18n.t(request, "csrf"))
    data = form(request)
    if (not expected or not hmac.compare_digest(data.get("token", "").encode(),
                                                expected.encode())
            or await users.tenant_count(request.app[db_key])):
        return error_page(request, 403, i18n.t(request, "setup_closed"))
    try:
        done = await account_services.set_up_business(
            request.app, data.get("business", ""), data.get("email", ""),
            data.get("password", ""), data.get("passphrase", ""))
    except HashBusyError:
        return too_many(request, 1)
    except AccountError as exc:
        message = (exc.strength.text(i18n.language(request))
                   if isinstance(exc, WeakPassphraseError) else str(exc))
        response = render(request, "setup.html", status=400, error=message,
                          token=data.get("token", ""))
        _set_cookie(request, response, PRE_AUTH_COOKIE, token)
        return response
    request.app[setup_state_key]["token"] = ""
    user, api_key = done.owner, done.api_key
    welcome = render(request, "welcome.html", api_key=api_key,
                     recovery_code=done.recovery_code)
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


async def _favicon(request: web.Request) -> web.StreamResponse:
    """Browsers ask for /favicon.ico whatever the page links; a day's cache."""
    return web.FileResponse(STATIC / "favicon.ico", headers={
        "Content-Type": "image/x-icon", "Cache-Control": "public, max-age=86400"})


def setup_web(app: web.Application) -> None:
    """Templates, static files, security headers and every page module's routes."""
    from dashboard import pages  # noqa: F401  (registers the pages)
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES),
                               autoescape=jinja2.select_autoescape(default=True),
                               undefined=jinja2.StrictUndefined)
    env.filters.update(labels.FILTERS)
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
    app.router.add_get("/favicon.ico", _favicon)
    for method, path, handler in _PAGES:
        app.router.add_route(method, path, handler)
