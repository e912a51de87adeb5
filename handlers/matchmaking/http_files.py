"""The play page over plain HTTP, from the WebSocket server's own port.

``serve_static`` is a ``process_request`` hook for ``websockets.asyncio.server.serve``: a plain
GET of one of the page's files is answered with that file; a WebSocket upgrade on ``WS_PATH``
goes on to the handshake (``None``); anything else is a 404 (the server answers ``METRICS_PATH``
itself, before this hook). Only the files named in ``FILES``
are ever read, so no request path can reach another file (no traversal, no listing).
"""

from __future__ import annotations

import email.utils
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

STATIC = Path(__file__).parent / "static"
WS_PATH = "/ws"
METRICS_PATH = "/metrics"  # the server's Prometheus metrics (handlers.matchmaking.metrics)

# request path → (file under STATIC, content type)
FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}

# The page fetches nothing from elsewhere, and the browser is told so: scripts, styles and the
# socket come from this origin only.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
          "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def is_upgrade(request: Request) -> bool:
    """Whether the request asks for a WebSocket (``Upgrade: websocket``)."""
    return any(value.strip().lower() == "websocket"
               for header in request.headers.get_all("Upgrade") for value in header.split(","))


def response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    """An HTTP response closing the connection (websockets answers one request per connection)."""
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Length", str(len(body))),
        ("Content-Type", content_type),
        ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", POLICY),
    ])
    return Response(status.value, status.phrase, headers, body)


def static_response(path: str) -> Response:
    """The response to a plain GET of ``path`` (query string ignored): a page file, or 404."""
    route = FILES.get(path.split("?", 1)[0])
    if route is None:
        return response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
    name, content_type = route
    return response(HTTPStatus.OK, (STATIC / name).read_bytes(), content_type)


def serve_static(connection: ServerConnection | None, request: Request) -> Response | None:
    """``process_request`` hook: None for a WebSocket upgrade on ``WS_PATH``, else a file or 404.

    An upgrade on another path is a 404; a plain GET of ``WS_PATH`` is left to websockets,
    which answers 426 Upgrade Required.
    """
    path = request.path.split("?", 1)[0]
    if path == WS_PATH:
        return None
    if is_upgrade(request):
        return response(HTTPStatus.NOT_FOUND, b"no WebSocket here; use /ws\n",
                        "text/plain; charset=utf-8")
    return static_response(request.path)
