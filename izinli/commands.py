"""What each CLI command does, once its arguments and the configuration are parsed."""
from __future__ import annotations

import json
import os
import sys
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path

import accounts
from crypto.audit_key import AuditKey, format_public_key, read_public_key
from crypto.vault import Keyring
from izinli import audit_files
from izinli.config import Config
from izinli.runtime import master_key_for, open_store
from store.migrate import upgrade

Command = Callable[..., Awaitable[int]]


async def cmd_serve(args, config: Config) -> int:
    from izinli.serve import serve
    await serve(config)
    return 0


async def cmd_db_upgrade(args, config: Config) -> int:
    db = await open_store(config)
    try:
        revision = await upgrade(db)
    finally:
        await db.close()
    print(json.dumps({"revision": revision}))
    return 0


def read_passphrase(path: Path) -> str:
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read passphrase file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"passphrase file {path} is not UTF-8 text") from None
    # A trailing newline is the editor's, not the passphrase's.
    return text.removeprefix("\ufeff").rstrip("\r\n")


async def cmd_tenant_create(args, config: Config) -> int:
    passphrase = read_passphrase(args.passphrase_file)
    accounts.check_passphrase(passphrase, config.crypto.min_passphrase_length, (args.name,))
    master = master_key_for(config)
    db = await open_store(config)
    try:
        tenant_id, api_key = await accounts.create_tenant(
            db, master, args.name, passphrase, kdf=config.crypto.kdf,
            min_length=config.crypto.min_passphrase_length)
        code = await _first_recovery_code(db, tenant_id, passphrase, config)
    finally:
        await db.close()
    print(json.dumps({"tenant_id": tenant_id, "api_key": api_key, "recovery_code": code}))
    print("izinli: the recovery code is shown once: print it and keep it apart from the "
          "passphrase; it sets a new passphrase if that one is forgotten", file=sys.stderr)
    return 0


async def _first_recovery_code(db, tenant_id: str, passphrase: str, config: Config) -> str:
    from accounts import recovery
    return await recovery.issue_code_with_passphrase(db, tenant_id, passphrase, "cli",
                                                     config.crypto.kdf)


async def cmd_tenant_api_key(args, config: Config) -> int:
    passphrase = read_passphrase(args.passphrase_file)
    db = await open_store(config)
    try:
        api_key = await accounts.issue_api_key(db, args.tenant_id, passphrase, args.name)
    finally:
        await db.close()
    print(json.dumps({"tenant_id": args.tenant_id, "api_key": api_key}))
    return 0


async def cmd_tenant_passphrase(args, config: Config) -> int:
    """A new vault passphrase; running servers keep their unlock (the key itself is the same)."""
    passphrase = read_passphrase(args.passphrase_file)
    new_passphrase = read_passphrase(args.new_passphrase_file)
    db = await open_store(config)
    try:
        await accounts.change_passphrase(
            db, args.tenant_id, passphrase, new_passphrase, "cli", kdf=config.crypto.kdf,
            min_length=config.crypto.min_passphrase_length)
    finally:
        await db.close()
    print(json.dumps({"tenant_id": args.tenant_id, "passphrase_changed": True}))
    return 0


async def cmd_tenant_custody(args, config: Config) -> int:
    from dashboard.vault_fanout import VaultFanout
    from store.bus import Bus
    passphrase = read_passphrase(args.passphrase_file)
    db = await open_store(config)
    keyring = Keyring()
    # Not a member of the cluster, but it tells the running servers (PostgreSQL): they follow
    # the new custody; back to `passphrase`, they stay unlocked for the usual unlock time.
    fanout = VaultFanout(db, Bus(db), keyring, master_key_for(config))
    try:
        await accounts.unlock(db, keyring, args.tenant_id, passphrase, ttl_seconds=60)
        await accounts.change_custody(fanout, args.tenant_id, args.custody,
                                      float(config.crypto.unlock_ttl_seconds))
    finally:
        keyring.lock(args.tenant_id)
        await db.close()
    print(json.dumps({"tenant_id": args.tenant_id, "custody": args.custody}))
    return 0


async def cmd_user_create(args, config: Config) -> int:
    from accounts import users
    password = users.check_password(read_passphrase(args.password_file))
    email = users.check_email(args.email)
    master = master_key_for(config)
    db = await open_store(config)
    try:
        user_id = await users.create_user(db, master, args.tenant_id, email, password,
                                          args.role, "cli", kdf=config.crypto.kdf)
    finally:
        await db.close()
    print(json.dumps({"tenant_id": args.tenant_id, "user_id": user_id, "role": args.role}))
    return 0


