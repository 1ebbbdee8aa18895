"""The gate: whether one message may go to one recipient, from already-loaded facts."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

# Stable reason codes: stored in the outbox, returned by the API, counted in metrics.
ALLOWED = "allowed"
NO_CONSENT = "no_consent"
OPTED_OUT = "opted_out"
SUPPRESSED = "suppressed"
IYS_REFUSED = "iys_refused"
# Granted here but not yet ONAY in İYS (upload pending): not sendable while İYS is on.
IYS_PENDING = "iys_pending"
QUIET_HOURS = "quiet_hours"
FREQUENCY_CAP = "frequency_cap"
INVALID_ADDRESS = "invalid_address"
BLOCKED = "blocked"


class Purpose(enum.StrEnum):
    COMMERCIAL = "commercial"
    INFORMATIONAL = "informational"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the store knows about one recipient for one channel or consent type.

    consent: "granted", "revoked" or None (never recorded). recipient_type: "individual" or
    "merchant". suppression: kind of the strongest active suppression ("opted_out", "blocked",
    "erasure", "complaint", "manual") or None. iys_status: "ONAY", "RET" or None.
    """

    address_valid: bool = True
    consent: str | None = None
    recipient_type: str = "individual"
    suppression: str | None = None
    iys_enabled: bool = False
    iys_status: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


# One instance per outcome so that decide() allocates nothing on the dispatch hot path.
_ALLOW = Decision(True, ALLOWED)
_NO_CONSENT = Decision(False, NO_CONSENT)
_OPTED_OUT = Decision(False, OPTED_OUT)
_SUPPRESSED = Decision(False, SUPPRESSED)
_IYS_REFUSED = Decision(False, IYS_REFUSED)
_IYS_PENDING = Decision(False, IYS_PENDING)
_INVALID_ADDRESS = Decision(False, INVALID_ADDRESS)
_BLOCKED = Decision(False, BLOCKED)
# Kinds with a reason of their own; every other kind (erasure, complaint, manual…) is
# reported as "suppressed".
_BY_SUPPRESSION = {OPTED_OUT: _OPTED_OUT, BLOCKED: _BLOCKED}


def decide(facts: Facts, purpose: Purpose | str, now: datetime | None = None) -> Decision:
    """Allow or refuse one send, with a stable reason code.

    Order: invalid address, then any suppression (blocks both purposes), then for commercial
    messages İYS RET, a refusal, and finally the need for a standing consent (merchants need
    none). `now` is accepted for quiet hours and frequency caps, which are not computed here
    yet; it is unused. Unknown purposes raise ValueError.
    """
    return _decide(facts, _is_commercial(purpose))


def decide_many(
    facts_list: Iterable[Facts], purpose: Purpose | str, now: datetime | None = None
) -> list[Decision]:
    """decide() for each recipient of a batch, in order; the purpose is checked once."""
    commercial = _is_commercial(purpose)
    return [_decide(facts, commercial) for facts in facts_list]


def _is_commercial(purpose: Purpose | str) -> bool:
    if purpose == Purpose.COMMERCIAL:
        return True
    if purpose == Purpose.INFORMATIONAL:
        return False
    raise ValueError(f"unknown purpose {purpose!r}")


def _decide(facts: Facts, commercial: bool) -> Decision:
    if not facts.address_valid:
        return _INVALID_ADDRESS
    if facts.suppression is not None:
        return _BY_SUPPRESSION.get(facts.suppression, _SUPPRESSED)
    return _commercial(facts) if commercial else _ALLOW


def _commercial(facts: Facts) -> Decision:
    if facts.iys_enabled and facts.iys_status == "RET":
        return _IYS_REFUSED
    # A refusal ends consent for individuals and merchants alike, even if İYS still says ONAY.
    if facts.consent == "revoked":
        return _OPTED_OUT
    if facts.recipient_type == "merchant":
        return _ALLOW
    # Anything but "merchant" is treated as an individual: the stricter rule is the safe one.
    if facts.iys_enabled:
        # With İYS on for the tenant, only ONAY in İYS counts as a standing consent.
        if facts.iys_status == "ONAY":
            return _ALLOW
        return _IYS_PENDING if facts.consent == "granted" and facts.iys_status is None \
            else _NO_CONSENT
    return _ALLOW if facts.consent == "granted" else _NO_CONSENT

