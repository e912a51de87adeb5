"""``jetzero models ...``: list a run's models, export one to a file, import one from a file.

The work is ``handlers.promotion.models``'s; this module parses flags and formats what it
returns. ``export`` writes the stored bytes verified by their recorded digest; ``import``
refuses (exit 2, nothing recorded) a corrupt file, another game or another architecture,
exactly as ``jetzero promotion candidate`` does, and records the model without judging it.
"""

from __future__ import annotations

from pathlib import Path

import typer

from scripts.common import DEFAULT_CONFIG, echo_json, fmt_time, loop_config, with_store

app = typer.Typer(help="Models of a run: list, export one to a file, import one from a file.",
                  no_args_is_help=True)

ConfigOption = typer.Option(DEFAULT_CONFIG, "--config", "-c",
                            help="the loop's config: nats, run, game, network")
JsonOption = typer.Option(False, "--json", help="machine-readable output")


def _elo(e) -> str:
    if e.elo is None:
        return "-"
    ci = "inf" if e.elo_ci95 == float("inf") else f"{e.elo_ci95:.0f}"
    return f"{e.elo:+.0f} ± {ci}"


def format_models(entries) -> str:
    if not entries:
        return "no models yet"
    lines = [f"{'model':<28} {'gen':>3}  {'parent':<28} {'status':<10} {'Elo':>12}  "
             f"{'digest':<12}  {'saved (UTC)':<19}  source"]
    for e in entries:
        lines.append(f"{e.model_id:<28} {e.generation:>3}  {e.parent or '-':<28} {e.status:<10} "
                     f"{_elo(e):>12}  {e.digest[:12]:<12}  {fmt_time(e.saved_at):<19}  {e.source}")
    return "\n".join(lines)


@app.command("list")
def list_(config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """Every model: generation, parent, status (champion, promoted, reverted, rejected...), Elo, digest."""
    from handlers.promotion.models import list_models

    cfg = loop_config(config)
    entries = with_store(cfg, lambda store: list_models(store, cfg.run))
    if as_json:
        echo_json(entries)
    else:
        typer.echo(format_models(entries))


@app.command()
def export(
    model: str = typer.Argument(..., help="a model id, or 'champion'"),
    output: Path = typer.Option(..., "--output", "-o", help="the checkpoint file to write"),
    config: Path = ConfigOption,
) -> None:
    """Write a model's checkpoint to a file, verified by its recorded digest."""
    from handlers.promotion.models import export_model

    cfg = loop_config(config)
    done = with_store(cfg, lambda store: export_model(store, cfg.run, model, output))
    typer.echo(f"exported {done.model_id} to {done.path} ({done.size} bytes, sha256 {done.digest})")


@app.command("import")
def import_(
    path: Path = typer.Argument(..., help="the checkpoint file to import"),
    config: Path = ConfigOption,
) -> None:
    """Record a checkpoint file as a model of the run (refused: corrupt, another game or architecture)."""
    from handlers.promotion.models import import_model

    cfg = loop_config(config)
    done = with_store(cfg, lambda store: import_model(store, cfg, path))
    if done.already_known:
        typer.echo(f"{done.model_id} is already in run {cfg.run} (#{done.seq}, sha256 {done.digest})")
    else:
        typer.echo(f"imported {done.model_id} into run {cfg.run} as #{done.seq} (sha256 {done.digest})")
