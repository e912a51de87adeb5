"""The tests gate: the PR's own test command, run in the PR's checkout (exit 0 passes)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from handlers.pipeline.config import TestsGate
from streams.pipeline_events import GateOutcome

__all__ = ["tests_gate"]


def tests_gate(root: str | Path, gate: TestsGate, command: str | None = None) -> GateOutcome:
    command = command or gate.command
    start = time.perf_counter()
    try:
        done = subprocess.run(command, shell=True, cwd=root, capture_output=True, text=True,
                              timeout=gate.timeout_s)
    except subprocess.TimeoutExpired:
        return GateOutcome(gate="tests", status="failed", seconds=time.perf_counter() - start,
                           message=f"{command!r} did not finish within {gate.timeout_s:g} s")
    seconds = time.perf_counter() - start
    tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
    figures = {"exit_code": float(done.returncode), "seconds": seconds}
    if done.returncode == 0:
        return GateOutcome(gate="tests", status="passed", figures=figures, seconds=seconds,
                           message=f"{command!r} passed in {seconds:.0f} s: {tail}"[:500])
    return GateOutcome(gate="tests", status="failed", figures=figures, seconds=seconds,
                       message=f"{command!r} exited {done.returncode}: {tail}"[:500])
