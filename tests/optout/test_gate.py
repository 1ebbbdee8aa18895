"""The gate: every reason code, and agreement with a reference model written as legal rules."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optout import gate
from optout.gate import Decision, Facts, Purpose, decide, decide_many

COMM, INFO = Purpose.COMMERCIAL, Purpose.INFORMATIONAL
SUPPRESSION_KINDS = ["opted_out", "blocked", "erasure", "complaint", "manual"]

CASES = [
    # (facts, purpose, reason)
    (Facts(address_valid=False, consent="granted"), COMM, "invalid_address"),
    (Facts(address_valid=False), INFO, "invalid_address"),
    (Facts(address_valid=False, suppression="opted_out"), INFO, "invalid_address"),
    (Facts(consent="granted", suppression="opted_out"), COMM, "opted_out"),
    (Facts(suppression="opted_out"), INFO, "opted_out"),
    (Facts(consent="granted", suppression="blocked"), COMM, "blocked"),
    (Facts(suppression="blocked"), INFO, "blocked"),
    (Facts(consent="granted", suppression="erasure"), COMM, "suppressed"),
    (Facts(suppression="complaint"), INFO, "suppressed"),
    (Facts(suppression="manual", recipient_type="merchant"), COMM, "suppressed"),
    (Facts(), INFO, "allowed"),
    (Facts(consent="revoked"), INFO, "allowed"),
    (Facts(iys_enabled=True, iys_status="RET"), INFO, "allowed"),
    (Facts(consent="granted"), COMM, "allowed"),
    (Facts(consent="revoked"), COMM, "opted_out"),
    (Facts(), COMM, "no_consent"),
    (Facts(consent="granted", iys_enabled=True, iys_status="ONAY"), COMM, "allowed"),
    (Facts(iys_enabled=True, iys_status="ONAY"), COMM, "allowed"),
    (Facts(consent="revoked", iys_enabled=True, iys_status="ONAY"), COMM, "opted_out"),
    (Facts(consent="granted", iys_enabled=True), COMM, "iys_pending"),
    (Facts(consent="granted", iys_enabled=True, iys_status="RET"), COMM, "iys_refused"),
    (Facts(consent="revoked", iys_enabled=True, iys_status="RET"), COMM, "iys_refused"),
    # İYS off for the tenant: a stale İYS status does not count either way.
    (Facts(consent="granted", iys_status="RET"), COMM, "allowed"),
    (Facts(iys_status="ONAY"), COMM, "no_consent"),
    (Facts(recipient_type="merchant"), COMM, "allowed"),
    (Facts(recipient_type="merchant", iys_enabled=True), COMM, "allowed"),
    (Facts(recipient_type="merchant", consent="revoked"), COMM, "opted_out"),
    (Facts(recipient_type="merchant", iys_enabled=True, iys_status="RET"), COMM, "iys_refused"),
    (Facts(recipient_type="merchant", suppression="blocked"), INFO, "blocked"),
]


@pytest.mark.parametrize(("facts", "purpose", "reason"), CASES)
def test_gate_cases(facts, purpose, reason):
    decision = decide(facts, purpose)
    assert decision == Decision(reason == "allowed", reason)


def test_cases_cover_every_reason_the_gate_computes():
    computed = {reason for _, _, reason in CASES}
    assert computed == {
        gate.ALLOWED, gate.NO_CONSENT, gate.OPTED_OUT, gate.SUPPRESSED, gate.IYS_REFUSED,
        gate.INVALID_ADDRESS, gate.BLOCKED, gate.IYS_PENDING,
    }


def test_reason_codes_are_stable_strings():
    assert [gate.ALLOWED, gate.NO_CONSENT, gate.OPTED_OUT, gate.SUPPRESSED, gate.IYS_REFUSED,
            gate.QUIET_HOURS, gate.FREQUENCY_CAP, gate.INVALID_ADDRESS, gate.BLOCKED] == [
        "allowed", "no_consent", "opted_out", "suppressed", "iys_refused", "quiet_hours",
        "frequency_cap", "invalid_address", "blocked",
    ]


def test_purpose_may_be_given_as_a_plain_string():
    facts = Facts(consent="granted")
    assert decide(facts, "commercial") == decide(facts, COMM)
    assert decide(Facts(), "informational").allowed


@pytest.mark.parametrize("purpose", ["marketing", "", "COMMERCIAL", None])
def test_unknown_purpose_is_an_error(purpose):
    with pytest.raises(ValueError, match="purpose"):
        decide(Facts(consent="granted"), purpose)
    with pytest.raises(ValueError, match="purpose"):
        decide_many([], purpose)


def test_decide_returns_shared_decisions_and_ignores_now_for_now():
    now = datetime(2026, 3, 20, 3, 0, tzinfo=UTC)
    assert decide(Facts(consent="granted"), COMM, now) is decide(Facts(consent="granted"), COMM)
    assert decide(Facts(), COMM) is decide(Facts(recipient_type="x"), COMM)


def test_decide_many_keeps_order():
    batch = [Facts(consent="granted"), Facts(), Facts(suppression="blocked")]
    reasons = [decision.reason for decision in decide_many(batch, COMM)]
    assert reasons == ["allowed", "no_consent", "blocked"]


# --- reference model -------------------------------------------------------------------------


@dataclass
class History:
    """A recipient's state after replaying events, kept apart from Facts on purpose."""

    address_valid: bool = True
    consent: str | None = None  # the last consent event wins
    merchant: bool = False
    suppressions: set[str] = field(default_factory=set)  # every active kind
    iys_enabled: bool = False
    iys_status: str | None = None

    def apply(self, event: tuple[str, object]) -> None:
        kind, value = event
        if kind == "consent":
            self.consent = value
        elif kind == "suppress":
            self.suppressions.add(value)
        elif kind == "lift":
            self.suppressions.discard(value)
        elif kind == "iys":
            self.iys_status = value
        elif kind == "merchant":
            self.merchant = value
        elif kind == "iys_enabled":
            self.iys_enabled = value
        elif kind == "address_valid":
            self.address_valid = value

    def strongest_suppression(self) -> str | None:
        """The kind the store reports: opted_out, then blocked, then any other (alphabetical)."""
        for kind in ("opted_out", "blocked", *sorted(self.suppressions)):
            if kind in self.suppressions:
                return kind
        return None

    def facts(self) -> Facts:
        return Facts(
            address_valid=self.address_valid,
            consent=self.consent,
            recipient_type="merchant" if self.merchant else "individual",
            suppression=self.strongest_suppression(),
            iys_enabled=self.iys_enabled,
            iys_status=self.iys_status,
        )


