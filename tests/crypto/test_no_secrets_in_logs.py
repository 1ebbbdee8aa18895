"""A full unlock/seal/open cycle leaves no passphrase, key or plaintext in logs or errors."""

import base64
import logging

import pytest

from crypto.blind import blind_index, new_lookup_key
from crypto.errors import CryptoError
from crypto.fields import FieldSealer, new_data_key, seal_str
from crypto.keys import new_tenant_keys, unwrap_secret
from crypto.master import load_master_key
from crypto.vault import Keyring, open_str

PASSPHRASE = "gizli-parola Şükrü 42"
PLAINTEXT = "Şükrü Çağlayan İğdır +905321112233"


def _forms(secret: bytes) -> list[str]:
    """Every way a key could plausibly be printed."""
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        repr(secret)[2:-1],
    ]


def _errors_seen(run) -> list[str]:
    try:
        run()
    except CryptoError as exc:
        return [str(exc), repr(exc)]
    pytest.fail("expected a CryptoError")


def test_no_secret_appears_in_logs_or_error_messages(caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    master = load_master_key(None, tmp_path / "master.key")
    master_raw = base64.b64decode((tmp_path / "master.key").read_text())
    lookup_key = new_lookup_key()
    wrapped_lookup = master.wrap(lookup_key)

    keys = new_tenant_keys(PASSPHRASE, kdf="min")
    secret = unwrap_secret(keys.wrapped_secret, PASSPHRASE)
    keyring = Keyring()
    keyring.unlock("tenant-1", secret, 60)
    tenant = keyring.get("tenant-1")
    data_key = new_data_key(keys.public_key)
    blob = seal_str(FieldSealer(data_key.dek_id, data_key.dek), PLAINTEXT)
    tenant.add_sealed_deks({data_key.dek_id: data_key.sealed})
    assert open_str(tenant, blob) == PLAINTEXT
    blind_index(master.unwrap(wrapped_lookup), "+905321112233")

    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    seen = [caplog.text, repr(master), repr(tenant), repr(data_key), repr(keyring)]
    seen += _errors_seen(lambda: unwrap_secret(keys.wrapped_secret, PASSPHRASE + "x"))
    seen += _errors_seen(lambda: unwrap_secret(keys.wrapped_secret[:-1], PASSPHRASE))
    seen += _errors_seen(lambda: tenant.open_field(tampered))
    seen += _errors_seen(lambda: master.unwrap(wrapped_lookup[:-1] + b"\x00"))
    keyring.lock("tenant-1")
    seen += _errors_seen(lambda: keyring.get("tenant-1"))
    seen += _errors_seen(lambda: tenant.open_field(blob))

    assert "tenant-1" in caplog.text  # the log did record the cycle
    secrets = [PASSPHRASE, PLAINTEXT, "Şükrü", "+905321112233"]
    for key in (secret, master_raw, lookup_key, data_key.dek):
        secrets += _forms(key)
    for text in seen:
        for needle in secrets:
            assert needle not in text
