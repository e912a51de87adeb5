"""The play page's files over plain HTTP from the WebSocket server's port (matchmaking.http_files).

The hook is called directly on parsed requests, and once through a real websockets server on a
loopback port (HTTP GETs with urllib, a WebSocket upgrade on /ws beside them).
"""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Request

from handlers.matchmaking.http_files import FILES, STATIC, WS_PATH, serve_static


def request(path: str, upgrade: bool = False) -> Request:
    headers = Headers([("Host", "localhost")])
    if upgrade:
        headers["Upgrade"] = "websocket"
        headers["Connection"] = "Upgrade"
    return Request(path, headers)


@pytest.mark.parametrize(("path", "name", "kind"), [
    ("/", "index.html", "text/html"),
    ("/index.html", "index.html", "text/html"),
    ("/?game=connect4", "index.html", "text/html"),
    ("/app.js", "app.js", "text/javascript"),
    ("/style.css", "style.css", "text/css"),
])
def test_page_files_are_served_with_their_types(path, name, kind):
    response = serve_static(None, request(path))
    assert response is not None and response.status_code == 200
    assert response.body == (STATIC / name).read_bytes()
    assert response.headers["Content-Type"].startswith(kind)
    assert int(response.headers["Content-Length"]) == len(response.body)
    assert "connect-src 'self'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", [
    "/../pyproject.toml", "/static/app.js", "/%2e%2e/http_files.py", "/..%2fhttp_files.py",
    "/http_files.py", "/app.js/", "//etc/passwd", "/favicon.ico", "/index.htm",
])
def test_anything_else_is_404_and_reads_no_other_file(path):
    response = serve_static(None, request(path))
    assert response is not None and response.status_code == 404
    assert response.body == b"not found\n"


def test_websocket_upgrades_go_to_the_handshake_on_ws_only():
    assert serve_static(None, request(WS_PATH, upgrade=True)) is None
    assert serve_static(None, request(WS_PATH + "?x=1", upgrade=True)) is None
    refused = serve_static(None, request("/", upgrade=True))
    assert refused is not None and refused.status_code == 404


def test_every_file_the_page_names_is_served_and_nothing_is_fetched_from_elsewhere():
    html = (STATIC / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref in FILES or ref.startswith("data:"), f"index.html refers to {ref}, which is not served"
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"https?://|//cdn|@import|url\(", text), f"{name} fetches from elsewhere"


def test_packaged_files_exist():
    for name, _ in FILES.values():
        assert (STATIC / name).is_file()


async def test_a_real_server_answers_http_and_websocket_on_one_port():
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    def get(url: str) -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.headers["Content-Type"], r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], e.read()

    async with serve(echo, "127.0.0.1", 0, process_request=serve_static) as server:
        port = server.sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        status, kind, body = await asyncio.to_thread(get, base + "/")
        assert (status, kind) == (200, "text/html; charset=utf-8")
        assert body == (STATIC / "index.html").read_bytes()
        status, kind, _ = await asyncio.to_thread(get, base + "/app.js")
        assert (status, kind) == (200, "text/javascript; charset=utf-8")
        status, _, _ = await asyncio.to_thread(get, base + "/../../etc/passwd")
        assert status == 404
        status, _, _ = await asyncio.to_thread(get, base + WS_PATH)
        assert status == 426  # a plain GET of the socket's path: websockets asks for an upgrade
        async with connect(f"ws://127.0.0.1:{port}{WS_PATH}") as ws:
            await ws.send("ping")
            assert await ws.recv() == "ping"
