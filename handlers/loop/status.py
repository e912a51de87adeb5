"""``--status``: one report assembled from the projections (works with the loop stopped).

``collect_status`` folds every read model it needs from the log and returns plain data
(``--json`` prints it as it is); ``format_status`` renders it for a terminal.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from handlers.loop.config import LoopConfig
from projections.journal import JournalProjection
from projections.loop_status import LoopStatusProjection
from projections.matches import MatchesProjection
from projections.models import ModelRegistryProjection
from projections.ratings import RatingsProjection
from projections.runner import ProjectionRunner
from streams import names
from streams.store import EventStore


async def _fold(store: EventStore, projection: Any, run: str) -> Any:
    runner = ProjectionRunner(store, projection, run, use_snapshots=False)
    return await runner.catch_up()


async def collect_status(store: EventStore, config: LoopConfig) -> dict[str, Any]:
    run = config.run
    loop = await _fold(store, LoopStatusProjection(), run)
    registry = await _fold(store, ModelRegistryProjection(), run)
    matches = await _fold(store, MatchesProjection(), run)
    ratings = await _fold(store, RatingsProjection(), run)
    journal = await _fold(store, JournalProjection(), run)
    report: dict[str, Any] = {"run": run, "now": time.time()}
    report["loop"] = {
        "state": loop.state, "since": loop.since, "by": loop.by, "reason": loop.reason,
        "halted": loop.halted, "halted_since": loop.halted_since, "halted_by": loop.halted_by,
        "halt_reason": loop.halt_reason, "halt_automatic": loop.halt_automatic,
        "starts": loop.starts, "restarts": loop.restarts, "last_restart": loop.last_restart,
    }
    champ = registry.champion
    if champ is not None:
        rating = ratings.ladder.get(champ.model_id)
        report["champion"] = {
            "model_id": champ.model_id, "generation": champ.generation,
            "promotion_seq": champ.promotion_seq, "since": champ.since,
            "elo": rating.elo if rating else None, "elo_ci95": rating.ci95 if rating else None,
        }
    else:
        report["champion"] = None
    report["candidates"] = [
        {"match_id": m.match_id, "candidate": m.candidate.label, "opponent": m.opponent.label,
         "purpose": m.purpose, "pairs": m.pairs, "max_pairs": m.scheduled.max_pairs,
         "elo": m.elo, "llr": m.llr, "lower": m.lower, "upper": m.upper}
        for m in matches.matches.values() if not m.completed
    ]
    report["models"] = len(registry.models)
    report["pool"] = await _pool_report(store, run, config)
    report["curriculum"] = await _curriculum_report(store, run, config, champ)
    report["recent"] = {
        "rejections": [msgspec.to_builtins(n) for n in journal.rejections[-5:]],
        "rollbacks": [msgspec.to_builtins(n) for n in journal.rollbacks[-5:]],
        "health_failures": [msgspec.to_builtins(n) for n in journal.health_failures[-5:]],
        "poison_events": journal.poison_count,
    }
    return report


async def _pool_report(store: EventStore, run: str, config: LoopConfig) -> dict[str, Any]:
    games = await store.stream_state(names.GAMES)
    out: dict[str, Any] = {"games_stream_messages": games.messages}
    try:
        from projections.pool import PoolProjection
    except ImportError:
        return out
    pool = await _fold(store, PoolProjection(), run)
    since = getattr(pool, "positions_since_training", 0)
    out.update(
        games=getattr(pool, "games", 0), positions=getattr(pool, "positions", 0),
        shards=len(getattr(pool, "shards", ()) or ()), positions_since_training=since,
        next_training_at=config.training.threshold_positions,
        positions_to_next_training=max(0, config.training.threshold_positions - since),
    )
    rate = _games_per_minute(pool)
    if rate is not None:
        out["selfplay_games_per_minute"] = rate
    return out


def _games_per_minute(pool: Any) -> float | None:
    shards = list(getattr(pool, "shards", ()) or ())
    if isinstance(getattr(pool, "shards", None), dict):
        shards = list(pool.shards.values())
    recent = [s for s in shards if getattr(s, "time", 0) > time.time() - 600]
    if len(recent) < 2:
        return None
    span = max(s.time for s in recent) - min(s.time for s in recent)
    return 60.0 * sum(s.games for s in recent) / span if span > 0 else None


async def _curriculum_report(store, run, config: LoopConfig, champ) -> dict[str, Any]:
    generation = champ.generation if champ else 0
    for index, stage in enumerate(config.curriculum):
        if stage.until_generation is None or generation < stage.until_generation:
            return {"stage": stage.name, "index": index, "generation": generation,
                    "simulations": stage.simulations}
    return {}


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
    if loop["halted"]:
        kind = "automatic" if loop["halt_automatic"] else "manual"
        lines.append(f"  halted {_ago(loop['halted_since'], now)} by {loop['halted_by']} "
                     f"({kind}): {loop['halt_reason']}")
    lines.append(f"  starts {loop['starts']}, process restarts {loop['restarts']}"
                 + (f" (last: {loop['last_restart']})" if loop["last_restart"] else ""))
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
    if "games" in pool:
        lines.append(f"pool: {pool['games']} games, {pool['positions']} positions in "
                     f"{pool['shards']} shards; {pool['positions_since_training']} since last "
                     f"training, next at {pool['next_training_at']} "
                     f"({pool['positions_to_next_training']} to go)")
    lines.append(f"games stream: {pool['games_stream_messages']} records")
    if "selfplay_games_per_minute" in pool:
        lines.append(f"selfplay: {pool['selfplay_games_per_minute']:.1f} games/min")
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
