"""A fake İYS API server: OAuth2 tokens, per-brand consent histories, bulk uploads and changes.

Shapes follow the public İYS documentation (dev.iys.org.tr): the token answer; single add 200
{"transactionId", "creationDate"} or 422 {"errors": [{"location", "code", "message"}]}; bulk
{"requestId", "subRequests"} and per-record {"index", "status", "subrequestId", "error" |
"transactionId"}, numbered from 1 as in the documented example; changes {"after", "list"}.
Error codes H111, H113, H114 and H155 are documented ones. The public pages list no others, so
H100, H101, H110, H112, H174-H178, H180 and H190-H196 are this fake's own choice: a client must
pass codes through, never branch on them. The rules are checked here independently of
optout.iys_rules, as the other side of the wire.

Throughput. The public pages (dev.iys.org.tr, "Asenkron Çoklu İzin Ekleme" and "Çoklu İzin
Ekleme İsteği Sorgulama") document the asynchronous bulk flow but give no numbers, so the limits
here are settings:
- A bulk request carries at most `max_bulk` records (1,000: the figure in our product brief and
  the one integrators work with; not on the public pages); more is refused with 422 H192.
- It is asynchronous, as documented: the answer only gives a requestId and a subrequestId per
  record; İYS processes the records later (`bulk_delay` seconds here), and until then a poll of
  GET .../request/{requestId} reports them "enqueue" (the documented example shows a record in
  that state next to finished ones).
- No request rate is published. `rate_limit` (requests per second over all endpoints, tokens
  included) answers the excess with 429, a Retry-After header in seconds and an error body in
  İYS's usual shape ({"errors": [{"code": "H429", ...}]}, the code being this fake's choice). A
  429 or 503 is given before anything is processed.
- `lose_bulk_answers` takes the next bulk requests (they are processed) and drops the
  connection before the answer's body: the client cannot know whether İYS has its records,
  which is what a timeout after the request left looks like.
- `received` counts every record offered for upload (accepted or refused), by recipient, type,
  status and consentDate, so a test can tell a record that was uploaded twice.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import re
import secrets
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time

import holidays
from aiohttp import web

USERNAME = "izinli-iys-api"
PASSWORD = "Gizli-İYS-parola-7!"
IYS_CODE = "700100"
BRAND_CODE = "700101"
GMT3 = timezone(timedelta(hours=3))  # İYS: "İzinlerin saat dilimi GMT+3 kabul edilir."
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
EARLIEST = datetime(2015, 5, 1, tzinfo=GMT3)
CITIZEN_SOURCE = "IYS"
SOURCES = frozenset({
    "HS_FIZIKSEL_ORTAM", "HS_ISLAK_IMZA", "HS_WEB", "HS_CAGRI_MERKEZI", "HS_SOSYAL_MEDYA",
    "HS_EPOSTA", "HS_MESAJ", "HS_MOBIL", "HS_EORTAM", "HS_ETKINLIK", "HS_2015", "HS_ATM",
    "HS_KARAR", "HS_KAMPANYA", "HS_KARTVIZIT", "HS_OTOMATIK", "HS_TAAHHUTNAME", "HS_E_TICARET",
})
_CHOICES = (("type", {"MESAJ", "ARAMA", "EPOSTA"}, "H111", "İzin tipi (type) bulunamadı."),
            ("recipientType", {"BIREYSEL", "TACIR"}, "H110", "Alıcı tipi bulunamadı."),
            ("status", {"ONAY", "RET"}, "H112", "İzin durumu (status) bulunamadı."))
_RECIPIENT = {"MESAJ": re.compile(r"\+905[0-9]{9}"), "ARAMA": re.compile(r"\+90[2-5][0-9]{9}"),
              "EPOSTA": re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")}


@dataclass(frozen=True)
class Entry:
    """One accepted record: part of a consent history and of the changes stream."""

    seq: int
    brand: str
    recipient: str
    recipient_type: str
    type: str
    source: str
    status: str
    consent_date: datetime
    created: float
    transaction_id: str

    def to_json(self) -> dict:
        return {"recipient": self.recipient, "recipientType": self.recipient_type,
                "type": self.type, "source": self.source, "status": self.status,
                "consentDate": self.consent_date.strftime(DATE_FORMAT),
                "creationDate": _format(self.created), "transactionId": self.transaction_id}


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    status: int
    at: float


class IysReject(Exception):
    """An error answer in İYS's shape."""

    def __init__(self, status: int, code: str, message: str, location: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.location = status, code, message, location

    def response(self) -> web.Response:
        error = {"code": self.code, "message": self.message}
        error |= {"location": [self.location]} if self.location else {}
        return web.json_response({"errors": [error]}, status=self.status)


@dataclass
class IysState:
    users: dict[str, str] = field(default_factory=lambda: {USERNAME: PASSWORD})
    iys_code: str = IYS_CODE
    brand_codes: set[str] = field(default_factory=lambda: {BRAND_CODE})
    token_lifetime: float = 7200.0
    clock: Callable[[], float] = time.time  # epoch seconds: tokens, dates, rate limit
    outage: bool = False  # every call answers 503
    rate_limit: int | None = None  # requests per second over all endpoints; then 429
    latency: float = 0.0  # seconds before answering, to exercise client timeouts
    bulk_pending_polls: int = 1  # polls of a bulk request that still see "enqueue"
    bulk_delay: float = 0.0  # seconds before a bulk request's records are processed
    bulk_index_base: int = 1
    max_bulk: int = 1000
    lose_bulk_answers: int = 0  # the next N bulk requests are taken, their answers lost
    on_bulk: Callable[[str], None] | None = None  # called with each bulk request id taken
    changes_delay: float = 0.0  # real İYS leaves out the last hour (3600)
    changes_window: float = 7 * 86400.0
    tokens: dict[str, float] = field(default_factory=dict)  # token → expires at
    entries: list[Entry] = field(default_factory=list)  # creation order
    bulks: dict[str, dict] = field(default_factory=dict)
    requests: list[LoggedRequest] = field(default_factory=list)
    received: Counter = field(default_factory=Counter)  # (recipient, type, status, date)
    _recent: deque = field(default_factory=deque, init=False, repr=False)
    _seq: itertools.count = field(default_factory=itertools.count, init=False, repr=False)
    _cursors: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _by_key: dict[tuple, list[Entry]] = field(default_factory=dict, init=False, repr=False)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), GMT3)

    def issue_token(self) -> dict:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = self.clock() + self.token_lifetime
        return {"access_token": token, "refresh_token": secrets.token_urlsafe(24),
                "expires_in": int(self.token_lifetime),
                "refresh_expires_in": int(2 * self.token_lifetime), "token_type": "bearer"}

    def token_ok(self, token: str) -> bool:
        return self.tokens.get(token, float("-inf")) > self.clock()

    def revoke_tokens(self) -> None:
        """Forget every token, as after an İYS restart: the next call gets a 401."""
        self.tokens.clear()

    def history(self, recipient: str, type: str, recipient_type: str = "BIREYSEL",
                brand: str = BRAND_CODE) -> list[Entry]:
        return list(self._by_key.get((brand, recipient, type, recipient_type), ()))

    def current(self, recipient: str, type: str, recipient_type: str = "BIREYSEL",
                brand: str = BRAND_CODE) -> Entry | None:
        found = self.history(recipient, type, recipient_type, brand)
        return found[-1] if found else None

    def citizen_refuse(self, recipient: str, type: str, at: datetime,
                       recipient_type: str = "BIREYSEL", brand: str = BRAND_CODE) -> Entry:
        """A refusal the person made in İYS itself (web, app, SMS): source IYS, in changes."""
        return self._append(brand, {"recipient": recipient, "type": type, "status": "RET",
                                    "recipientType": recipient_type, "source": CITIZEN_SOURCE},
                            at.astimezone(GMT3))

    def upload(self, brand: str, body: object) -> Entry:
        """Check a provider's record as İYS does and keep it; IysReject when refused."""
        if not isinstance(body, dict):
            raise IysReject(422, "H100", "İzin nesnesi bekleniyor.")
        self.received[tuple(str(body.get(k)) for k in (
            "recipient", "type", "status", "consentDate"))] += 1
        consented = _valid_fields(body)
        now = self.now()
        if consented > now:
            raise IysReject(422, "H177", "İzin tarihi ileri bir tarih olamaz.", "consentDate")
        previous = self.current(body["recipient"], body["type"], body["recipientType"], brand)
        _check_history(previous, body, consented)
        if now > _last_upload_moment(consented):
            raise IysReject(422, "H178", "İzin tarihi 3 iş gününden eski olamaz.", "consentDate")
        return self._append(brand, body, consented)

    def cursor(self, entry: Entry) -> str:
        digest = hashlib.sha256(f"{entry.seq}:{entry.transaction_id}".encode()).hexdigest()
        cursor = f"{int(entry.created * 1000)}_{digest}"
        self._cursors[cursor] = entry.seq
        return cursor

    def seq_after(self, cursor: str) -> int:
        if cursor not in self._cursors:
            raise IysReject(422, "H196", "Geçersiz after değeri.", "after")
        return self._cursors[cursor]

    def wait(self) -> int:
        """Seconds until a request is allowed under rate_limit (0: now); counts it if allowed."""
        now = self.clock()
        while self._recent and self._recent[0] <= now - 1.0:
            self._recent.popleft()
        if self.rate_limit is not None and len(self._recent) >= self.rate_limit:
            return max(1, int(self._recent[0] + 1.0 - now + 0.999))
        self._recent.append(now)
        return 0

    def _append(self, brand: str, body: dict, consented: datetime) -> Entry:
        entry = Entry(next(self._seq), brand, body["recipient"], body["recipientType"],
                      body["type"], body["source"], body["status"], consented, self.clock(),
                      hashlib.sha256(uuid.uuid4().bytes).hexdigest())
        self.entries.append(entry)
        key = (entry.brand, entry.recipient, entry.type, entry.recipient_type)
        self._by_key.setdefault(key, []).append(entry)
        return entry

    def process_bulk(self, request_id: str) -> None:
        """İYS works through a queued bulk request: each record is checked and kept or
        refused, in the order given."""
        bulk = self.bulks.get(request_id)
        if bulk is not None and bulk["results"] is None:
            pairs = zip(bulk["records"], bulk["subrequests"], strict=True)
            bulk["results"] = [
                _bulk_item(self, bulk["brand"], record, position + self.bulk_index_base, sub)
                for position, (record, sub) in enumerate(pairs)]


