"""One validation of a pull request: the candidate (this checkout's code and the PR's model)
against the baseline (the base ref's code in a temporary worktree and the champion or a pinned
model), gate by gate, to a verdict and an exit code.

``validate(request, hooks)`` resolves the base commit and both models (weights-only loads,
digest, game and architecture checked; with ``train`` the candidate is trained first by the PR's
own training code from the baseline's weights on the request's data snapshot,
``handlers.pipeline.train``), then runs the enabled gates in order: ``quality`` and
``strength`` on the loaded nets, ``match`` and ``speed`` between two engine processes (one per
checkout, ``handlers.pipeline.engines``), ``tests`` in this checkout. The match is played over
WORK by the run's eval agents when ``hooks.work`` finds any (``handlers.pipeline.remote``), else
here; ``played_by`` says who played its pairs. Exit code 0 when every
gate passed (or was skipped), 1 when one failed, 2 when the pipeline could not run (a bad
argument, an unreadable model, a missing base ref, an engine or a training that crashed, an
empty or corrupt snapshot) — with ``reason``
the one line that says which. The worktree and the engines are gone when it returns, also
after Ctrl-C or SIGTERM. ``hooks`` report progress and record the two events.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from engine.checkpoint import load_checkpoint_file, make_meta, save_checkpoint_file
from engine.errors import CheckpointError
from engine.games import get_game
from engine.network import NetworkConfig, build_network, set_torch_threads
from engine.settings import TrainConfig
from handlers.pipeline.config import PipelineConfig
from handlers.pipeline.engines import EngineMissing, EngineProcess, EngineSide
from handlers.pipeline.match import MatchOutcome, gate_outcome, match_gate
from handlers.pipeline.model_checks import nonfinite_weights, quality_gate, strength_gate
from handlers.pipeline.remote import SideToShip, WorkPlan, WorkResult
from handlers.pipeline.speed import speed_gate
from handlers.pipeline.tests_gate import tests_gate
from handlers.pipeline.train import TrainingFailed, check_snapshot, train_candidate
from handlers.pipeline.worktree import base_worktree, head_commit, merge_base, terminate_as_interrupt
from streams.envelope import new_id
from streams.errors import JetzeroError
from streams.pipeline_events import GateOutcome, TrainingRun, ValidationCompleted, ValidationRequested

__all__ = ["Hooks", "ValidationRequest", "ValidationResult", "validate"]

EXIT_PASSED, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


class ValidationRequest(msgspec.Struct, frozen=True, kw_only=True):
    repo: str  # the PR's checkout: the candidate's code
    config: PipelineConfig
    game: str = "connect4"
    game_params: dict[str, int] = {}
    network: NetworkConfig = NetworkConfig()  # a fresh baseline's architecture (no model given)
    run: str = "main"
    pr: int = 0
    base_ref: str = ""  # "": the merge base of HEAD with main
    candidate_model: str = ""  # "": the baseline's model (a change to code only)
    baseline_model: str = ""  # "": a fresh net seeded with config.seed
    test_command: str = ""
    train: bool = False  # train the candidate with the PR's training code (config.train) on ``snapshot``
    snapshot: str = ""  # the data snapshot file (handlers.pipeline.snapshot)
    snapshot_label: str = ""  # how events name it ("": its path)
    train_config: TrainConfig = TrainConfig()  # the run's trainer settings (training.train)


@dataclass
class ValidationResult:
    validation_id: str
    verdict: str  # passed | failed | error
    exit_code: int
    reason: str
    gates: list[GateOutcome]
    seconds: float
    base_commit: str = ""
    head_commit: str = ""
    match: MatchOutcome | None = None
    training: TrainingRun | None = None
    played_by: dict[str, int] = field(default_factory=dict)  # match pairs by who played them


@dataclass
class Hooks:
    note: Callable[[str], None] = lambda text: None
    gate_started: Callable[[str], None] = lambda name: None
    gate_done: Callable[[GateOutcome], None] = lambda outcome: None
    match_progress: Callable[[MatchOutcome], None] = lambda m: None
    speed_progress: Callable[[int, int], None] = lambda done, total: None
    record: Callable[[ValidationRequested | ValidationCompleted], None] = lambda event: None
    baseline_from_log: Callable[[Path], str] | None = None  # writes the champion there; its id or ""
    work: Callable[[WorkPlan], WorkResult | None] | None = None  # the match over WORK (None: played here)


class CouldNotRun(JetzeroError):
    """The validation cannot run (bad argument, unreadable model, missing base ref): exit 2."""


def _fresh_model(req: ValidationRequest, folder: Path) -> Path:
    game = get_game(req.game, **req.game_params)
    net = build_network(game, req.network, seed=req.config.seed)
    path = folder / "baseline-fresh.pt"
    source = {"source": f"pipeline fresh net, seed {req.config.seed}"}
    save_checkpoint_file(path, net, make_meta(net, game=game, game_params=req.game_params, created=0.0,
                                               extra=source))
    return path


def _train(req: ValidationRequest, folder: Path, hooks: Hooks, baseline: Path, state: dict) -> Path:
    """The candidate trained by the PR's code from ``baseline`` (``state["training"]`` says how)."""
    game = get_game(req.game, **req.game_params)
    label = req.snapshot_label or req.snapshot
    state["training"] = TrainingRun(status="error", snapshot=label, seed=req.config.train.seed)
    snapshot = check_snapshot(req.snapshot, game)
    state["training"] = TrainingRun(status="error", snapshot=label, snapshot_digest=snapshot.digest,
                                    snapshot_games=snapshot.games, snapshot_first_seq=snapshot.first_seq,
                                    snapshot_last_seq=snapshot.last_seq, seed=req.config.train.seed)
    settings = req.config.train
    hooks.note(f"training the candidate: {settings.steps} steps of {settings.batch_size} (seed "
               f"{settings.seed}) on {snapshot.games} games of {label} (sha256 {snapshot.digest[:12]})")
    out = folder / "candidate-trained.pt"
    run = train_candidate(repo=req.repo, snapshot=snapshot, baseline=baseline, out=out, game=game,
                          game_params=req.game_params, train=req.train_config, settings=settings,
                          threads=req.config.torch_threads, label=label)
    state["training"] = run
    hooks.note(f"trained {run.model_id} in {run.seconds:.1f} s ({run.wall_seconds:.1f} s with start-up): "
               f"final policy loss {run.final_policy_loss:.3f}, value loss {run.final_value_loss:.3f}")
    return out


