#!/usr/bin/env python3
"""The CI pipeline, with the flags of the user's guide; the same code as ``jetzero pipeline validate``.

    python scripts/pipeline_orchestrator.py --pr 123 --validate [--candidate FILE] [--base REF]
        [--baseline-model FILE] [--config PATH] [--pipeline-config PATH] [--junit PATH]
        [--test-command CMD] [--set KEY=VALUE ...] [--no-record] [--quiet]
        [--train [--data SNAPSHOT]] [--run RUN]
    python scripts/pipeline_orchestrator.py --history [--config PATH] [--json]

``--validate`` exits 0 when every gate passed, 1 when one failed, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.common import DEFAULT_CONFIG  # noqa: E402
from scripts.pipeline_cli import app  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--validate", action="store_true", help="validate this checkout against the base")
    action.add_argument("--history", action="store_true", help="past validations from the log")
    parser.add_argument("--pr", type=int, default=0)
    parser.add_argument("--candidate", default=None, help="the PR's model file")
    parser.add_argument("--base", default="", help="base ref (default: merge base with main)")
    parser.add_argument("--baseline-model", default=None, help="pin the baseline's model file")
    parser.add_argument("--config", "-c", default=str(DEFAULT_CONFIG))
    parser.add_argument("--pipeline-config", default=None)
    parser.add_argument("--junit", default=None)
    parser.add_argument("--test-command", default=None)
    parser.add_argument("--repo", default=None)
    parser.add_argument("--train", action="store_true",
                        help="train the candidate with the PR's training code on a data snapshot")
    parser.add_argument("--data", default=None, help="with --train: the data snapshot (default: the "
                                                     "run's games, exported from the log)")
    parser.add_argument("--run", default=None, help="the run whose log is used (default: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--quiet", "-q", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.history:
        app(["history", "--config", args.config, *(["--json"] if args.json else [])],
            prog_name="pipeline_orchestrator.py")
        return
    command = ["validate", "--pr", str(args.pr), "--config", args.config]
    for flag in ("candidate", "base", "baseline_model", "pipeline_config", "junit", "test_command", "repo",
                 "data", "run"):
        value = getattr(args, flag)
        if value:
            command += [f"--{flag.replace('_', '-')}", value]
    for pair in args.set:
        command += ["--set", pair]
    command += ["--no-record"] if args.no_record else []
    command += ["--quiet"] if args.quiet else []
    command += ["--train"] if args.train else []
    app(command, prog_name="pipeline_orchestrator.py")


if __name__ == "__main__":
    main()
