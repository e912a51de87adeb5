"""``jetzero promotion ...``: judge a candidate checkpoint, evaluate as a daemon, roll back, and
show the promotion history and the ratings ladder (``scripts/model_promotion_manager.py`` is
the same code under the guide's flags). The work is ``handlers.promotion``'s (``judge``,
``daemon``, ``manager`` for rollback, ``history``); this module parses flags and formats what
they return.

``candidate`` exits 0 when the candidate is promoted, 1 when it is rejected, 2 when it is
refused (corrupt, another game or architecture) or anything else goes wrong.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from scripts.common import (
    DEFAULT_CONFIG,
    echo_json,
    fail,
    fmt_time,
    guarded,
    loop_config,
    run_async,
    with_store,
)
from scripts.progress import tracker

app = typer.Typer(help="Promotion: judge a candidate, evaluate continuously, roll back, history, ratings.",
                  no_args_is_help=True)


class Play(StrEnum):
    auto = "auto"
    local = "local"
    loop = "loop"


ConfigOption = typer.Option(DEFAULT_CONFIG, "--config", "-c",
                            help="the loop's config: nats, run, game, network")
PromotionOption = typer.Option(None, "--promotion-config",
                               help="gates and match sizes (default: the loop config's promotion_config)")
EloOption = typer.Option(None, "--elo-threshold", help="override: minimum Elo gain against the champion")
PairsOption = typer.Option(None, "--max-pairs", help="override: most game pairs in the gate match")
SimsOption = typer.Option(None, "--simulations", help="override: search simulations per move")
PlayOption = typer.Option(Play.auto, "--play",
                          help="who plays the matches: the running loop, this process, or auto")
JsonOption = typer.Option(False, "--json", help="machine-readable output")
CandidateArgument = typer.Argument(..., help="the checkpoint file to judge (e.g. new_model.pt)")
TimeoutOption = typer.Option(None, "--timeout", help="give up waiting after this many seconds")
VerboseOption = typer.Option(False, "--verbose", "-v")
ToOption = typer.Option(None, "--to", help="sequence of the promotion to go back to (see history)")
ModelOption = typer.Option(None, "--model", help="go back to this model's latest effective promotion")
ReasonOption = typer.Option("", "--reason", help="why (recorded in the event)")
WaitNodesOption = typer.Option(10.0, "--wait-nodes", min=0,
                               help="after a champion change, wait up to SECONDS for node agents to "
                                    "switch and say which lag (silent with no agents)")


def _node_sync(cfg, model_id: str, wait: float, say) -> None:
    """Which node agents play ``model_id`` now and which lag (``handlers.cluster.sync_report``)."""
    from handlers.cluster.sync_report import sync_report

    report = with_store(cfg, lambda store: sync_report(store, cfg.run, model_id, timeout=wait))
    for line in report.lines() if report is not None else []:
        say(line)


def _configs(config: Path, promotion: Path | None, overrides: dict[str, Any]):
    from handlers.promotion.config import load_promotion_config

    loop_cfg = loop_config(config)
    path = promotion or Path(loop_cfg.promotion_config)
    given = {k: v for k, v in overrides.items() if v is not None}
    return loop_cfg, guarded(lambda: load_promotion_config(path, given), code=2)


def _signed(x: float) -> str:
    return "inf" if x != x or abs(x) == float("inf") else f"{x:+.1f}"


def format_match(m) -> str:
    penta = " ".join(str(c) for c in m.pentanomial)
    ci = "inf" if m.ci95 == float("inf") else f"{m.ci95:.1f}"
    line = (f"  {m.purpose:<10} vs {m.opponent:<22} {m.pairs:>4}/{m.max_pairs:<4} pairs [{penta}]  "
            f"Elo {_signed(m.elo)} ± {ci}  LOS {m.los:.3f}  LLR {m.llr:+.2f} ({m.lower:.2f}, {m.upper:.2f})")
    return line + (f"  → {m.verdict}" if m.completed else "")


def format_verdict(v) -> str:
    if v.promoted:
        head = (f"PROMOTED {v.model_id} (candidate.promoted #{v.seq}); it replaced "
                f"{v.previous_champion or 'no champion'}; the champion now is {v.champion}")
    else:
        head = f"REJECTED {v.model_id} (candidate.rejected #{v.seq}): {v.reason}"
    return "\n".join([head, *(format_match(m) for m in v.matches)])


def _figures(f: dict[str, float]) -> str:
    if "elo" not in f:
        return ""
    ci = f.get("elo_ci95", float("inf"))
    out = f"Elo {_signed(f['elo'])} ± {'inf' if ci == float('inf') else f'{ci:.1f}'}"
    if "llr" in f:
        out += f", LLR {f['llr']:+.2f}"
    if "pairs" in f:
        out += f", {int(f['pairs'])} pairs"
    return out


def history_row(e) -> str:
    """One promotion, rejection or rollback as a line of the history table."""
    if e.kind == "rolled_back":
        detail = (f"to #{e.to_seq}; reverted {', '.join(e.reverted) or 'nothing'}"
                  f"{' (automatic)' if e.automatic else ''}: {e.detail}")
    else:
        detail = "; ".join(x for x in (_figures(e.figures), e.detail) if x)
    if e.kind in ("initial", "promoted") and not e.effective:
        detail = "(reverted) " + detail
    what = e.kind.replace("_", " ")
    return f"{e.seq:>6}  {fmt_time(e.time):<19}  {what:<11}  {e.model_id:<24}  {detail}"


def format_history(registry, entries) -> str:
    champ = registry.champion
    lines = [f"champion: {champ.model_id} (generation {champ.generation}, promotion #{champ.promotion_seq})"
             if champ else "champion: none yet",
             f"{'seq':>6}  {'time (UTC)':<19}  {'what':<11}  {'model':<24}  figures / detail"]
    return "\n".join(lines + [history_row(e) for e in entries])


def format_ratings(ratings) -> str:
    if not ratings.ladder:
        return "no completed matches yet"
    lines = [f"anchor (Elo 0): {ratings.anchor}",
             f"{'#':>3}  {'player':<28} {'Elo':>8} {'±95%':>7} {'games':>6}"]
    for rank, (name, r) in enumerate(ratings.ranked(), 1):
        ci = "inf" if r.ci95 == float("inf") else f"{r.ci95:.1f}"
        lines.append(f"{rank:>3}  {name:<28} {_signed(r.elo):>8} {ci:>7} {r.games:>6}")
    if ratings.unrated:
        lines.append(f"unrated (no games linking them to the anchor): {', '.join(ratings.unrated)}")
    return "\n".join(lines)


@app.command()
def candidate(
    path: Path = CandidateArgument,
    config: Path = ConfigOption,
    promotion_config: Path | None = PromotionOption,
    elo_threshold: float | None = EloOption,
    max_pairs: int | None = PairsOption,
    simulations: int | None = SimsOption,
    play: Play = PlayOption,
    timeout: float | None = TimeoutOption,
    as_json: bool = JsonOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars (none when not at a terminal)"),
    wait_nodes: float = WaitNodesOption,
) -> None:
    """Import a checkpoint and judge it; exit 0 promoted, 1 rejected, 2 refused or error."""
    from engine.network import set_torch_threads
    from handlers.promotion.judge import judge_candidate

    loop_cfg, promo = _configs(config, promotion_config, {
        "elo_threshold": elo_threshold, "max_pairs": max_pairs, "simulations": simulations})
    set_torch_threads(loop_cfg.evaluation.torch_threads)
    say = (lambda text: None) if as_json else typer.echo

    def on_progress(m) -> None:  # a bar per match at a terminal, else a line per change
        if not bars.active:
            say(format_match(m))
            return
        llr = f"LLR {m.llr:+.2f} in [{m.lower:.2f}, {m.upper:.2f}]" + (f" {m.verdict}" if m.completed else "")
        bars.update(m.match_id, completed=m.pairs, total=m.max_pairs,
                    description=f"{m.purpose} vs {m.opponent}", note=llr)

    with tracker(quiet=quiet or as_json) as bars:
        verdict = guarded(lambda: run_async(lambda: judge_candidate(
            loop_cfg, promo, path, play=play.value, on_note=say, on_progress=on_progress, timeout=timeout,
        )), code=2)
    if as_json:
        echo_json(verdict)
    else:
        typer.echo(format_verdict(verdict))
    if verdict.promoted:
        _node_sync(loop_cfg, verdict.model_id, wait_nodes, say)
    raise typer.Exit(0 if verdict.promoted else 1)


@app.command()
def daemon(
    config: Path = ConfigOption,
    promotion_config: Path | None = PromotionOption,
    elo_threshold: float | None = EloOption,
    max_pairs: int | None = PairsOption,
    simulations: int | None = SimsOption,
    play: Play = PlayOption,
    verbose: bool = VerboseOption,
) -> None:
    """Evaluate every new checkpoint continuously (Ctrl-C stops); print each decision."""
    from engine.network import set_torch_threads
    from handlers.promotion.daemon import run_daemon

    loop_cfg, promo = _configs(config, promotion_config, {
        "elo_threshold": elo_threshold, "max_pairs": max_pairs, "simulations": simulations})
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_torch_threads(loop_cfg.evaluation.torch_threads)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_daemon(loop_cfg, promo, stop, play=play.value, on_note=typer.echo,
                         on_decision=lambda e: typer.echo(history_row(e)))

    guarded(lambda: run_async(main), code=2)


@app.command()
def rollback(
    config: Path = ConfigOption,
    to: int | None = ToOption,
    model: str | None = ModelOption,
    reason: str = ReasonOption,
    wait_nodes: float = WaitNodesOption,
) -> None:
    """Roll the champion back (default: to the previous effective promotion).

    Decided by the controller: the running loop's, or, with no loop running, run here."""
    from handlers.promotion.manager import rollback_champion

    if to is not None and model is not None:
        fail("give --to or --model, not both", 2)
    cfg = loop_config(config)

    event, seq = with_store(cfg, lambda store: rollback_champion(
        store, cfg.run, to_seq=to or 0, model_id=model or "", reason=reason))
    typer.echo(f"rolled back run {cfg.run} to promotion #{event.to_promotion_seq}: the champion is "
               f"{event.model_id}; reverted {', '.join(event.reverted_models) or 'nothing'} "
               f"(champion.rolled_back #{seq})")
    _node_sync(cfg, event.model_id, wait_nodes, typer.echo)