async def cmd_bench_crypto(args, config: Config) -> int:
    from bench import crypto as bench_crypto
    bench_crypto.run(fields=args.fields, kdf=args.kdf)
    return 0


async def cmd_bench_lexicon(args, config: Config) -> int:
    from bench import lexicon
    lexicon.run()
    return 0


def _bench_url(config: Config) -> str | None:
    # Only an explicitly configured database is used; the default is a throwaway SQLite file.
    return config.store.url or None


async def cmd_bench_import(args, config: Config) -> int:
    from bench import consent
    modes = [m.strip() for m in args.worker.split(",") if m.strip()]
    if not modes or any(m not in ("yes", "no") for m in modes):
        raise ValueError("--worker takes yes, no or yes,no")
    await consent.bench_import(
        [min(100_000, args.rows), args.rows] if args.rows > 100_000 else [args.rows],
        _bench_url(config), (config.store.sqlite_cache_mb, config.store.sqlite_bulk_cache_mb),
        [m == "yes" for m in modes])
    return 0


async def cmd_bench_gate(args, config: Config) -> int:
    from bench import consent
    await consent.bench_gate(args.entries, args.decisions, args.batch, _bench_url(config))
    return 0


async def cmd_bench_dispatch(args, config: Config) -> int:
    from bench import dispatch
    kinds = [k.strip() for k in (args.databases or "").split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ("sqlite", "postgresql")]
    if unknown:
        raise ValueError(f"--databases takes sqlite and/or postgresql, not {unknown[0]}")
    url = _bench_url(config)
    if "postgresql" in kinds and not (url or "").startswith("postgresql"):
        raise ValueError("--databases postgresql needs IZINLI_DATABASE_URL=postgresql+asyncpg://"
                         "… (a server the bench creates its own database on)")
    if args.repeat < 1:
        raise ValueError("--repeat must be at least 1")
    await dispatch.bench_dispatch(args.recipients or [10_000, 1_000_000], kinds or None, url,
                                  args.repeat, args.profile, config.store.sqlite_cache_mb)
    return 0


async def cmd_bench_throttle(args, config: Config) -> int:
    from bench import dispatch
    await dispatch.bench_throttle(args.lines, args.rate, args.seconds, _bench_url(config))
    return 0


async def cmd_bench_iys(args, config: Config) -> int:
    from bench import iys
    try:
        await iys.bench_iys(args.records, args.latency, args.rate, args.bulk_delay,
                            _bench_url(config))
    except RuntimeError as exc:  # the fake İYS is missing or did not start
        print(f"izinli: {exc}", file=sys.stderr)
        return 1
    return 0


async def cmd_bench_webhooks(args, config: Config) -> int:
    from bench import webhooks
    await webhooks.bench_webhooks(args.requests, args.concurrency, _bench_url(config))
    return 0


async def cmd_bench_dashboard(args, config: Config) -> int:
    from bench import dashboard
    try:
        processes = tuple(int(n) for n in args.processes.split(",") if n.strip())
        if not processes or min(processes) < 1:
            raise ValueError
    except ValueError:
        print("izinli: --processes must be process counts like 1 or 1,2", file=sys.stderr)
        return 2
    try:
        await dashboard.bench_dashboard(args.sessions, args.seconds, args.threads,
                                        args.contacts, args.campaigns, args.per_page,
                                        not args.no_wrk, args.think, _bench_url(config),
                                        processes)
    except RuntimeError as exc:  # wrk's or the cluster's own failure, shown as it said it
        print(f"izinli: {exc}", file=sys.stderr)
        return 1
    return 0


async def cmd_bench_cluster(args, config: Config) -> int:
    from bench import cluster
    try:
        counts = [int(c) for c in args.processes.split(",") if c.strip()]
    except ValueError:
        raise ValueError("--processes takes process counts such as 1,2,3") from None
    try:
        await cluster.bench_cluster(args.database_url or config.store.url, counts,
                                    args.recipients, args.lines, args.stops, args.round_trips)
    except cluster.BenchError as exc:
        print(f"izinli: {exc}", file=sys.stderr)
        return 1
    return 0


