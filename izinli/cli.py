"""The `izinli` command line. Exit codes: 0 ok, 2 usage or config, 3 wrong passphrase or auth,
1 anything else; failures print one line on stderr, never a traceback."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from crypto.errors import WrongPassphraseError
from dashboard.accounts import AccountError
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
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.add_argument("--data-dir", type=Path, help="data directory (default ./var)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="izinli", description="Consent-gated bulk messaging.")
    _common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve = sub.add_parser("serve", help="run the web app, dispatcher and scheduler")
    _common(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", parser_class=_Parser)
    _common(db_sub.add_parser("upgrade", help="apply migrations"))
    tenant = sub.add_parser("tenant", help="manage tenants (businesses)")
    t_sub = tenant.add_subparsers(dest="tenant_command", metavar="ACTION", parser_class=_Parser)
    create = t_sub.add_parser("create", help="create a tenant; prints its id and first API key")
    _common(create)
    create.add_argument("name")
    create.add_argument("--passphrase-file", required=True, type=Path,
                        help="file holding the vault passphrase ('-' for stdin)")
    bench = sub.add_parser("bench", help="benchmarks that print figures")
    b_sub = bench.add_subparsers(dest="bench_command", metavar="NAME", parser_class=_Parser)
    crypto = b_sub.add_parser("crypto", help="unlock, seal and open speed")
    _common(crypto)
    crypto.add_argument("--fields", type=int, default=1_000_000)
    crypto.add_argument("--kdf", default="moderate", choices=["moderate", "interactive", "min"])
    return parser


def load_config(args: argparse.Namespace) -> Config:
    overrides = {"data_dir": getattr(args, "data_dir", None),
                 "server.host": getattr(args, "host", None),
                 "server.port": getattr(args, "port", None)}
    return configuration.load(args.config, overrides=overrides)


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
    try:
        config = load_config(args)
    except ConfigError as exc:
        return _fail(EXIT_USAGE, str(exc))
    logs.configure(config.log.level, config.log.format)
    try:
        return asyncio.run(_dispatch(args, parser, config))
    except (ConfigError, StoreError, ValueError) as exc:
        return _fail(EXIT_USAGE, str(exc))
    except WrongPassphraseError:
        return _fail(EXIT_AUTH, "wrong passphrase")
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


async def _dispatch(args, parser, config: Config) -> int:
    from izinli import commands
    handler = commands.lookup(args)
    if handler is None:
        raise UsageError(f"'{args.command}' needs an action (see 'izinli {args.command} --help')")
    return await handler(args, config)
