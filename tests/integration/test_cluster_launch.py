"""The ``ssh`` launch method against a real sshd on loopback and a real 3-server cluster.

The ``sshd`` fixture runs Debian's ``/usr/sbin/sshd`` as the current user on a free port, with
a host key and a client key it generates (``ssh-keygen``), its own config in tmp (StrictModes
off, public keys only), and a known_hosts file naming its host key (host keys are checked).
sshd refuses to start as root without its privilege separation directory ``/run/sshd``
("Missing privilege separation directory"): the fixture creates it when missing (as root; CI
runs as root). ``jetzero cluster up`` starts an agent over ssh, ``cluster down`` stops it,
``cluster heal`` restarts one that was killed.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from handlers.cluster import credentials
from streams.server import free_port
from tests.waiting import until

pytestmark = pytest.mark.integration

RUN = "sshrun"
NODE = "s1"
ROOT = Path(__file__).resolve().parents[2]
SSHD = Path("/usr/sbin/sshd")


@dataclass
class Sshd:
    port: int
    key: Path
    known_hosts: Path
    proc: subprocess.Popen


@pytest.fixture
def sshd(tmp_path):
    folder = tmp_path / "sshd"
    folder.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)],
                       check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}",
        f"PidFile {folder / 'sshd.pid'}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "PermitRootLogin prohibit-password", "",
    ]))
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(folder / 'host_key.pub').read_text().split(' ')[0]} "
                     f"{(folder / 'host_key.pub').read_text().split(' ')[1]}\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    check = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                            stdout=(folder / "sshd.log").open("w"), stderr=subprocess.STDOUT)
    server = Sshd(port, folder / "client_key", known, proc)
    try:
        deadline = time.monotonic() + 10
        while "Server listening" not in (folder / "sshd.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (folder / "sshd.log").read_text()
            time.sleep(0.05)  # polls the log for the listening line
        yield server
    finally:
        proc.terminate()
        proc.wait(10)


def _config(tmp_path: Path, nats_cluster, sshd: Sshd) -> Path:
    state = tmp_path / "agents"
    command = (f"cd {ROOT} && exec {sys.executable} -m scripts.cli agent --roles {{roles}} "
               f"--connect {{connect}} --creds {{creds}} --run {{run}} --name {{node}}")
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({
        "run": RUN,
        "nats": {"urls": nats_cluster.urls,
                 "credentials": str(credentials.role_file(nats_cluster.credentials_dir, "admin")),
                 "data_dir": str(nats_cluster.credentials_dir.parent)},
        "replicas": 3,
        "min_version": "0.1.0",
        "max_model_lag": 1,
        "nodes": [{"name": NODE, "host": "127.0.0.1", "roles": ["selfplay", "train"],
                   "launch": {"method": "ssh", "user": getpass.getuser(), "port": sshd.port,
                              "identity_file": str(sshd.key), "state_dir": str(state),
                              "options": ["-o", f"UserKnownHostsFile={sshd.known_hosts}",
                                          "-o", "StrictHostKeyChecking=yes"],
                              "command": command}}],
    }))
    return path


def _pid(tmp_path: Path) -> int | None:
    file = tmp_path / "agents" / f"agent-{NODE}.pid"
    return int(file.read_text()) if file.exists() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


async def _cli(*args: str):
    from scripts.cli import app

    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


@pytest.mark.cluster_nodes({NODE: ["selfplay", "train"]})
async def test_ssh_up_starts_down_stops_heal_restarts_killed_agent(tmp_path, nats_cluster, sshd):
    cfg = str(_config(tmp_path, nats_cluster, sshd))
    log = tmp_path / "agents" / f"agent-{NODE}.log"
    try:
        up = await _cli("cluster", "up", "--config", cfg)
        assert up.exit_code == 0, up.output
        first = _pid(tmp_path)
        assert first is not None and f"{NODE}: started pid {first} over ssh" in up.output
        assert "policy recorded: min_version 0.1.0, max_model_lag 1" in up.output  # from the config
        assert _alive(first)
        # the agent runs with its node's login on the cluster: it reads the run and waits
        await until(lambda: _async("waiting for the config in force" in log.read_text()), 30,
                    "the agent connected and waits for the config in force")

        again = await _cli("cluster", "up", "--config", cfg)  # idempotent: one agent per node
        assert again.exit_code == 0 and f"{NODE}: running pid {first} over ssh" in again.output
        assert "policy recorded" not in again.output  # the same policy is in force: not again

        os.kill(first, signal.SIGKILL)
        await until(lambda: _async(not _alive(first)), 10, "the agent is dead")
        heal = await _cli("cluster", "heal", "--config", cfg, "--timeout", "1")
        assert heal.exit_code == 0, heal.output
        second = _pid(tmp_path)
        assert second is not None and second != first and _alive(second)
        assert f"{NODE}: agent not running; started pid {second} over ssh" in heal.output
        assert "policy recorded" not in heal.output

        down = await _cli("cluster", "down", "--config", cfg)
        assert down.exit_code == 0, down.output
        assert f"{NODE}: stopped pid {second} over ssh" in down.output
        assert not _alive(second) and _pid(tmp_path) is None
        assert "not running" in (await _cli("cluster", "down", "--config", cfg)).output
    finally:
        pid = _pid(tmp_path)
        if pid is not None and _alive(pid):
            os.killpg(pid, signal.SIGKILL)


async def test_unreachable_node_is_reported_with_ssh_reason(tmp_path, nats_cluster, sshd):
    cfg = _config(tmp_path, nats_cluster, sshd)
    data = yaml.safe_load(cfg.read_text())
    data["nodes"][0]["launch"]["identity_file"] = str(tmp_path / "no-such-key")
    data["nodes"][0]["launch"]["options"] += ["-o", "IdentitiesOnly=yes"]
    cfg.write_text(yaml.safe_dump(data))
    up = await _cli("cluster", "up", "--config", str(cfg))
    assert up.exit_code == 0, up.output
    assert f"{NODE}: ssh to 127.0.0.1 failed (exit 255): " in up.output and "Permission denied" in up.output
    assert _pid(tmp_path) is None


async def _async(value):
    return value
