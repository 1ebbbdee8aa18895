"""Vault shares (crypto.shares): a tenant secret key sealed to one process's ephemeral key,
bound to the tenant, the process and the unlock epoch."""
import nacl.bindings
import pytest

from crypto.errors import CorruptDataError
from crypto.keys import public_key_of
from crypto.master import MasterKey
from crypto.shares import (
    SHARE_VERSION,
    ProcessKeys,
    Share,
    holds_key_of,
    process_proof,
    proof_holds,
    seal_share,
)

TENANT, OTHER_TENANT = "7d3c1f7e-0000-4000-8000-000000000001", "7d3c1f7e-0000-4000-8000-0000002"
PROCESS = "host-a:4242:0a1b2c3d"


def _share(epoch: int = 3) -> Share:
    return Share(nacl.bindings.randombytes(32), epoch, 1_900_000_000.25)


def test_a_share_opens_in_its_process_with_everything_it_carries():
    keys, share = ProcessKeys(), _share()
    blob = seal_share(keys.public_key, TENANT, PROCESS, share)
    opened = keys.open_share(blob, TENANT, PROCESS)
    assert (opened.secret_key, opened.epoch, opened.expires_at) == (
        share.secret_key, 3, 1_900_000_000.25)
    # version | ephemeral public key 32 | MAC 16 | secret 32 + epoch 8 + expiry 8 + two ids
    assert blob[0] == SHARE_VERSION
    assert len(blob) == 1 + 48 + 48 + 1 + len(TENANT) + 1 + len(PROCESS)
    assert share.secret_key not in blob


def test_another_process_cannot_open_it():
    blob = seal_share(ProcessKeys().public_key, TENANT, PROCESS, _share())
    with pytest.raises(CorruptDataError):
        ProcessKeys().open_share(blob, TENANT, PROCESS)


@pytest.mark.parametrize("tenant_id, process_id", [
    (OTHER_TENANT, PROCESS), (TENANT, "host-b:4242:0a1b2c3d"), (OTHER_TENANT, "x")])
def test_a_share_moved_to_another_tenant_or_process_row_is_refused(tenant_id, process_id):
    keys = ProcessKeys()
    blob = seal_share(keys.public_key, TENANT, PROCESS, _share())
    with pytest.raises(CorruptDataError, match="another tenant or process"):
        keys.open_share(blob, tenant_id, process_id)


def test_any_changed_byte_or_unknown_version_is_refused():
    keys = ProcessKeys()
    blob = seal_share(keys.public_key, TENANT, PROCESS, _share())
    for i in (0, 1, 40, 60, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(CorruptDataError):
            keys.open_share(bytes(tampered), TENANT, PROCESS)
    for cut in (blob[:10], blob[:-1], b""):
        with pytest.raises(CorruptDataError):
            keys.open_share(cut, TENANT, PROCESS)


def test_the_secret_must_belong_to_the_tenant_public_key():
    share = _share()
    assert holds_key_of(share, public_key_of(share.secret_key))
    assert not holds_key_of(share, public_key_of(nacl.bindings.randombytes(32)))


def test_secrets_stay_out_of_reprs():
    keys, share = ProcessKeys(), _share()
    assert share.secret_key.hex() not in repr(share) and "hidden" in repr(share)
    assert keys._secret_key.hex() not in repr(keys)


def test_bad_inputs_are_refused_when_sealing():
    public_key = ProcessKeys().public_key
    with pytest.raises(ValueError):
        seal_share(public_key, "", PROCESS, _share())
    with pytest.raises(ValueError):
        seal_share(public_key, "t" * 256, PROCESS, _share())
    with pytest.raises(ValueError):
        seal_share(public_key, TENANT, PROCESS, Share(b"short", 1, 1.0))
    with pytest.raises(ValueError):
        seal_share(public_key, TENANT, PROCESS, Share(bytes(32), 1, float("inf")))


def test_only_a_holder_of_the_master_key_can_register_a_process():
    master, keys = MasterKey(bytes(range(32))), ProcessKeys()
    proof = process_proof(master, PROCESS, keys.public_key)
    assert proof_holds(master, PROCESS, keys.public_key, proof)
    assert not proof_holds(MasterKey(bytes(32)), PROCESS, keys.public_key, proof)
    assert not proof_holds(master, "host-b:1:00", keys.public_key, proof)
    assert not proof_holds(master, PROCESS, ProcessKeys().public_key, proof)