def _models(req: ValidationRequest, folder: Path, hooks: Hooks, state: dict):
    game = get_game(req.game, **req.game_params)
    baseline_path = Path(req.baseline_model) if req.baseline_model else None
    if baseline_path is None and hooks.baseline_from_log is not None:
        target = folder / "baseline-champion.pt"
        if hooks.baseline_from_log(target):
            baseline_path = target
            hooks.note("baseline model: the run's champion from the log")
    if baseline_path is None:
        baseline_path = _fresh_model(req, folder)
        hooks.note(f"baseline model: a fresh {req.network.blocks}x{req.network.channels} net (seed "
                   f"{req.config.seed}): no --baseline-model and no champion in the log")
    try:
        base_net, base_meta = load_checkpoint_file(baseline_path, expect_game=game)
    except CheckpointError as exc:
        raise CouldNotRun(f"baseline model {baseline_path}: {exc}") from None
    if req.train:
        try:
            cand_path = _train(req, folder, hooks, baseline_path, state)
        except TrainingFailed as exc:
            state["training"] = msgspec.structs.replace(state["training"], message=str(exc)[:1000])
            raise CouldNotRun(f"training the candidate: {exc}") from None
    else:
        cand_path = Path(req.candidate_model) if req.candidate_model else baseline_path
    try:
        cand_net, cand_meta = load_checkpoint_file(cand_path, expect_game=game,
                                                   expect_arch=base_meta.architecture)
    except CheckpointError as exc:
        raise CouldNotRun(f"candidate model {cand_path}: {exc}") from None
    return game, (cand_path, cand_net, cand_meta), (baseline_path, base_net, base_meta)


def _verdict(gates: list[GateOutcome]) -> tuple[str, int, str]:
    errors = [g for g in gates if g.status == "error"]
    failed = [g for g in gates if g.status == "failed"]
    if errors:
        return "error", EXIT_ERROR, f"could not run: {errors[0].gate}: {errors[0].message}"
    if failed:
        return "failed", EXIT_FAILED, "failed gate(s): " + "; ".join(f"{g.gate}: {g.message}" for g in failed)
    ran = [g.gate for g in gates if g.status == "passed"]
    return "passed", EXIT_PASSED, f"all gates passed ({', '.join(ran) or 'none enabled'})"