def _valid_fields(body: dict) -> datetime:
    for name, allowed, code, message in _CHOICES:
        if body.get(name) not in allowed:
            raise IysReject(422, code, message, name)
    if body.get("source") not in SOURCES:
        raise IysReject(422, "H113", "İzin kaynağı (source) bulunamadı.", "source")
    if not _RECIPIENT[body["type"]].fullmatch(str(body.get("recipient", ""))):
        raise IysReject(422, "H114", "Alıcı (recipient) bulunamadı.", "recipient")
    return _consent_date(body.get("consentDate"))


def _consent_date(raw: object) -> datetime:
    try:
        consented = datetime.strptime(str(raw), DATE_FORMAT).replace(tzinfo=GMT3)
    except ValueError:
        raise IysReject(422, "H101", "İzin tarihi (consentDate) biçimi hatalı.",
                        "consentDate") from None
    if consented < EARLIEST:
        raise IysReject(422, "H155", "İzin tarihi (consentDate) için 2015-05-01 00:00:00 "
                                     "tarihinden önceki tarihler girilmemelidir.", "consentDate")
    return consented


def _check_history(previous: Entry | None, body: dict, consented: datetime) -> None:
    if previous is None:
        if body["status"] == "RET":
            raise IysReject(422, "H174", "İlk defa kaydedilen alıcı için izin RET olamaz.",
                            "status")
        return
    if previous.status == body["status"]:
        # Quotes the recipient on purpose: the client must keep it out of its logs and errors.
        raise IysReject(422, "H175", f"{body['recipient']} için izin zaten "
                                     f"{body['status']} durumunda.", "status")
    if consented <= previous.consent_date:
        raise IysReject(422, "H176", "İzin tarihi mevcut izinden ileri olmalıdır.", "consentDate")


