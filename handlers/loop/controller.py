"""The controller: turns COMMANDS into events, or into a rejection that says why.

``decide`` is pure: it checks a command against the loop status and, for ``promote`` and
``rollback``, against the model registry, and returns the events to emit. A promotion or a
rollback is an ``Emit`` expecting the champion aggregate's last sequence, so it cannot
overtake a decision it has not seen. ``plan_rollback`` (the checks of a rollback target) is
shared with the promotion manager's ``--rollback``.

- stop: the loop is running.
- resume: the loop is halted, and by the halt the command names (``halt_seq``): a halt
  recorded after the resume was asked for (a second operator's) wins, the resume is refused.
- promote: the model is known and undecided (neither promoted nor rejected before).
- rollback: the target is an effective earlier promotion (on the champion's line, before the
  champion's own); by default the previous one, and then only if no champion decision landed
  after the one its sender saw (``champion_seq``).

This is the one place these actions are decided: the CLI sends the command to the running
controller, or, with no loop running, runs this same controller in its own process
(``handlers.loop.control.decide_command``).
"""

from __future__ import annotations

from typing import NamedTuple

from handlers.runtime.shell import Emit
from projections.loop_status import LoopStatus
from projections.models import ModelRegistry, Promotion, lineage, promotion_at
from streams import commands as cmd
from streams import events as ev
from streams.envelope import Event

__all__ = ["RollbackPlan", "build_controller", "decide", "manual_promotion", "plan_rollback", "serve"]


class RollbackPlan(NamedTuple):
    """Where a rollback goes, and the effective promotions' models it reverts (newest last)."""

    target: Promotion
    reverted: list[str]


def plan_rollback(registry: ModelRegistry, *, to_seq: int = 0, model_id: str = "") -> RollbackPlan | str:
    """The rollback to promotion ``to_seq``, or to ``model_id``'s latest effective promotion,
    or (neither given) to the previous effective promotion; a string says why not."""
    if registry.champion is None:
        return "the run has no champion yet"
    line = lineage(registry)
    tip = line[-1] if line else None
    if to_seq:
        target = promotion_at(registry, to_seq)
        if target is None:
            return f"no promotion at sequence {to_seq}"
        if target not in line:
            return (f"promotion #{to_seq} ({target.model_id}) is not effective: an earlier "
                    f"rollback reverted it")
        if tip is not None and target.seq == tip.seq:
            return f"promotion #{to_seq} made the current champion {target.model_id}: nothing to undo"
    elif model_id:
        if model_id == registry.champion.model_id:
            return f"{model_id} is the champion already"
        target = next((p for p in reversed(line[:-1]) if p.model_id == model_id), None)
        if target is None:
            return f"{model_id} has no effective earlier promotion to roll back to"
    else:
        if len(line) < 2:
            return "there is no earlier promotion to roll back to"
        target = line[-2]
    after = line[line.index(target) + 1:]
    reverted = list(dict.fromkeys(p.model_id for p in after if p.model_id != target.model_id))
    return RollbackPlan(target, reverted)


def manual_promotion(
    registry: ModelRegistry, model_id: str, cause: Event, by: str, reason: str
) -> Emit | str:
    """``candidate.promoted`` for a promotion by hand, or why it is refused."""
    record = registry.models.get(model_id)
    if record is None:
        return f"unknown model {model_id!r}"
    if registry.is_decided(model_id):
        promoted = any(p.model_id == model_id for p in registry.promotions)
        return f"{model_id} was already {'promoted' if promoted else 'rejected'}"
    gate = ev.GateResult(gate="manual", passed=True, detail=f"promoted by hand by {by or 'cli'}: {reason}")
    promoted_event = ev.CandidatePromoted.new(
        cause.run,
        cause=cause,
        model_id=model_id,
        previous_champion=registry.champion.model_id if registry.champion else "",
        generation=record.generation,
        gates=[gate],
    )
    return Emit(promoted_event, expected_last_seq=registry.champion_last_seq)


