"""optout.watch: a noted revocation refuses exactly the sends the claim and the gate refuse
(a suppression every purpose in its scope, a revoked consent only commercial sends of its
type), with the gate's reason, for a bounded time and a bounded number of entries."""
from optout.watch import KEEP_SECONDS, RevocationWatch

INDEX = b"i" * 16


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_plain_note_refuses_everything():
    watch = RevocationWatch()
    watch.note("t", INDEX)
    assert watch.revoked("t", INDEX, "MESAJ", commercial=False) == "opted_out"
    assert watch.revoked("t", INDEX, "TELEGRAM", commercial=True)
    assert not watch.revoked("t2", INDEX, "MESAJ", commercial=True)
    assert not watch.revoked("t", b"j" * 16, "MESAJ", commercial=True)


def test_a_suppression_refuses_every_purpose_in_its_scope_only():
    watch = RevocationWatch()
    watch.note("t", INDEX, "MESAJ", reason="blocked")
    assert watch.revoked("t", INDEX, "MESAJ", commercial=False) == "blocked"
    assert watch.revoked("t", INDEX, "MESAJ", commercial=True)
    assert not watch.revoked("t", INDEX, "TELEGRAM", commercial=True)


def test_a_revoked_consent_refuses_only_commercial_sends_of_its_type():
    watch = RevocationWatch()
    watch.note("t", INDEX, "MESAJ", commercial_only=True)
    assert watch.revoked("t", INDEX, "MESAJ", commercial=True)
    assert not watch.revoked("t", INDEX, "MESAJ", commercial=False)  # informational goes on
    assert not watch.revoked("t", INDEX, "TELEGRAM", commercial=True)
    watch.note("t", INDEX, "*", commercial_only=True)
    assert watch.revoked("t", INDEX, "TELEGRAM", commercial=True)
    watch.note("t", INDEX, "MESAJ", reason="blocked")  # a suppression's reason comes first
    assert watch.revoked("t", INDEX, "MESAJ", commercial=True) == "blocked"


def test_notes_expire_after_the_window_and_beyond_the_bound():
    clock = Clock()
    watch = RevocationWatch(clock, max_noted=3)
    watch.note("t", INDEX)
    clock.now += KEEP_SECONDS + 1
    watch.note("t", b"a" * 16)
    assert not watch.revoked("t", INDEX, "MESAJ", commercial=True)
    for c in b"bcd":
        watch.note("t", bytes([c]) * 16)
    assert len(watch) == 3
    assert not watch.revoked("t", b"a" * 16, "MESAJ", commercial=True)  # the oldest went
    assert watch.revoked("t", b"d" * 16, "MESAJ", commercial=True)