def legal_verdict(h: History, purpose: Purpose) -> str:
    """The rules as the law states them, in the order the gate reports them."""
    if not h.address_valid:
        return "invalid_address"
    # Nobody who opted out, blocked us, asked for erasure or complained gets any message.
    if "opted_out" in h.suppressions:
        return "opted_out"
    if "blocked" in h.suppressions:
        return "blocked"
    if h.suppressions:
        return "suppressed"
    # Informational messages need no consent.
    if purpose is Purpose.INFORMATIONAL:
        return "allowed"
    # İYS RET always blocks commercial messages when İYS is on.
    if h.iys_enabled and h.iys_status == "RET":
        return "iys_refused"
    refused = h.consent == "revoked"
    # A merchant may be messaged unless it refused.
    if h.merchant:
        return "opted_out" if refused else "allowed"
    # An individual needs a standing consent: ONAY in İYS when İYS is on, else our own record.
    standing = h.iys_status == "ONAY" if h.iys_enabled else h.consent == "granted"
    if standing and not refused:
        return "allowed"
    if refused:
        return "opted_out"
    # Our own consent waiting for its İYS upload is pending, not missing.
    pending = h.iys_enabled and h.consent == "granted" and h.iys_status is None
    return "iys_pending" if pending else "no_consent"


events = st.one_of(
    st.tuples(st.just("consent"), st.sampled_from(["granted", "revoked"])),
    st.tuples(st.sampled_from(["suppress", "lift"]), st.sampled_from(SUPPRESSION_KINDS)),
    st.tuples(st.just("iys"), st.sampled_from(["ONAY", "RET"])),
    st.tuples(st.sampled_from(["merchant", "iys_enabled", "address_valid"]), st.booleans()),
)


@given(st.lists(events, max_size=30), st.sampled_from(list(Purpose)))
def test_decide_agrees_with_the_legal_reference_model(history_events, purpose):
    history = History()
    for event in history_events:
        history.apply(event)
    decision = decide(history.facts(), purpose)
    assert decision.reason == legal_verdict(history, purpose)
    assert decision.allowed == (decision.reason == "allowed")


any_facts = st.builds(
    Facts,
    address_valid=st.booleans(),
    consent=st.sampled_from([None, "granted", "revoked"]),
    recipient_type=st.sampled_from(["individual", "merchant"]),
    suppression=st.sampled_from([None, *SUPPRESSION_KINDS]),
    iys_enabled=st.booleans(),
    iys_status=st.sampled_from([None, "ONAY", "RET"]),
)


@given(any_facts)
def test_informational_allowed_means_commercial_allowed_or_a_consent_reason(facts):
    if decide(facts, INFO).allowed:
        commercial = decide(facts, COMM)
        assert commercial.allowed or commercial.reason in {"no_consent", "opted_out", "iys_refused",
                                                           "iys_pending"}


@given(any_facts, st.sampled_from(list(Purpose)))
def test_decide_never_computes_quiet_hours_or_frequency_cap(facts, purpose):
    assert decide(facts, purpose).reason not in {gate.QUIET_HOURS, gate.FREQUENCY_CAP}


@given(any_facts)
def test_commercial_is_never_looser_than_informational(facts):
    assert decide(facts, COMM).allowed <= decide(facts, INFO).allowed
