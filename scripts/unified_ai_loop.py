#!/usr/bin/env python3
"""The unified AI loop, with the flags of the user's guide; the same code as ``jetzero loop``.

    python scripts/unified_ai_loop.py --start | --foreground [--verbose] | --status [--json]
                                      | --stop | --halt [--reason R] | --resume  [--config PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.common import DEFAULT_CONFIG  # noqa: E402
from scripts.loop_cli import app  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    for flag in ("start", "foreground", "status", "stop", "halt", "resume"):
        action.add_argument(f"--{flag}", action="store_true")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--reason", default="")
    parser.add_argument("--config", "-c", default=str(DEFAULT_CONFIG))
    args = parser.parse_args(argv)
    command = next(f for f in ("start", "foreground", "status", "stop", "halt", "resume")
                   if getattr(args, f))
    forwarded = [command, "--config", args.config]
    if command == "foreground" and args.verbose:
        forwarded.append("--verbose")
    if command == "status" and args.json:
        forwarded.append("--json")
    if command in ("stop", "halt", "resume") and args.reason:
        forwarded += ["--reason", args.reason]
    app(forwarded, prog_name="unified_ai_loop.py")


if __name__ == "__main__":
    main()
