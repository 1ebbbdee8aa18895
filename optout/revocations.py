"""Revocations committed by any process reach every process's watch (issue 13, item 4).

On PostgreSQL the database announces them itself (migration 0022: triggers on `suppressions`
and `consent_state` call pg_notify on the bus channel), so no writer can forget; the notice
arrives when the revoking transaction commits, and every process notes it in its
RevocationWatch, which the dispatcher reads right before each provider call. Notices sent
while a process's listening connection was down are lost: after the reconnect the process
reads the revocations recorded in the watch's window back from the tables.

A notice is the topic `revoked` and the payload "<tenant_id> <scope> <kind>" (a suppression's
kind, or `consent` for a revoked consent, which stops commercial messages only), a newline,
then blind indexes in hex separated by spaces (the trigger writes one per notice).
SQLite has one process, whose writers note their revocations themselves before the commit.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from optout.gate import BLOCKED, OPTED_OUT, SUPPRESSED
from optout.watch import KEEP_SECONDS, RevocationWatch
from store import raw
from store.bus import Bus
from store.engine import Database

log = logging.getLogger(__name__)

TOPIC = "revoked"
CONSENT = "consent"
# The gate's reason for each kind (optout.gate): the skip reads as the claim's refusal would.
_REASONS = {"opted_out": OPTED_OUT, "blocked": BLOCKED, CONSENT: OPTED_OUT}

_SUPPRESSED_SINCE = ("SELECT tenant_id, address_index, scope, kind FROM suppressions "
                     "WHERE created_at >= ?")
# The state's own event says when the revocation was recorded (consent_state.ended_at is
# when it happened, which an import or the API may date in the past).
_REVOKED_SINCE = ("SELECT cs.tenant_id, cs.address_index, cs.consent_type FROM consent_state cs "
                  "JOIN consent_events e ON e.id = cs.event_id "
                  "WHERE cs.status = 'revoked' AND e.recorded_at >= ?")


@dataclass(frozen=True, slots=True)
class Notice:
    tenant_id: str
    scope: str  # a consent type, or "*"
    kind: str  # a suppression's kind, or "consent"
    indexes: list[bytes]

    def note_in(self, watch: RevocationWatch) -> None:
        reason = _REASONS.get(self.kind, SUPPRESSED)
        for index in self.indexes:
            watch.note(self.tenant_id, index, self.scope, self.kind == CONSENT, reason)


def parse(payload: str) -> Notice:
    """The notice in a payload; ValueError when it is not one."""
    head, _, body = payload.partition("\n")
    tenant_id, scope, kind = head.split(" ")
    if not (tenant_id and scope and kind):
        raise ValueError("not a revocation notice")
    return Notice(tenant_id, scope, kind, [bytes.fromhex(h) for h in body.split()])


class RevocationNotices:
    """Feeds `watch` from the bus: each notice at once, the tables after a reconnect."""

    def __init__(self, bus: Bus, db: Database, watch: RevocationWatch):
        self.db, self.watch = db, watch
        bus.subscribe(TOPIC, self._heard)
        bus.on_reconnect(self.catch_up)

    def _heard(self, payload: str) -> None:
        try:
            notice = parse(payload)
        except ValueError:
            log.warning("malformed revocation notice ignored")
            return
        notice.note_in(self.watch)

    async def catch_up(self, window: float = KEEP_SECONDS) -> int:
        """Notes what was revoked in the last `window` seconds (by the writers' clocks): the
        watch then holds what it would have held had no notice been lost. Returns the count."""
        since = time.time() - window
        async with self.db.connect() as conn:
            suppressed = await raw.fetch(conn, _SUPPRESSED_SINCE, (since,))
            revoked = await raw.fetch(conn, _REVOKED_SINCE, (since,))
        for tenant_id, index, scope, kind in suppressed:
            Notice(tenant_id, scope, kind, [bytes(index)]).note_in(self.watch)
        for tenant_id, index, consent_type in revoked:
            Notice(tenant_id, consent_type, CONSENT, [bytes(index)]).note_in(self.watch)
        log.info("revocations caught up", extra={"count": len(suppressed) + len(revoked)})
        return len(suppressed) + len(revoked)
