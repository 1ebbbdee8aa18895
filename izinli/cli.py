"""The `izinli` command line. Exit codes: 0 ok, 2 usage or config, 3 wrong passphrase or auth,
1 anything else; failures print one line on stderr, never a traceback."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from accounts import AccountError
from crypto.errors import WrongPassphraseError
from izinli import config as configuration
from izinli import logs
from izinli.config import Config, ConfigError
from store.engine import StoreError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _common(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's unset flag must not overwrite the same flag given earlier.
    p.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                   help="TOML configuration file")
    p.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS,
                   help="data directory (default ./var)")


def _listener(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--tls-cert", help="PEM certificate chain: serve https directly")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="izinli", description="Consent-gated bulk messaging.")
    _common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve = sub.add_parser("serve", help="run the web app, dispatcher and scheduler")
    _listener(serve)
    serve.add_argument("--role", dest="server_role", choices=["all", "web", "worker"],
                       help="all (default): everything; web: API, dashboard and webhooks, "
                            "no sending; worker: dispatcher, timers and polling, with "
                            "/healthz and /metrics (web and worker need PostgreSQL)")
    worker = sub.add_parser("worker", help="run the dispatcher, timers and polling only "
                            "(the same as 'serve --role worker')")
    _listener(worker)
    worker.set_defaults(server_role="worker")
    db = sub.add_parser("db", help="database maintenance")
    _common(db)
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", parser_class=_Parser)
    _common(db_sub.add_parser("upgrade", help="apply migrations"))
    tenant = sub.add_parser("tenant", help="manage tenants (businesses)")
    _common(tenant)
    t_sub = tenant.add_subparsers(dest="tenant_command", metavar="ACTION", parser_class=_Parser)
    create = t_sub.add_parser("create", help="create a tenant; prints its id and first API key")
    _common(create)
    create.add_argument("name")
    create.add_argument("--passphrase-file", required=True, type=Path,
                        help="file holding the vault passphrase ('-' for stdin)")
    key = t_sub.add_parser("api-key", help="issue another API key (proves ownership with the "
                           "passphrase); prints it once")
    _common(key)
    key.add_argument("tenant_id")
    key.add_argument("--name", default="cli")
    key.add_argument("--passphrase-file", required=True, type=Path)
    custody = t_sub.add_parser("custody", help="set key custody: passphrase or service")
    _common(custody)
    custody.add_argument("tenant_id")
    custody.add_argument("custody", choices=["passphrase", "service"])
    custody.add_argument("--passphrase-file", required=True, type=Path)
    change = t_sub.add_parser("passphrase", help="change the vault passphrase (a guessable "
                              "one is refused)")
    _common(change)
    change.add_argument("tenant_id")
    change.add_argument("--passphrase-file", required=True, type=Path,
                        help="file holding the current passphrase")
    change.add_argument("--new-passphrase-file", required=True, type=Path,
                        help="file holding the new passphrase")
    rcode = t_sub.add_parser("recovery-code", help="make a new recovery code (the earlier one "
                             "stops working); prints it once")
    _common(rcode)
    rcode.add_argument("tenant_id")
    rcode.add_argument("--passphrase-file", required=True, type=Path,
                       help="file holding the vault passphrase ('-' for stdin)")
    recover = t_sub.add_parser("recover", help="set a new vault passphrase with the recovery "
                               "code; prints the new recovery code that replaces it, once")
    _common(recover)
    recover.add_argument("tenant_id")
    recover.add_argument("--recovery-code-file", required=True, type=Path,
                         help="file holding the recovery code ('-' for stdin)")
    recover.add_argument("--new-passphrase-file", required=True, type=Path,
                         help="file holding the new passphrase")
    delete = t_sub.add_parser("delete", help="delete a business and all its data for good "
                              "(asks for its name)")
    _common(delete)
    delete.add_argument("tenant_id")
    delete.add_argument("--yes", action="store_true",
                        help="do not ask for the business name (scripts)")
    backup = sub.add_parser("backup", help="copy the embedded database (and the audit files) "
                            "into FILE while the service runs; never the master key")
    _common(backup)
    backup.add_argument("file", type=Path)
    restore = sub.add_parser("restore", help="restore a backup FILE into an empty data dir")
    _common(restore)
    restore.add_argument("file", type=Path)
    user = sub.add_parser("user", help="dashboard users")
    _common(user)
    u_sub = user.add_subparsers(dest="user_command", metavar="ACTION", parser_class=_Parser)
    u_create = u_sub.add_parser("create", help="add a dashboard user to a tenant; prints its id")
    _common(u_create)
    u_create.add_argument("tenant_id")
    u_create.add_argument("email")
    u_create.add_argument("--role", default="owner",
                          choices=["viewer", "operator", "admin", "owner"])
    u_create.add_argument("--password-file", required=True, type=Path,
                          help="file holding the user's dashboard password ('-' for stdin)")
    subject = sub.add_parser("subject", help="KVKK data-subject exports")
    _common(subject)
    s_sub = subject.add_subparsers(dest="subject_command", metavar="ACTION", parser_class=_Parser)
    opener = s_sub.add_parser("open-export", help="decrypt a sealed KVKK export (JSON to stdout)")
    _common(opener)
    opener.add_argument("file", type=Path)
    opener.add_argument("--passphrase-file", required=True, type=Path)
    lines = sub.add_parser("lines", help="a tenant's sending lines: list, pause, resume, "
                           "archive, edit")
    _common(lines)
    l_sub = lines.add_subparsers(dest="lines_command", metavar="ACTION", parser_class=_Parser)
    l_list = l_sub.add_parser("list", help="the tenant's lines as JSON")
    _common(l_list)
    l_list.add_argument("tenant_id")
    for action, text in (("pause", "pause a line (reason: paused by owner)"),
                         ("resume", "resume a paused line (prints why it was paused)"),
                         ("archive", "archive a line: it never sends again; its running and "
                                     "scheduled campaigns are paused")):
        one = l_sub.add_parser(action, help=text)
        _common(one)
        one.add_argument("tenant_id")
        one.add_argument("line_id")
    edit = l_sub.add_parser("edit", help="change a line's name, rate or WhatsApp tier")
    _common(edit)
    edit.add_argument("tenant_id")
    edit.add_argument("line_id")
    edit.add_argument("--name")
    edit.add_argument("--rate", type=float, metavar="MSG_PER_S")
    edit.add_argument("--tier", type=int, metavar="0-4",
                      help="WhatsApp messaging tier: 0=250, 1=2,000, 2=10,000, 3=100,000, "
                           "4=unlimited unique recipients per 24 h")
    audit = sub.add_parser("audit", help="the hash-chained audit log")
    _common(audit)
    a_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=_Parser)
    verify = a_sub.add_parser("verify", help="check the chain and its signed checkpoints "
                              "against the audit public key (never a key from the database)")
    _common(verify)
    verify.add_argument("--public-key", metavar="FILE|KEY",
                        help="the audit public key (a file such as audit.pub, or hex/base64); "
                             "default: derived from the master key")
    verify.add_argument("--checkpoints", type=Path, metavar="FILE",
                        help="checkpoint journal kept outside the database (default: "
                             "audit.checkpoints beside the master key, when present)")
    _common(a_sub.add_parser("checkpoint", help="sign the chain's length and head now"))
    _common(a_sub.add_parser("public-key", help="print the audit public key auditors verify "
                             "checkpoints with"))
    bench = sub.add_parser("bench", help="benchmarks that print figures")
    _common(bench)
    b_sub = bench.add_subparsers(dest="bench_command", metavar="NAME", parser_class=_Parser)
    crypto = b_sub.add_parser("crypto", help="unlock, seal and open speed")
    _common(crypto)
    crypto.add_argument("--fields", type=int, default=1_000_000)
    crypto.add_argument("--kdf", default="moderate", choices=["moderate", "interactive", "min"])
    _common(b_sub.add_parser("lexicon", help="precision and recall of the commercial-text "
                             "lexicon on messages it was not tuned on"))
    imp = b_sub.add_parser("import", help="CSV import rows/s and peak memory")
    _common(imp)
    imp.add_argument("--rows", type=int, default=1_000_000)
    imp.add_argument("--worker", default="yes", metavar="yes,no",
                     help="prepare rows in a worker process (yes), in the importing process "
                          "(no), or both one after the other on fresh tenants (yes,no)")
    gate = b_sub.add_parser("gate", help="batched gate decisions/s")
    _common(gate)
    gate.add_argument("--entries", type=int, default=1_000_000)
    gate.add_argument("--decisions", type=int, default=200_000)
    gate.add_argument("--batch", type=int, default=1000)
    disp = b_sub.add_parser("dispatch", help="dispatcher msgs/s against a raw floor, RSS")
    _common(disp)
    disp.add_argument("--recipients", type=int, action="append",
                      help="repeatable; default 10000 and 1000000")
    disp.add_argument("--databases", metavar="sqlite,postgresql",
                      help="default: sqlite, plus postgresql when IZINLI_DATABASE_URL names a "
                           "PostgreSQL server (the bench creates and drops its own database)")
    disp.add_argument("--repeat", type=int, default=3,
                      help="interleaved pipeline/floor runs per size (medians are printed)")
    disp.add_argument("--profile", action="store_true",
                      help="cProfile the pipeline runs and print the top functions")
    thr = b_sub.add_parser("throttle", help="pacing accuracy against enforced provider limits")
    _common(thr)
    thr.add_argument("--lines", type=int, default=20)
    thr.add_argument("--rate", type=float, default=80)
    thr.add_argument("--seconds", type=float, default=60)
    iys = b_sub.add_parser("iys", help="İYS push: pending consent records drained per second "
                           "against the fake İYS on loopback")
    _common(iys)
    iys.add_argument("--records", type=int, default=100_000)
    iys.add_argument("--latency", type=float, default=0.1, metavar="SECONDS",
                     help="the fake İYS's delay before each answer")
    iys.add_argument("--rate", type=int, default=10, metavar="PER_SECOND",
                     help="the fake İYS's request limit (429 beyond it); 0: none")
    iys.add_argument("--bulk-delay", type=float, default=2.0, metavar="SECONDS",
                     help="how long the fake İYS takes to process a bulk request")
    hooks = b_sub.add_parser("webhooks", help="signed WhatsApp status webhooks per second")
    _common(hooks)
    hooks.add_argument("--requests", type=int, default=5000)
    hooks.add_argument("--concurrency", type=int, default=20)
    dash = b_sub.add_parser("dashboard", help="dashboard pages under concurrent signed-in "
                            "sessions that pause between pages (or a closed loop with "
                            "--think 0, wrk when installed): requests/s, p50/p90/p99")
    _common(dash)
    dash.add_argument("--sessions", type=int, default=100, help="concurrent sessions")
    dash.add_argument("--seconds", type=float, default=60)
    dash.add_argument("--threads", type=int, default=2, help="wrk threads")
    dash.add_argument("--contacts", type=int, default=100_000)
    dash.add_argument("--campaigns", type=int, default=5)
    dash.add_argument("--per-page", type=float, default=0, metavar="SECONDS",
                      help="also load each page alone for this long")
    dash.add_argument("--no-wrk", action="store_true", help="use the aiohttp load generator")
    dash.add_argument("--think", type=float, default=5, metavar="SECONDS",
                      help="mean pause between a session's pages, like a person reading "
                           "(aiohttp); 0 = a closed loop, every session clicks again the "
                           "instant a page arrives (wrk)")
    dash.add_argument("--processes", default="1", metavar="N[,N…]",
                      help="serve with N processes on one PostgreSQL database, the sessions "
                           "split over their ports; e.g. 1,2 compares one and two in one run")
    clu = b_sub.add_parser("cluster", help="real izinli serve processes on one fresh "
                           "PostgreSQL database: msgs/s, STOP across processes, takeover "
                           "after kill -9, database transactions per message")
    _common(clu)
    clu.add_argument("--processes", default="1,2,3", help="process counts, comma-separated")
    clu.add_argument("--recipients", type=int, default=20_000, help="per run, over all lines")
    clu.add_argument("--lines", type=int, default=20, help="unthrottled sandbox lines")
    clu.add_argument("--stops", type=int, default=40, help="STOPs posted during each run")
    clu.add_argument("--database-url", help="PostgreSQL server to create the throwaway "
                     "database on (default: IZINLI_DATABASE_URL / store.url)")
    clu.add_argument("--round-trips", action="store_true",
                     help="route the processes' database traffic through a counting proxy "
                          "and report round trips per message (slows the run down)")
    vault = b_sub.add_parser("vault", help="real izinli serve processes on one fresh "
                             "PostgreSQL database: time for an unlock or a lock made through "
                             "one process to reach all the others")
    _common(vault)
    vault.add_argument("--processes", type=int, default=3)
    vault.add_argument("--tries", type=int, default=30)
    vault.add_argument("--database-url", help="PostgreSQL server to create the throwaway "
                       "database on (default: IZINLI_DATABASE_URL / store.url)")
    return parser


def load_config(args: argparse.Namespace) -> Config:
    overrides = {"data_dir": getattr(args, "data_dir", None),
                 "server.host": getattr(args, "host", None),
                 "server.port": getattr(args, "port", None),
                 "server.tls_cert": getattr(args, "tls_cert", None),
                 "server.tls_key": getattr(args, "tls_key", None),
                 "server.role": getattr(args, "server_role", None)}
    return configuration.load(getattr(args, "config", None), overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    try:
        code = _run(argv)
    except UsageError as exc:
        code = _fail(EXIT_USAGE, str(exc))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from izinli import commands
    handler = commands.lookup(args)
    if handler is None:
        raise UsageError(f"'{args.command}' needs an action (see 'izinli {args.command} --help')")
    try:
        config = load_config(args)
    except ConfigError as exc:
        return _fail(EXIT_USAGE, str(exc))
    # Only the server narrates; one-shot commands keep stderr for warnings and their one error.
    level = config.log.level if args.command in ("serve", "worker") else "WARNING"
    logs.configure(level, config.log.format)
    try:
        return asyncio.run(handler(args, config))
    except (ConfigError, StoreError, ValueError) as exc:
        return _fail(EXIT_USAGE, str(exc))
    except WrongPassphraseError as exc:
        wrong_code = exc.code == "wrong_recovery_code"  # crypto.recovery: its own words
        return _fail(EXIT_AUTH, str(exc) if wrong_code else "wrong passphrase")
    except AccountError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except Exception as exc:  # the last line of defence: no traceback for users
        logging.getLogger(__name__).debug("command failed", exc_info=True)
        return _fail(EXIT_ERROR, _describe(exc))


def _describe(exc: Exception) -> str:
    from izinli.serve import ServeError
    if isinstance(exc, ServeError):
        return str(exc)
    return f"failed: {type(exc).__name__}"


def _fail(code: int, message: str) -> int:
    print(f"izinli: {message}", file=sys.stderr)
    return code


