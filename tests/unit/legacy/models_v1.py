"""(Frozen v1 copy, for the old-vs-new tests; not used by the project.)

Model registry read model: every checkpoint, its lineage, the champion, promotion history.

Rules of the fold:

- **Initial champion.** The first ``checkpoint.saved`` with generation 0, while there is no
  champion and no promotion yet, is the champion by convention. It enters the history as a
  promotion marked ``initial`` whose ``seq`` is that checkpoint's sequence, so a rollback can
  name it like any promotion. An explicit ``candidate.promoted`` of a checkpointed model
  before any such checkpoint makes its model the first champion instead.
- **Refused** decisions. A ``candidate.promoted`` or ``candidate.rejected`` naming a model
  with no checkpoint, or a ``champion.rolled_back`` to a sequence that is no promotion, is
  not folded: the champion stays the last valid one and the refusal is noted (``refusals``;
  ``refused_at`` tells the runner, which records it as ``event.rejected``).
- **Rollback.** Promotions form a tree: each one's ``parent`` is the promotion that made the
  champion it replaced. ``champion.rolled_back`` naming promotion ``P`` moves the tip back to
  ``P``, which restores the champion line exactly as it stood at ``P``: the champion becomes
  ``P``'s model, every promotion after ``P`` is reverted (its model joins
  ``reverted_models``), and a promotion before ``P`` is reverted again only if it was as of
  ``P``. The effective promotions (``lineage``, the path from the root to the tip) always end
  with the champion.
- **Decided** candidates (promoted or rejected) are never decided again; ``evaluations``
  records which candidates have their evaluation matches scheduled.
- The sequence of each event comes through ``apply_at`` (the runner passes it); ``apply``
  uses 0. ``champion_last_seq`` is the last sequence on the ``champion`` aggregate, the
  expectation a promoter appends under; the runner's ``note_subject`` moves it for whatever
  is stored there, poison and refused decisions included.
"""

from __future__ import annotations

import msgspec

from projections.base import BaseProjection
from projections.matches import CANDIDATE_PURPOSES
from streams import events as ev
from streams import names
from streams.envelope import Event

__all__ = [
    "Champion",
    "Evaluation",
    "ModelRecord",
    "ModelRegistry",
    "ModelRegistryProjection",
    "Promotion",
    "Refusal",
    "Rejection",
    "Rollback",
]

KEEP_REFUSALS = 20
_CHAMPION_TOKEN = f".{names.AGG_CHAMPION}."


class ModelRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One saved checkpoint."""

    model_id: str
    generation: int = 0
    parent: str = ""
    digest: str = ""
    object_name: str = ""
    step: int = 0
    game: str = ""
    source: str = ""
    policy_loss: float = 0.0
    value_loss: float = 0.0
    saved_seq: int = 0
    saved_at: float = 0.0


class Promotion(msgspec.Struct, frozen=True, kw_only=True):
    """A model made champion at ``seq`` (for the ``initial`` one: its checkpoint's seq)."""

    seq: int
    model_id: str
    parent: int = -1  # index in ``promotions`` of the promotion it followed; -1: the first
    generation: int = 0
    previous_champion: str = ""
    time: float = 0.0
    initial: bool = False
    reverted: bool = False  # not on the champion's line


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    model_id: str
    reason: str = ""
    time: float = 0.0


class Rollback(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    to_promotion_seq: int
    model_id: str
    reverted_models: tuple[str, ...] = ()
    reason: str = ""
    automatic: bool = False
    evidence: dict[str, float] = {}
    time: float = 0.0


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """A decision on the champion aggregate that names something that does not exist."""

    seq: int
    tag: str
    model_id: str = ""
    reason: str = ""
    time: float = 0.0


class Champion(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    generation: int = 0
    promotion_seq: int = 0  # the promotion that made this model champion
    since: float = 0.0


class Evaluation(msgspec.Struct, frozen=True, kw_only=True):
    """The candidate's scheduled evaluation matches; ``expected`` of them (0: unknown)."""

    matches: tuple[str, ...] = ()
    expected: int = 0

    @property
    def fully_scheduled(self) -> bool:
        return len(self.matches) >= max(self.expected, 1)


class ModelRegistry(msgspec.Struct, frozen=True, kw_only=True):
    models: dict[str, ModelRecord] = {}
    champion: Champion | None = None
    promotions: tuple[Promotion, ...] = ()
    tip: int = -1  # index in ``promotions`` of the champion's promotion
    rejections: tuple[Rejection, ...] = ()
    rollbacks: tuple[Rollback, ...] = ()
    decided: frozenset[str] = frozenset()
    reverted_models: frozenset[str] = frozenset()
    evaluations: dict[str, Evaluation] = {}
    champion_last_seq: int = 0
    last_seq: int = 0
    refusals: tuple[Refusal, ...] = ()  # the latest KEEP_REFUSALS, oldest first

    def is_decided(self, model_id: str) -> bool:
        return model_id in self.decided


def _refuse(s: ModelRegistry, e: Event, seq: int, model_id: str, why: str) -> ModelRegistry:
    """``s`` unchanged but for the refusal noted (the champion stays the last valid one) and
    the champion aggregate's last sequence, which the refused event still occupies."""
    refusal = Refusal(seq=seq, tag=e.tag, model_id=model_id, reason=f"{e.tag} refused: {why}", time=e.time)
    return msgspec.structs.replace(
        s,
        refusals=(*s.refusals, refusal)[-KEEP_REFUSALS:],
        champion_last_seq=max(seq, s.champion_last_seq),
    )


def _path(promotions: tuple[Promotion, ...], tip: int) -> list[int]:
    """Indices from the root to ``tip``."""
    path = []
    while tip >= 0:
        path.append(tip)
        tip = promotions[tip].parent
    return path[::-1]


class ModelRegistryProjection(BaseProjection[ModelRegistry]):
    name = "model_registry"
    state_type = ModelRegistry

    def initial(self) -> ModelRegistry:
        return ModelRegistry()

    def apply(self, state: ModelRegistry, event: Event) -> ModelRegistry:
        return self.apply_at(state, event, 0)

    def apply_at(self, state: ModelRegistry, event: Event, seq: int) -> ModelRegistry:
        """The state after ``event``, which sits at sequence ``seq`` of the stream."""
        method = self.handler(event)
        if method is None:
            return state
        new = method(state, event, seq)
        return msgspec.structs.replace(new, last_seq=max(seq, state.last_seq))

    def note_subject(self, state: ModelRegistry, subject: str, seq: int) -> ModelRegistry:
        """Whatever is stored on the champion aggregate moves ``champion_last_seq`` (the runner
        calls this for every message, poison included): an expected-sequence append there is
        checked against the stored sequence, not against what could be folded."""
        if seq <= state.champion_last_seq or _CHAMPION_TOKEN not in subject:
            return state
        try:
            aggregate = names.parse_subject(subject)[2]
        except ValueError:
            return state
        if aggregate != names.AGG_CHAMPION:
            return state
        return msgspec.structs.replace(state, champion_last_seq=seq)

    def refused_at(self, state: ModelRegistry, seq: int) -> str:
        """Why the event folded at ``seq`` was refused ('' if it was not)."""
        last = state.refusals[-1] if state.refusals else None
        return last.reason if last is not None and last.seq == seq else ""

    # -- checkpoints and evaluations -----------------------------------------------------

    def on_checkpoint_saved(self, s: ModelRegistry, e: ev.CheckpointSaved, seq: int) -> ModelRegistry:
        record = ModelRecord(
            model_id=e.model_id,
            generation=e.generation,
            parent=e.parent_model,
            digest=e.digest,
            object_name=e.object_name,
            step=e.step,
            game=e.game,
            source=e.source,
            policy_loss=e.policy_loss,
            value_loss=e.value_loss,
            saved_seq=seq,
            saved_at=e.time,
        )
        models = {**s.models, e.model_id: record}
        if s.champion is None and not s.promotions and e.generation == 0:
            first = Promotion(seq=seq, model_id=e.model_id, generation=0, time=e.time, initial=True)
            return msgspec.structs.replace(
                s,
                models=models,
                promotions=(first,),
                tip=0,
                decided=s.decided | {e.model_id},
                champion=Champion(model_id=e.model_id, generation=0, promotion_seq=seq, since=e.time),
            )
        return msgspec.structs.replace(s, models=models)

    def on_match_scheduled(self, s: ModelRegistry, e: ev.MatchScheduled, seq: int) -> ModelRegistry:
        if e.purpose not in CANDIDATE_PURPOSES or e.candidate.kind != "model":
            return s
        model = e.candidate.model_id
        current = s.evaluations.get(model, Evaluation())
        if e.match_id in current.matches:
            return s
        updated = Evaluation(
            matches=(*current.matches, e.match_id), expected=max(current.expected, e.set_size)
        )
        return msgspec.structs.replace(s, evaluations={**s.evaluations, model: updated})

    # -- the champion aggregate ----------------------------------------------------------

    def _generation(self, s: ModelRegistry, model_id: str, default: int = 0) -> int:
        record = s.models.get(model_id)
        return record.generation if record is not None else default

    def on_candidate_promoted(self, s: ModelRegistry, e: ev.CandidatePromoted, seq: int) -> ModelRegistry:
        if e.model_id not in s.models:
            return _refuse(s, e, seq, e.model_id, f"promotes {e.model_id!r}, which has no checkpoint")
        generation = self._generation(s, e.model_id, e.generation)
        previous = e.previous_champion or (s.champion.model_id if s.champion else "")
        promotion = Promotion(
            seq=seq,
            model_id=e.model_id,
            parent=s.tip,
            generation=generation,
            previous_champion=previous,
            time=e.time,
        )
        return msgspec.structs.replace(
            s,
            promotions=(*s.promotions, promotion),
            tip=len(s.promotions),
            champion=Champion(model_id=e.model_id, generation=generation, promotion_seq=seq, since=e.time),
            decided=s.decided | {e.model_id},
            champion_last_seq=max(seq, s.champion_last_seq),
        )

    def on_candidate_rejected(self, s: ModelRegistry, e: ev.CandidateRejected, seq: int) -> ModelRegistry:
        if e.model_id not in s.models:
            return _refuse(s, e, seq, e.model_id, f"rejects {e.model_id!r}, which has no checkpoint")
        rejection = Rejection(seq=seq, model_id=e.model_id, reason=e.reason, time=e.time)
        return msgspec.structs.replace(
            s,
            rejections=(*s.rejections, rejection),
            decided=s.decided | {e.model_id},
            champion_last_seq=max(seq, s.champion_last_seq),
        )

    def on_champion_rolled_back(self, s: ModelRegistry, e: ev.ChampionRolledBack, seq: int) -> ModelRegistry:
        tip = next(
            (i for i in reversed(range(len(s.promotions))) if s.promotions[i].seq == e.to_promotion_seq), None
        )
        if tip is None:
            return _refuse(s, e, seq, e.model_id,
                           f"rolls back to #{e.to_promotion_seq}, which is no promotion")
        line = set(_path(s.promotions, tip))
        promotions = tuple(
            msgspec.structs.replace(p, reverted=i not in line) if p.reverted != (i not in line) else p
            for i, p in enumerate(s.promotions)
        )
        model = promotions[tip].model_id
        effective = {promotions[i].model_id for i in line}
        reverted = {p.model_id for p in promotions if p.reverted} | set(e.reverted_models)
        rollback = Rollback(
            seq=seq,
            to_promotion_seq=e.to_promotion_seq,
            model_id=model,
            reverted_models=tuple(e.reverted_models),
            reason=e.reason,
            automatic=e.automatic,
            evidence=dict(e.evidence),
            time=e.time,
        )
        return msgspec.structs.replace(
            s,
            promotions=promotions,
            tip=tip,
            rollbacks=(*s.rollbacks, rollback),
            reverted_models=frozenset(reverted - effective),
            champion=Champion(
                model_id=model,
                generation=self._generation(s, model),
                promotion_seq=e.to_promotion_seq,
                since=e.time,
            ),
            champion_last_seq=max(seq, s.champion_last_seq),
        )
