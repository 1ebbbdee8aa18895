"""`izinli serve`: web app, and (as they are built) dispatcher and scheduler, on one loop."""
from __future__ import annotations

import asyncio
import fcntl
import logging
import signal
import ssl
from contextlib import contextmanager

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from dashboard.keys import master_key
from dashboard.pages.web import setup_state_key
from izinli.app import create_app
from izinli.config import Config, ConfigError
from store.engine import StoreError

log = logging.getLogger(__name__)


class AccessLogger(AbstractAccessLogger):
    """Method, route path and status only: query strings can carry phone numbers."""

    def log(self, request, response, time):
        self.logger.info("http request", extra={
            "method": request.method, "path": request.path, "status": response.status,
            "ms": round(time * 1000, 1)})


async def serve(config: Config) -> None:
    _check_role(config)
    with _sole_sqlite_server(config):
        await _serve(config)


def _check_role(config: Config) -> None:
    """web and worker split one service across processes, which only PostgreSQL coordinates."""
    role = config.server.role
    if role != "all" and config.database_url.startswith("sqlite"):
        raise ConfigError(f"server role '{role}' needs PostgreSQL (IZINLI_DATABASE_URL): on "
                          "SQLite one process serves and sends; use --role all")


async def _serve(config: Config) -> None:
    stop = _stop_on_signals()  # before anything is announced, so an early Ctrl-C is clean
    app = create_app(config)
    runner = web.AppRunner(app, access_log_class=AccessLogger,
                           access_log=logging.getLogger("izinli.access"),
                           handle_signals=False)
    await runner.setup()
    try:
        tls = _tls_context(config)
        site = web.TCPSite(runner, config.server.host, config.server.port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            raise ServeError(f"cannot listen on {config.server.host}:{config.server.port}: "
                             f"{exc.strerror or exc}") from None
        url = f"{'https' if tls else 'http'}://{config.server.host}:{config.server.port}"
        role = config.server.role
        print(f"izinli listening on {url}" + (f" (role {role})" if role != "all" else ""),
              flush=True)
        created = app[master_key]
        if created.created:  # said once, on the start that made it
            print(f"first run: created the master key at {created.source}; back it up now, "
                  "apart from the data (see README, Backups)", flush=True)
        token = app[setup_state_key].get("token") if role != "worker" else None
        if token:  # first run: no business yet; the link is the only way in, once
            print(f"first run: create your business at {url}/setup?token={token}", flush=True)
        log.info("listening", extra={"url": url, "role": role})
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()


def _tls_context(config: Config) -> ssl.SSLContext | None:
    cert, key = config.server.tls_cert, config.server.tls_key
    if not cert and not key:
        return None
    if not (cert and key):
        raise ServeError("give both --tls-cert and --tls-key (or neither)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ServeError(f"cannot load the TLS certificate or key: "
                         f"{getattr(exc, 'strerror', None) or exc.__class__.__name__}") from None
    return context


@contextmanager
def _sole_sqlite_server(config: Config):
    """On SQLite one server process owns the data dir: a second one would send the same
    campaigns again (claims and line leases coordinate processes only on PostgreSQL). The lock
    is the kernel's, so it goes with the process, even after kill -9."""
    if not config.database_url.startswith("sqlite"):
        yield
        return
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(config.data_dir / "serve.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(  # a configuration matter: exit 2
                f"another izinli serve is already running on {config.data_dir}: SQLite serves "
                "one process; stop it, or use PostgreSQL (IZINLI_DATABASE_URL) for several"
            ) from None
        yield


class ServeError(Exception):
    """The server could not start; the message says why."""


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
