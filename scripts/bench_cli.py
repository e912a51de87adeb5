"""``jetzero bench``: how strong a model is, measured on solved positions.

    jetzero bench connect4 --model runs/main/gen7.ckpt --sims 200 --limit 300
    jetzero bench connect4 --model random            # only the reference players

Grades the model's raw policy and network + MCTS (and, for scale, a random player and pure
MCTS with random rollouts) on a positions file in the benchmark format: the share of
positions where the move keeps the best outcome, where it is exactly optimal, and where
the value predicts the outcome, by stone-count band and where the choice matters. Prints a
table, then one JSON line (``--json``: the JSON line only). A file that cannot be read
gives one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from engine.bench_strength import (
    DEFAULT_REFERENCE_ROLLOUTS,
    DEFAULT_SIMULATIONS,
    PUBLIC_POSITIONS,
)
from scripts.common import ConfigOption, RunOption, guarded, load_target, with_store
from scripts.progress import tracker

app = typer.Typer(
    name="bench",
    help="Benchmarks of model strength on solved positions.",
    no_args_is_help=True,
    add_completion=False,
)

USAGE_ERROR = 2
RANDOM_MODEL = "random"
PositionsOption = typer.Option(
    PUBLIC_POSITIONS, "--positions", "-p", help="positions file (JSON Lines, benchmark format)"
)


@app.callback()
def bench() -> None:
    """Benchmarks of model strength on solved positions."""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


@app.command("connect4")
def connect4(
    model: str = typer.Option(
        ..., "--model", "-m", help=f"checkpoint file, or '{RANDOM_MODEL}' for the references only"
    ),
    positions: Path = PositionsOption,
    sims: int = typer.Option(
        DEFAULT_SIMULATIONS, "--sims", min=0, help="MCTS simulations per position (0: raw policy only)"
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="grade K positions evenly spread through the file"
    ),
    reference_rollouts: int = typer.Option(
        DEFAULT_REFERENCE_ROLLOUTS,
        "--reference-rollouts",
        min=0,
        help="iterations of the pure-MCTS reference (0: random reference only)",
    ),
    no_references: bool = typer.Option(False, "--no-references", help="skip the reference players"),
    batch: int = typer.Option(256, "--batch", min=1, help="positions searched together"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch threads (default: torch's)"),
    seed: int = typer.Option(0, "--seed", help="seed of the reference players"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON line only"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars (none when not at a terminal)"),
    record: bool = typer.Option(False, "--record", help="record the grades as model.graded in the run's log"),
    config: Path = ConfigOption,
    run: str = RunOption,
) -> None:
    """Grade a Connect Four model (and the reference players) on solved positions."""
    import msgspec

    from engine.bench_strength import (
        mcts_name,
        measure_model,
        measure_references,
        spread,
    )
    from engine.errors import CheckpointError, EngineError
    from engine.games.connect4 import ConnectFour
    from engine.strength import format_table, load_positions

    game = ConnectFour()
    try:
        chosen = spread(load_positions(positions, game), limit)
    except (EngineError, OSError) as exc:
        _fail(str(exc))
    if not chosen:
        _fail(f"{positions} holds no position")
    if model == RANDOM_MODEL and no_references:
        _fail(f"--model {RANDOM_MODEL} with --no-references leaves nothing to grade")
    target = guarded(lambda: load_target(config, run), code=USAGE_ERROR) if record else None
    with tracker(quiet=quiet) as bars:
        def progress(player: str, done: int, total: int) -> None:
            bars.update(player, completed=done, total=total, description=f"{player} positions")

        reports, seconds, model_id = {}, {}, RANDOM_MODEL
        if not no_references:
            started = time.perf_counter()
            reports.update(
                measure_references(chosen, reference_rollouts, seed=seed, game=game, progress=progress)
            )
            seconds["references"] = time.perf_counter() - started
        if model != RANDOM_MODEL:
            from engine.checkpoint import load_checkpoint_file
            from engine.network import set_torch_threads

            if threads is not None:
                set_torch_threads(threads)
            try:
                net, meta = load_checkpoint_file(model, expect_game=game)
            except CheckpointError as exc:
                _fail(str(exc))
            model_id = meta.model_id
            started = time.perf_counter()
            reports.update(measure_model(net, chosen, 0, game=game))
            seconds["raw-policy"] = time.perf_counter() - started
            if sims > 0:
                started = time.perf_counter()
                reports.update(
                    measure_model(net, chosen, sims, batch=batch, game=game, raw=False, progress=progress)
                )
                seconds[mcts_name(sims)] = time.perf_counter() - started

    summary = {
        "model": model_id,
        "positions_file": str(positions),
        "positions": len(chosen),
        "simulations": sims if model != RANDOM_MODEL else 0,
        "reference_rollouts": 0 if no_references else reference_rollouts,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "reports": reports,
    }
    if not as_json:
        typer.echo(
            f"connect4 strength of {model_id} on {len(chosen)} positions from {positions}"
            + (f", MCTS at {sims} simulations" if model != RANDOM_MODEL and sims else "")
        )
        typer.echo(format_table(reports))
    typer.echo(msgspec.json.encode(summary).decode())
    if target is not None:
        event = graded_event(target.run, model_id, positions, reports)
        seq = with_store(target, lambda store: store.append(event))
        if not as_json:
            typer.echo(f"recorded model.graded #{seq} in run {target.run}")


def graded_event(run: str, model_id: str, positions: Path, reports: dict) -> Any:
    """``model.graded`` of ``reports`` (player -> ``StrengthReport``): each player's overall shares."""
    from engine.bench_strength import RAW_POLICY
    from streams.events import Grade, ModelGraded

    grades = [
        Grade(player=name, positions=r.overall.count, outcome_optimal=r.overall.outcome_optimal,
              exactly_optimal=r.overall.exactly_optimal, value_accuracy=r.overall.value_accuracy,
              reference=not (name == RAW_POLICY or name.startswith("net-")))
        for name, r in reports.items()
    ]
    return ModelGraded.new(run, model_id=model_id, positions_file=str(positions), grades=grades)
