"""The controller: turns COMMANDS into events, or into a rejection that says why.

``decide`` is pure: it checks a command against the loop status (and, for promotion and
rollback, against the model registry supplied by the caller) and returns the events to emit.
"""

from __future__ import annotations

from projections.loop_status import LoopStatus
from streams import commands as cmd
from streams import events as ev
from streams.envelope import Event


def decide(status: LoopStatus, command: Event) -> list[Event]:
    """Events for one command: its effect plus ``command.accepted``, or ``command.rejected``."""
    if not isinstance(command, cmd.Command):
        return []
    run, name = command.run, command.name

    def accept(effect: Event | None, detail: str = "") -> list[Event]:
        out = [] if effect is None else [effect]
        out.append(ev.CommandAccepted.new(run, cause=command, command_id=command.id,
                                          command=name, detail=detail))
        return out

    def reject(reason: str) -> list[Event]:
        return [ev.CommandRejected.new(run, cause=command, command_id=command.id,
                                       command=name, reason=reason)]

    who = {"by": command.by or "cli", "reason": command.reason}
    match command:
        case cmd.HaltLoop():
            if status.halted:
                return reject(f"already halted by {status.halted_by or 'someone'}: {status.halt_reason}")
            return accept(ev.LoopHalted.new(run, cause=command, **who))
        case cmd.ResumeLoop():
            if not status.halted:
                return reject(f"not halted (loop is {status.state})")
            return accept(ev.LoopResumed.new(run, cause=command, **who))
        case cmd.StopLoop():
            if status.state in ("stopped", "stopping", "never started"):
                return reject(f"loop is {status.state}")
            return accept(ev.LoopStopRequested.new(run, cause=command, **who))
        case cmd.StartLoop():
            if status.state == "running":
                return reject("loop is already running")
            return accept(None, "the supervisor starts the loop")
    return reject(f"command '{name}' is not handled by the controller")


def build_controller(store, run: str):
    """The controller wired to the log: a loop-status projection and a shell on COMMANDS.

    Returns ``(shell, runner)``; run ``runner.follow()`` and ``shell.run_until(stop)``.
    """
    from handlers.shell import HandlerShell
    from projections.loop_status import LoopStatusProjection
    from projections.runner import ProjectionRunner
    from streams import names

    runner = ProjectionRunner(store, LoopStatusProjection(), run)

    async def react(command: Event, seq: int) -> list[Event]:
        await runner.catch_up()
        return decide(runner.state, command)

    shell = HandlerShell(
        store, run, "controller", names.COMMANDS, names.run_filter(names.COMMANDS, run), react,
        on_conflict=runner.catch_up,
    )
    return shell, runner


async def serve(ctx, config) -> None:
    """The controller service: answer every command until stopped."""
    shell, runner = build_controller(ctx.store, ctx.run)
    await shell.run_until(ctx.stop)
