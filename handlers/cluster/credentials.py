"""Per-role users of the cluster: what each role may publish and subscribe to, written as a
nats-server ``authorization`` include plus one credentials file per role (all 0600).

Roles and what they may write (everyone may read: JetStream info, direct gets, consumers,
acks, flow control, object-store reads; nobody but ``admin`` may create, change, delete or
purge a stream):

    selfplay   game records (GAMES), its node.* events, event.rejected, its status (nodes KV)
    eval       match.pair_played, pipeline.pair_played (taking WORK units and fetching
               objects is reading), node events, status
    operator   commands (COMMANDS) — the CLI; answers come from the loop's controller
    promote    the champion's decisions (candidate.promoted / rejected, champion.rolled_back),
               match.scheduled / completed, WORK units, leases, handler positions, snapshots
    train      training.*, checkpoint.saved, models into the object store, leases, positions
    sync       pool.batch_synced, pool shards into the object store, leases, positions
    admin      everything (definitions, the loop's supervisor and controller)

A node of ``config/cluster.yaml`` gets a user of its own, ``node-<name>``, allowed what its
roles together are (one agent process plays several roles on one login), its node.* events
and nodes-KV key narrowed to its own node.

Built on ``streams.auth`` (``Credentials.add``); a role's file holds that one user, and a
client given it logs in as that user (``streams.auth.client_login``).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from streams import auth, names
from streams.auth import Credentials, Permissions
from streams.errors import CredentialsError

ADMIN = auth.ADMIN
ROLES: tuple[str, ...] = ("admin", "operator", "selfplay", "eval", "promote", "train", "sync")
NODE_PREFIX = "node-"
INCLUDE_FILE = "authorization.conf"  # the servers' include (users and passwords)
SERVER_FILE = "credentials.json"  # every user: what the include is rendered from

_EV, _GAMES, _WORK = (names.STREAM_PREFIX[s] for s in (names.EVENTS, names.GAMES, names.WORK))
_CMD = names.STREAM_PREFIX[names.COMMANDS]


def _event(tag: str, aggregate: str = "*") -> str:
    """Every run's events of one tag (``jz.ev.<run>.<aggregate>.<tag>``)."""
    return f"{_EV}.*.{aggregate}.{tag}"


def _kv(bucket: str) -> str:
    return names.kv_subject(bucket, ">")


def _object_write(bucket: str) -> list[str]:
    """Putting objects: chunks and metadata, and the purge of a replaced object's chunks."""
    return [f"$O.{bucket}.>", f"$JS.API.STREAM.PURGE.OBJ_{bucket}"]


# Reading the log: JetStream API calls that change nothing but consumers (no stream create,
# update, delete, purge or message delete), acks and flow-control answers, reply inboxes.
READ_PUBLISH: tuple[str, ...] = (
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.*",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.MSG.GET.*",
    "$JS.API.DIRECT.GET.>",
    "$JS.API.CONSUMER.CREATE.>",
    "$JS.API.CONSUMER.DURABLE.CREATE.>",
    "$JS.API.CONSUMER.INFO.>",
    "$JS.API.CONSUMER.MSG.NEXT.>",
    "$JS.ACK.>",
    "$JS.FC.>",
)
READ_SUBSCRIBE: tuple[str, ...] = ("_INBOX.>",)
# An agent's own facts: node.* events, its status in the nodes KV, poison it met.
_NODE = [_event(f"{names.NODE_EVENT_PREFIX}*"), _event("event.rejected"), _kv(names.KV_NODES),
         _kv(names.KV_HEARTBEATS)]
_SINGLETON = [_kv(names.KV_LOCKS), _kv(names.KV_POSITIONS), _kv(names.KV_SNAPSHOTS),
              _event("event.rejected"), _event(f"{names.ROLE_EVENT_PREFIX}*"),
              # a handler shell remakes its durable from its position (streams.consumer.open_from)
              f"$JS.API.CONSUMER.DELETE.{names.EVENTS}.*", f"$JS.API.CONSUMER.DELETE.{names.GAMES}.*"]

