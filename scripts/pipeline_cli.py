"""``jetzero pipeline ...``: validate a pull request (candidate vs base, gate by gate) and list past
validations (``scripts/pipeline_orchestrator.py --pr N --validate`` is the same code under the
guide's flags). The work is ``handlers.pipeline``'s; this module parses flags, shows progress
(a rich bar with the SPRT's LLR between its bounds, on a terminal only) and writes the reports.

``validate --train`` has the pipeline train the candidate with the PR's training code on a data
snapshot: ``--data FILE`` (games exported earlier with ``jetzero events export --stream GAMES``),
or else the run's games exported from the log for this validation by that same exporter.

``validate`` exits 0 when every gate passed, 1 when a gate failed, 2 when it could not run.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer

from scripts.common import DEFAULT_CONFIG, echo_json, fmt_time, guarded, loop_config, with_store

app = typer.Typer(help="CI pipeline: validate a PR against its base (quality, strength, match, speed, tests)",
                  no_args_is_help=True)

ROOT = Path(__file__).resolve().parents[1]  # this jetzero's checkout (its exporter)
ConfigOption = typer.Option(DEFAULT_CONFIG, "--config", "-c",
                            help="the loop's config: game, network, nats and run (events, champion)")


def _overrides(pairs: list[str]) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE (e.g. match.max_pairs=20)",
                                     param_hint="--set")
        out[key] = yaml.safe_load(value)
    return out


class _Progress:
    """The rich progress display: the match's LLR between its bounds, then the speed rounds."""

    def __init__(self, enabled: bool):
        self.bar: Any = None
        self.match_task: Any = None
        self.speed_task: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description:<8}"), BarColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=False)

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc_info):
        if self.bar is not None:
            self.bar.stop()

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            typer.echo(text, err=True)

    def gate_started(self, name: str) -> None:
        if self.bar is None:
            return
        if name == "match":
            self.match_task = self.bar.add_task("match", total=1000, info="LLR waiting for the first pair")
        elif name == "speed":
            self.speed_task = self.bar.add_task("speed", total=None, info="warming up")

    def gate_done(self, g) -> None:
        self.note(f"{g.gate:<8} {g.status:<7} {g.message}")

    def match(self, m) -> None:
        if self.bar is None or self.match_task is None:
            return
        where = (m.llr - m.lower) / (m.upper - m.lower)
        ci = "inf" if math.isinf(m.elo_ci95) else f"{m.elo_ci95:.0f}"
        self.bar.update(self.match_task, completed=int(1000 * min(1.0, max(0.0, where))),
                        info=f"LLR {m.llr:+.2f} in [{m.lower:.2f}, {m.upper:.2f}] · {m.pairs} pairs · "
                             f"{m.games} games · Elo {m.elo:+.0f} ± {ci}")

    def speed(self, done: int, total: int) -> None:
        if self.bar is not None and self.speed_task is not None:
            self.bar.update(self.speed_task, completed=done, total=total, info=f"round {done}/{total}")


