"""Who may use the log: generated users and passwords for the embedded server.

The first start of the embedded server writes ``credentials.json`` into its data folder,
owner-only (0600): a list of users, each with a generated password and optional
permissions (publish / subscribe allow-lists; none = everything). The server's
``authorization`` block is rendered from the same list, and every client of that folder
(processes of the loop, the CLI) logs in with it; a client without it is refused.

Today the list holds one user, ``admin``, with every permission. Roles (the cluster's
workers, say) are more ``User`` entries with allow-lists: ``Credentials.add`` them and the
server config and the clients follow.

Errors: ``CredentialsError`` (file missing, unreadable, malformed, or open to others).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path

import msgspec

from streams.config import NatsSettings
from streams.errors import CredentialsError

ADMIN = "admin"
FILE_NAME = "credentials.json"


class Permissions(msgspec.Struct, frozen=True, kw_only=True):
    """Subjects a user may publish to and subscribe to (NATS wildcards allowed)."""

    publish: list[str] = []
    subscribe: list[str] = []


class User(msgspec.Struct, frozen=True, kw_only=True):
    """One login; ``permissions`` None means every subject."""

    name: str
    password: str
    permissions: Permissions | None = None


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    """Every user of one server; what ``credentials.json`` holds."""

    version: int = 1
    users: list[User] = []

    def login(self, name: str = ADMIN) -> tuple[str, str]:
        """``(user, password)`` of the user ``name``."""
        for user in self.users:
            if user.name == name:
                return user.name, user.password
        raise CredentialsError(f"no user {name!r} in the credentials")

    def add(self, name: str, permissions: Permissions | None = None) -> Credentials:
        """These credentials with a new user ``name`` (a generated password)."""
        if any(u.name == name for u in self.users):
            raise CredentialsError(f"user {name!r} exists already")
        user = User(name=name, password=new_password(), permissions=permissions)
        return Credentials(version=self.version, users=[*self.users, user])

    def authorization_block(self) -> str:
        """The nats-server ``authorization`` block for these users (JSON is valid there)."""
        users = []
        for user in self.users:
            entry: dict = {"user": user.name, "password": user.password}
            if user.permissions is not None:
                entry["permissions"] = {
                    "publish": {"allow": user.permissions.publish},
                    "subscribe": {"allow": user.permissions.subscribe},
                }
            users.append(entry)
        return "authorization: " + json.dumps({"users": users}, indent=2) + "\n"


def new_password() -> str:
    return secrets.token_urlsafe(32)


def generated() -> Credentials:
    """Fresh credentials: one admin with every permission."""
    return Credentials(users=[User(name=ADMIN, password=new_password())])


def credentials_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILE_NAME


def read_private(path: Path, what: str = "credentials file") -> bytes:
    """The bytes of a secret file; refuse one that others can read or write."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise CredentialsError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            f"{what} {path} is open to others (mode {stat.S_IMODE(mode):04o}): chmod 600 it"
        )
    return data


def load(path: Path) -> Credentials:
    """Read a credentials file (owner-only, see ``read_private``)."""
    data = read_private(path)
    try:
        return msgspec.json.decode(data, type=Credentials)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CredentialsError(f"credentials {path} are malformed: {exc}") from None


def ensure(path: Path) -> Credentials:
    """The credentials at ``path``, generated (0600) if there are none yet.

    Two processes generating at once: the first to link its file wins, the other reads it.
    """
    if path.exists():
        return load(path)
    write_private(path, msgspec.json.encode(generated()), replace=False)
    return load(path)


def write_private(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` owner-only (0600), never visible half-written.

    ``replace=False``: leave an existing file as it is.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
    finally:
        tmp.unlink(missing_ok=True)


def client_file(settings: NatsSettings) -> Path | None:
    """The credentials file a client of ``settings`` logs in with (None: no login)."""
    if settings.url:
        return Path(settings.credentials) if settings.credentials else None
    return credentials_path(settings.data_dir)


def client_login(settings: NatsSettings, name: str = ADMIN) -> tuple[str | None, str | None]:
    """``(user, password)`` a client of ``settings`` logs in with.

    ``nats.url``: the user ``name`` of ``nats.credentials`` if set, or its only user when it
    holds one (a role's file, ``jetzero cluster credentials``); else none (the URL may carry
    a user). The embedded server: its data folder's credentials; none there yet means
    no server was ever started there, and one that wants them refuses us with a clear error.
    """
    path = client_file(settings)
    if path is None or (not settings.url and not path.exists()):
        return None, None
    credentials = load(path)
    if settings.url and len(credentials.users) == 1:
        return credentials.users[0].name, credentials.users[0].password
    return credentials.login(name)