@app.command()
def promote(
    model_id: str = typer.Argument(..., help="the model to make champion (known, not yet decided)"),
    config: Path = ConfigOption,
    reason: str = ReasonOption,
    wait_nodes: float = WaitNodesOption,
) -> None:
    """Promote a model by hand, skipping its matches (decided by the controller, as rollback)."""
    from handlers.promotion.manager import promote_model

    cfg = loop_config(config)

    event, seq = with_store(cfg, lambda store: promote_model(store, cfg.run, model_id, reason=reason))
    typer.echo(f"promoted {event.model_id} by hand in run {cfg.run}: it replaced "
               f"{event.previous_champion or 'no champion'} (candidate.promoted #{seq})")
    _node_sync(cfg, event.model_id, wait_nodes, typer.echo)


@app.command()
def history(config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """Every promotion, rejection and rollback of the run, with their figures."""
    from handlers.promotion.history import promotion_history

    cfg = loop_config(config)

    registry, entries = with_store(cfg, lambda store: promotion_history(store, cfg.run))
    if as_json:
        echo_json({"champion": registry.champion, "entries": entries})
    else:
        typer.echo(format_history(registry, entries))


@app.command()
def ratings(config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """The Elo ladder of every model and reference player, with 95% intervals."""
    from handlers.promotion.history import ratings_ladder

    cfg = loop_config(config)

    ladder = with_store(cfg, lambda store: ratings_ladder(store, cfg.run))
    if as_json:
        echo_json({"anchor": ladder.anchor, "ladder": dict(ladder.ranked()), "unrated": ladder.unrated})
    else:
        typer.echo(format_ratings(ladder))