WRITES: dict[str, list[str]] = {
    "operator": [f"{_CMD}.>"],
    "selfplay": [f"{_GAMES}.*.*.game.finished", *_NODE],
    "eval": [_event("match.pair_played"), _event("pipeline.pair_played"), *_NODE],
    "promote": [f"{_EV}.*.{names.AGG_CHAMPION}.>", _event("match.scheduled"),
                 _event("match.completed"), f"{_WORK}.>", *_SINGLETON],
    "train": [f"{_EV}.*.training.>", _event("checkpoint.saved"),
                *_object_write(names.OBJ_MODELS), *_SINGLETON],
    "sync": [f"{_EV}.*.{names.AGG_POOL}.>", *_object_write(names.OBJ_POOL), *_SINGLETON],
}


def permissions(*roles: str) -> Permissions | None:
    """What a login with ``roles`` may do (None: everything, the admin)."""
    if ADMIN in roles:
        return None
    writes: list[str] = []
    for role in roles:
        if role not in WRITES:
            raise CredentialsError(f"no role {role!r}: roles are {', '.join(ROLES)}")
        writes += [w for w in WRITES[role] if w not in writes]
    return Permissions(publish=[*writes, *READ_PUBLISH], subscribe=list(READ_SUBSCRIBE))


def node_user(node: str) -> str:
    """The login of one node's agent."""
    return f"{NODE_PREFIX}{node}"


def role_file(directory: str | Path, role: str) -> Path:
    """The credentials file of one role (or ``node_user(name)``) in ``directory``."""
    return Path(directory) / f"{role}.creds.json"


def wanted(nodes: dict[str, list[str]] | None = None) -> dict[str, Permissions | None]:
    """Every login and its permissions: the roles, then one per node (name → its roles)."""
    users = {role: permissions(role) for role in ROLES}
    for node, roles in (nodes or {}).items():
        users[node_user(node)] = node_permissions(node, roles)
    return users


def node_permissions(node: str, roles: list[str]) -> Permissions | None:
    """``permissions(*roles)`` with the node-wide rules narrowed to this node's own subjects."""
    allowed = permissions(*roles)
    if allowed is None:
        return None
    own = [f"{_EV}.*.{names.node_aggregate(node)}.{names.NODE_EVENT_PREFIX}*",
           names.kv_subject(names.KV_NODES, f"*.{names.token(node)}")]
    broad = {_event(f"{names.NODE_EVENT_PREFIX}*"), _kv(names.KV_NODES)}
    return Permissions(publish=own + [p for p in allowed.publish if p not in broad],
                       subscribe=allowed.subscribe)


def write(directory: str | Path, nodes: dict[str, list[str]] | None = None, *,
          replace: bool = False) -> Credentials:
    """Write the servers' include, every user, and one file per login into ``directory``
    (all 0600). ``nodes``: node name → its roles (``config/cluster.yaml``).

    Existing passwords are kept (running servers and their clients go on working) unless
    ``replace``; missing logins are added, logins no longer wanted dropped, and every
    permission is derived afresh from this module, so a changed rule reaches the include.
    """
    directory = Path(directory)
    server_file = directory / SERVER_FILE
    users = wanted(nodes)
    current = auth.load(server_file) if server_file.exists() and not replace else Credentials()
    kept = [msgspec.structs.replace(u, permissions=users[u.name])
            for u in current.users if u.name in users]
    credentials = Credentials(users=kept)
    for name, allowed in users.items():
        if all(u.name != name for u in kept):
            credentials = credentials.add(name, allowed)
    auth.write_private(server_file, msgspec.json.encode(credentials))
    auth.write_private(directory / INCLUDE_FILE, credentials.authorization_block().encode())
    for user in credentials.users:
        auth.write_private(role_file(directory, user.name),
                           msgspec.json.encode(Credentials(users=[user])))
    return credentials


def ensure(directory: str | Path, nodes: dict[str, list[str]] | None = None) -> Credentials:
    """The credentials in ``directory`` with every login of ``nodes``, written if needed."""
    server_file = Path(directory) / SERVER_FILE
    if server_file.exists() and (Path(directory) / INCLUDE_FILE).exists():
        current = auth.load(server_file)
        if {u.name for u in current.users} == set(wanted(nodes)):
            return current
    return write(directory, nodes)
