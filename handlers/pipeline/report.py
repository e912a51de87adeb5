"""The reports a CI system reads: a JUnit XML file and a markdown summary.

JUnit (``junitparser``): one test suite ``jetzero-pipeline``, one test case per gate (its time,
its figures in the message and in system-out); a failed gate is a ``<failure>``, a gate that
could not run an ``<error>``, a gate turned off ``<skipped>``. The markdown has the verdict,
the gate table, the SPRT's LLR and bounds, Elo ± interval and pentanomial counts, the speed
ratio, and, when the pipeline trained the candidate, the training (snapshot and its digest, seed,
steps, losses, seconds, the model's digest); it goes to ``$GITHUB_STEP_SUMMARY`` when set
(appended), else to stdout.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from streams.pipeline_events import GateOutcome, TrainingRun

__all__ = ["figures_text", "markdown_summary", "training_lines", "write_junit", "write_summary"]

SUITE = "jetzero-pipeline"
MARK = {"passed": "✅ passed", "failed": "❌ failed", "error": "⚠️ error", "skipped": "➖ skipped"}


def _num(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def figures_text(figures: dict[str, float]) -> str:
    return ", ".join(f"{k}={_num(v)}" for k, v in figures.items())


def write_junit(path: str | Path, gates: list[GateOutcome], *, pr: int = 0) -> None:
    suite = TestSuite(SUITE)
    for g in gates:
        case = TestCase(g.gate, classname=f"pipeline.pr{pr}" if pr else "pipeline")
        case.time = round(g.seconds, 3)
        text = f"{g.message} [{figures_text(g.figures)}]" if g.figures else g.message
        if g.status == "failed":
            case.result = [Failure(text, type_="GateFailed")]
        elif g.status == "error":
            case.result = [Error(text, type_="GateError")]
        elif g.status == "skipped":
            case.result = [Skipped(text)]
        case.system_out = text
        suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    xml.write(str(path), pretty=True)


def _ci(x: float) -> str:
    return "inf" if math.isinf(x) or math.isnan(x) else f"{x:.1f}"


def training_lines(run: TrainingRun) -> list[str]:
    """The markdown section of a candidate the pipeline trained (or failed to)."""
    span = (f", GAMES #{run.snapshot_first_seq}..#{run.snapshot_last_seq}"
            if run.snapshot_last_seq else "")
    lines = ["", "### Candidate trained by the PR's training code", "",
             f"- snapshot `{run.snapshot}`: {run.snapshot_games} games{span}, sha256 "
             f"`{run.snapshot_digest[:16] or '?'}`"]
    if run.status != "trained":
        return [*lines, f"- **training failed**: {run.message.replace('|', '/')}"]
    return [*lines,
            f"- {run.steps} steps of {run.batch_size} on {run.samples} positions, seed {run.seed}, "
            f"from the baseline `{run.parent_digest[:12]}`",
            f"- loss: policy {run.policy_loss:.4f} (final {run.final_policy_loss:.4f}), value "
            f"{run.value_loss:.4f} (final {run.final_value_loss:.4f})",
            f"- {run.seconds:.1f} s of training ({run.wall_seconds:.1f} s with start-up); candidate "
            f"`{run.model_id}` (weights `{run.model_digest[:16]}`)"]


def markdown_summary(verdict: str, gates: list[GateOutcome], *, pr: int = 0, base: str = "",
                     head: str = "", reason: str = "", seconds: float = 0.0,
                     training: TrainingRun | None = None) -> str:
    title = f"PR #{pr}" if pr else "this change"
    lines = [f"## jetzero pipeline: {title} {MARK.get(verdict, verdict)}", ""]
    if base or head:
        lines += [f"base `{base[:12] or '?'}` · candidate `{head[:19] or 'working tree'}`"
                  + (f" · {seconds:.0f} s" if seconds else ""), ""]
    if reason:
        lines += [f"**{reason}**", ""]
    lines += ["| gate | result | details |", "|---|---|---|"]
    for g in gates:
        lines.append(f"| {g.gate} | {MARK.get(g.status, g.status)} | {g.message.replace('|', '/')} |")
    if training is not None:
        lines += training_lines(training)
    match = next((g for g in gates if g.gate == "match" and "llr" in g.figures), None)
    if match is not None:
        f = match.figures
        penta = [int(f[f"penta_{k}"]) for k in ("ll", "ld", "dd", "wd", "ww")]
        lines += ["", "### Non-regression match (candidate vs base)", "",
                  f"- SPRT: LLR **{f['llr']:+.2f}**, bounds [{f['lower']:.2f}, {f['upper']:.2f}] "
                  f"for Elo [{f['elo0']:g}, {f['elo1']:g}] (α {f['alpha']:g}, β {f['beta']:g})",
                  f"- Elo **{f['elo']:+.1f} ± {_ci(f['elo_ci95'])}** (95%), nElo {f['nelo']:+.1f}",
                  f"- {int(f['pairs'])} pairs / {int(f['games'])} games (cap {int(f['max_pairs'])}); "
                  f"pentanomial [LL, LD, WL+DD, WD, WW] = {penta}"]
    speed = next((g for g in gates if g.gate == "speed" and "evals_ratio" in g.figures), None)
    if speed is not None:
        f = speed.figures
        lines += ["", "### Speed (candidate / base, interleaved)", "",
                  f"- evaluations/s ratio **{f['evals_ratio']:.2f}** ({f['candidate_evals_per_s']:,.0f} / "
                  f"{f['base_evals_per_s']:,.0f})",
                  f"- simulations/s ratio **{f['sims_ratio']:.2f}** ({f['candidate_sims_per_s']:,.0f} / "
                  f"{f['base_sims_per_s']:,.0f}); fails below {1 - f['tolerance']:.2f}"]
    return "\n".join(lines) + "\n"


def write_summary(text: str) -> str | None:
    """Append ``text`` to ``$GITHUB_STEP_SUMMARY`` (its path returned), or None when unset."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as f:
        f.write(text)
    return target