def decide(status: LoopStatus, command: Event, registry: ModelRegistry | None = None) -> list[Event | Emit]:
    """Events for one command: its effect plus ``command.accepted``, or ``command.rejected``."""
    if not isinstance(command, cmd.Command):
        return []
    run, name = command.run, command.name

    def accept(effect: Event | Emit | None, detail: str = "") -> list[Event | Emit]:
        out: list[Event | Emit] = [] if effect is None else [effect]
        out.append(ev.CommandAccepted.new(run, cause=command, command_id=command.id,
                                          command=name, detail=detail))
        return out

    def reject(reason: str) -> list[Event | Emit]:
        return [ev.CommandRejected.new(run, cause=command, command_id=command.id,
                                       command=name, reason=reason)]

    who = {"by": command.by or "cli", "reason": command.reason}
    match command:
        case cmd.ResumeLoop():
            if not status.halted:
                return reject(f"not halted (loop is {status.state})")
            if command.halt_seq != status.halt_seq:
                return reject(f"halted again since: loop.halted #{status.halt_seq} by "
                              f"{status.halted_by or 'someone'} ({status.halt_reason or 'no reason'}) "
                              f"came after the halt this resume names (#{command.halt_seq}); "
                              f"resume again if that halt should end too")
            return accept(ev.LoopResumed.new(run, cause=command, **who), f"halt #{status.halt_seq} lifted")
        case cmd.StopLoop():
            if status.state in ("stopped", "stopping", "never started"):
                return reject(f"loop is {status.state}")
            return accept(ev.LoopStopRequested.new(run, cause=command, **who))
        case cmd.PromoteModel():
            if registry is None:
                return reject("the controller has no model registry")
            emit = manual_promotion(registry, command.model_id, command, who["by"], command.reason)
            if isinstance(emit, str):
                return reject(emit)
            return accept(emit, f"{command.model_id} promoted")
        case cmd.RollbackChampion():
            if registry is None:
                return reject("the controller has no model registry")
            stepping_back = not (command.to_promotion_seq or command.model_id)
            if stepping_back and command.champion_seq and command.champion_seq != registry.champion_last_seq:
                return reject("the champion changed while it was planned (a decision after "
                              f"#{command.champion_seq}); check the history and try again")
            plan = plan_rollback(registry, to_seq=command.to_promotion_seq, model_id=command.model_id)
            if isinstance(plan, str):
                return reject(plan)
            rolled_back = ev.ChampionRolledBack.new(
                run, cause=command, to_promotion_seq=plan.target.seq, model_id=plan.target.model_id,
                reverted_models=plan.reverted, reason=command.reason or f"rolled back by {who['by']}",
            )
            return accept(Emit(rolled_back, expected_last_seq=registry.champion_last_seq),
                          f"champion is {plan.target.model_id} (promotion #{plan.target.seq})")
    return reject(f"command '{name}' is not handled by the controller")


def build_controller(store, run: str):
    """The controller wired to the log: loop-status and registry projections, a shell on COMMANDS.

    Returns ``(shell, runner)`` (the loop-status runner); run ``shell.run_until(stop)``.
    """
    from handlers.runtime.shell import HandlerShell
    from projections.loop_status import LoopStatusProjection
    from projections.models import ModelRegistryProjection
    from projections.runner import ProjectionRunner
    from streams import names

    runner = ProjectionRunner(store, LoopStatusProjection(), run)
    registry = ProjectionRunner(store, ModelRegistryProjection(), run)

    async def catch_up() -> None:
        await runner.catch_up()
        await registry.catch_up()

    async def react(command: Event, seq: int) -> list[Event | Emit]:
        await runner.catch_up()
        if isinstance(command, cmd.PromoteModel | cmd.RollbackChampion):
            await registry.catch_up()
        return decide(runner.state, command, registry.state)

    shell = HandlerShell(
        store, run, "controller", names.COMMANDS, names.run_filter(names.COMMANDS, run), react,
        on_conflict=catch_up,
    )
    return shell, runner


async def serve(ctx, config) -> None:
    """The controller service: answer every command until stopped."""
    shell, runner = build_controller(ctx.store, ctx.run)
    await shell.run_until(ctx.stop)
