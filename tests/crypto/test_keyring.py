"""Keyring: unlock with a TTL, auto-lock that is never late, and the per-tenant DEK cache."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import CorruptDataError, VaultLockedError
from crypto.fields import FieldSealer, new_data_key
from crypto.keys import public_key_of
from crypto.vault import Keyring, UnlockedTenant

SECRET = bytes(range(1, 33))
OTHER_SECRET = bytes(range(2, 34))
PUBLIC = public_key_of(SECRET)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def keyring(clock):
    return Keyring(clock=clock)


def test_unlock_returns_expiry_and_get_works_until_then(keyring, clock):
    assert keyring.unlock("t1", SECRET, 60) == 1060
    assert keyring.expires_at("t1") == 1060
    clock.now = 1059.9
    assert keyring.is_unlocked("t1")
    assert keyring.get("t1").public_key == PUBLIC


def test_vault_auto_locks_when_ttl_passes_without_any_timer(keyring, clock):
    keyring.unlock("t1", SECRET, 60)
    tenant = keyring.get("t1")
    clock.now = 1060
    assert not keyring.is_unlocked("t1")
    assert keyring.expires_at("t1") is None
    with pytest.raises(VaultLockedError):
        keyring.get("t1")
    with pytest.raises(VaultLockedError):
        tenant.secret_key()  # a reference kept past expiry is wiped too


def test_lock_is_immediate_and_idempotent(keyring):
    keyring.lock("never-unlocked")
    keyring.unlock("t1", SECRET, 60)
    keyring.lock("t1")
    keyring.lock("t1")
    assert not keyring.is_unlocked("t1")
    with pytest.raises(VaultLockedError):
        keyring.get("t1")


def test_reunlock_extends_and_keeps_the_dek_cache(keyring, clock):
    keyring.unlock("t1", SECRET, 60)
    key = new_data_key(PUBLIC)
    keyring.get("t1").add_sealed_deks({key.dek_id: key.sealed})
    clock.now = 1050
    assert keyring.unlock("t1", SECRET, 60) == 1110
    clock.now = 1100
    blob = FieldSealer(key.dek_id, key.dek).seal_field(b"x")
    assert keyring.get("t1").missing_deks([blob]) == set()


def test_unlock_after_expiry_starts_with_an_empty_cache(keyring, clock):
    keyring.unlock("t1", SECRET, 60)
    key = new_data_key(PUBLIC)
    keyring.get("t1").add_sealed_deks({key.dek_id: key.sealed})
    clock.now = 2000
    keyring.unlock("t1", SECRET, 60)
    blob = FieldSealer(key.dek_id, key.dek).seal_field(b"x")
    assert keyring.get("t1").missing_deks([blob]) == {key.dek_id}


def test_unlock_with_another_key_replaces_the_tenant(keyring):
    keyring.unlock("t1", SECRET, 60)
    keyring.unlock("t1", OTHER_SECRET, 60)
    assert keyring.get("t1").public_key == public_key_of(OTHER_SECRET)


def test_lock_expired_sweeps_and_reports(keyring, clock):
    keyring.unlock("short", SECRET, 10)
    keyring.unlock("long", SECRET, 100)
    clock.now = 1010
    assert keyring.unlocked_ids() == ["long"]
    assert keyring.lock_expired() == ["short"]
    assert keyring.lock_expired() == []
    assert keyring.unlocked_ids() == ["long"]


def test_tenants_are_independent(keyring):
    keyring.unlock("t1", SECRET, 60)
    assert not keyring.is_unlocked("t2")
    with pytest.raises(VaultLockedError):
        keyring.get("t2")


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan")])
def test_ttl_must_be_positive_and_finite(keyring, ttl):
    with pytest.raises(ValueError):
        keyring.unlock("t1", SECRET, ttl)


@given(ttl=st.floats(0.001, 1e6), elapsed=st.floats(0, 2e6))
def test_unlocked_exactly_while_elapsed_is_below_ttl(ttl, elapsed):
    clock = FakeClock(0.0)
    keyring = Keyring(clock=clock)
    keyring.unlock("t", SECRET, ttl)
    clock.now = elapsed
    assert keyring.is_unlocked("t") == (elapsed < ttl)


def test_default_clock_is_real_time():
    keyring = Keyring()
    keyring.unlock("t1", SECRET, 3600)
    assert keyring.is_unlocked("t1")


class CountingTenant(UnlockedTenant):
    __slots__ = ("seal_opens",)

    def __init__(self, secret_key: bytes) -> None:
        super().__init__(secret_key)
        self.seal_opens = 0

    def _open_sealed_dek(self, dek_id, sealed, secret_key):
        self.seal_opens += 1
        return super()._open_sealed_dek(dek_id, sealed, secret_key)


def test_each_dek_is_opened_once_and_cached():
    tenant = CountingTenant(SECRET)
    keys = [new_data_key(PUBLIC) for _ in range(3)]
    blobs = [FieldSealer(k.dek_id, k.dek).seal_field(b"%d" % i) for i, k in enumerate(keys)] * 5
    sealed = {k.dek_id: k.sealed for k in keys}
    assert tenant.missing_deks(blobs) == set(sealed)
    tenant.add_sealed_deks(sealed)
    tenant.add_sealed_deks(sealed)
    assert tenant.seal_opens == 3
    assert tenant.missing_deks(blobs) == set()
    assert tenant.open_fields(blobs) == [b"0", b"1", b"2"] * 5


def test_writer_sealer_remembers_its_dek(keyring):
    keyring.unlock("t1", SECRET, 60)
    tenant = keyring.get("t1")
    blob = tenant.sealer(new_data_key(PUBLIC)).seal_field(b"inbound STOP")
    assert tenant.missing_deks([blob]) == set()
    assert tenant.open_field(blob) == b"inbound STOP"


def test_dek_sealed_to_another_tenant_is_corrupt_and_caches_nothing():
    tenant = UnlockedTenant(SECRET)
    good = new_data_key(PUBLIC)
    foreign = new_data_key(public_key_of(OTHER_SECRET))
    with pytest.raises(CorruptDataError):
        tenant.add_sealed_deks({good.dek_id: good.sealed, foreign.dek_id: foreign.sealed})
    blob = FieldSealer(good.dek_id, good.dek).seal_field(b"x")
    assert tenant.missing_deks([blob]) == {good.dek_id}


def test_wiped_tenant_reports_locked_not_missing_key():
    tenant = UnlockedTenant(SECRET)
    blob = tenant.sealer(new_data_key(PUBLIC)).seal_field(b"x")
    tenant.wipe()
    with pytest.raises(VaultLockedError):
        tenant.open_field(blob)
    with pytest.raises(VaultLockedError):
        tenant.open_fields([blob])
    with pytest.raises(VaultLockedError):
        tenant.remember_dek(b"\x00" * 16, b"\x00" * 32)


def test_secret_key_is_available_for_service_custody():
    assert UnlockedTenant(SECRET).secret_key() == SECRET
