"""The evaluator's pure decisions: which candidate is evaluated, its matches, their units of work.

One candidate is evaluated at a time, always the newest: the trainer saves checkpoints faster
than they can be evaluated, and a gate match against a champion that changes meanwhile is
wasted (the promoter rejects it as stale). So, a pure function of the registry:

- ``evaluations_in_progress``: candidates with scheduled matches and no decision yet (one
  that ``STALLED_AFTER`` newer checkpoints overtook, its evaluation stuck, no longer counts).
- ``next_candidate``: when none is in progress, the checkpoint to evaluate: the oldest
  pending import (a user awaits its verdict), else the newest pending checkpoint (highest
  generation, then latest saved); pending: not the champion, not decided, not reverted, no
  match scheduled (``pending_candidates``). A trainer checkpoint older than one already
  scheduled, or saved before the last rollback, is skipped for good (the trainer continues
  from the newest, and after a rollback from what was saved since).
- ``schedule_next``: on ``checkpoint.saved``, ``candidate.promoted``, ``candidate.rejected``
  and ``champion.rolled_back``: nothing while an evaluation is in progress (except a set
  scheduled only in part, which is scheduled again whole), else the set of ``next_candidate``.
- ``schedule_evaluation`` (``schedule_for_checkpoint`` for a saved checkpoint): a candidate's
  set, played once: the champion as the registry has it now (gate), the previous K champions
  (regression) and the reference players (reference).
- ``schedule_watch``: after a promotion, the new champion against its predecessor (alongside
  the evaluations, not one of them).
- ``work_units``: a match's ``max_pairs`` pairs split into units of ``pairs_per_unit``, the
  openings cycled in pair order, each pair with its own seed.
- ``complete_match``: ``match.completed`` once a match's SPRT decides or its cap is reached.
- ``decide`` dispatches an event to the above (what the evaluator handler calls).

Match ids derive from the purpose, the candidate and the opponent, so a redone decision
names the same matches; the projections keep the first scheduling of a match id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from handlers.promotion.config import PromotionConfig, SprtConfig
from projections.matches import (
    GATE,
    REFERENCE,
    REGRESSION,
    WATCH,
    Matches,
    MatchesProjection,
    match_decision,
)
from projections.models import ModelRecord, ModelRegistry, previous_champions
from streams import events as ev
from streams import names
from streams.envelope import Event
from streams.work import MatchUnit, PairSpec

__all__ = [
    "complete_match",
    "decide",
    "evaluations_in_progress",
    "match_id_for",
    "next_candidate",
    "pair_seed",
    "pending_candidates",
    "schedule_evaluation",
    "schedule_for_checkpoint",
    "schedule_next",
    "schedule_watch",
    "work_units",
]

IMPORTED = "import"  # the ``source`` of a checkpoint imported by the promotion manager
# Newer trainer checkpoints after which an undecided evaluation no longer blocks the next one
# (normally a candidate is decided within one or two trainings).
STALLED_AFTER = 4

Opening = Sequence[int]


def match_id_for(purpose: str, candidate: str, opponent: ev.PlayerSpec) -> str:
    """The id of the ``purpose`` match of model ``candidate`` against ``opponent``."""
    return names.token(f"{purpose}-{candidate}-vs-{opponent.label}")


def pair_seed(match_id: str, pair_index: int) -> int:
    """A seed for one pair, fixed by the match and the pair's index (below 2**63)."""
    digest = hashlib.sha256(f"{match_id}/{pair_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _scheduled(
    cause: Event,
    config: PromotionConfig,
    candidate: str,
    purpose: str,
    opponent: ev.PlayerSpec,
    max_pairs: int,
    sprt: SprtConfig,
    openings: int,
    set_size: int,
) -> ev.MatchScheduled:
    return ev.MatchScheduled.new(
        cause.run,
        cause=cause,
        match_id=match_id_for(purpose, candidate, opponent),
        candidate=config.model_player(candidate),
        opponent=opponent,
        purpose=purpose,
        max_pairs=max_pairs,
        pairs_per_unit=config.pairs_per_unit,
        openings=openings,
        sprt=sprt.params(),
        set_size=set_size,
    )


