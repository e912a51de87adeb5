"""Strength over time of the real loop on Connect Four, for a fixed wall-clock budget.

    .venv/bin/python bench/learn_connect4.py [--minutes 60] [--config config/unified_loop.yaml]
        [--sims 200,800] [--limit N] [--data-dir DIR] [--grade-live] [--eval-threads 1] [--eval-nice 10]

Starts a fresh run of the unified loop (its own data folder, embedded server and metrics on
free ports, a timestamped run name; the derived config and a copy of the promotion config are
written into the data folder, so the user's data is never touched) with the loop's own
``--start``, follows the model registry, and at every change of champion (generation 0 at the
start, every promotion, every rollback) saves the champion's checkpoint and grades it on the
public solved positions with ``engine.bench_strength.measure_model``: raw policy, and network
+ MCTS at each of ``--sims`` (a comma-separated list; the first is the headline figure, the
others show what a larger search budget makes of the same net). Grading runs once the loop has
stopped (one process per core), so the measurement takes no CPU from the loop it measures;
with ``--grade-live`` each champion is graded as it comes, in one process with
``--eval-threads`` torch threads at ``--eval-nice`` (it then competes with the loop for the
cores). At the end the loop is stopped with its own ``--stop``; the table of accuracy over
time is printed, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml

from engine.bench_strength import PUBLIC_POSITIONS, RAW_POLICY, mcts_name, measure_model, spread
from handlers.loop.config import DEFAULT_CONFIG_PATH, load_loop_config
from scripts.progress import tracker
from streams import names
from streams.server import free_port

REPO = Path(__file__).resolve().parent.parent
UNIFIED_LOOP = REPO / "scripts" / "unified_ai_loop.py"
# The reference (pure UCT at 10,000 iterations) and target, on the whole public set.
REFERENCE: dict[str, Any] = {
    "player": "pure UCT, 10,000 iterations",
    "outcome_optimal": 0.938,
    "exactly_optimal": 0.857,
}
TARGET: dict[str, float] = {"outcome_optimal": 0.94, "exactly_optimal": 0.87, "within_minutes": 60.0}
COUNTED = (
    "pool.batch_synced",
    "training.started",
    "checkpoint.saved",
    "match.scheduled",
    "match.completed",
    "candidate.promoted",
    "candidate.rejected",
    "champion.rolled_back",
    "process.restarted",
    "health.check_failed",
    "event.rejected",
    "loop.halted",
)


# -- pure helpers -----------------------------------------------------------------------------


def run_name(now: float) -> str:
    return "learn-c4-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(now))


def derive_config(
    base: dict[str, Any],
    *,
    run: str,
    data_dir: Path,
    nats_port: int,
    metrics_port: int,
    promotion_config: Path,
) -> dict[str, Any]:
    """``base`` (a loop config as plain data) made into a fresh, isolated run: embedded server on
    ``nats_port`` with its store in ``data_dir``, logs there, metrics on ``metrics_port``."""
    out = json.loads(json.dumps(base))  # a deep copy of plain YAML data
    out["run"] = run
    nats = out.setdefault("nats", {})
    nats.update(url=None, host="127.0.0.1", port=nats_port, data_dir=str(data_dir / "nats"))
    out.setdefault("supervisor", {})["log_dir"] = str(data_dir / "logs")
    out.setdefault("metrics", {}).update(host="127.0.0.1", port=metrics_port)
    out["promotion_config"] = str(promotion_config)
    return out


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    by_tag: dict[str, int] = {}
    positions: int = 0  # positions synced into the training pool

    def __getitem__(self, tag: str) -> int:
        return self.by_tag.get(tag, 0)


class EventCountsProjection:
    """How many events of each counted tag the run has recorded (a pure fold)."""

    name = "learn_bench_counts"
    stream = names.EVENTS
    state_type = Counts

    def initial(self) -> Counts:
        return Counts()

    def apply(self, state: Counts, event: Any) -> Counts:
        tag = getattr(event, "tag", "")
        if tag not in COUNTED:
            return state
        positions = state.positions + (event.positions if tag == "pool.batch_synced" else 0)
        return Counts(by_tag={**state.by_tag, tag: state[tag] + 1}, positions=positions)


@dataclass
class Point:
    """One champion on the curve: when it became champion, and its grades once measured."""

    kind: str  # initial | promotion | rollback
    minutes: float
    generation: int
    model_id: str
    games: int
    grades: dict[str, Any] | None = None  # grade_checkpoint's answer
    error: str = ""
    future: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "minutes": round(self.minutes, 2),
            "generation": self.generation,
            "model_id": self.model_id,
            "games": self.games,
            "error": self.error or None,
            **(self.grades or {}),
        }


def _pct(tally: dict[str, Any]) -> str:
    return f"{100 * tally['outcome_optimal']:5.1f} / {100 * tally['exactly_optimal']:5.1f}"


def point_line(p: Point, short_id: str) -> str:
    head = f"[{p.minutes:6.1f} min] {p.kind:<9} gen {p.generation:<3} {short_id:<18} games {p.games:>6}"
    if p.grades is None:
        return f"{head} | not measured: {p.error or 'pending'}"
    raw = p.grades["raw"]["overall"]
    searches = " | ".join(
        f"{name} {_pct(s['overall'])} ({', '.join(f'{b} {_pct(t)}' for b, t in s['bands'].items())})"
        for name, s in _searches(p.grades).items()
    )
    return f"{head} | raw {_pct(raw)} | {searches} | graded in {sum(p.grades['seconds'].values()):.0f} s"


def _searches(grades: dict[str, Any]) -> dict[str, Any]:
    """Every graded search of a point, the headline one first."""
    return grades["searches"]


def curve_table(points: list[Point], short: dict[str, str]) -> str:
    """One row per champion: raw policy and every search overall, then the headline search
    per band and on the positions where the choice matters."""
    graded = next((p.grades for p in points if p.grades), None)
    bands = list(graded["search"]["bands"]) if graded else []
    searches = list(_searches(graded)) if graded else []
    head = f"{'min':>6} {'kind':<9} {'gen':>3} {'model':<18} {'games':>6} {'raw':>13}"
    head += "".join(f" {name[len('net-') :]:>13}" for name in searches)
    head += "".join(f" {b:>13}" for b in bands) + f" {'choice-matters':>14}"
    lines = [head + "   (outcome-optimal % / exactly-optimal %)"]
    for p in points:
        row = f"{p.minutes:6.1f} {p.kind:<9} {p.generation:>3} {short[p.model_id]:<18} {p.games:>6}"
        if p.grades is None:
            lines.append(row + f" {'not measured: ' + (p.error or 'pending')}")
            continue
        s = p.grades["search"]
        row += f" {_pct(p.grades['raw']['overall'])}"
        row += "".join(f" {_pct(t['overall'])}" for t in _searches(p.grades).values())
        row += "".join(f" {_pct(s['bands'][b])}" for b in bands) + f" {_pct(s['choice_matters'])}"
        lines.append(row)
    return "\n".join(lines)


def curve_chart(points: list[Point], data_dir: Path) -> list[Path]:
    """The curve as a chart (``learn_curve.svg`` and ``.png`` in ``data_dir``; the same plotting
    path as ``jetzero report``): outcome-optimal share over time of the raw policy and of every
    graded search, with the reference player and the target as lines. The paths written."""
    from handlers.loop.charts import line_chart, png_of, svg_of

    graded = [p for p in points if p.grades]
    if not graded:
        return []
    grades = [p.grades or {} for p in graded]
    series: dict[str, list[float | None]] = {
        "raw policy": [100 * g["raw"]["overall"]["outcome_optimal"] for g in grades]}
    for name in _searches(grades[0]):
        series[name] = [100 * s["overall"]["outcome_optimal"] if (s := _searches(g).get(name)) else None
                        for g in grades]
    chart = line_chart(
        "learn-curve", "Champion accuracy over time", [p.minutes for p in graded], series,
        xlabel="minutes since the loop started", ylabel="% of positions, outcome-optimal move",
        hlines={f"reference: {REFERENCE['player']}": 100 * REFERENCE["outcome_optimal"],
                "target": 100 * TARGET["outcome_optimal"]},
    )
    svg, png = data_dir / "learn_curve.svg", data_dir / "learn_curve.png"
    svg.write_text(svg_of(chart), encoding="utf-8")
    png.write_bytes(png_of(chart))
    return [svg, png]


def target_status(points: list[Point], whole_set: bool, search: str | None = None) -> dict[str, Any]:
    """Whether some champion that arrived within the target's minutes reached the target with
    ``search`` (a graded search's name; default the headline one); only on the whole public
    set does it count as reached (a subset is indicative)."""

    def overall(p: Point) -> dict[str, Any] | None:
        if not p.grades:
            return None
        graded = _searches(p.grades).get(search) if search else p.grades["search"]
        return None if graded is None else graded["overall"]

    hit = next(
        (
            p
            for p in points
            if (o := overall(p)) is not None
            and p.minutes <= TARGET["within_minutes"]
            and o["outcome_optimal"] >= TARGET["outcome_optimal"]
            and o["exactly_optimal"] >= TARGET["exactly_optimal"]
        ),
        None,
    )
    return {
        "reached": hit is not None and whole_set,
        "reached_on_subset": hit is not None and not whole_set,
        "first_at_minutes": None if hit is None else round(hit.minutes, 2),
        "model_id": None if hit is None else hit.model_id,
    }


def short_ids(model_ids: list[str], run: str) -> dict[str, str]:
    return {m: (m[len(run) + 1 :] if m.startswith(run + "-") else m)[:18] for m in model_ids}


# -- the grading process ----------------------------------------------------------------------


def _init_grader(threads: int, nice: int) -> None:
    if nice:
        os.nice(nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops it; Ctrl-C goes to the bench
    _die_with_parent()
    from engine.network import set_torch_threads

    set_torch_threads(threads)


def _die_with_parent() -> None:
    """On Linux, have the kernel end this grader when the bench dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # no prctl: a grader orphaned by a killed bench finishes its grading, then exits


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (kill, or a job runner) stops the run like Ctrl-C


def grade_checkpoint(path: str, sims: int | list[int], limit: int | None) -> dict[str, Any]:
    """Grades of the checkpoint at ``path`` on the spread public positions (runs in the grader):
    raw policy, and network + MCTS at every number of ``sims`` (the first is the headline)."""
    levels = [sims] if isinstance(sims, int) else list(sims)
    from engine.checkpoint import load_checkpoint_file
    from engine.games.connect4 import ConnectFour
    from engine.strength import load_positions

    game = ConnectFour()
    positions = spread(load_positions(PUBLIC_POSITIONS, game), limit)
    net, _ = load_checkpoint_file(path, expect_game=game)
    t0 = time.perf_counter()
    raw = measure_model(net, positions, 0, game=game)[RAW_POLICY]
    t1 = time.perf_counter()
    searches, seconds = {}, {"raw": round(t1 - t0, 1)}
    for level in levels:
        t2 = time.perf_counter()
        name = mcts_name(level)
        searches[name] = msgspec.to_builtins(measure_model(net, positions, level, game=game, raw=False)[name])
        seconds[name] = round(time.perf_counter() - t2, 1)
    headline = mcts_name(levels[0])
    return {
        "positions": len(positions),
        "raw": msgspec.to_builtins(raw),
        "search_name": headline,
        "search": searches[headline],
        "searches": searches,
        "seconds": seconds,
    }


# -- following the loop -----------------------------------------------------------------------


@dataclass
class Observation:
    """What the bench saw of the run; filled in as it goes, so an interrupted run keeps it."""

    started_at: float = 0.0
    ended_at: float = 0.0
    points: list[Point] = field(default_factory=list)
    printed: int = 0
    counts: Counts = field(default_factory=Counts)
    games: int = 0
    loop_state: str = ""
    halted: bool = False


def settle(p: Point) -> bool:
    """Take the grading's answer if it is in; True once the point is final."""
    if p.future is None:
        return True
    if not p.future.done():
        return False
    if p.grades is None and not p.error:
        try:
            p.grades = p.future.result()
        except Exception as exc:  # noqa: BLE001 - a failed grading is reported, the run goes on
            p.error = f"grading failed: {exc.__class__.__name__}: {exc}"
    return True


def abandon_grading(obs: Observation) -> None:
    """Give up the gradings still running: their points say so (those done keep their grades)."""
    for p in obs.points:
        if not settle(p):
            p.future, p.error = None, "grading interrupted"


def print_ready(obs: Observation, short: dict[str, str], *, block: bool = False) -> None:
    """Print the points whose grades are in, in order (``block``: wait for every one)."""
    while obs.printed < len(obs.points):
        p = obs.points[obs.printed]
        if block and p.future is not None:
            cf.wait([p.future])
        if not settle(p):
            return
        _print(point_line(p, short[p.model_id]))
        obs.printed += 1


def progress(c: Counts) -> str:
    return (
        f"shards {c['pool.batch_synced']} ({c.positions} positions), trainings "
        f"{c['training.started']}, checkpoints {c['checkpoint.saved']}, "
        f"matches {c['match.completed']}/{c['match.scheduled']}, "
        f"promotions {c['candidate.promoted']}, rejections {c['candidate.rejected']}, "
        f"rollbacks {c['champion.rolled_back']}, restarts {c['process.restarted']}, "
        f"health failures {c['health.check_failed']}"
    )


def _print(text: str) -> None:
    print(text, flush=True)


def _champion_changed(promotions: int, rollbacks: int) -> Callable[[Any], bool]:
    """Whether a registry state holds more promotions or rollbacks than those seen."""
    return lambda s: len(s.promotions) > promotions or len(s.rollbacks) > rollbacks


async def _games(store: Any, run: str) -> int:
    """Games the run has recorded in ``GAMES`` (one message per finished selfplay game)."""
    info = await store.js.stream_info(names.GAMES, subjects_filter=names.run_filter(names.GAMES, run))
    return sum((info.state.subjects or {}).values())


async def observe(
    cfg: Any,
    minutes: float,
    grade: Any,
    models_dir: Path,
    short: dict[str, str],
    obs: Observation,
    note_every_s: float = 300.0,
    bars: Any = None,
) -> None:
    """Follow the run for ``minutes`` from its start; hand every new champion's checkpoint to
    ``grade`` (``(model_id, path) -> concurrent future``) and print each grade once it is in."""
    from handlers.loop.control import loop_status
    from handlers.promotion.models import write_model
    from projections.loop_status import LoopStatusProjection
    from projections.models import ModelRegistryProjection
    from projections.runner import ProjectionRunner
    from streams.connection import connect
    from streams.errors import JetzeroError
    from streams.store import EventStore

    conn = await connect(cfg.nats, name="learn-bench", ensure=False)
    store = EventStore(conn)
    registry = ProjectionRunner(store, ModelRegistryProjection(), cfg.run, use_snapshots=False)
    counts = ProjectionRunner(store, EventCountsProjection(), cfg.run, use_snapshots=False)
    status = ProjectionRunner(store, LoopStatusProjection(), cfg.run, use_snapshots=False)
    measured: dict[str, Any] = {}  # model id -> its grading (a rollback reuses it)

    async def add(kind: str, model_id: str, generation: int, at: float, state: Any) -> None:
        point = Point(kind, (at - obs.started_at) / 60, generation, model_id, await _games(store, cfg.run))
        short.update(short_ids([model_id], cfg.run))
        if model_id not in measured:
            record = state.models.get(model_id)
            try:
                if record is None:
                    raise JetzeroError(f"no stored checkpoint for {model_id}")
                path = models_dir / f"{model_id}.ckpt"
                await write_model(store, record, path)  # the export's code: digest verified
                measured[model_id] = grade(model_id, path)
            except JetzeroError as exc:
                point.error = str(exc)
        point.future = measured.get(model_id)
        obs.points.append(point)

    try:
        obs.started_at = (await loop_status(store, cfg.run)).started_at or time.time()
        deadline = obs.started_at + 60 * minutes
        for runner in (registry, counts, status):
            await runner.follow()
        seen_promotions = seen_rollbacks = 0
        next_note = time.time() + note_every_s
        while (now := time.time()) < deadline:
            try:
                state = await registry.wait_for(
                    _champion_changed(seen_promotions, seen_rollbacks),
                    timeout=max(0.1, min(deadline - now, next_note - now, 2.0)),
                )
            except TimeoutError:
                state = registry.state
            for p in state.promotions[seen_promotions:]:
                await add("initial" if p.initial else "promotion", p.model_id, p.generation, p.time, state)
            for r in state.rollbacks[seen_rollbacks:]:
                generation = state.models[r.model_id].generation if r.model_id in state.models else -1
                await add("rollback", r.model_id, generation, r.time, state)
            seen_promotions, seen_rollbacks = len(state.promotions), len(state.rollbacks)
            print_ready(obs, short)
            if bars is not None:
                c = counts.state
                bars.update("loop", completed=round((time.time() - obs.started_at) / 60, 1), total=minutes,
                            description="loop minutes", note=f"checkpoints {c['checkpoint.saved']}, "
                            f"promotions {c['candidate.promoted']}, champions {len(obs.points)}")
            loop = status.state
            if loop.halted != obs.halted:
                _print(
                    f"warning: the loop is halted by {loop.halted_by}: {loop.halt_reason}"
                    if loop.halted
                    else "the loop resumed"
                )
                obs.halted = loop.halted
            if loop.state == "stopped":
                _print(f"the loop stopped on its own ({loop.reason}); ending early")
                break
            if time.time() >= next_note:
                next_note += note_every_s
                _print(
                    f"[{(time.time() - obs.started_at) / 60:6.1f} min] {progress(counts.state)}; "
                    f"games {await _games(store, cfg.run)}"
                )
        obs.games = await _games(store, cfg.run)
    finally:
        obs.ended_at = time.time()
        obs.counts, obs.loop_state = counts.state, status.state.state
        for runner in (registry, counts, status):
            await runner.stop()
        await conn.close()


# -- the entry point --------------------------------------------------------------------------


def _loop_cli(action: str, config_path: Path, timeout: float) -> tuple[int, str]:
    """Run ``scripts/unified_ai_loop.py --<action>`` (the loop's own path); its exit code and output."""
    try:
        command = [sys.executable, str(UNIFIED_LOOP), f"--{action}", "--config", str(config_path)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"--{action} did not return within {timeout:.0f} s"
    return done.returncode, (done.stdout + done.stderr).strip()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_loop(config_path: Path, supervisor_pid: int | None) -> bool:
    """Stop the run with ``--stop``; if that fails, SIGTERM the supervisor this bench started
    (it stops its children gracefully). True once it is down."""
    code, out = _loop_cli("stop", config_path, timeout=240)
    _print(f"stop: {out}")
    if code == 0:
        return True
    if supervisor_pid is None or not _alive(supervisor_pid):
        return supervisor_pid is not None
    _print(f"--stop failed (exit {code}): sending SIGTERM to the supervisor (pid {supervisor_pid})")
    os.kill(supervisor_pid, signal.SIGTERM)
    deadline = time.monotonic() + 90
    while _alive(supervisor_pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    return not _alive(supervisor_pid)


def _settings(cfg: Any, promotion: Any) -> dict[str, Any]:
    plain = msgspec.to_builtins(cfg)
    keep = ("game", "network", "selfplay", "curriculum", "sync", "training", "evaluation")
    settings = {k: plain[k] for k in keep}
    settings["promotion"] = msgspec.to_builtins(promotion)
    return settings


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget of the loop")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), help="the loop config to run")
    parser.add_argument(
        "--sims",
        type=_sims_list,
        default=[200, 800],
        help="MCTS simulations per graded position, comma-separated (the first is the headline)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="grade N positions spread through the public set (default: all 1500)",
    )
    parser.add_argument(
        "--data-dir", default=None, help="the run's folder (default: data/learn_connect4/<run>)"
    )
    parser.add_argument(
        "--grade-live",
        action="store_true",
        help="grade each champion while the loop runs (it then competes with the loop for the "
        "cores); by default champions are saved as they come and graded once the loop stopped",
    )
    parser.add_argument("--eval-threads", type=int, default=1, help="torch threads of the grader")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (none when not at a terminal)")
    parser.add_argument(
        "--eval-nice",
        type=int,
        default=10,
        help="niceness of the grader (0: compete with the loop as an equal)",
    )
    args = parser.parse_args(argv)
    if (
        args.minutes <= 0
        or (args.limit is not None and args.limit < 1)
        or args.eval_threads < 1
        or not 0 <= args.eval_nice <= 19
    ):
        parser.error("--minutes > 0, --limit >= 1, --eval-threads >= 1, --eval-nice 0..19")
    return args


def _sims_list(text: str) -> list[int]:
    """``--sims``: distinct positive integers, comma-separated (``200,800``)."""
    try:
        levels = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not levels or min(levels) < 1 or len(set(levels)) != len(levels):
        raise argparse.ArgumentTypeError(f"expected distinct integers >= 1, got {text!r}")
    return levels


def _prepare(args: argparse.Namespace, run: str) -> tuple[Path, Path]:
    """The run's folder and its derived config (with a copy of the promotion config)."""
    base = load_loop_config(args.config)  # the one loader: checked whole before anything runs
    data_dir = Path(args.data_dir or f"data/learn_connect4/{run}").resolve()
    (data_dir / "models").mkdir(parents=True, exist_ok=True)
    promotion = Path(base.promotion_config)
    if not promotion.is_absolute():
        promotion = promotion if promotion.exists() else REPO / promotion
    shutil.copyfile(promotion, data_dir / "promotion.yaml")
    derived = derive_config(
        msgspec.to_builtins(base),
        run=run,
        data_dir=data_dir,
        nats_port=free_port(),
        metrics_port=free_port(),
        promotion_config=data_dir / "promotion.yaml",
    )
    config_path = data_dir / "unified_loop.yaml"
    config_path.write_text(
        f"# {args.config} for bench/learn_connect4.py: a fresh, isolated run\n"
        + yaml.safe_dump(derived, sort_keys=False)
    )
    return data_dir, config_path


def _forward(source: cf.Future, target: cf.Future) -> None:
    """Settle ``target`` with ``source``'s result or exception once it is done."""

    def done(f: cf.Future) -> None:
        exc = f.exception()
        if exc is not None:
            target.set_exception(exc)
        else:
            target.set_result(f.result())

    source.add_done_callback(done)


def main(argv: list[str] | None = None) -> int:
    import uvloop

    from engine.games.connect4 import ConnectFour
    from engine.strength import load_positions
    from handlers.loop.config import load_in_force
    from streams.errors import JetzeroError

    args = _parse(argv)
    run = run_name(time.time())
    try:
        data_dir, config_path = _prepare(args, run)
        in_force = load_in_force(config_path)
        cfg, promotion = in_force.loop, in_force.promotion
    except (OSError, yaml.YAMLError, JetzeroError) as exc:
        _print(f"error: {exc}")
        return 2
    if cfg.game.name != "connect4":
        _print(f"error: the public positions are Connect Four; {args.config} plays {cfg.game.name}")
        return 2
    whole = load_positions(PUBLIC_POSITIONS, ConnectFour())
    graded = len(spread(whole, args.limit))
    cores = os.cpu_count() or 1
    _print(f"learn_connect4: run {run} for {args.minutes:g} min; data, logs and config in {data_dir}")
    stages = ", ".join(
        f"{s.name} ({s.simulations} sims, to gen {s.until_generation})" for s in cfg.curriculum
    )
    _print(
        f"  net {cfg.network.blocks}x{cfg.network.channels}; curriculum {stages}"
        + f"; training every {cfg.training.threshold_positions} new positions, "
        f"{cfg.training.train.steps} steps of {cfg.training.train.batch_size}; "
        f"promotion matches at {promotion.simulations} sims"
    )
    levels = ", ".join(map(str, args.sims))
    what = f"grading {graded} of {len(whole)} public positions (raw policy, MCTS at {levels} sims)"
    if args.grade_live:
        _print(
            f"  {what} in one process with {args.eval_threads} torch thread(s) at nice "
            f"{args.eval_nice}: it competes with the loop for the {cores} cores, so the loop runs "
            "slower than alone"
        )
    else:
        _print(
            f"  {what} once the loop has stopped ({cores} processes): every champion's checkpoint "
            "is saved as it comes, so the loop has the machine to itself"
        )
    pool = cf.ProcessPoolExecutor(
        1 if args.grade_live else cores,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_grader,
        initargs=(args.eval_threads, args.eval_nice if args.grade_live else 0),
    )
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    code, out = _loop_cli("start", config_path, timeout=300)
    _print(f"start: {out}")
    if code != 0:
        pool.shutdown(cancel_futures=True)
        _print(f"error: the loop did not start (exit {code}); see {data_dir / 'logs'}")
        return 1
    found = re.search(r"\(pid (\d+)\)", out)
    supervisor_pid = int(found.group(1)) if found else None
    obs, short = Observation(), dict[str, str]()
    interrupted = False

    deferred: list[tuple[Path, cf.Future]] = []

    def grade(model_id: str, path: Path) -> cf.Future:
        if args.grade_live:
            return pool.submit(grade_checkpoint, str(path), args.sims, args.limit)
        placeholder: cf.Future = cf.Future()
        deferred.append((path, placeholder))
        _print(f"  new champion {model_id}: saved, to be graded once the loop has stopped")
        return placeholder

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner, tracker(quiet=args.quiet) as bars:
            runner.run(observe(cfg, args.minutes, grade, data_dir / "models", short, obs, bars=bars))
    except KeyboardInterrupt:
        interrupted = True
        _print("interrupted: stopping the loop")
    finally:
        stopped = stop_loop(config_path, supervisor_pid)
    if not interrupted:
        for path, placeholder in deferred:
            _forward(pool.submit(grade_checkpoint, str(path), args.sims, args.limit), placeholder)
    try:
        print_ready(obs, short, block=not interrupted)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while grading: report what is graded
        interrupted = True
        _print("interrupted while grading: champions not graded yet are reported as such")
        abandon_grading(obs)
        print_ready(obs, short)
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=interrupted)
    report(
        obs,
        short,
        args=args,
        cfg=cfg,
        promotion=promotion,
        data_dir=data_dir,
        graded=graded,
        whole=len(whole),
        stopped=stopped,
        interrupted=interrupted,
    )
    return 130 if interrupted else 0


def report(
    obs: Observation,
    short: dict[str, str],
    *,
    args: argparse.Namespace,
    cfg: Any,
    promotion: Any,
    data_dir: Path,
    graded: int,
    whole: int,
    stopped: bool,
    interrupted: bool,
) -> None:
    minutes = (obs.ended_at - obs.started_at) / 60 if obs.started_at else 0.0
    c = obs.counts
    _print("")
    _print(curve_table(obs.points, short) if obs.points else "no champion was seen")
    charts = curve_chart(obs.points, data_dir)
    if charts:
        _print(f"curve chart: {', '.join(map(str, charts))}")
    _print(
        f"after {minutes:.1f} min: games {obs.games}, {progress(c)}; loop "
        + ("stopped" if stopped else f"NOT confirmed stopped (see {data_dir / 'logs'})")
    )
    _print(
        f"reference ({REFERENCE['player']}, whole set): {100 * REFERENCE['outcome_optimal']:.1f} / "
        f"{100 * REFERENCE['exactly_optimal']:.1f}; target with search: >= "
        f"{100 * TARGET['outcome_optimal']:.0f} / >= {100 * TARGET['exactly_optimal']:.0f} "
        f"within {TARGET['within_minutes']:.0f} min"
    )
    by_search = {
        mcts_name(level): target_status(obs.points, graded == whole, mcts_name(level)) for level in args.sims
    }
    for name, status in by_search.items():
        if status["reached"]:
            _print(f"{name}: TARGET REACHED at {status['first_at_minutes']} min by {status['model_id']}")
        elif status["reached_on_subset"]:
            _print(
                f"{name}: target met on the {graded}-position subset at "
                f"{status['first_at_minutes']} min (indicative only: grade the whole set to confirm)"
            )
        else:
            _print(f"{name}: target not reached")
    target = by_search[mcts_name(args.sims[0])]
    summary = {
        "bench": "learn_connect4",
        "run": cfg.run,
        "data_dir": str(data_dir),
        "minutes_budget": args.minutes,
        "minutes_observed": round(minutes, 2),
        "interrupted": interrupted,
        "loop_stopped": stopped,
        "loop_state_at_deadline": obs.loop_state,
        "halted": obs.halted,
        "positions": graded,
        "whole_set": graded == whole,
        "sims": args.sims,
        "grader": {
            "live": args.grade_live,
            "torch_threads": args.eval_threads,
            "nice": args.eval_nice if args.grade_live else 0,
            "cores": os.cpu_count(),
            "note": (
                "grading competed with the loop for the cores"
                if args.grade_live
                else "champions graded after the loop stopped"
            ),
        },
        "games": obs.games,
        "pool_positions": c.positions,
        "events": dict(c.by_tag),
        "promotions": c["candidate.promoted"],
        "curve": [p.to_json() for p in obs.points],
        "curve_chart": [str(path) for path in charts],
        "settings": _settings(cfg, promotion),
        "reference": REFERENCE,
        "target": {**TARGET, **target, "by_search": by_search},
    }
    _print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