def _export_snapshot(config: Path, cfg, run: str, folder: Path) -> Path:
    """The run's games exported from its log by ``jetzero events export --stream GAMES`` into
    ``folder``; one line and exit 2 when that fails."""
    from streams.server import start_if_needed

    path = folder / f"snapshot-{run}.jsonl"
    temporary = guarded(lambda: start_if_needed(cfg.nats), code=2)
    try:
        with open(path, "wb") as out:
            done = subprocess.run(
                [sys.executable, "-m", "scripts.cli", "events", "export", "--stream", "GAMES", "--run", run,
                 "--config", str(config.resolve()), "--quiet"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=subprocess.PIPE,
                text=True)
    finally:
        if temporary is not None:
            temporary.stop()
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        typer.echo(f"error: could not run: exporting run {run}'s games from the log: "
                   f"{last.removeprefix('error: ')}", err=True)
        raise typer.Exit(2)
    return path


@app.command()
def validate(
    pr: int = typer.Option(0, "--pr", help="the pull request's number (named in reports and events)"),
    candidate: Path = typer.Option(None, "--candidate", help="the PR's model (default: the baseline's)"),
    base: str = typer.Option("", "--base", help="the base ref (default: the merge base of HEAD with main)"),
    baseline_model: Path = typer.Option(None, "--baseline-model",
                                        help="pin the baseline's model (default: the run's champion, "
                                             "else a fresh seeded net)"),
    config: Path = ConfigOption,
    pipeline_config: Path = typer.Option(Path("config/pipeline.yaml"), "--pipeline-config",
                                         help="gates and thresholds"),
    overrides: list[str] = typer.Option([], "--set", help="override a pipeline setting: KEY=VALUE"),
    repo: Path = typer.Option(Path("."), "--repo", help="the PR's checkout (a git repository)"),
    junit: Path = typer.Option(Path("reports/pipeline-junit.xml"), "--junit", help="JUnit XML report"),
    test_command: str = typer.Option("", "--test-command", help="run this in the PR's checkout as a gate"),
    record: bool = typer.Option(True, "--record/--no-record",
                                help="record the validation's events in the run's log when reachable"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or gate lines"),
    train: bool = typer.Option(False, "--train",
                               help="train the candidate with the PR's training code (config train:) "
                                    "from the baseline's weights on a data snapshot"),
    data: Path = typer.Option(None, "--data",
                              help="with --train: the data snapshot (`jetzero events export --stream "
                                   "GAMES --run RUN > FILE`); default: the run's games, exported now"),
    run: str = typer.Option(None, "--run", help="the run whose log is used: events, champion, "
                                                "snapshot (default: the config's run)"),
    local: bool = typer.Option(False, "--local",
                               help="play the match here even when the run's eval agents are connected"),
) -> None:
    """Validate the PR's code and model against the base's; exit 0 passed, 1 failed, 2 could not run."""
    from handlers.loop.config import load_loop_config
    from handlers.pipeline.config import load_pipeline_config
    from handlers.pipeline.history import LogRecorder, champion_to
    from handlers.pipeline.remote import WorkMatch
    from handlers.pipeline.report import markdown_summary, write_junit, write_summary
    from handlers.pipeline.validate import Hooks, ValidationRequest
    from handlers.pipeline.validate import validate as run_validation

    cfg = loop_config(config)
    if run is not None:
        cfg = guarded(lambda: load_loop_config(config, {"run": run}), code=2)
    settings = guarded(lambda: load_pipeline_config(pipeline_config, _overrides(overrides)), code=2)
    for name, path in (("--candidate", candidate), ("--baseline-model", baseline_model), ("--data", data)):
        if path is not None and not path.is_file():
            typer.echo(f"error: could not run: {name} {path}: no such file", err=True)
            raise typer.Exit(2)
    for problem, flags in ((data is not None and not train, "--data needs --train"),
                           (train and candidate is not None, "--train and --candidate exclude each other")):
        if problem:
            typer.echo(f"error: could not run: {flags}", err=True)
            raise typer.Exit(2)
    stack = ExitStack()
    snapshot, label = (data, str(data)) if data is not None else (None, "")
    if train and data is None:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jetzero-snapshot-")))
        snapshot, label = _export_snapshot(config, cfg, cfg.run, folder), f"log:{cfg.run}"
    request = ValidationRequest(
        repo=str(repo.resolve()), config=settings, game=cfg.game.name, game_params=dict(cfg.game.params),
        network=cfg.network, run=cfg.run, pr=pr, base_ref=base,
        candidate_model=str(candidate or ""), baseline_model=str(baseline_model or ""),
        test_command=test_command, train=train, snapshot=str(snapshot or ""), snapshot_label=label,
        train_config=cfg.training.train)
    show = not quiet and sys.stderr.isatty()
    with stack, _Progress(show) as progress:
        note = progress.note if not quiet else (lambda text: None)
        recorder = LogRecorder(cfg.nats, note=note) if record else None
        hooks = Hooks(note=note, gate_started=progress.gate_started,
                      gate_done=progress.gate_done if not quiet else (lambda g: None),
                      match_progress=progress.match, speed_progress=progress.speed,
                      record=recorder if recorder is not None else (lambda e: None),
                      baseline_from_log=(lambda p: champion_to(cfg.nats, cfg.run, p)) if record else None,
                      work=WorkMatch(cfg.nats, cfg.run, note=note) if record and not local else None)
        try:
            result = run_validation(request, hooks)
        except KeyboardInterrupt:
            typer.echo("error: interrupted; the base worktree and the engines are cleaned up", err=True)
            raise typer.Exit(130) from None
    write_junit(junit, result.gates or _setup_error(result), pr=pr)
    summary = markdown_summary(result.verdict, result.gates, pr=pr, base=result.base_commit,
                               head=result.head_commit, reason=result.reason, seconds=result.seconds,
                               training=result.training)
    if write_summary(summary) is None and not quiet:
        typer.echo(summary)
    word = {"passed": "PASSED", "failed": "FAILED"}.get(result.verdict)
    typer.echo(f"{word}: {result.reason}" if word else f"error: {result.reason}", err=True)
    raise typer.Exit(result.exit_code)


def _setup_error(result):
    from streams.pipeline_events import GateOutcome

    return [GateOutcome(gate="setup", status="error", message=result.reason)]


@app.command()
def history(
    config: Path = ConfigOption,
    run: str = typer.Option(None, "--run", help="run name (default: the config's run)"),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="the latest N validations"),
    json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Past validations from the log: when, PR, verdict, gates."""
    from handlers.pipeline.history import validation_history

    cfg = loop_config(config)
    rows = with_store(cfg, lambda store: validation_history(store, run or cfg.run))[-limit:]
    if json:
        echo_json(rows)
        return
    if not rows:
        typer.echo(f"no validations recorded in run {run or cfg.run}")
        return
    typer.echo(f"{'seq':>6}  {'time (UTC)':<19}  {'PR':>5}  {'verdict':<7}  {'base':<12}  gates")
    for r in rows:
        gates = " ".join(f"{g.gate}:{g.status}" for g in r.gates)
        typer.echo(f"{r.seq:>6}  {fmt_time(r.time):<19}  {r.pr or '-':>5}  {r.verdict:<7}  "
                   f"{r.base_commit[:12] or r.base_ref[:12]:<12}  {gates}")
        if r.verdict in ("failed", "error"):
            typer.echo(f"{'':>8}{r.reason[:200]}")
