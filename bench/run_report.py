"""How long ``jetzero report`` takes on a long run: a synthetic loop run of ``--size`` records
(``bench.projection_replay.SyntheticRun``: games, shards, trainings, checkpoints, matches pair
by pair, promotions, rejections, rollbacks, health failures) is bulk-appended to an embedded
nats-server with a temporary store, then the real command is run on it as a user runs it
(a subprocess: Python start, the log read, every chart drawn, the page written). Prints the
time, the command's own line, and one JSON line.

    .venv/bin/python bench/run_report.py [--size 120000] [--png]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import yaml  # noqa: E402

from bench.projection_replay import RUN, SyntheticRun  # noqa: E402
from streams import names  # noqa: E402
from streams.config import NatsSettings  # noqa: E402
from streams.connection import connect  # noqa: E402
from streams.server import EmbeddedServer, free_port  # noqa: E402
from streams.store import EventStore  # noqa: E402
from tests.loop_configs import nats_section  # noqa: E402


async def append(settings: NatsSettings, size: int) -> dict[str, int]:
    events = SyntheticRun(RUN, seed=0).take(size)
    log = await connect(settings, name="report-bench", long_lived=False)
    try:
        store = EventStore(log)
        for stream in (names.GAMES, names.EVENTS):
            batch = [e for e in events if e.STREAM == stream]
            for i in range(0, len(batch), 100_000):
                await store.append_many(batch[i:i + 100_000])
    finally:
        await log.close()
    return {stream: sum(1 for e in events if e.STREAM == stream) for stream in (names.EVENTS, names.GAMES)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=120_000, help="records in the synthetic run")
    parser.add_argument("--png", action="store_true", help="also write the PNGs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jetzero-bench-report-") as tmp:
        settings = NatsSettings(port=free_port(), data_dir=str(Path(tmp) / "nats"))
        server = EmbeddedServer(settings)
        server.start()
        try:
            counts = asyncio.run(append(settings, args.size))
            config = Path(tmp) / "loop.yaml"
            config.write_text(yaml.safe_dump({"run": RUN, "nats": nats_section(settings)}))
            command = [sys.executable, "-m", "scripts.cli", "report", "-o", str(Path(tmp) / "report.html"),
                       "--config", str(config), *(["--png", str(Path(tmp) / "png")] if args.png else [])]
            started = time.perf_counter()
            out = subprocess.run(command, capture_output=True, text=True, timeout=600)
            seconds = time.perf_counter() - started
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            size = (Path(tmp) / "report.html").stat().st_size
        finally:
            server.stop()
    print(f"{counts[names.EVENTS]:,} EVENTS + {counts[names.GAMES]:,} GAMES records: jetzero report "
          f"in {seconds:.2f} s (page {size / 1e3:.0f} kB)")
    print(out.stdout.strip())
    print(json.dumps({"bench": "run_report", "events": counts[names.EVENTS], "games": counts[names.GAMES],
                      "seconds": round(seconds, 2), "html_bytes": size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