def schedule_evaluation(
    registry: ModelRegistry,
    model: str,
    cause: Event,
    config: PromotionConfig,
    openings_count: int,
) -> list[Event]:
    """The evaluation matches of candidate ``model``, caused by ``cause``, or none if it needs none.

    None for: no champion yet, the champion itself, a candidate already decided, or one
    whose matches are all scheduled. A set scheduled only in part (a crash between appends)
    is scheduled again whole; the projections keep the first of each match id.
    """
    champion = registry.champion
    if champion is None or model == champion.model_id or registry.is_decided(model):
        return []
    evaluation = registry.evaluations.get(model)
    if evaluation is not None and evaluation.fully_scheduled:
        return []
    reg = config.regression
    plan: list[tuple[str, ev.PlayerSpec, int, SprtConfig]] = [
        (GATE, config.model_player(champion.model_id), config.max_pairs, config.sprt)
    ]
    for earlier in previous_champions(registry, reg.previous_champions):
        if earlier != model:
            plan.append((REGRESSION, config.model_player(earlier), reg.max_pairs, reg.sprt))
    for reference in reg.reference_players:
        plan.append((REFERENCE, reference.spec(), reg.max_pairs, reg.sprt))
    return [
        _scheduled(cause, config, model, purpose, opponent, pairs, sprt, openings_count, len(plan))
        for purpose, opponent, pairs, sprt in plan
    ]


def schedule_for_checkpoint(
    registry: ModelRegistry,
    event: ev.CheckpointSaved,
    config: PromotionConfig,
    openings_count: int,
) -> list[Event]:
    """The evaluation matches of the checkpoint in ``event`` (``schedule_evaluation``), whatever
    else is pending or in progress: ``schedule_next`` is the evaluator's policy."""
    return schedule_evaluation(registry, event.model_id, event, config, openings_count)


def evaluations_in_progress(registry: ModelRegistry) -> list[str]:
    """Candidates with evaluation matches scheduled and no decision yet, in scheduling order,
    except a stalled one: ``STALLED_AFTER`` newer trainer checkpoints saved since it was means
    its evaluation cannot finish (a unit rejected as unplayable, say), and it blocks no more."""
    return [
        model for model in registry.evaluations
        if not registry.is_decided(model) and not _stalled(registry, model)
    ]


def _stalled(registry: ModelRegistry, model: str) -> bool:
    record = registry.models.get(model)
    if record is None:
        return False
    newer = sum(
        1 for r in registry.models.values() if r.source != IMPORTED and r.saved_seq > record.saved_seq
    )
    return newer >= STALLED_AFTER


def pending_candidates(registry: ModelRegistry) -> list[ModelRecord]:
    """Checkpoints that may still be evaluated: not the champion, not decided, not reverted, none
    of their matches scheduled (none at all without a champion); and, unless imported, saved
    after the last rollback (the trainer left the line before it) and after every trainer
    checkpoint already scheduled (an older one is skipped for good)."""
    champion = registry.champion
    if champion is None:
        return []
    since = registry.rollbacks[-1].seq if registry.rollbacks else 0
    for model in registry.evaluations:
        record = registry.models.get(model)
        if record is not None and record.source != IMPORTED:
            since = max(since, record.saved_seq)
    return [
        record
        for model, record in registry.models.items()
        if model != champion.model_id
        and not registry.is_decided(model)
        and model not in registry.reverted_models
        and model not in registry.evaluations
        and (record.source == IMPORTED or record.saved_seq > since)
    ]


def next_candidate(registry: ModelRegistry) -> str | None:
    """The checkpoint to evaluate next: the oldest pending import (a user awaits its verdict),
    else the newest pending checkpoint (highest generation, then latest saved)."""
    pending = pending_candidates(registry)
    imports = [r for r in pending if r.source == IMPORTED]
    if imports:
        return min(imports, key=lambda r: r.saved_seq).model_id
    if not pending:
        return None
    return max(pending, key=lambda r: (r.generation, r.saved_seq)).model_id


