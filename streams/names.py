"""Every name on the wire, in one place: streams, subjects, consumers, buckets, headers.

Subjects are ``<stream prefix>.<run>.<aggregate>.<event tag>``; the event tag is dotted
(``candidate.promoted``), so a subject has two tokens after the aggregate. No other module
writes a subject in an f-string: build them with the functions here.
"""

from __future__ import annotations

import re

# Streams and their subject prefixes.
EVENTS = "EVENTS"
GAMES = "GAMES"
COMMANDS = "COMMANDS"
WORK = "WORK"
STREAM_PREFIX = {EVENTS: "jz.ev", GAMES: "jz.games", COMMANDS: "jz.cmd", WORK: "jz.work"}

# Key-value buckets and object stores.
KV_HEARTBEATS = "jz_heartbeats"
KV_LOCKS = "jz_locks"
KV_SNAPSHOTS = "jz_snapshots"
KV_POSITIONS = "jz_positions"
OBJ_MODELS = "jz_models"
OBJ_POOL = "jz_pool"


def kv_stream(bucket: str) -> str:
    """The stream behind a KV bucket (nats' convention)."""
    return f"KV_{bucket}"


def kv_subject(bucket: str, key: str) -> str:
    """The subject a KV bucket stores ``key`` under (``key`` "" gives the bucket's prefix)."""
    return f"$KV.{bucket}.{key}"

# Headers.
HDR_MSG_ID = "Nats-Msg-Id"
HDR_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
HDR_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"

# Well-known aggregates (the third subject token).
AGG_LOOP = "loop"
AGG_CHAMPION = "champion"
AGG_COMMANDS = "commands"
AGG_POOL = "pool"
AGG_HEALTH = "health"
AGG_REJECTED = "rejected"

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")


def token(value: str) -> str:
    """A safe single subject token: dots, spaces and wildcards become ``-``."""
    cleaned = re.sub(r"[^A-Za-z0-9_\-]", "-", value)
    if not cleaned:
        raise ValueError(f"empty subject token from {value!r}")
    return cleaned


def check_run(run: str) -> str:
    if not _TOKEN.match(run):
        raise ValueError(
            f"run name {run!r} must be letters, digits, '-' or '_' (it is a subject token)"
        )
    return run


def subject(stream: str, run: str, aggregate: str, tag: str) -> str:
    """The subject of one event: ``<prefix>.<run>.<aggregate>.<tag>``."""
    return f"{STREAM_PREFIX[stream]}.{check_run(run)}.{token(aggregate)}.{tag}"


def aggregate_filter(stream: str, run: str, aggregate: str) -> str:
    """Every subject of one aggregate (for expected-last-sequence checks and reads)."""
    return f"{STREAM_PREFIX[stream]}.{check_run(run)}.{token(aggregate)}.>"


def run_filter(stream: str, run: str | None = None) -> str:
    """Every subject of one run in a stream, or of every run when ``run`` is None."""
    if run is None:
        return f"{STREAM_PREFIX[stream]}.>"
    return f"{STREAM_PREFIX[stream]}.{check_run(run)}.>"


def tag_filter(stream: str, run: str | None, tag: str) -> str:
    """Every event of one type in a run (any aggregate)."""
    return f"{STREAM_PREFIX[stream]}.{'*' if run is None else check_run(run)}.*.{tag}"


def stream_subjects(stream: str) -> list[str]:
    return [f"{STREAM_PREFIX[stream]}.>"]


def parse_subject(subj: str) -> tuple[str, str, str, str]:
    """``(stream, run, aggregate, tag)`` of a subject built by :func:`subject`."""
    for stream, prefix in STREAM_PREFIX.items():
        if subj.startswith(prefix + "."):
            rest = subj[len(prefix) + 1 :].split(".", 2)
            if len(rest) == 3:
                return stream, rest[0], rest[1], rest[2]
    raise ValueError(f"{subj!r} is not a jetzero subject")


