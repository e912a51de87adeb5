#!/usr/bin/env python3
"""The promotion manager, with the flags of the user's guide; the same code as ``jetzero promotion``.

    python scripts/model_promotion_manager.py --candidate new_model.pt [--play auto|local|loop]
                                              | --daemon | --rollback [--to SEQ | --model ID]
                                              | --history | --ratings   [--config PATH]
                                              [--promotion-config PATH] [--elo-threshold X] ...

``--candidate`` exits 0 when promoted, 1 when rejected, 2 when refused or on error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.common import DEFAULT_CONFIG  # noqa: E402
from scripts.promotion_cli import app  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--candidate", metavar="PATH", help="import and judge this checkpoint")
    for flag, text in (("daemon", "evaluate every new checkpoint until stopped"),
                       ("rollback", "roll the champion back (default: the previous promotion)"),
                       ("history", "promotions, rejections and rollbacks with their figures"),
                       ("ratings", "the Elo ladder")):
        action.add_argument(f"--{flag}", action="store_true", help=text)
    parser.add_argument("--config", "-c", default=str(DEFAULT_CONFIG),
                        help="the loop's config: nats, run, game, network")
    parser.add_argument("--promotion-config", default=None,
                        help="gates and match sizes (default: the loop config's promotion_config)")
    parser.add_argument("--elo-threshold", type=float, default=None)
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--simulations", type=int, default=None)
    parser.add_argument("--play", choices=("auto", "local", "loop"), default="auto",
                        help="who plays the matches: the running loop, this process, or auto")
    parser.add_argument("--timeout", type=float, default=None, help="candidate: give up after seconds")
    parser.add_argument("--to", type=int, default=None, help="rollback: the promotion's sequence")
    parser.add_argument("--model", default=None, help="rollback: the model to go back to")
    parser.add_argument("--reason", default="")
    parser.add_argument("--wait-nodes", type=float, default=None, metavar="SECONDS",
                        help="candidate / rollback: wait for the node agents to switch (cluster sync)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)

    forwarded = ["--config", args.config]
    overrides = []
    if args.promotion_config:
        overrides += ["--promotion-config", args.promotion_config]
    for flag in ("elo_threshold", "max_pairs", "simulations"):
        if getattr(args, flag) is not None:
            overrides += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.candidate:
        command = ["candidate", args.candidate, *forwarded, *overrides, "--play", args.play]
        command += ["--timeout", str(args.timeout)] if args.timeout is not None else []
        command += ["--json"] if args.json else []
        command += ["--wait-nodes", str(args.wait_nodes)] if args.wait_nodes is not None else []
    elif args.daemon:
        command = ["daemon", *forwarded, *overrides, "--play", args.play]
        command += ["--verbose"] if args.verbose else []
    elif args.rollback:
        command = ["rollback", *forwarded, "--reason", args.reason]
        command += ["--to", str(args.to)] if args.to is not None else []
        command += ["--model", args.model] if args.model is not None else []
        command += ["--wait-nodes", str(args.wait_nodes)] if args.wait_nodes is not None else []
    else:
        command = ["history" if args.history else "ratings", *forwarded]
        command += ["--json"] if args.json else []
    app(command, prog_name="model_promotion_manager.py")


if __name__ == "__main__":
    main()
