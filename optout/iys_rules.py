"""İYS consent records and the registry's acceptance rules, as pure values and functions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from optout.addresses import normalise_phone
from optout.deadlines import (
    IYS_UPLOAD_BUSINESS_DAYS,
    business_days_after,
    format_iys_date,
    parse_consent_date,
)

RecipientType = Literal["BIREYSEL", "TACIR"]
ConsentType = Literal["MESAJ", "ARAMA", "EPOSTA"]
Status = Literal["ONAY", "RET"]

RECIPIENT_TYPES = frozenset({"BIREYSEL", "TACIR"})
CONSENT_TYPES = frozenset({"MESAJ", "ARAMA", "EPOSTA"})
STATUSES = frozenset({"ONAY", "RET"})
# The İYS "izin kaynağı" codes a service provider may upload. The first thirteen appear in public
# İYS client libraries; the rest were in our product brief and could not be checked against
# public material, so İYS may still answer them with a rejection (which we pass on, unretried).
KNOWN_SOURCES = frozenset({
    "HS_2015", "HS_ATM", "HS_CAGRI_MERKEZI", "HS_EORTAM", "HS_EPOSTA", "HS_ETKINLIK",
    "HS_FIZIKSEL_ORTAM", "HS_ISLAK_IMZA", "HS_KARAR", "HS_MESAJ", "HS_MOBIL",
    "HS_SOSYAL_MEDYA", "HS_WEB",
    "HS_E_TICARET", "HS_KAMPANYA", "HS_KARTVIZIT", "HS_OTOMATIK", "HS_TAAHHUTNAME",
})
# Refusals a person makes in İYS itself carry this source; we read them, never upload them.
CITIZEN_SOURCE = "IYS"

# Stable rule codes returned by check(); the sync job stores them as reasons.
FIRST_RECORD_RET = "first_record_ret"
REPEATED_STATE = "repeated_state"
DATE_BACKWARDS = "date_backwards"
DATE_IN_FUTURE = "date_in_future"
TOO_OLD = "too_old"
INVALID_RECIPIENT = "invalid_recipient"
INVALID_SOURCE = "invalid_source"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


@dataclass(frozen=True)
class IysConsent:
    """One consent record as İYS keeps it: one (recipient, type, recipient type) and a state."""

    recipient: str
    recipient_type: RecipientType
    type: ConsentType
    source: str
    status: Status
    consent_date: datetime

    def __post_init__(self) -> None:
        # These values come from our own mapping code, so a bad one is a bug, not bad data.
        if self.recipient_type not in RECIPIENT_TYPES:
            raise ValueError("recipient_type must be BIREYSEL or TACIR")
        if self.type not in CONSENT_TYPES:
            raise ValueError("type must be MESAJ, ARAMA or EPOSTA")
        if self.status not in STATUSES:
            raise ValueError("status must be ONAY or RET")
        if self.consent_date.tzinfo is None or self.consent_date.utcoffset() is None:
            raise ValueError("consent_date must be timezone-aware")

    @property
    def key(self) -> tuple[str, str, str]:
        """What İYS keeps one history for (per brand)."""
        return self.recipient, self.type, self.recipient_type

    def to_json(self) -> dict[str, str]:
        """The record with İYS's field names; consentDate in GMT+3."""
        return {
            "recipient": self.recipient,
            "recipientType": self.recipient_type,
            "type": self.type,
            "source": self.source,
            "status": self.status,
            "consentDate": format_iys_date(self.consent_date),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IysConsent:
        """A record as İYS returns it (status query, changes); ValueError if it is not one."""
        # Merchant records may come without consentDate; when the record was written is then
        # the best date we have.
        raw_date = data.get("consentDate") or data.get("creationDate") or ""
        consent_date = parse_consent_date(str(raw_date))
        if consent_date is None:
            raise ValueError("İYS record without a readable consentDate")
        try:
            return cls(recipient=str(data["recipient"]),
                       recipient_type=data["recipientType"], type=data["type"],
                       source=str(data.get("source") or ""), status=data["status"],
                       consent_date=consent_date)
        except KeyError as missing:
            raise ValueError(f"İYS record without {missing.args[0]}") from None


def check(consent: IysConsent, previous: IysConsent | None, now: datetime) -> str | None:
    """The rule İYS would reject `consent` under, given the latest record for its key; or None.

    `previous` is the record İYS holds for the same (recipient, type, recipient type), if any.
    """
    if previous is not None and previous.key != consent.key:
        raise ValueError("previous is a record for another recipient, type or recipient type")
    return (_address_rule(consent) or _date_rule(consent, now)
            or _history_rule(consent, previous) or _age_rule(consent, now))


def is_valid_recipient(recipient: str, consent_type: str) -> bool:
    """E-mail for EPOSTA; a Turkish number in E.164 otherwise, a mobile one for MESAJ."""
    if consent_type == "EPOSTA":
        return _EMAIL.fullmatch(recipient) is not None
    if not recipient.startswith("+90") or normalise_phone(recipient) != recipient:
        return False
    return consent_type != "MESAJ" or recipient.startswith("+905")


def is_known_source(source: str) -> bool:
    return source.startswith("HS_") and source in KNOWN_SOURCES


def _address_rule(consent: IysConsent) -> str | None:
    if not is_valid_recipient(consent.recipient, consent.type):
        return INVALID_RECIPIENT
    if not is_known_source(consent.source):
        return INVALID_SOURCE
    return None


def _date_rule(consent: IysConsent, now: datetime) -> str | None:
    return DATE_IN_FUTURE if _sent_date(consent) > now else None


def _history_rule(consent: IysConsent, previous: IysConsent | None) -> str | None:
    if previous is None:
        return FIRST_RECORD_RET if consent.status == "RET" else None
    if consent.status == previous.status:
        return REPEATED_STATE
    # İYS wants a new record's consentDate strictly after the one it holds.
    if _sent_date(consent) <= _sent_date(previous):
        return DATE_BACKWARDS
    return None


def _age_rule(consent: IysConsent, now: datetime) -> str | None:
    deadline = business_days_after(consent.consent_date, IYS_UPLOAD_BUSINESS_DAYS)
    return TOO_OLD if now > deadline else None


def _sent_date(consent: IysConsent) -> datetime:
    # consentDate travels with whole seconds, so İYS compares what is left after formatting.
    return consent.consent_date.replace(microsecond=0)
