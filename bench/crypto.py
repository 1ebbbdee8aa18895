"""Crypto benchmark: unlock cost, field seal/open throughput, and why DEKs exist.

Run from the repository root as `python -m bench.crypto --fields 1000000` (running the file
directly would make `import crypto` find this module instead of the package).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from crypto.fields import FieldSealer, new_data_key
from crypto.keys import KDF_LEVELS, new_tenant_keys, unwrap_secret
from crypto.vault import UnlockedTenant

PASSPHRASE = "bench parolası Şükrü"
FIELDS_PER_DEK = 10_000  # one DEK per import batch, as writers do
SEALED_BOX_SAMPLE = 20_000

UNITS = {
    "unlock": "ms",
    "seal": "fields/s",
    "open": "fields/s",
    "field_open_cost": "us/field",
    "sealed_box_open_cost": "us/field",
    "peak_memory": "MB",
}


def run(fields: int = 1_000_000, kdf: str = "moderate") -> dict:
    """Measure, print each figure as `name: value unit`, and return them (keys of UNITS)."""
    if fields < 1:
        raise ValueError("fields must be at least 1")
    ops, mem = KDF_LEVELS[kdf]
    print(f"kdf: {kdf} (opslimit {ops}, memlimit {mem // 1024} KiB)")
    print(f"fields: {fields}")
    results: dict[str, float] = {}
    keys = new_tenant_keys(PASSPHRASE, kdf)
    started = time.perf_counter()
    tenant = UnlockedTenant(unwrap_secret(keys.wrapped_secret, PASSPHRASE))
    _report(results, "unlock", (time.perf_counter() - started) * 1e3)

    plaintexts = [_plaintext(i) for i in range(fields)]
    blobs, sealed_deks, seconds = _seal_all(keys.public_key, plaintexts)
    _report(results, "seal", fields / seconds)

    tenant.add_sealed_deks(sealed_deks)
    started = time.perf_counter()
    opened = [tenant.open_field(blob) for blob in blobs]
    seconds = time.perf_counter() - started
    if opened != plaintexts:
        raise AssertionError("opened fields differ from what was sealed")
    _report(results, "open", fields / seconds)
    _report(results, "field_open_cost", seconds / fields * 1e6)
    secret_key = tenant.secret_key()
    _report(results, "sealed_box_open_cost", _sealed_box_open_cost(keys.public_key, secret_key))
    _report(results, "peak_memory", _peak_memory_mb())
    return results


def _report(results: dict[str, float], name: str, value: float) -> None:
    results[name] = value
    print(f"{name}: {value:,.2f} {UNITS[name]}", flush=True)


def _plaintext(i: int) -> bytes:
    # ~40 bytes, like a phone number plus a Turkish name
    return f"+90532{i % 10_000_000:07d} Şükrü Çağlayan {i % 997}".encode()


def _seal_all(public_key: bytes, plaintexts: list[bytes]) -> tuple[list[bytes], dict, float]:
    sealed_deks = {}
    blobs: list[bytes] = []
    seconds = 0.0
    for start in range(0, len(plaintexts), FIELDS_PER_DEK):
        data_key = new_data_key(public_key)
        sealed_deks[data_key.dek_id] = data_key.sealed
        seal = FieldSealer(data_key.dek_id, data_key.dek).seal_field
        batch = plaintexts[start : start + FIELDS_PER_DEK]
        began = time.perf_counter()
        blobs += [seal(p) for p in batch]
        seconds += time.perf_counter() - began
    return blobs, sealed_deks, seconds


def _sealed_box_open_cost(public_key: bytes, secret_key: bytes) -> float:
    """µs per field if every field were its own sealed box (what DEKs avoid)."""
    data_keys = [new_data_key(public_key) for _ in range(SEALED_BOX_SAMPLE)]
    fresh = UnlockedTenant(secret_key)
    started = time.perf_counter()
    fresh.add_sealed_deks({k.dek_id: k.sealed for k in data_keys})
    return (time.perf_counter() - started) / SEALED_BOX_SAMPLE * 1e6


def _peak_memory_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.crypto", description=__doc__)
    parser.add_argument("--fields", type=int, default=1_000_000, help="fields to seal and open")
    parser.add_argument("--kdf", choices=sorted(KDF_LEVELS), default="moderate")
    args = parser.parse_args(argv)
    if args.fields < 1:
        parser.error("--fields must be at least 1")
    run(args.fields, args.kdf)


if __name__ == "__main__":
    main()