def validate(req: ValidationRequest, hooks: Hooks | None = None) -> ValidationResult:
    """Run one validation (see the module docstring); never raises for what exit 2 covers."""
    hooks = hooks or Hooks()
    vid, start = new_id(), time.perf_counter()
    gates: list[GateOutcome] = []
    state: dict = {"base_commit": "", "head": head_commit(req.repo), "match": None, "training": None,
                   "played_by": {}}

    def result(verdict: str, code: int, reason: str) -> ValidationResult:
        res = ValidationResult(vid, verdict, code, reason, gates, time.perf_counter() - start,
                               state["base_commit"], state["head"], state["match"], state["training"],
                               state["played_by"])
        hooks.record(ValidationCompleted.new(
            req.run, validation_id=vid, pr=req.pr, verdict=verdict, exit_code=code, reason=reason,
            gates=list(gates), seconds=res.seconds, base_commit=res.base_commit, head_commit=res.head_commit,
            training=res.training, played_by=res.played_by, correlation_id=vid))
        return res

    if req.train and (req.candidate_model or not req.snapshot):
        return result("error", EXIT_ERROR, "could not run: --train " + (
            "and --candidate exclude each other" if req.candidate_model else "needs a data snapshot"))

    set_torch_threads(req.config.torch_threads)
    try:
        with ExitStack() as stack, terminate_as_interrupt():
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jetzero-pipeline-")))
            cfg = req.config
            needs_base = cfg.match.enabled or cfg.speed.enabled
            base_ref = req.base_ref or (merge_base(req.repo) if needs_base else "")
            game, cand, base = _models(req, folder, hooks, state)
            hooks.record(ValidationRequested.new(
                req.run, validation_id=vid, pr=req.pr, base_ref=base_ref, head_commit=state["head"],
                candidate_model=cand[2].model_id, candidate_digest=cand[2].digest,
                baseline_model=base[2].model_id, baseline_digest=base[2].digest, gates=cfg.enabled(),
                settings=msgspec.to_builtins(cfg), host=socket.gethostname(), training=state["training"],
                correlation_id=vid))
            sound = nonfinite_weights(cand[1]) == 0
            if cfg.quality.enabled:
                gates.append(_run("quality", hooks,
                                  lambda: quality_gate(cand[1], base[1], game, cfg.quality)))
                sound = sound and gates[-1].figures.get("nonfinite_outputs", 0.0) == 0.0
            if cfg.strength.enabled:
                gates.append(_run("strength", hooks, lambda: strength_gate(
                    cand[1], base[1], game, cfg.strength, candidate_sound=sound)))
            if needs_base:
                worktree, commit = stack.enter_context(base_worktree(req.repo, base_ref))
                state["base_commit"] = commit
                hooks.note(f"base {base_ref} ({commit[:12]}) checked out in {worktree}")
                game_line = " ".join(["game", req.game, *(f"{k}={v}" for k, v in req.game_params.items())])
                timeout = cfg.match.move_timeout_s
                engines = {}
                for label, root, model in (("candidate", req.repo, cand[0]), ("base", worktree, base[0])):
                    side = EngineSide(label=label, root=str(Path(root).resolve()),
                                      model=str(Path(model).resolve()))
                    engines[label] = stack.enter_context(EngineProcess(
                        side, game_line, threads=cfg.torch_threads, seed=cfg.seed, timeout=timeout))
                if cfg.match.enabled:
                    sides = {"candidate": SideToShip("candidate", req.repo, str(cand[0]), state["head"]),
                             "base": SideToShip("base", str(worktree), str(base[0]), commit)}
                    plan = WorkPlan(validation_id=vid, game=game, game_line_params=dict(req.game_params),
                                    gate=cfg.match, seed=cfg.seed, threads=cfg.torch_threads,
                                    candidate=sides["candidate"], base=sides["base"],
                                    engines=(engines["candidate"], engines["base"]),
                                    progress=hooks.match_progress)
                    gates.append(_run("match", hooks, lambda: _match(plan, hooks, state)))
                if cfg.speed.enabled:
                    gates.append(_run("speed", hooks, lambda: speed_gate(
                        engines["candidate"], engines["base"], cfg.speed, progress=hooks.speed_progress)))
            if cfg.tests.enabled or req.test_command:
                gates.append(_run("tests", hooks, lambda: tests_gate(req.repo, cfg.tests, req.test_command)))
    except EngineMissing as exc:
        return result("error", EXIT_ERROR, f"could not run: base ref {req.base_ref or 'merge base'}: {exc}")
    except JetzeroError as exc:  # CouldNotRun, BaseRefMissing, EngineFailed while starting
        return result("error", EXIT_ERROR, f"could not run: {exc}")
    return result(*_verdict(gates))


def _match(plan: WorkPlan, hooks: Hooks, state: dict) -> GateOutcome:
    """The match gate: over WORK when ``hooks.work`` finds agents, else here."""
    start = time.perf_counter()
    remote = hooks.work(plan) if hooks.work is not None and plan.gate.work.enabled else None
    if remote is not None:
        state["match"], state["played_by"] = remote.outcome, remote.played_by
        extra = {"pairs_remote": float(remote.pairs_remote),
                 "pairs_local": float(remote.outcome.pairs - remote.pairs_remote),
                 "units": float(remote.units), "units_here": float(remote.units_here)}
        return gate_outcome(remote.outcome, plan.gate, time.perf_counter() - start, where=remote.where(),
                            extra=extra)
    candidate, base = plan.engines
    outcome, state["match"] = match_gate(plan.game, candidate, base, plan.gate, seed=plan.seed,
                                         progress=plan.progress)
    state["played_by"] = {f"local:{socket.gethostname()}": state["match"].pairs}
    return outcome


def _run(name: str, hooks: Hooks, body: Callable[[], GateOutcome]) -> GateOutcome:
    """A gate's outcome; an engine or jetzero error inside it is that gate's ``error``."""
    hooks.gate_started(name)
    start = time.perf_counter()
    try:
        outcome = body()
    except JetzeroError as exc:
        outcome = GateOutcome(gate=name, status="error", message=str(exc)[:1000],
                              seconds=time.perf_counter() - start)
    hooks.gate_done(outcome)
    return outcome