def _last_upload_moment(consented: datetime) -> datetime:
    """End of the third Turkish business day after the consent's day (GMT+3)."""
    day, left = consented.astimezone(GMT3).date(), 3
    while left:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in _holidays(day.year):
            left -= 1
    return datetime.combine(day, clock_time(23, 59, 59), GMT3)


@functools.lru_cache(maxsize=16)
def _holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("TR", years=year))


STATE_KEY = web.AppKey("iys_state", IysState)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_iys_app(state: IysState) -> web.Application:
    app = web.Application(middlewares=[_log_requests, _gate])
    app[STATE_KEY] = state
    app.router.add_post("/oauth2/token", _token)
    base = "/sps/{iys_code}/brands/{brand}/consents"
    app.router.add_post(base, _add)
    app.router.add_post(base + "/request", _add_bulk)
    app.router.add_get(base + "/request/{request_id}", _bulk_result)
    app.router.add_post(base + "/status", _status)
    app.router.add_get(base + "/changes", _changes)
    return app


@web.middleware
async def _log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    response = await handler(request)
    state.requests.append(LoggedRequest(request.method, request.path, dict(request.query),
                                        request.content_type, response.status, state.clock()))
    return response


@web.middleware
async def _gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if state.latency:
        await asyncio.sleep(state.latency)
    try:
        if state.outage:
            raise IysReject(503, "H503", "Servis geçici olarak kullanılamıyor.")
        if wait := state.wait():
            return web.json_response({"errors": [{"code": "H429", "message": "Çok fazla istek."}]},
                                     status=429, headers={"Retry-After": str(wait)})
        if request.path.startswith("/sps/"):
            _authorise(state, request)
        return await handler(request)
    except IysReject as reject:
        return reject.response()


