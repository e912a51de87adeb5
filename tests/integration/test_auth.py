"""Authorisation on the embedded server: generated credentials (0600) that every client of
the data folder logs in with; a client without them is refused with one clear error."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys

import msgspec
import nats
import pytest

from streams import auth
from streams.config import NatsSettings
from streams.connection import connect
from streams.errors import CredentialsError, NotAuthorized
from streams.server import EmbeddedServer, free_port
from tests.waiting import until

pytestmark = pytest.mark.integration


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_credentials_and_server_config_are_owner_only(nats_server):
    assert _mode(nats_server.credentials_file) == 0o600
    assert _mode(nats_server.conf_file) == 0o600  # it holds the passwords too
    creds = auth.load(nats_server.credentials_file)
    user, password = creds.login()
    assert user == auth.ADMIN and len(password) >= 40
    assert password in nats_server.conf_file.read_text()


@pytest.mark.parametrize("long_lived", [False, True])
async def test_a_client_without_credentials_is_refused(nats_server, long_lived):
    stranger = NatsSettings(url=nats_server.settings.client_url)
    # long-lived clients reconnect forever, but a refused login ends at once
    with pytest.raises(NotAuthorized, match="refused this client's login without credentials"):
        await asyncio.wait_for(connect(stranger, long_lived=long_lived), 10)


async def test_another_folders_credentials_are_refused(nats_server, tmp_path):
    other = tmp_path / "other" / auth.FILE_NAME
    auth.ensure(other)
    stranger = NatsSettings(url=nats_server.settings.client_url, credentials=str(other))
    with pytest.raises(NotAuthorized, match="as admin"):
        await connect(stranger, long_lived=False)


async def test_the_folders_clients_connect_embedded_and_by_url(nats_server):
    by_folder = await connect(nats_server.settings, long_lived=False)
    by_url = await connect(NatsSettings(url=nats_server.settings.client_url,
                                        credentials=str(nats_server.credentials_file)),
                           long_lived=False)
    try:
        assert by_folder.nc.is_connected and by_url.nc.is_connected
    finally:
        await by_folder.close()
        await by_url.close()


async def test_credentials_open_to_others_are_refused(nats_server):
    nats_server.credentials_file.chmod(0o644)
    with pytest.raises(CredentialsError, match="open to others.*chmod 600"):
        await connect(nats_server.settings, long_lived=False)


def test_credentials_are_kept_across_restarts(nats_server):
    before = nats_server.credentials_file.read_bytes()
    nats_server.stop()
    nats_server.start()
    assert nats_server.credentials_file.read_bytes() == before


async def test_a_role_user_gets_only_its_permissions(tmp_path):
    """The list extends to roles: a user with allow-lists is refused everything else."""
    settings = NatsSettings(port=free_port(), data_dir=str(tmp_path / "nats"))
    path = auth.credentials_path(settings.data_dir)
    creds = auth.generated().add("reader", auth.Permissions(publish=["jz.allowed.>"],
                                                            subscribe=["_INBOX.>"]))
    auth.write_private(path, msgspec.json.encode(creds))
    server = EmbeddedServer(settings)
    server.start()
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    try:
        user, password = creds.login("reader")
        nc = await nats.connect(settings.client_url, user=user, password=password,
                                error_cb=on_error)
        try:
            await nc.publish("jz.allowed.x", b"ok")
            await nc.publish("jz.other", b"no")
            await nc.flush()

            async def refused() -> bool:
                return bool(errors)

            await until(refused, 5, "the permissions violation", poll=0.05)
        finally:
            await nc.close()
        assert errors and all("jz.other" in e for e in errors)
    finally:
        server.stop()


def test_server_status_exits_non_zero_when_the_server_does_not_answer(tmp_path):
    for section in (f"url: nats://127.0.0.1:{free_port()}",
                    f"port: {free_port()}\n  data_dir: {tmp_path / 'nats'}"):
        config = tmp_path / "c.yaml"
        config.write_text(f"nats:\n  {section}\n")
        out = subprocess.run([sys.executable, "-m", "scripts.cli", "server", "status",
                              "--config", str(config)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 1, out
        lines = (out.stdout + out.stderr).strip().splitlines()
        assert len(lines) == 1 and ("unreachable" in lines[0] or "not running" in lines[0])