async def cmd_bench_vault(args, config: Config) -> int:
    from bench import cluster, vault
    try:
        await vault.bench_vault(args.database_url or config.store.url, args.processes,
                                args.tries)
    except cluster.BenchError as exc:
        print(f"izinli: {exc}", file=sys.stderr)
        return 1
    return 0


async def cmd_audit_verify(args, config: Config) -> int:
    """Checks the chain against the audit public key: the one the master key derives, or the
    auditor's copy given with --public-key (then no master key is needed). Never a key from
    the database."""
    from optout.audit import read_journal, verify_chain
    public = _audit_public_key(args, config)
    journal_file = args.checkpoints or audit_files.journal_path(config)
    try:
        journal = read_journal(journal_file) if args.checkpoints or journal_file.exists() else []
    except OSError as exc:
        raise ValueError(f"cannot read the checkpoint file {journal_file}: {exc.strerror}") \
            from None
    db = await open_store(config)
    try:
        verdict = await verify_chain(db, public, journal)
    finally:
        await db.close()
    if verdict.broken_at is not None:
        print(f"izinli: audit log broken at entry {verdict.broken_at}: {verdict.reason}",
              file=sys.stderr)
        return 1
    print(json.dumps({"entries": verdict.entries, "checkpoints": verdict.checkpoints,
                      "signed_through": verdict.signed_through,
                      "journal_checkpoints": verdict.journal,
                      "legacy_checkpoints": verdict.legacy,
                      "redacted": verdict.redacted,
                      "public_key": format_public_key(public), "ok": True}))
    return 0


def _audit_public_key(args, config: Config) -> bytes:
    if args.public_key:
        return read_public_key(args.public_key)
    if (not os.environ.get("IZINLI_MASTER_KEY", "").strip() and not config.master_key_path.exists()
            and not config.legacy_master_key_path.exists()):
        # Loading would create a new master key, whose audit key signed nothing here.
        raise ValueError(f"no master key at {config.master_key_path} and IZINLI_MASTER_KEY is "
                         "unset: give the audit public key with --public-key")
    return AuditKey(master_key_for(config)).public


async def cmd_audit_public_key(args, config: Config) -> int:
    master = master_key_for(config)
    audit_files.publish(config, master)  # the file is there for auditors even before a start
    print(json.dumps({"algorithm": "ed25519",
                      "public_key": format_public_key(AuditKey(master).public),
                      "file": str(audit_files.public_key_path(config))}))
    return 0


async def cmd_audit_checkpoint(args, config: Config) -> int:
    from optout.audit import checkpoint
    db = await open_store(config)
    try:
        seq = await checkpoint(db, master_key_for(config), audit_files.journal_path(config))
    finally:
        await db.close()
    print(json.dumps({"signed_through": seq}))
    return 0


async def cmd_subject_open_export(args, config: Config) -> int:
    """Opens an export made while the vault was locked, with the tenant's passphrase."""
    from crypto.errors import CryptoError
    from crypto.keys import unwrap_secret
    from optout.subjects import open_sealed_export
    try:
        export = json.loads(args.file.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {args.file}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"{args.file} is not JSON") from None
    if not isinstance(export, dict) or not isinstance(export.get("tenant_id"), str):
        raise ValueError(f"{args.file} is not a sealed izinli subject export")
    passphrase = read_passphrase(args.passphrase_file)
    db = await open_store(config)
    try:
        row = await accounts.tenant_row(db, export["tenant_id"])
    finally:
        await db.close()
    secret = unwrap_secret(row.wrapped_secret, unicodedata.normalize("NFC", passphrase))
    try:
        report = open_sealed_export(export, secret)
    except (CryptoError, KeyError, TypeError, ValueError):
        raise ValueError(f"{args.file} is not a sealed izinli subject export of this tenant") \
            from None
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


async def _line_admin(config: Config, work) -> int:
    """Runs `work(admin)` with a line service on the store; a running server on PostgreSQL
    hears of the change on the bus (it drops the line's cached credentials)."""
    from bot.credentials import CredentialStore
    from bot.lines import LineAdmin
    from campaigns.lines import LineNotFoundError
    from store.bus import Bus
    db = await open_store(config)
    try:
        admin = LineAdmin(db, CredentialStore(db, master_key_for(config)), Bus(db))
        print(json.dumps(await work(admin), ensure_ascii=False))
    except LineNotFoundError as exc:  # a LookupError: not a usage error to argparse
        raise ValueError(str(exc)) from None
    finally:
        await db.close()
    return 0


