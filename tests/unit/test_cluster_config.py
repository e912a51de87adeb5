"""The cluster config (refusals with field paths, the shipped file) and per-role permissions."""

from __future__ import annotations

import re

import pytest

from handlers.cluster import credentials
from handlers.cluster.config import load_cluster_config, parse_cluster_config
from streams import names
from streams.errors import ConfigError, CredentialsError

EMBEDDED = {"nats": {"embedded": 3}}


def test_shipped_config_loads_as_an_r3_embedded_cluster():
    cfg = load_cluster_config("config/cluster.yaml")
    settings = cfg.settings_for("selfplay")
    assert cfg.nats.embedded == 3 and settings.replicas == 3
    assert len(settings.client_url.split(",")) == 3
    assert settings.credentials.endswith("selfplay.creds.json")
    assert settings.ping_interval_s * (settings.max_outstanding_pings + 1) <= 1.5


@pytest.mark.parametrize("data, where", [
    ({"nats": {"embedded": 3, "urls": ["nats://a:4222"]}}, "$.nats"),
    ({"nats": {}}, "$.nats"),
    ({"nats": {"embedded": 2}}, "$.nats"),
    ({"nats": {"urls": ["a:4222"]}}, "$.nats"),
    ({**EMBEDDED, "nodes": [{"name": "a", "roles": ["cook"]}]}, "$.nodes[0].roles[0]"),
    ({**EMBEDDED, "nodes": [{"name": "a", "roles": []}]}, "$.nodes[0]"),
    ({**EMBEDDED, "nodes": [{"name": "a b", "roles": ["eval"]}]}, "$.nodes[0]"),
    ({**EMBEDDED, "nodes": [{"name": "a", "roles": ["eval"], "launch": {"method": "ssh"}}]},
     "$.nodes[0].launch"),
    ({**EMBEDDED, "nodes": [{"name": "a", "roles": ["eval"], "device": "tpu"}]}, "$.nodes[0]"),
    ({**EMBEDDED, "nodes": [{"name": "a", "roles": ["eval"], "torch_threads": -1}]}, "$.nodes[0]"),
    ({**EMBEDDED, "bogus": 1}, "bogus"),
    ({**EMBEDDED, "replicas": 2}, "replicas"),
    ({**EMBEDDED, "min_version": "one"}, "version"),
])
def test_bad_config_is_refused_naming_the_field(data, where):
    with pytest.raises(ConfigError) as refused:
        parse_cluster_config(data, "cluster.yaml")
    assert where in str(refused.value)
    assert "\n" not in str(refused.value)


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token.lower() != s[i].lower()):
            return False
    return len(p) == len(s)


def _may_publish(login: str, subject: str, nodes=None) -> bool:
    allowed = credentials.wanted(nodes)[login]
    return allowed is None or any(_matches(p, subject) for p in allowed.publish)


PROMOTED = names.subject(names.EVENTS, "r1", names.AGG_CHAMPION, "candidate.promoted")
STOP = names.command_subject("r1", "stop")
GAME = names.subject(names.GAMES, "r1", "w1", "game.finished")
PAIR = names.subject(names.EVENTS, "r1", "match-m1", "match.pair_played")
JOINED = names.subject(names.EVENTS, "r1", names.node_aggregate("a1"), "node.joined")
CREATE = "$JS.API.STREAM.CREATE.EVENTS"


@pytest.mark.parametrize("login, subject, allowed", [
    ("selfplay", GAME, True), ("selfplay", JOINED, True), ("selfplay", PROMOTED, False),
    ("selfplay", STOP, False), ("selfplay", CREATE, False), ("selfplay", PAIR, False),
    ("eval", PAIR, True), ("eval", PROMOTED, False), ("eval", GAME, False),
    ("operator", STOP, True), ("operator", PROMOTED, False),
    ("promote", PROMOTED, True), ("promote", STOP, False), ("train", PROMOTED, False),
    ("admin", CREATE, True),
])
def test_role_permissions(login, subject, allowed):
    assert _may_publish(login, subject) is allowed


def test_a_node_login_has_its_roles_and_only_its_own_node_subjects():
    nodes = {"a1": ["selfplay", "eval"]}
    login = credentials.node_user("a1")
    assert _may_publish(login, GAME, nodes) and _may_publish(login, PAIR, nodes)
    assert _may_publish(login, JOINED, nodes)
    other = names.subject(names.EVENTS, "r1", names.node_aggregate("a2"), "node.joined")
    assert not _may_publish(login, other, nodes)
    assert _may_publish(login, f"$KV.{names.KV_NODES}.{names.node_key('r1', 'a1')}", nodes)
    assert not _may_publish(login, f"$KV.{names.KV_NODES}.{names.node_key('r1', 'a2')}", nodes)
    assert not _may_publish(login, PROMOTED, nodes)


def test_written_credentials_keep_passwords_and_render_every_user(tmp_path):
    first = credentials.write(tmp_path, {"a1": ["eval"]})
    again = credentials.write(tmp_path, {"a1": ["eval"]})
    assert [u.password for u in first.users] == [u.password for u in again.users]
    include = (tmp_path / credentials.INCLUDE_FILE).read_text()
    assert set(re.findall(r'"user": "([^"]+)"', include)) == {*credentials.ROLES, "node-a1"}
    with pytest.raises(CredentialsError):
        credentials.permissions("cook")
