"""Manual rollback of the champion (``jetzero promotion rollback``,
``model_promotion_manager.py --rollback``) and manual promotion (``jetzero promotion promote``).

``rollback_champion`` sends ``command.rollback`` and waits for the answer: the controller
(``handlers.loop.controller``) is the one implementation of a rollback by hand. With the loop
running its controller decides; without, the same controller runs in this process
(``handlers.loop.control.decide_command``). A rollback to a named promotion or model is
planned again when a concurrent champion decision lands first; "back one step" carries the
champion decision its sender saw and is refused if another one landed since.

The rest of the promotion manager lives by concern: ``models`` (list, export, import),
``judge`` (one candidate), ``daemon`` (every new checkpoint), ``history`` (history, ratings).
"""

from __future__ import annotations

from handlers.loop.control import decide_command, effect_of
from handlers.loop.supervisor import who
from handlers.promotion.models import fold as _fold
from projections.models import ModelRegistryProjection
from streams import commands as cmd
from streams import events as ev
from streams import names
from streams.errors import PromotionError
from streams.store import EventStore

__all__ = ["PromotionError", "promote_model", "rollback_champion"]


async def rollback_champion(store: EventStore, run: str, *, to_seq: int = 0, model_id: str = "",
                            reason: str = "", by: str = "",
                            timeout: float = 30.0) -> tuple[ev.ChampionRolledBack, int]:
    """Roll the champion back (``handlers.loop.controller.plan_rollback`` says where to) through
    the controller; the ``champion.rolled_back`` it appended and its sequence.

    ``PromotionError`` if refused; ``CommandTimeout`` if a running loop's controller does not
    answer within ``timeout`` (the command stays queued for it).
    """
    by = by or who()
    seen = await _fold(store, ModelRegistryProjection(), run)
    command = cmd.RollbackChampion.new(run, by=by, reason=reason, to_promotion_seq=to_seq,
                                       model_id=model_id, champion_seq=seen.champion_last_seq)
    answer = await decide_command(store, command, timeout=timeout)
    if isinstance(answer, ev.CommandRejected):
        raise PromotionError(f"rollback refused: {answer.reason}")
    return await effect_of(store, command, ev.ChampionRolledBack, names.AGG_CHAMPION)


async def promote_model(store: EventStore, run: str, model_id: str, *, reason: str = "", by: str = "",
                        timeout: float = 30.0) -> tuple[ev.CandidatePromoted, int]:
    """Promote ``model_id`` by hand, skipping its matches, through the controller; the
    ``candidate.promoted`` it appended and its sequence. Refusals and timeouts as a rollback's.
    """
    command = cmd.PromoteModel.new(run, model_id=model_id, by=by or who(), reason=reason)
    answer = await decide_command(store, command, timeout=timeout)
    if isinstance(answer, ev.CommandRejected):
        raise PromotionError(f"promotion refused: {answer.reason}")
    return await effect_of(store, command, ev.CandidatePromoted, names.AGG_CHAMPION)