def _authorise(state: IysState, request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not state.token_ok(header[7:]):
        raise IysReject(401, "H401", "Jeton geçersiz veya süresi dolmuş.")
    info = request.match_info
    if info.get("iys_code") != state.iys_code or info.get("brand") not in state.brand_codes:
        raise IysReject(403, "H190", "Bu marka için yetkiniz yok.")


async def _token(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    form = await _body(request) if request.content_type == "application/json" else dict(
        await request.post())
    form = form if isinstance(form, dict) else {}
    if form.get("grant_type") != "password":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    if state.users.get(str(form.get("username"))) != form.get("password"):
        return web.json_response({"error": "invalid_grant", "error_description":
                                  "Kullanıcı adı veya şifre hatalı."}, status=401)
    return web.json_response(state.issue_token())


async def _add(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    entry = state.upload(request.match_info["brand"], await _body(request))
    return web.json_response({"transactionId": entry.transaction_id,
                              "creationDate": _format(entry.created)})


async def _add_bulk(request: web.Request) -> web.StreamResponse:
    state, brand = request.app[STATE_KEY], request.match_info["brand"]
    records = await _body(request)
    if not isinstance(records, list) or not records:
        raise IysReject(422, "H191", "İzin listesi boş olamaz.")
    if len(records) > state.max_bulk:
        raise IysReject(422, "H192", f"En fazla {state.max_bulk} izin gönderilebilir.")
    request_id = str(uuid.uuid4())
    subrequests = [str(uuid.uuid4()) for _ in records]
    state.bulks[request_id] = {"brand": brand, "records": records, "subrequests": subrequests,
                               "results": None, "polls": 0}
    if state.bulk_delay:
        asyncio.get_running_loop().call_later(state.bulk_delay, state.process_bulk, request_id)
    else:
        state.process_bulk(request_id)
    if state.on_bulk is not None:
        state.on_bulk(request_id)
    if state.lose_bulk_answers:
        state.lose_bulk_answers -= 1
        return await _lost_answer(request)
    subs = [{"subrequestId": sub} | (rec if isinstance(rec, dict) else {})
            for sub, rec in zip(subrequests, records, strict=True)]
    return web.json_response({"requestId": request_id, "subRequests": subs})


async def _lost_answer(request: web.Request) -> web.StreamResponse:
    """The request was taken; the connection drops before the answer leaves."""
    response = web.StreamResponse(status=200)
    await response.prepare(request)
    assert request.transport is not None
    request.transport.abort()
    return response


def _bulk_item(state: IysState, brand: str, record: object, index: int, subrequest: str) -> dict:
    item = {"index": index, "subrequestId": subrequest}
    try:
        entry = state.upload(brand, record)
    except IysReject as reject:
        return item | {"status": "failure",
                       "error": {"code": reject.code, "message": reject.message}}
    return item | {"status": "success", "transactionId": entry.transaction_id,
                   "creationDate": _format(entry.created)}


async def _bulk_result(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    bulk = state.bulks.get(request.match_info["request_id"])
    if bulk is None:
        raise IysReject(404, "H193", "İstek bulunamadı.")
    bulk["polls"] += 1
    if bulk["results"] is None or bulk["polls"] <= state.bulk_pending_polls:
        return web.json_response([{"index": position + state.bulk_index_base,
                                   "status": "enqueue", "subrequestId": sub}
                                  for position, sub in enumerate(bulk["subrequests"])])
    return web.json_response(bulk["results"])


async def _status(request: web.Request) -> web.Response:
    state, query = request.app[STATE_KEY], await _body(request)
    if not isinstance(query, dict):
        raise IysReject(422, "H100", "Sorgu nesnesi bekleniyor.")
    for name, allowed, code, message in _CHOICES[:2]:
        if query.get(name) not in allowed:
            raise IysReject(422, code, message, name)
    entry = state.current(str(query.get("recipient")), query["type"], query["recipientType"],
                          request.match_info["brand"])
    if entry is None:
        raise IysReject(404, "H180", "İzin bulunamadı.")
    found = entry.to_json()
    del found["transactionId"]
    return web.json_response(found)


async def _changes(request: web.Request) -> web.Response:
    state, query = request.app[STATE_KEY], request.query
    source, after = query.get("source"), query.get("after")
    if source not in ("HS", "IYS"):
        raise IysReject(422, "H194", "source HS ya da IYS olmalıdır.", "source")
    limit = _limit(query.get("limit", "1000"))
    seq, now = state.seq_after(after) if after else -1, state.clock()
    page = [e for e in state.entries
            if e.brand == request.match_info["brand"] and e.seq > seq
            and (e.source == CITIZEN_SOURCE) == (source == "IYS")
            and now - state.changes_window <= e.created <= now - state.changes_delay][:limit]
    cursor = state.cursor(page[-1]) if page else after
    return web.json_response(({"after": cursor} if cursor else {})
                             | {"list": [e.to_json() for e in page]})


def _limit(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise IysReject(422, "H195", "limit 1 ile 1000 arasında olmalıdır.", "limit")
    return int(raw)


async def _body(request: web.Request) -> object:
    try:
        return json.loads(await request.text())
    except ValueError:
        raise IysReject(400, "H100", "İstek gövdesi JSON değil.") from None


def _format(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, GMT3).strftime(DATE_FORMAT)
