"""The promoter's pure decision: promote or reject a candidate, or roll a bad champion back.

``decide(registry, matches, event, config)`` reacts to ``match.completed``:

- When every evaluation match of a candidate (gate, regression, reference) is complete, it
  judges the gates and emits ``candidate.promoted`` or ``candidate.rejected`` with every
  gate's figures. Gates: the gate match against the *current* champion exists and its SPRT
  accepted; its Elo estimate is at least ``elo_threshold``; no significant loss (likelihood
  of superiority below ``regression.significance``) against any earlier champion or
  reference player. A decided candidate is never decided again.
- When a watch match (new champion against its predecessor) completes with the champion
  significantly worse (LOS below ``watch.significance``), it emits ``champion.rolled_back``
  to the previous effective promotion, with the evidence, ``automatic=True``.

Every decision is an ``Emit`` expecting the ``champion`` aggregate's last sequence as the
registry knows it, so two promoters racing cannot both decide.
"""

from __future__ import annotations

from handlers.promotion_config import PromotionConfig
from handlers.shell import Emit
from projections.matches import (
    GATE,
    REFERENCE,
    REGRESSION,
    WATCH,
    Matches,
    MatchesProjection,
    MatchState,
    candidate_matches,
)
from projections.models import ModelRegistry, previous_promotion
from streams import events as ev
from streams.envelope import Event

__all__ = ["decide", "judge", "watch_rollback"]


def decide(
    registry: ModelRegistry, matches: Matches, event: Event, config: PromotionConfig
) -> list[Event | Emit]:
    """What to append after ``event``.

    The states should include ``event``; the matches state gets it folded in again here
    (a no-op when it is there: the first completion of a match wins).
    """
    if not isinstance(event, ev.MatchCompleted):
        return []
    matches = MatchesProjection().apply(matches, event)
    match = matches.get(event.match_id)
    if match is None or not match.completed or match.candidate.kind != "model":
        return []
    if match.purpose == WATCH:
        rollback = watch_rollback(registry, match, event, config)
        return [] if rollback is None else [rollback]
    model = match.candidate.model_id
    if registry.is_decided(model):
        return []
    evaluation = candidate_matches(matches, model)
    expected = max((m.scheduled.set_size for m in evaluation), default=0)
    if len(evaluation) < expected or not all(m.completed for m in evaluation):
        return []
    return [judge(registry, model, evaluation, event, config)]


def _figures(m: MatchState) -> dict[str, float]:
    return {
        "pairs": float(m.pairs),
        "elo": m.elo,
        "elo_ci95": m.ci95,
        "los": m.los,
        "llr": m.llr,
        "lower": m.lower,
        "upper": m.upper,
    }


def _gates(
    registry: ModelRegistry, evaluation: list[MatchState], config: PromotionConfig
) -> list[ev.GateResult]:
    champion = registry.champion.model_id if registry.champion else ""
    gate = next((m for m in evaluation if m.purpose == GATE), None)
    results = []
    if gate is None:
        results.append(ev.GateResult(gate="sprt", passed=False, detail="no gate match"))
    else:
        figures = _figures(gate)
        opponent = gate.opponent.model_id
        results.append(
            ev.GateResult(
                gate="champion",
                passed=opponent == champion and bool(champion),
                detail=f"gate match against {opponent}; the champion is {champion or 'none'}",
            )
        )
        results.append(
            ev.GateResult(
                gate="sprt",
                passed=gate.verdict == "accept",
                figures=figures,
                detail=(
                    f"SPRT [{gate.scheduled.sprt.elo0}, {gate.scheduled.sprt.elo1}] "
                    f"{gate.verdict} after {gate.pairs} pairs (LLR {gate.llr:.3f})"
                ),
            )
        )
        results.append(
            ev.GateResult(
                gate="elo_threshold",
                passed=gate.elo >= config.elo_threshold,
                figures={**figures, "threshold": config.elo_threshold},
                detail=f"Elo {gate.elo:+.1f} ± {gate.ci95:.1f} against threshold {config.elo_threshold:+.1f}",
            )
        )
    significance = config.regression.significance
    for m in sorted(evaluation, key=lambda m: m.match_id):
        if m.purpose not in (REGRESSION, REFERENCE):
            continue
        worse = m.los < significance
        results.append(
            ev.GateResult(
                gate=f"{m.purpose}:{m.opponent.label}",
                passed=not worse,
                figures={**_figures(m), "significance": significance},
                detail=(
                    f"{'significant loss' if worse else 'no significant loss'} against "
                    f"{m.opponent.label}: Elo {m.elo:+.1f} ± {m.ci95:.1f}, LOS {m.los:.3f}"
                ),
            )
        )
    return results


def judge(
    registry: ModelRegistry,
    model: str,
    evaluation: list[MatchState],
    cause: Event,
    config: PromotionConfig,
) -> Emit:
    """``candidate.promoted`` if every gate passes, else ``candidate.rejected``."""
    gates = _gates(registry, evaluation, config)
    expected = registry.champion_last_seq
    failed = [g for g in gates if not g.passed]
    if not failed:
        record = registry.models.get(model)
        promoted = ev.CandidatePromoted.new(
            cause.run,
            cause=cause,
            model_id=model,
            previous_champion=registry.champion.model_id if registry.champion else "",
            generation=record.generation if record is not None else 0,
            gates=gates,
        )
        return Emit(promoted, expected_last_seq=expected)
    reason = "; ".join(f"{g.gate}: {g.detail}" for g in failed)
    rejected = ev.CandidateRejected.new(cause.run, cause=cause, model_id=model, reason=reason, gates=gates)
    return Emit(rejected, expected_last_seq=expected)


def watch_rollback(
    registry: ModelRegistry, match: MatchState, cause: Event, config: PromotionConfig
) -> Emit | None:
    """``champion.rolled_back`` if the watched champion proved significantly worse."""
    champion = registry.champion
    if champion is None or champion.model_id != match.candidate.model_id:
        return None  # already rolled back, or superseded: the watch no longer matters
    target = previous_promotion(registry)
    if target is None or target.model_id != match.opponent.model_id:
        return None  # the line changed since the watch was scheduled
    if match.pairs == 0 or match.los >= config.watch.significance:
        return None
    evidence = {**_figures(match), "significance": config.watch.significance}
    rollback = ev.ChampionRolledBack.new(
        cause.run,
        cause=cause,
        to_promotion_seq=target.seq,
        model_id=target.model_id,
        reverted_models=[champion.model_id],
        automatic=True,
        evidence=evidence,
        reason=(
            f"watch match {match.match_id}: {champion.model_id} is significantly worse "
            f"than {target.model_id} (Elo {match.elo:+.1f} ± {match.ci95:.1f}, "
            f"LOS {match.los:.4f} < {config.watch.significance})"
        ),
    )
    return Emit(rollback, expected_last_seq=registry.champion_last_seq)