def schedule_next(
    registry: ModelRegistry,
    cause: Event,
    config: PromotionConfig,
    openings_count: int,
) -> list[Event]:
    """The evaluation to schedule now that ``cause`` is folded in, if any.

    While an evaluation is in progress: none, unless its set is scheduled only in part (then
    that set again, whole). Otherwise the set of ``next_candidate``, its gate against the
    champion as the registry has it now.
    """
    running = evaluations_in_progress(registry)
    if running:
        return [e for model in running
                for e in schedule_evaluation(registry, model, cause, config, openings_count)]
    model = next_candidate(registry)
    if model is None:
        return []
    return schedule_evaluation(registry, model, cause, config, openings_count)


def schedule_watch(
    registry: ModelRegistry,
    event: ev.CandidatePromoted,
    config: PromotionConfig,
    openings_count: int,
) -> list[Event]:
    """The watch match of a fresh promotion (new champion against its predecessor)."""
    watch, champion = config.watch, registry.champion
    previous = event.previous_champion
    if not watch.enabled or not previous or previous == event.model_id:
        return []
    if champion is None or champion.model_id != event.model_id:
        return []  # rolled back or superseded before we got here
    opponent = config.model_player(previous)
    return [
        _scheduled(
            event, config, event.model_id, WATCH, opponent, watch.max_pairs, watch.sprt, openings_count, 1
        )
    ]


def work_units(match: ev.MatchScheduled, game: str, openings: Sequence[Opening]) -> list[MatchUnit]:
    """Units covering pairs ``0 .. max_pairs - 1`` once each, ``pairs_per_unit`` per unit.

    Pair ``i`` plays opening ``i mod n`` of the first ``match.openings`` openings (all of
    them when it is 0; one empty opening when there are none) with seed ``pair_seed``.
    """
    pool = list(openings)[: match.openings] if match.openings > 0 else list(openings)
    if not pool:
        pool = [()]
    size = max(1, match.pairs_per_unit)
    units = []
    for number, start in enumerate(range(0, match.max_pairs, size)):
        pairs = [
            PairSpec(pair_index=i, opening=list(pool[i % len(pool)]), seed=pair_seed(match.match_id, i))
            for i in range(start, min(start + size, match.max_pairs))
        ]
        units.append(
            MatchUnit.new(
                match.run,
                cause=match,
                match_id=match.match_id,
                unit_id=f"{match.match_id}/{number}",
                game=game,
                candidate=match.candidate,
                opponent=match.opponent,
                pairs=pairs,
            )
        )
    return units


def complete_match(matches: Matches, event: ev.MatchPairPlayed) -> list[Event]:
    """``match.completed`` if the pair in ``event`` (already folded) ends its match."""
    match = matches.get(event.match_id)
    decision = None if match is None else match_decision(match)
    if decision is None:
        return []
    return [ev.MatchCompleted.new(event.run, cause=event, **decision)]


def decide(
    registry: ModelRegistry,
    matches: Matches,
    event: Event,
    config: PromotionConfig,
    *,
    game: str,
    openings: Sequence[Opening],
) -> list[Event]:
    """The evaluator's reaction to one event.

    The states should include ``event``; match events are folded into the matches state
    again here, which changes nothing when they are there (pairs count once, the first
    scheduling and the first completion of a match win).
    """
    if isinstance(event, ev.MatchScheduled | ev.MatchPairPlayed):
        matches = MatchesProjection().apply(matches, event)
    match event:
        case ev.CheckpointSaved() | ev.CandidateRejected() | ev.ChampionRolledBack():
            return schedule_next(registry, event, config, len(openings))
        case ev.MatchScheduled():
            current = matches.get(event.match_id)
            if current is None or current.scheduled.id != event.id or current.completed:
                return []  # a repeated scheduling: the first one has its units
            return list(work_units(event, game, openings))
        case ev.MatchPairPlayed():
            return complete_match(matches, event)
        case ev.CandidatePromoted():
            planned = schedule_watch(registry, event, config, len(openings))
            watch = [
                e for e in planned if isinstance(e, ev.MatchScheduled) and matches.get(e.match_id) is None
            ]
            return watch + schedule_next(registry, event, config, len(openings))
    return []
