"""``--status``: one report assembled from the projections (works with the loop stopped).

``collect_status`` reads every read model it needs (from its snapshot plus the events since)
and returns plain data (``--json`` prints it as it is); ``format_status`` renders it for a
terminal. Every figure the metrics report too comes from ``handlers.loop.figures`` over the
same projections, and the curriculum stage from the curriculum projection fed the stages of
the config in force.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from handlers.loop.config import LoopConfig, in_force_summary
from handlers.loop.figures import FIGURE_PROJECTIONS, figures
from handlers.loop.supervisor import supervisor_alive
from projections import build_projection
from projections.runner import ProjectionRunner
from streams.store import EventStore

STATUS_PROJECTIONS = (*FIGURE_PROJECTIONS, "curriculum")


async def fold_states(
    store: EventStore, config: LoopConfig, keys: tuple[str, ...], *, use_snapshots: bool = True
) -> dict[str, Any]:
    """The state of each projection named in ``keys``: from its latest snapshot (written by the
    long-running followers: the metrics, the service shells) plus the events since, or folded
    from the start of the log with ``use_snapshots=False``. A snapshot is only read under the
    projection's current version (``projections.runner``), so it is never stale code's state."""
    states: dict[str, Any] = {}
    for key in keys:
        projection = build_projection(key, config)
        runner = ProjectionRunner(store, projection, config.run, use_snapshots=use_snapshots)
        states[key] = await runner.catch_up()
    return states


async def collect_status(
    store: EventStore, config: LoopConfig, *, use_snapshots: bool = True
) -> dict[str, Any]:
    run = config.run
    states = await fold_states(store, config, STATUS_PROJECTIONS, use_snapshots=use_snapshots)
    now = time.time()
    shared = figures(states, now)
    loop, registry, matches, journal = (
        states["loop_status"], states["model_registry"], states["matches"], states["journal"])
    report: dict[str, Any] = {"run": run, "now": now}
    report["loop"] = {
        "state": loop.state, "since": loop.since, "by": loop.by, "reason": loop.reason,
        "halted": loop.halted, "halted_since": loop.halted_since, "halted_by": loop.halted_by,
        "halt_reason": loop.halt_reason, "halt_automatic": loop.halt_automatic,
        "starts": loop.starts, "restarts": shared.restarts, "last_restart": loop.last_restart,
        "supervisor_alive": await supervisor_alive(store, run),
    }
    champ = registry.champion
    if champ is not None:
        report["champion"] = {
            "model_id": champ.model_id, "generation": shared.champion_generation,
            "promotion_seq": champ.promotion_seq, "since": champ.since,
            "elo": shared.champion_elo, "elo_ci95": shared.champion_elo_ci95,
        }
    else:
        report["champion"] = None
    report["candidates"] = [
        {"match_id": m.match_id, "candidate": m.candidate.label, "opponent": m.opponent.label,
         "purpose": m.purpose, "pairs": m.pairs, "max_pairs": m.scheduled.max_pairs,
         "elo": m.elo, "llr": m.llr, "lower": m.lower, "upper": m.upper}
        for m in matches.matches.values() if not m.completed
    ]
    report["models"] = shared.models_saved
    since = shared.pool_positions_since_training or 0
    threshold = config.training.threshold_positions
    report["pool"] = {
        "games_recorded": shared.games, "positions_recorded": shared.positions,
        "games": shared.pool_games, "positions": shared.pool_positions, "shards": shared.pool_shards,
        "positions_since_training": since, "next_training_at": threshold,
        "positions_to_next_training": max(0, threshold - since),
        "selfplay_games_per_minute": shared.games_per_minute,
    }
    report["curriculum"] = curriculum_report(states["curriculum"], config)
    report["config_in_force"] = await in_force_summary(store, run)
    report["recent"] = {
        "rejections": [msgspec.to_builtins(n) for n in journal.rejections[-5:]],
        "rollbacks": [msgspec.to_builtins(n) for n in journal.rollbacks[-5:]],
        "health_failures": [msgspec.to_builtins(n) for n in journal.health_failures[-5:]],
        "poison_events": shared.rejected_events,
    }
    return report


def curriculum_report(state: Any, config: LoopConfig) -> dict[str, Any]:
    """The curriculum projection's stage, with the stage's search size from the config in force."""
    stage = config.curriculum[state.stage_index]
    return {"stage": state.stage, "index": state.stage_index, "generation": state.generation,
            "simulations": stage.simulations}


def _ago(ts: float, now: float) -> str:
    if not ts:
        return "-"
    s = max(0, now - ts)
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.1f}h ago"


def format_status(r: dict[str, Any]) -> str:
    now = r["now"]
    loop = r["loop"]
    lines = [f"run {r['run']}: {loop['state']}" + (" — HALTED" if loop["halted"] else "")
             + f" since {_ago(loop['since'], now)}"
             + (f" by {loop['by']}" if loop["by"] else "")
             + (f" ({loop['reason']})" if loop["reason"] else "")]
    if loop["state"] in ("starting", "running", "stopping") and not loop["supervisor_alive"]:
        lines.append("  but no supervisor is alive: it ended without recording a stop (killed?); "
                     "--start starts the loop again")
    if loop["halted"]:
        kind = "automatic" if loop["halt_automatic"] else "manual"
        lines.append(f"  halted {_ago(loop['halted_since'], now)} by {loop['halted_by']} "
                     f"({kind}): {loop['halt_reason']}")
    lines.append(f"  starts {loop['starts']}, process restarts {loop['restarts']}"
                 + (f" (last: {loop['last_restart']})" if loop["last_restart"] else ""))
    cfg = r.get("config_in_force")
    if cfg and cfg["config_sha256"]:
        lines.append(f"  config in force: loop.started #{cfg['seq']} ({_ago(cfg['time'], now)}): "
                     f"{cfg['config_path']} sha256 {cfg['config_sha256'][:12]}, "
                     f"{cfg['promotion_path']} sha256 {cfg['promotion_sha256'][:12]}")
    elif cfg:
        lines.append(f"  config in force: loop.started #{cfg['seq']} recorded no digests")
    champ = r["champion"]
    if champ:
        elo = "unrated" if champ["elo"] is None else f"Elo {champ['elo']:+.0f} ± {champ['elo_ci95']:.0f}"
        lines.append(f"champion {champ['model_id']} generation {champ['generation']}, {elo}, "
                     f"promoted {_ago(champ['since'], now)} (#{champ['promotion_seq']})")
    else:
        lines.append("champion: none yet")
    lines.append(f"models saved: {r['models']}")
    if r["candidates"]:
        lines.append("in evaluation:")
        for c in r["candidates"]:
            lines.append(f"  {c['candidate']} vs {c['opponent']} ({c['purpose']}): "
                         f"{c['pairs']}/{c['max_pairs']} pairs, Elo {c['elo']:+.0f}, "
                         f"LLR {c['llr']:+.2f} in [{c['lower']:.2f}, {c['upper']:.2f}]")
    pool = r["pool"]
    lines.append(f"pool: {pool['games']} games, {pool['positions']} positions in "
                 f"{pool['shards']} shards; {pool['positions_since_training']} since last "
                 f"training, next at {pool['next_training_at']} "
                 f"({pool['positions_to_next_training']} to go)")
    lines.append(f"selfplay: {pool['games_recorded']} games ({pool['positions_recorded']} positions) "
                 f"recorded, {pool['selfplay_games_per_minute']:.1f} games/min over the last minute")
    cur = r["curriculum"]
    if cur:
        lines.append(f"curriculum: stage {cur['stage']} (#{cur['index']}), "
                     f"{cur['simulations']} simulations")
    recent = r["recent"]
    for key in ("rejections", "rollbacks", "health_failures"):
        for note in recent[key]:
            lines.append(f"  {_ago(note['time'], now):>8}  {note['kind']}: {note['text']}")
    if recent["poison_events"]:
        lines.append(f"poison events recorded: {recent['poison_events']}")
    return "\n".join(lines)
