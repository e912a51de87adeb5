"""The promoter's pure decision: promote or reject a candidate, or roll a bad champion back.

``decide(registry, matches, event, config)`` reacts to ``match.completed``:

- When every evaluation match of a candidate (gate, regression, reference) is complete, it
  judges the gates and emits ``candidate.promoted`` or ``candidate.rejected`` with every
  gate's figures. Gates: the gate match against the *current* champion exists and its SPRT
  accepted; its Elo estimate is at least ``elo_threshold``; no significant loss (likelihood
  of superiority below ``regression.significance``) against any earlier champion; and no
  significant *regression* against each reference player: the candidate's Elo against it
  must not be significantly below the champion's own last result against it (one-sided,
  at ``regression.significance``). A reference player the champion never played is no
  baseline, so that gate passes (a young network may lose to pure MCTS and still be the
  best we have) — except the uniformly random player: a network that loses to it
  significantly is broken, whatever the champion did. A decided candidate is never
  decided again.
- When a watch match (new champion against its predecessor) completes with the champion
  significantly worse (LOS below ``watch.significance``), it emits ``champion.rolled_back``
  to the previous effective promotion, with the evidence, ``automatic=True``.

Every decision is an ``Emit`` expecting the ``champion`` aggregate's last sequence as the
registry knows it, so two promoters racing cannot both decide.
"""

from __future__ import annotations

import math

from engine.rating import Z95
from handlers.promotion.config import PromotionConfig
from handlers.runtime.shell import Emit
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
    return [judge(registry, model, evaluation, event, config, reference_baselines(registry, matches))]


def reference_baselines(registry: ModelRegistry, matches: Matches) -> dict[str, MatchState]:
    """The champion's last completed match against each reference player, by player label."""
    if registry.champion is None:
        return {}
    out: dict[str, MatchState] = {}
    for m in candidate_matches(matches, registry.champion.model_id):
        if m.purpose == REFERENCE and m.completed and m.pairs:
            previous = out.get(m.opponent.label)
            if previous is None or m.completed_at >= previous.completed_at:
                out[m.opponent.label] = m
    return out


def _regression_p(candidate: MatchState, baseline: MatchState) -> float:
    """One-sided p-value that the candidate's Elo against a reference is below the baseline's."""
    se = math.hypot(candidate.ci95, baseline.ci95) / Z95
    if not math.isfinite(se) or se == 0:
        return 1.0
    drop = baseline.elo - candidate.elo
    return 0.5 * math.erfc(drop / se / math.sqrt(2))


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
    registry: ModelRegistry,
    evaluation: list[MatchState],
    config: PromotionConfig,
    baselines: dict[str, MatchState] | None = None,
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
        if m.purpose == REGRESSION:
            worse = m.los < significance
            detail = (f"{'significant loss' if worse else 'no significant loss'} against "
                      f"{m.opponent.label}: Elo {m.elo:+.1f} ± {m.ci95:.1f}, LOS {m.los:.3f}")
            figures = {**_figures(m), "significance": significance}
        elif m.purpose == REFERENCE:
            base = (baselines or {}).get(m.opponent.label)
            figures = {**_figures(m), "significance": significance}
            if m.opponent.kind == "random":
                worse = m.los < significance
                detail = (f"{'significant loss' if worse else 'no significant loss'} against "
                          f"{m.opponent.label}: Elo {m.elo:+.1f} ± {m.ci95:.1f}, LOS {m.los:.3f}")
            elif base is None:
                worse = False
                detail = (f"Elo {m.elo:+.1f} ± {m.ci95:.1f} against {m.opponent.label}; "
                          "the champion has no result against it to regress from")
            else:
                p = _regression_p(m, base)
                worse = p < significance
                figures.update(baseline_elo=base.elo, baseline_ci95=base.ci95, p=p)
                detail = (f"Elo {m.elo:+.1f} ± {m.ci95:.1f} against {m.opponent.label}, champion "
                          f"{base.elo:+.1f} ± {base.ci95:.1f}: "
                          f"{'significant regression' if worse else 'no significant regression'} "
                          f"(p {p:.3f})")
        else:
            continue
        results.append(ev.GateResult(gate=f"{m.purpose}:{m.opponent.label}", passed=not worse,
                                     figures=figures, detail=detail))
    return results


def judge(
    registry: ModelRegistry,
    model: str,
    evaluation: list[MatchState],
    cause: Event,
    config: PromotionConfig,
    baselines: dict[str, MatchState] | None = None,
) -> Emit:
    """``candidate.promoted`` if every gate passes, else ``candidate.rejected``."""
    gates = _gates(registry, evaluation, config, baselines)
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
