"""Requests through a TLS-terminating reverse proxy. Only peers listed in
`server.trusted_proxies` may say, with X-Forwarded-Proto and X-Forwarded-For, that the client
used https and from which address; from anyone else those headers are ignored, because any
client can send them. Answers to https requests carry Strict-Transport-Security."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

HSTS = "max-age=31536000"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """IP addresses or CIDRs; ValueError names the entry that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"'{entry}' is not an IP address or network") from None
    return tuple(networks)


def _address(text: str | None):
    try:
        return ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None


def is_trusted(peer: str | None, networks: tuple[Network, ...]) -> bool:
    address = _address(peer)
    return address is not None and any(address in net for net in networks)


def client_address(forwarded_for: str, networks: tuple[Network, ...]) -> str | None:
    """The client as the trusted proxies saw it: the right-most X-Forwarded-For entry that is
    not itself a trusted proxy (entries to its left were written by the client, unchecked)."""
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        address = _address(hop)
        if address is None:
            return None
        if not any(address in net for net in networks):
            return str(address)
    return None


def forwarded_middleware(networks: tuple[Network, ...]):
    @web.middleware
    async def forwarded(request: web.Request, handler):
        if networks and is_trusted(request.remote, networks):
            changes: dict = {}
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                changes["scheme"] = proto
            client = client_address(request.headers.get("X-Forwarded-For", ""), networks)
            if client is not None:
                changes["remote"] = client
            if changes:
                request = request.clone(**changes)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if request.secure:
                exc.headers.setdefault("Strict-Transport-Security", HSTS)
            raise
        if request.secure and not response.prepared:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
    return forwarded
