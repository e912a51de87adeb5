"""Player tokens: the player id signed with HMAC-SHA256 under the server's secret.

A token is ``<player id>.<signature>`` (base64url, unpadded). ``verify`` returns the player id
of a token this secret signed, or None for anything else (forged, altered, another server's,
malformed): one player cannot act as another. The secret itself (``secret``) comes from the
environment (``JETZERO_P2P_SECRET``), else the config, else a file generated owner-only (0600)
beside the embedded server's store and reused after.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from streams.auth import read_private, write_private

__all__ = ["SECRET_ENV", "new_player_id", "secret", "secret_path", "sign", "verify"]

SECRET_ENV = "JETZERO_P2P_SECRET"
_DOMAIN = b"jetzero-p2p-token-v1:"
_PLAYER = re.compile(r"^h-[0-9a-f]{16}$")


def new_player_id() -> str:
    return f"h-{secrets.token_hex(8)}"


def _mac(key: bytes, player: str) -> str:
    digest = hmac.new(key, _DOMAIN + player.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(key: bytes, player: str) -> str:
    return f"{player}.{_mac(key, player)}"


def verify(key: bytes, token: str) -> str | None:
    player, dot, mac = token.partition(".")
    if not dot or not _PLAYER.match(player):
        return None
    return player if hmac.compare_digest(mac.encode(), _mac(key, player).encode()) else None


def secret_path(nats_data_dir: str | Path) -> Path:
    """Where a generated secret is kept: beside the embedded server's store directory."""
    return Path(nats_data_dir).parent / "p2p_secret"


def secret(configured: str | None, nats_data_dir: str | Path) -> bytes:
    """The signing key: ``JETZERO_P2P_SECRET``, else ``configured``, else the generated file."""
    for value in (os.environ.get(SECRET_ENV), configured):
        if value:
            return value.encode()
    path = secret_path(nats_data_dir)
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32).encode(), replace=False)
    return read_private(path, "p2p token secret").strip()