def _line_json(line) -> dict:
    """The line as the API shows it, its name locked: names are sealed to the tenant and the
    operator's CLI holds no unlock (it shows the id and channel; a name only as just typed)."""
    from dashboard.api.lines import line_json
    return line_json(line)


async def cmd_lines_list(args, config: Config) -> int:
    from campaigns.lines import list_lines

    async def work(admin):
        async with admin.db.connect() as conn:
            return {"lines": [_line_json(line) for line in await list_lines(conn,
                                                                            args.tenant_id)]}
    return await _line_admin(config, work)


async def cmd_lines_pause(args, config: Config) -> int:
    async def work(admin):
        return _line_json(await admin.pause(args.tenant_id, "cli", args.line_id))
    return await _line_admin(config, work)


async def cmd_lines_resume(args, config: Config) -> int:
    async def work(admin):
        resumed = await admin.resume(args.tenant_id, "cli", args.line_id)
        return _line_json(resumed.line) | {"resumed_from": resumed.previous_reason}
    return await _line_admin(config, work)


async def cmd_lines_archive(args, config: Config) -> int:
    async def work(admin):
        line, paused = await admin.archive(args.tenant_id, "cli", args.line_id)
        return _line_json(line) | {"paused_campaigns": paused}
    return await _line_admin(config, work)


async def cmd_lines_edit(args, config: Config) -> int:
    changes = {k: v for k, v in (("name", args.name), ("rate_per_second", args.rate),
                                 ("messaging_tier", args.tier)) if v is not None}
    if not changes:
        raise ValueError("nothing to change: give --name, --rate or --tier")

    async def work(admin):
        shown = _line_json(await admin.update(args.tenant_id, "cli", args.line_id, changes))
        return shown | ({"name": args.name.strip(), "name_locked": False} if args.name else {})
    return await _line_admin(config, work)


def _lifecycle(name: str) -> Command:
    """A command of izinli.lifecycle, imported when it runs (recovery, delete, backup)."""
    async def run(args, config: Config) -> int:
        from izinli import lifecycle
        return await getattr(lifecycle, name)(args, config)
    return run


_COMMANDS: dict[tuple[str, ...], Command] = {
    ("tenant", "recovery-code"): _lifecycle("cmd_tenant_recovery_code"),
    ("tenant", "recover"): _lifecycle("cmd_tenant_recover"),
    ("tenant", "delete"): _lifecycle("cmd_tenant_delete"),
    ("backup",): _lifecycle("cmd_backup"),
    ("restore",): _lifecycle("cmd_restore"),
    ("lines", "list"): cmd_lines_list,
    ("lines", "pause"): cmd_lines_pause,
    ("lines", "resume"): cmd_lines_resume,
    ("lines", "archive"): cmd_lines_archive,
    ("lines", "edit"): cmd_lines_edit,
    ("serve",): cmd_serve,
    ("worker",): cmd_serve,
    ("db", "upgrade"): cmd_db_upgrade,
    ("tenant", "create"): cmd_tenant_create,
    ("tenant", "api-key"): cmd_tenant_api_key,
    ("tenant", "custody"): cmd_tenant_custody,
    ("tenant", "passphrase"): cmd_tenant_passphrase,
    ("user", "create"): cmd_user_create,
    ("subject", "open-export"): cmd_subject_open_export,
    ("audit", "verify"): cmd_audit_verify,
    ("audit", "checkpoint"): cmd_audit_checkpoint,
    ("audit", "public-key"): cmd_audit_public_key,
    ("bench", "crypto"): cmd_bench_crypto,
    ("bench", "lexicon"): cmd_bench_lexicon,
    ("bench", "import"): cmd_bench_import,
    ("bench", "gate"): cmd_bench_gate,
    ("bench", "dispatch"): cmd_bench_dispatch,
    ("bench", "throttle"): cmd_bench_throttle,
    ("bench", "iys"): cmd_bench_iys,
    ("bench", "webhooks"): cmd_bench_webhooks,
    ("bench", "dashboard"): cmd_bench_dashboard,
    ("bench", "cluster"): cmd_bench_cluster,
    ("bench", "vault"): cmd_bench_vault,
}


def lookup(args) -> Command | None:
    sub = getattr(args, f"{args.command}_command", None)
    key = (args.command, sub) if sub else (args.command,)
    return _COMMANDS.get(key)