def durable(run: str, handler: str) -> str:
    """The durable consumer name of one handler in one run."""
    return f"jz_{check_run(run)}_{token(handler)}"


def snapshot_key(run: str, projection: str, version: int | str = 1) -> str:
    """The KV key of one projection's snapshot in one run, under the fold's ``version`` (a
    snapshot written under another version is never read: ``projections.base``)."""
    return f"{check_run(run)}.{token(projection)}.v{token(str(version))}"


def position_key(run: str, handler: str) -> str:
    return f"{check_run(run)}.{token(handler)}"


def lock_key(run: str, name: str) -> str:
    return f"{check_run(run)}.{token(name)}"


def heartbeat_key(run: str, node: str) -> str:
    return f"{check_run(run)}.{token(node)}"


def model_object(model_id: str) -> str:
    return f"models/{token(model_id)}.pt"


def shard_object(run: str, shard_id: str) -> str:
    return f"{check_run(run)}/shards/{token(shard_id)}.npz"


def command_subject(run: str, command: str) -> str:
    return subject(COMMANDS, run, AGG_COMMANDS, f"command.{token(command)}")


# --- cluster surface (handlers/cluster): its wire names go below this line ---
KV_NODES = "jz_nodes"  # node agents' heartbeats (TTL): roles, model, version, config, throughput
AGG_CLUSTER = "cluster"  # cluster-wide facts (the policy agents and the training window obey)
NODE_EVENT_PREFIX = "node."  # every event an agent writes is tagged node.* (one permission rule)


def node_aggregate(node: str) -> str:
    """The aggregate of one node's events and of the commands addressed to it."""
    return f"node-{node}"  # made a token where a subject is built (an empty name included)


def node_key(run: str, node: str) -> str:
    """The nodes-KV key of one agent in one run."""
    return f"{check_run(run)}.{token(node)}"


ROLE_EVENT_PREFIX = "role."  # singleton roles' takings and fence refusals (role.taken, ...)


def role_aggregate(role: str) -> str:
    """The aggregate of a singleton role's takings: its last event is the fence in force."""
    return f"role-{role}"


def role_refusals_aggregate(role: str) -> str:
    """Where stale writes of a role are recorded (apart, so they move no holder's fence)."""
    return f"role-{role}-refused"


# --- matchmaking surface (handlers/matchmaking): its wire names go below this line ---

P2P_GAME_AGGREGATE_PREFIX = "p2p-game-"


def p2p_game_aggregate(game_id: str) -> str:
    """The aggregate of one matchmaking game's events (started, moves, finished)."""
    return f"{P2P_GAME_AGGREGATE_PREFIX}{game_id}"  # made a token where a subject is built



P2P_LEVELS_AGGREGATE = "p2p-levels"  # the AI levels' calibrations (``p2p.levels_calibrated``)


# --- pipeline surface (handlers/pipeline): its wire names go below this line ---
AGG_PIPELINE = "pipeline"  # validations of pull requests (requested, completed); on WORK: match units
PIPELINE_PLAYERS = "pipeline-match"  # the durable consumer (and heartbeat role) of pipeline match players
PIPELINE_OBJECT_PREFIX = "pipeline/"  # code bundles and models a validation ships (in OBJ_MODELS)


def pipeline_validation_aggregate(validation_id: str) -> str:
    """The aggregate of one validation's match over WORK: its pairs' results and its decision."""
    return f"pipeline-v-{validation_id}"  # made a token where a subject is built


def pipeline_code_object(digest: str) -> str:
    """The object of one code version (a tar.gz of its files), named by its sha256."""
    return f"{PIPELINE_OBJECT_PREFIX}code/{token(digest)}.tar.gz"


def pipeline_model_object(digest: str) -> str:
    """The object of one model a validation ships (checkpoint bytes), named by their sha256."""
    return f"{PIPELINE_OBJECT_PREFIX}models/{token(digest)}.pt"
