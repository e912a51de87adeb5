"""Credentials files (owner-only, generated once) and lease owners known to be dead."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from streams import auth
from streams.errors import CredentialsError
from streams.kv import owner_gone, process_owner


def test_generated_once_owner_only_and_kept(tmp_path):
    path = tmp_path / "nats" / auth.FILE_NAME
    first = auth.ensure(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth.ensure(path) == first and first.login()[0] == auth.ADMIN
    assert [p.name for p in path.parent.iterdir()] == [auth.FILE_NAME]  # no temporary left


def test_malformed_or_open_credentials_are_refused(tmp_path):
    path = tmp_path / auth.FILE_NAME
    auth.write_private(path, b"[1, 2]")
    with pytest.raises(CredentialsError, match="malformed"):
        auth.load(path)
    auth.write_private(path, b"{}")
    path.chmod(0o640)
    with pytest.raises(CredentialsError, match="mode 0640"):
        auth.load(path)


def test_the_authorization_block_lists_every_user_with_its_permissions():
    creds = auth.generated().add("worker", auth.Permissions(publish=["jz.games.>"],
                                                            subscribe=["_INBOX.>"]))
    block = creds.authorization_block()
    assert block.startswith("authorization: ")
    users = json.loads(block.removeprefix("authorization: "))["users"]
    assert [u["user"] for u in users] == ["admin", "worker"]
    assert "permissions" not in users[0]  # admin: everything
    assert users[1]["permissions"] == {"publish": {"allow": ["jz.games.>"]},
                                       "subscribe": {"allow": ["_INBOX.>"]}}
    with pytest.raises(CredentialsError, match="exists"):
        creds.add("worker")


def test_a_lease_owner_is_gone_only_when_its_process_on_this_host_ended():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = f"me@x pid {int(done.stdout)} on {socket.gethostname()}"
    assert owner_gone(dead)
    assert not owner_gone(process_owner("me@x"))  # this process runs
    assert not owner_gone(f"me@x pid {int(done.stdout)} on another-host")  # can't tell: keep
    assert not owner_gone("me@x")  # an owner from before pids were recorded: wait out the TTL
