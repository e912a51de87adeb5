#!/usr/bin/env python3
"""The matchmaking server, with the flags of the user's guide; the same code as ``jetzero p2p serve``.

    python scripts/p2p_orchestrator.py [--port 8080] [--host HOST] [--config PATH] [--p2p-config PATH]

The page is at ``http://HOST:PORT/``, the WebSocket at ``ws://HOST:PORT/ws``; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handlers.matchmaking.config import DEFAULT_P2P_PATH  # noqa: E402
from scripts.common import DEFAULT_CONFIG  # noqa: E402
from scripts.p2p_cli import app  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="listen here (default: config/p2p.yaml: 8080)")
    parser.add_argument("--host", default=None, help="listen on this address (default: the config's)")
    parser.add_argument("--config", "-c", default=str(DEFAULT_CONFIG), help="the loop's config: nats and run")
    parser.add_argument("--p2p-config", default=str(DEFAULT_P2P_PATH), help="the matchmaking settings")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    command = ["serve", "--config", args.config, "--p2p-config", args.p2p_config]
    command += ["--port", str(args.port)] if args.port is not None else []
    command += ["--host", args.host] if args.host is not None else []
    command += ["--verbose"] if args.verbose else []
    app(command, prog_name="p2p_orchestrator.py")


if __name__ == "__main__":
    main()
