"""The consent ledger, the gate's dry run and suppressions — what the JSON API
(dashboard.api.consent) and the consents/contacts pages both do. Writes are audited under the
context's actor. Refusals are ServiceError (dashboard.services) and optout's input errors; reading
evidence or suppressed addresses needs the vault unlocked (evidence is left out while locked,
the suppression export raises VaultLockedError)."""
from __future__ import annotations

import json
import math
import time

from campaigns.audiences import readable_source
from crypto.errors import VaultLockedError
from dashboard.keys import db_key, directory_key, erasures_key, fields_key, watch_key
from dashboard.services import Context, ServiceError, ServiceStateError
from dashboard.services.values import address_param, iso
from optout import audit, facts, ledger, refusals, subjects, suppression
from optout.deadlines import parse_consent_date
from optout.gate import Purpose, decide
from optout.ledger import ConsentEvent, consent_type_for

# Consents are evidence of something that happened: not before the e-commerce law's time
# (2000-01-01 leaves room for old records), not in the future beyond clock slack.
OCCURRED_AT_EARLIEST = 946684800.0


async def _writer(ctx: Context):
    """(profile, sealer) for writes on behalf of the tenant."""
    async with ctx[db_key].connect() as conn:
        profile = await ctx[directory_key].profile(conn, ctx.tenant_id)
    return profile, await ctx[fields_key].shared_sealer(ctx.tenant_id, profile.public_key)


def occurred_at(raw) -> float:
    """A consent's time: now (a whole second) when None; ISO 8601 or Unix seconds, after
    2000-01-01 and not in the future (ServiceError invalid_field)."""
    if raw is None:  # a whole second, like people's replies: a STOP of that second wins
        return float(math.floor(time.time()))
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        when = float(raw) if abs(raw) < 1e300 else math.inf
    elif isinstance(raw, str) and (parsed := parse_consent_date(raw)) is not None:
        when = parsed.timestamp()
    else:
        raise ServiceError("invalid_field", "'occurred_at' must be an ISO 8601 date-time")
    if not math.isfinite(when) or when < OCCURRED_AT_EARLIEST:
        raise ServiceError("invalid_field", "'occurred_at' must be a date after 2000-01-01")
    if when > time.time() + 60:
        raise ServiceError("invalid_field", "'occurred_at' is in the future")
    return when


async def record(ctx: Context, channel: str, raw_address: str, status: str, source: str,
                 evidence, *, occurred=None, recipient_type: str = "individual",
                 reconsent: bool = False) -> dict:
    """Records a consent or a refusal; {id, state}. 409s: refused_earlier, erased,
    reconsent_not_newer (see the API's description)."""
    consent_type = consent_type_for(channel)
    address = address_param(raw_address, channel, "address")
    if not evidence or not isinstance(evidence, (str, dict)):
        raise ServiceError("missing_field",
                           "'evidence' (the statement or form shown) is required")
    if reconsent and status != ledger.GRANTED:
        raise ServiceError("invalid_field", "'reconsent' goes with a granted consent only")
    when = occurred_at(occurred)
    profile, sealer = await _writer(ctx)
    document = {"statement": evidence, "address": address, "channel": channel,
                "source": source, "at": when, "recorded_by": ctx.actor} | (
        {"reconsent": True} if reconsent else {})
    event = ConsentEvent(
        address_index=ctx[directory_key].index(profile.id, address),
        # Free text stays in the sealed evidence; an İYS source code stays readable.
        consent_type=consent_type, status=status, source=readable_source(source, "api"),
        recipient_type=ledger.recipient_type_of(recipient_type), occurred_at=when,
        evidence_sealed=sealer.seal_field(json.dumps(document, ensure_ascii=False).encode()))
    if status == ledger.REVOKED:  # before the commit: see optout.watch
        ctx[watch_key].note(profile.id, event.address_index)
    async with ctx[db_key].begin() as conn:
        against = (await refusals.standing(conn, profile.id, [event.address_index],
                                           consent_type)).get(event.address_index)
        event_id = await _record_consent(conn, profile, event, against, reconsent)
        state, _ = await ledger.state_and_history(conn, profile.id, event.address_index,
                                                  consent_type)
        await audit.record(conn, profile.id, ctx.actor,
                           "consent.reconsent" if reconsent else "consent.record",
                           event_id=event_id, consent_type=consent_type, status=status,
                           **({"lifted_refusal": against.refused, "lifted_erasure": against.erased}
                              if reconsent and against else {}))
    return {"id": event_id, "state": state_view(state)}


async def _record_consent(conn, profile, event: ConsentEvent, against: refusals.Standing | None,
                          reconsent: bool) -> str:
    """Records the consent, or refuses (409) one that would undo what the person said: after
    their refusal or erasure only their own new consent counts, sent as a reconsent (with its
    new evidence, dated after what it lifts)."""
    if reconsent:
        if against is not None and event.occurred_at <= against.since:
            raise ServiceStateError("reconsent_not_newer", "the reconsent is not dated after "
                                    "the refusal or erasure it would lift")
        event_id = await refusals.grant_by_person(conn, profile.id, event, profile.iys_enabled)
        if event_id is None:
            raise ServiceStateError("reconsent_not_newer", "the person stopped in the same "
                                    "second or later; that stop stands")
        return event_id
    if against is not None and against.erased:
        raise ServiceStateError("erased", "this person's data was erased at their request and "
                                "they get no messages; only their own new consent starts "
                                "again: send it with \"reconsent\": true and its evidence")
    if against is not None and event.status == ledger.GRANTED:
        raise ServiceStateError("refused_earlier", "this person refused; an import or a plain "
                                "consent does not undo that. If they consented again "
                                "themselves, send \"reconsent\": true with the new evidence")
    (event_id,) = await ledger.record(conn, profile.id, [event], profile.iys_enabled)
    return event_id


