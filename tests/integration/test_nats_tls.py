"""TLS to a server of your own (``nats.tls``): a real nats-server with a ``tls {}`` block that
verifies clients, certificates made here by ``openssl`` (a test CA, the server's for 127.0.0.1,
a client's). A client with the CA and its certificate appends and reads; one that trusts another
CA, or speaks plain TCP, is told clearly; a missing file is a config error naming it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from streams import names
from streams.commands import StopLoop
from streams.config import NatsSettings, TlsSettings
from streams.connection import connect
from streams.errors import ConfigError, ServerUnreachable
from streams.server import find_binary, free_port, port_open
from streams.store import EventStore

pytestmark = pytest.mark.integration
RUN = "tls"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(folder: Path, name: str, ca: str, extension: str) -> None:
    """``<name>.key`` and ``<name>.pem`` signed by ``<ca>``, with ``extension``."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
    (folder / f"{name}.ext").write_text(extension + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=folder)


def _ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1", "-subj", f"/CN={name}",
             cwd=folder)


@pytest.fixture
def tls_server(tmp_path):
    """A nats-server (JetStream) that speaks TLS only and verifies client certificates."""
    folder = tmp_path / "pki"
    folder.mkdir()
    _ca(folder, "ca")
    _ca(folder, "other-ca")
    _signed(folder, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    _signed(folder, "client", "ca", "extendedKeyUsage=clientAuth")
    port = free_port()
    conf = tmp_path / "nats-server.conf"
    conf.write_text(f"""
listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{tmp_path / 'store'}" }}
tls {{
  cert_file: "{folder / 'server.pem'}"
  key_file: "{folder / 'server.key'}"
  ca_file: "{folder / 'ca.pem'}"
  verify: true
  timeout: 2
}}
""")
    log = (tmp_path / "nats-server.log").open("w")
    proc = subprocess.Popen([str(find_binary()), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "nats-server.log").read_text()
            time.sleep(0.05)  # polls for the listening port
        yield f"nats://127.0.0.1:{port}", folder
    finally:
        proc.terminate()
        proc.wait(10)


def _settings(url: str, tls: TlsSettings | None) -> NatsSettings:
    return NatsSettings(url=url, tls=tls, ping_interval_s=0.5, max_outstanding_pings=2)


async def test_a_client_with_the_ca_and_its_certificate_appends_and_reads(tls_server):
    url, pki = tls_server
    tls = TlsSettings(ca_file=str(pki / "ca.pem"), cert_file=str(pki / "client.pem"),
                      key_file=str(pki / "client.key"))
    conn = await connect(_settings(url, tls), name="test-tls", long_lived=False)
    try:
        store = EventStore(conn)
        seq = await store.append(StopLoop.new(RUN, by="tls test"))
        commands = names.run_filter(names.COMMANDS, RUN)
        read = [s async for s in store.read(names.COMMANDS, subject_filter=commands)]
        assert [s.seq for s in read] == [seq] and read[0].event.by == "tls test"
    finally:
        await conn.close()


async def test_another_ca_or_plain_tcp_is_refused_clearly_and_a_missing_file_is_named(tls_server):
    url, pki = tls_server
    wrong = TlsSettings(ca_file=str(pki / "other-ca.pem"), cert_file=str(pki / "client.pem"),
                        key_file=str(pki / "client.key"))
    with pytest.raises(ServerUnreachable, match="TLS with the NATS server at .* failed: .*verify failed"):
        await connect(_settings(url, wrong), long_lived=False)
    with pytest.raises(ServerUnreachable, match="TLS with the NATS server at nats://127.0.0.1"):
        await connect(_settings(url, None), long_lived=False)
    missing = TlsSettings(ca_file=str(pki / "nope.pem"))
    with pytest.raises(ConfigError, match="nats.tls: .*No such file"):
        await connect(_settings(url, missing), long_lived=False)
    with pytest.raises(ValueError, match="cert_file and key_file go together"):
        TlsSettings(cert_file=str(pki / "client.pem"))
