"""The model gates, run in the orchestrator on loaded nets: quality and strength.

``quality``: every weight finite; on the check positions every output finite and the raw
policy's softmax mass on the legal moves at least ``min_legal_mass`` (mean over positions).
``strength``: solver accuracy (share of outcome-optimal moves at ``simulations``, or of the raw
policy when 0) on the shipped solved Connect Four positions not below the baseline's minus
``tolerance``, and value calibration (mean squared error of the value head against the solved
outcome, +1 / 0 / −1) not above the baseline's plus ``value_tolerance``. Measuring is
``engine.bench_strength``'s; positions are spread evenly over the shipped file. Games without
solved positions check quality on positions from seeded random play, and skip strength.
"""

from __future__ import annotations

import math
import random
import time

import numpy as np
import torch

from engine.bench_strength import PUBLIC_POSITIONS, RAW_POLICY, mcts_name, measure_model, spread
from engine.games.base import Game, State
from engine.games.connect4 import ConnectFour
from engine.network import PolicyValueNet, stack_planes
from engine.strength import Position, load_positions
from handlers.pipeline.config import QualityGate, StrengthGate
from streams.pipeline_events import GateOutcome

__all__ = ["check_positions", "nonfinite_weights", "quality_gate", "solved_positions", "strength_gate"]

OUTCOME_VALUE = {"win": 1.0, "draw": 0.0, "loss": -1.0}


def solved_positions(game: Game, limit: int) -> list[Position] | None:
    """``limit`` shipped solved positions, or None when ``game`` has none (not 7×6 Connect Four)."""
    if not isinstance(game, ConnectFour) or (game.width, game.height) != (7, 6):
        return None
    return spread(load_positions(PUBLIC_POSITIONS, game), limit)


def check_positions(game: Game, limit: int, seed: int = 0) -> list[State]:
    """Positions to look at the net's outputs on: solved ones, else from seeded random play."""
    solved = solved_positions(game, limit)
    if solved is not None:
        assert isinstance(game, ConnectFour)
        return [p.state(game) for p in solved]
    rng, states = random.Random(seed), list[State]()
    while len(states) < limit:
        state = game.initial_state()
        while not state.is_terminal() and len(states) < limit:
            states.append(state)
            state = state.play(rng.choice(state.legal_moves()))
    return states


def _raw_outputs(net: PolicyValueNet, states: list[State]) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        logits, values = net(torch.from_numpy(stack_planes(states)))
    return logits.double().numpy(), values.double().numpy()


def nonfinite_weights(net: PolicyValueNet) -> int:
    """How many of ``net``'s weights (and buffers) are NaN or Inf."""
    return sum(int((~torch.isfinite(t)).sum()) for t in net.state_dict().values() if t.is_floating_point())


def _legal_mass(logits: np.ndarray, states: list[State]) -> float:
    """Mean softmax mass of raw policy logits on the legal moves (NaN when not finite)."""
    legal = np.stack([s.legal_mask() for s in states])
    with np.errstate(all="ignore"):
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        mass = (z * legal).sum(axis=1) / z.sum(axis=1)
    return float(np.mean(mass)) if np.all(np.isfinite(mass)) else math.nan


def quality_gate(net: PolicyValueNet, baseline: PolicyValueNet, game: Game, gate: QualityGate) -> GateOutcome:
    """The legal-mass floor is ``min_legal_mass``, or the baseline's own mass when that is
    lower (an untrained baseline: a code-only change is not failed for its model)."""
    start = time.perf_counter()
    bad_weights = nonfinite_weights(net)
    states = check_positions(game, gate.positions)
    logits, values = _raw_outputs(net, states)
    bad_outputs = int((~np.isfinite(logits)).sum() + (~np.isfinite(values)).sum())
    mass = _legal_mass(logits, states)
    base_mass = _legal_mass(_raw_outputs(baseline, states)[0], states)
    floor = min(gate.min_legal_mass, base_mass) if math.isfinite(base_mass) else gate.min_legal_mass
    figures = {"nonfinite_weights": float(bad_weights), "nonfinite_outputs": float(bad_outputs),
               "legal_mass": mass, "baseline_legal_mass": base_mass, "legal_mass_floor": floor,
               "positions": float(len(states))}
    problems = []
    if bad_weights:
        problems.append(f"{bad_weights} weights are NaN or Inf")
    if bad_outputs:
        problems.append(f"{bad_outputs} outputs on {len(states)} positions are NaN or Inf")
    if not bad_outputs and not mass >= floor - 1e-9:
        problems.append(f"policy mass on legal moves {mass:.3f} < {floor:.3f}")
    message = "; ".join(problems) or (f"weights and outputs finite; policy mass on legal moves "
                                      f"{mass:.3f} >= {floor:.3f} ({len(states)} positions)")
    return GateOutcome(gate="quality", status="failed" if problems else "passed", message=message,
                       figures=figures, seconds=time.perf_counter() - start)


def _strength(net: PolicyValueNet, game: ConnectFour, positions: list[Position], gate: StrengthGate
              ) -> tuple[float, float]:
    """(solver accuracy, value mean squared error) of ``net`` on ``positions``."""
    reports = measure_model(net, positions, gate.simulations, raw=True, device="cpu")
    report = reports[mcts_name(gate.simulations) if gate.simulations > 0 else RAW_POLICY]
    _, values = _raw_outputs(net, [p.state(game) for p in positions])
    truth = np.array([OUTCOME_VALUE[p.outcome] for p in positions])
    return report.overall.outcome_optimal, float(np.mean((values - truth) ** 2))


def strength_gate(candidate: PolicyValueNet, baseline: PolicyValueNet, game: Game, gate: StrengthGate,
                  *, candidate_sound: bool = True) -> GateOutcome:
    start = time.perf_counter()
    positions = solved_positions(game, gate.positions)
    if positions is None:
        return GateOutcome(gate="strength", status="skipped",
                           message=f"no solved positions for {game.name} (graded on 7x6 Connect Four)")
    if not candidate_sound:
        return GateOutcome(gate="strength", status="failed",
                           message="the candidate's weights or outputs are not finite (see quality)")
    assert isinstance(game, ConnectFour)
    acc, mse = _strength(candidate, game, positions, gate)
    base_acc, base_mse = _strength(baseline, game, positions, gate)
    figures = {"accuracy": acc, "baseline_accuracy": base_acc, "tolerance": gate.tolerance,
               "value_mse": mse, "baseline_value_mse": base_mse, "value_tolerance": gate.value_tolerance,
               "positions": float(len(positions)), "simulations": float(gate.simulations)}
    how = f"{gate.simulations} simulations" if gate.simulations else "raw policy"
    problems = []
    if acc < base_acc - gate.tolerance:
        problems.append(f"solver accuracy {100 * acc:.1f}% < baseline {100 * base_acc:.1f}% - "
                        f"{100 * gate.tolerance:.1f} ({how}, {len(positions)} solved positions)")
    if mse > base_mse + gate.value_tolerance:
        problems.append(f"value error (MSE) {mse:.3f} > baseline {base_mse:.3f} + {gate.value_tolerance:.3f}")
    message = "; ".join(problems) or (f"solver accuracy {100 * acc:.1f}% (baseline {100 * base_acc:.1f}%, "
                                      f"{how}); value MSE {mse:.3f} (baseline {base_mse:.3f})")
    return GateOutcome(gate="strength", status="failed" if problems else "passed", message=message,
                       figures=figures, seconds=time.perf_counter() - start)