def state_view(state: dict | None) -> dict | None:
    if state is None:
        return None
    return {"consent_type": state["consent_type"], "status": state["status"],
            "recipient_type": state["recipient_type"], "source": state["source"],
            "occurred_at": iso(state["occurred_at"]), "iys_status": state["iys_status"]}


async def lookup(ctx: Context, raw_address: str | None, channel: str = "sandbox",
                 download: bool = False) -> dict:
    """An address's consent state and full history, with the evidence while unlocked (None
    entries while locked). `download` records it in the audit log as an export."""
    consent_type = consent_type_for(channel)
    address = address_param(raw_address, channel, "address")
    async with ctx[db_key].connect() as conn:
        index = (await ctx[directory_key].indexer(conn, ctx.tenant_id))(address)
        state, history = await ledger.state_and_history(conn, ctx.tenant_id, index,
                                                        consent_type)
    evidence = await _open_evidence(ctx, [bytes(h["evidence_sealed"]) for h in history])
    if download:
        await audit.write(ctx[db_key], ctx.tenant_id, ctx.actor, "consent.export",
                          consent_type=consent_type, events=len(history))
    return {"address": address, "state": state_view(state), "history": [
        {"id": h["id"], "status": h["status"], "source": h["source"],
         "iys_source": h["iys_source"], "recipient_type": h["recipient_type"],
         "occurred_at": iso(h["occurred_at"]), "recorded_at": iso(h["recorded_at"]),
         "iys_sync_state": h["iys_sync_state"], "iys_deadline": iso(h["iys_deadline"]),
         "evidence": ev} for h, ev in zip(history, evidence, strict=True)]}


async def _open_evidence(ctx: Context, blobs: list[bytes]) -> list:
    """Evidence in the clear while unlocked; null entries (and no error) while locked."""
    try:
        opened = await ctx[fields_key].open_fields(ctx.tenant_id, blobs)
    except VaultLockedError:
        return [None] * len(blobs)
    return [json.loads(o) for o in opened]


async def gate(ctx: Context, raw_address: str | None, channel: str = "sandbox",
               purpose: str = "commercial") -> dict:
    """Dry run of the send gate for one address: {allowed, reason}."""
    consent_type = consent_type_for(channel)
    try:
        chosen = Purpose(purpose)
    except ValueError:
        raise ServiceError("invalid_field",
                       "'purpose' must be commercial or informational") from None
    if not raw_address:
        raise ServiceError("missing_field", "'address' is required")
    from optout.addresses import normalise_address
    from optout.gate import Facts
    address = normalise_address(raw_address, channel)
    async with ctx[db_key].connect() as conn:
        profile = await ctx[directory_key].profile(conn, ctx.tenant_id)
        if address is None:
            found = Facts(address_valid=False)
        else:
            index = ctx[directory_key].index(ctx.tenant_id, address)
            found = (await facts.gather(conn, ctx.tenant_id, [index], consent_type,
                                        profile.iys_enabled,
                                        profile.has_merchant_contacts))[index]
    decision = decide(found, chosen)
    return {"allowed": decision.allowed, "reason": decision.reason}


async def suppress(ctx: Context, raw_address: str, channel: str | None = None,
                   kind: str = "manual") -> dict:
    """Suppresses an address (kind manual, complaint, erasure, blocked, opted_out); an
    erasure is the same KVKK erasure as subjects.erase. {scope, kind}."""
    scope = consent_type_for(channel) if channel else suppression.EVERYTHING
    address = address_param(raw_address, channel or "sandbox", "address")
    profile, sealer = await _writer(ctx)
    index = ctx[directory_key].index(profile.id, address)
    ctx[watch_key].note(profile.id, index)
    async with ctx[db_key].begin() as conn:
        if kind == "erasure":
            counts = await subjects.erase(conn, profile.id, index)
            request_id = await subjects.record_request(conn, profile.id, index, "erasure", "api",
                                                       done=False)
            await audit.record(conn, profile.id, ctx.actor, "subject.erase",
                               request_id=request_id, **counts)
        else:  # no address stored again for an erased person
            sealed = None if await refusals.erased(conn, profile.id, index) \
                else sealer.seal_field(address.encode())
            await suppression.suppress(conn, profile.id, index, scope, kind, ctx.actor, sealed)
            await audit.record(conn, profile.id, ctx.actor, "suppression.add", scope=scope,
                               kind=kind)
    if kind == "erasure":
        await ctx[erasures_key].finish(profile.id)
        scope = suppression.EVERYTHING
    return {"scope": scope, "kind": kind}


async def suppressions(ctx: Context, export_format: str = "csv") -> list[dict]:
    """Every suppression with its address opened (VaultLockedError while locked); audited
    as an export in `export_format`."""
    async with ctx[db_key].connect() as conn:
        rows = await suppression.export_rows(conn, ctx.tenant_id)
    sealed = [r for r in rows if r.address_sealed]
    opened = await ctx[fields_key].open_fields(ctx.tenant_id,
                                               [bytes(r.address_sealed) for r in sealed])
    address = {id(r): o.decode() for r, o in zip(sealed, opened, strict=True)}
    items = [{"address": address.get(id(r)), "scope": r.scope, "kind": r.kind,
              "source": r.source, "created_at": iso(r.created_at)} for r in rows]
    await audit.write(ctx[db_key], ctx.tenant_id, ctx.actor, "suppression.export",
                      rows=len(items), format=export_format)
    return items
