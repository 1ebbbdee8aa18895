"""Our blobs open with libsodium.js (node), an implementation independent of PyNaCl."""

import base64
import json
import os
import pathlib
import shutil
import subprocess
import unicodedata

import pytest

from crypto.blind import blind_index, new_lookup_key
from crypto.fields import FieldSealer, new_data_key
from crypto.keys import KDF_LEVELS, new_tenant_keys
from crypto.master import MasterKey

HERE = pathlib.Path(__file__).parent
PASSPHRASE = "Şükrü Çağlayan İğdır parolası"
ADDRESSES = ["+905321112233", "-1001234567890", "987654321"]  # E.164, Telegram chat ids
TEXTS = ["Şükrü Çağlayan İğdır", "+905321112233", "", "Mesaj almak istemiyorsanız RET yazın."]


def _node() -> str:
    node = shutil.which("node")
    missing = [] if node else ["node"]
    if not (HERE / "node_modules" / "libsodium-wrappers-sumo").is_dir():
        missing.append("tests/interop/node_modules (run: npm ci --prefix tests/interop)")
    if missing:
        reason = "interop needs " + ", ".join(missing)
        if os.environ.get("IZINLI_REQUIRE_INTEROP") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return node


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _open_with_libsodium_js(node: str, request: dict) -> dict:
    done = subprocess.run(
        [node, str(HERE / "open.mjs")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_libsodium_js_opens_our_fields_blind_index_and_master_blobs():
    node = _node()
    keys = new_tenant_keys(PASSPHRASE, kdf="min")
    data_key = new_data_key(keys.public_key)
    sealer = FieldSealer(data_key.dek_id, data_key.dek)
    lookup_key, master_raw = new_lookup_key(), os.urandom(32)
    request = {
        # Decomposed (NFD) on purpose: both sides must normalise the passphrase to NFC.
        "passphrase": unicodedata.normalize("NFD", PASSPHRASE),
        "wrapped_secret": _b64(keys.wrapped_secret),
        "dek_id": _b64(data_key.dek_id),
        "sealed_dek": _b64(data_key.sealed),
        "field_blobs": [_b64(sealer.seal_field(t.encode())) for t in TEXTS],
        "lookup_key": _b64(lookup_key),
        "addresses": ADDRESSES,
        "master_key": _b64(master_raw),
        "master_blob": _b64(MasterKey(master_raw).wrap(lookup_key)),
    }
    answer = _open_with_libsodium_js(node, request)

    assert answer["texts"] == TEXTS
    assert answer["blind_indexes"] == [_b64(blind_index(lookup_key, a)) for a in ADDRESSES]
    assert answer["master_plaintext"] == _b64(lookup_key)
    assert (answer["kdf"]["opslimit"], answer["kdf"]["memlimit"]) == KDF_LEVELS["min"]
