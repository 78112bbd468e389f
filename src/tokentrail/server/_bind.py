"""Where the server may listen: loopback freely, anywhere else only behind a token."""

from __future__ import annotations

import ipaddress

__all__ = ["BindRefused", "check_bind", "is_loopback"]


class BindRefused(ValueError):
    """Raised when asked to listen on a non-loopback address without a token."""


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP addresses; any other name or address counts as exposed."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse (BindRefused) to expose the ledger on a non-loopback address unless a token guards it."""
    if not is_loopback(host) and not token:
        raise BindRefused(
            f"refusing to listen on {host!r} without a token: pass --token or set TOKENTRAIL_TOKEN "
            "(or bind 127.0.0.1)"
        )
