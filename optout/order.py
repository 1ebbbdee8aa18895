"""Event order for what a person does on a channel (STOP/START replies, WhatsApp marketing
preferences, consent taps, Telegram blocks): an event older than the last one applied for that
person changes nothing, however late or often the provider delivers it.

The rule is `supersedes` (pure); `claim` keeps the last applied event per person in
`preference_clock` and asks the rule, inside the caller's transaction."""
from __future__ import annotations

import math
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from store.engine import dialect_insert
from store.tables import preference_clock

# Two independent clocks per person and consent type: opting out/in of messages, and
# blocking/unblocking a bot. An unblock is not a consent, so it must not make an older STOP
# look stale (and a Telegram block counts in both: it revokes consent and blocks).
CONSENT, BLOCK = "consent", "block"


@dataclass(frozen=True, slots=True)
class Applied:
    """The last event applied for a person: its whole second and whether it was a stop."""
    at: int
    stopped: bool


def event_second(reported: float | None, received: float) -> int:
    """The whole second an event happened: the provider's own time, but never later than when
    it reached us, so a wrong clock cannot date a resume beyond a STOP still to come.
    Providers count whole seconds (WhatsApp `timestamp`, Telegram `date`), so we do too."""
    at = received
    # NaN and anything not before `received` (a future or absurd time) count as received;
    # before 1970 counts as 1970, the oldest there is.
    if reported is not None and reported == reported and reported < received:
        at = max(reported, 0)
    return math.floor(at)


def supersedes(last: Applied | None, at: int, stops: bool) -> bool:
    """Whether an event at second `at` (a stop when `stops`) changes what `last` left.

    Newer wins, older changes nothing. Within the same second the order cannot be known, and
    the costs are not equal: a resume wrongly ignored costs one message the person can ask for
    again (START), a stop wrongly undone is a commercial message the law forbids. So in a tie
    a stop beats a resume, never the reverse, and a repeat of the same kind changes nothing
    (a redelivered event adds no second history entry)."""
    if last is None:
        return True
    if at != last.at:
        return at > last.at
    return stops and not last.stopped


async def claim(conn: AsyncConnection, tenant_id: str, address_index: bytes, scope: str,
                family: str, at: int, stops: bool) -> bool:
    """Advances the person's clock to this event and returns True when it `supersedes` the
    last one applied; False means the event is stale and the caller must change nothing.
    The clock row stays locked until the caller's transaction ends, so two deliveries for the
    same person (on any process) are decided one after the other."""
    key = {"tenant_id": tenant_id, "address_index": address_index, "scope": scope,
           "family": family}
    created = await conn.execute(dialect_insert(conn, preference_clock).values(
        **key, event_at=at, stopped=stops).on_conflict_do_nothing(
        index_elements=["tenant_id", "address_index", "scope", "family"]))
    if created.rowcount == 1:
        return True
    where = [preference_clock.c[name] == value for name, value in key.items()]
    row = (await conn.execute(sa.select(
        preference_clock.c.event_at, preference_clock.c.stopped).where(*where)
        .with_for_update())).one()
    if not supersedes(Applied(int(row.event_at), bool(row.stopped)), at, stops):
        return False
    await conn.execute(preference_clock.update().where(*where).values(
        event_at=at, stopped=stops))
    return True
