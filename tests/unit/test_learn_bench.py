"""The pure parts of ``bench/learn_connect4.py``: the derived config of an isolated run, the
event counts fold, the grader on a tiny real checkpoint, the printed curve, and the target."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import yaml

from bench.learn_connect4 import (
    TARGET,
    Counts,
    EventCountsProjection,
    Observation,
    Point,
    _forward,
    _parse,
    abandon_grading,
    curve_table,
    derive_config,
    grade_checkpoint,
    point_line,
    print_ready,
    run_name,
    short_ids,
    target_status,
)
from engine.checkpoint import make_meta, save_checkpoint_file
from engine.games.connect4 import ConnectFour
from engine.network import NetworkConfig, build_network
from handlers.loop.config import load_loop_config
from projections.base import fold
from streams import events as ev

REPO = Path(__file__).resolve().parents[2]
TINY = NetworkConfig(blocks=0, channels=8, value_hidden=8)


def test_derived_config_is_isolated_and_keeps_the_rest(tmp_path: Path) -> None:
    base = yaml.safe_load((REPO / "config" / "unified_loop.yaml").read_text())
    base["nats"]["url"] = "nats://elsewhere:4222"  # even a config naming a server gets its own
    derived = derive_config(
        base,
        run="learn-c4-x",
        data_dir=tmp_path,
        nats_port=4999,
        metrics_port=5999,
        promotion_config=tmp_path / "promotion.yaml",
    )
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(derived))
    cfg = load_loop_config(path)
    assert cfg.run == "learn-c4-x" and cfg.nats.url is None and cfg.nats.port == 4999
    assert Path(cfg.nats.data_dir) == tmp_path / "nats"
    assert Path(cfg.supervisor.log_dir) == tmp_path / "logs"
    assert cfg.metrics.port == 5999 and cfg.promotion_config == str(tmp_path / "promotion.yaml")
    assert cfg.training.threshold_positions == base["training"]["threshold_positions"]
    assert [s.name for s in cfg.curriculum] == [s["name"] for s in base["curriculum"]]
    assert base["run"] == "main" and base["nats"]["url"] == "nats://elsewhere:4222"  # not mutated


def test_run_names_are_subject_tokens_with_a_timestamp() -> None:
    name = run_name(0.0)
    assert name.startswith("learn-c4-") and name.replace("-", "").isalnum()
    assert short_ids([f"{name}-gen3-abcdef12", "other"], name) == {
        f"{name}-gen3-abcdef12": "gen3-abcdef12",
        "other": "other",
    }


def test_counts_fold_counts_only_the_counted_tags() -> None:
    events = [
        ev.LoopStarted.new("r", by="me", reason="start"),
        ev.ProcessRestarted.new("r", by="supervisor", reason="crash", process="trainer"),
        ev.ProcessRestarted.new("r", by="supervisor", reason="crash", process="sync"),
        ev.LoopHalted.new("r", by="me", reason="halt"),
        *(
            ev.PoolBatchSynced.new(
                "r",
                shard_id=f"s{i}",
                object_name=f"s{i}",
                digest="d",
                games=2,
                positions=n,
                games_first_seq=i,
                games_last_seq=i,
            )
            for i, n in enumerate((30, 12))
        ),
    ]
    state = fold(EventCountsProjection(), events)
    assert state == Counts(
        by_tag={"process.restarted": 2, "loop.halted": 1, "pool.batch_synced": 2}, positions=42
    )
    assert state["candidate.promoted"] == 0


def _point(minutes: float, grades: dict | None, model: str = "m") -> Point:
    return Point("promotion", minutes, 1, model, 100, grades=grades)


def test_grader_lines_table_and_target_on_a_tiny_checkpoint(tmp_path: Path) -> None:
    game = ConnectFour()
    net = build_network(game, TINY, seed=1)
    path = tmp_path / "tiny.ckpt"
    save_checkpoint_file(path, net, make_meta(net, game=game, model_id="tiny"))
    grades = grade_checkpoint(str(path), 4, 9)
    assert grades["positions"] == 9 and grades["search_name"] == "net-mcts-4"
    assert grades["raw"]["overall"]["count"] == grades["search"]["overall"]["count"] == 9
    assert set(grades["search"]["bands"]) == {"8-14", "15-22", "23-30"}

    measured = _point(3.0, grades, "tiny")
    line = point_line(measured, "tiny")
    oo = 100 * grades["search"]["overall"]["outcome_optimal"]
    assert "net-mcts-4" in line and f"{oo:5.1f}" in line and "8-14" in line
    assert "not measured: no checkpoint" in point_line(
        Point("initial", 0, 0, "x", 0, error="no checkpoint"), "x"
    )
    table = curve_table(
        [measured, Point("rollback", 4.0, 0, "x", 5, error="gone")], {"tiny": "tiny", "x": "x"}
    )
    assert len(table.splitlines()) == 3 and "23-30" in table.splitlines()[0]

    strong = {
        **grades,
        "search": {
            **grades["search"],
            "overall": {
                **grades["search"]["overall"],
                "outcome_optimal": TARGET["outcome_optimal"],
                "exactly_optimal": TARGET["exactly_optimal"],
            },
        },
    }
    overall = grades["search"]["overall"]
    meets = (
        overall["outcome_optimal"] >= TARGET["outcome_optimal"]
        and overall["exactly_optimal"] >= TARGET["exactly_optimal"]
    )
    assert target_status([measured], whole_set=True)["reached"] == meets
    late = target_status([_point(TARGET["within_minutes"] + 1, strong)], whole_set=True)
    assert not late["reached"] and late["first_at_minutes"] is None
    hit = target_status([measured, _point(50.0, strong, "s")], whole_set=True)
    assert hit["reached"] and hit["model_id"] == "s" and hit["first_at_minutes"] == 50.0
    subset = target_status([_point(50.0, strong, "s")], whole_set=False)
    assert not subset["reached"] and subset["reached_on_subset"]


def test_points_print_in_order_once_their_grading_is_in(capsys) -> None:
    first: cf.Future[dict] = cf.Future()
    second: cf.Future[dict] = cf.Future()
    obs = Observation(
        points=[Point("initial", 0, 0, "a", 0, future=first), Point("promotion", 1, 1, "b", 9, future=second)]
    )
    second.set_exception(RuntimeError("boom"))
    print_ready(obs, {"a": "a", "b": "b"})
    assert obs.printed == 0 and capsys.readouterr().out == ""  # the first one holds the line
    first.set_exception(ValueError("bad checkpoint"))
    print_ready(obs, {"a": "a", "b": "b"})
    out = capsys.readouterr().out.splitlines()
    assert obs.printed == 2 and "ValueError: bad checkpoint" in out[0] and "RuntimeError: boom" in out[1]


def test_a_deferred_grade_settles_its_placeholder_with_the_result_or_the_error() -> None:
    done_ok, done_bad = cf.Future(), cf.Future()
    ok, bad = cf.Future(), cf.Future()
    _forward(done_ok, ok)
    _forward(done_bad, bad)
    assert not ok.done() and not bad.done()  # nothing until the grading is in
    done_ok.set_result({"positions": 3})
    done_bad.set_exception(ValueError("corrupt checkpoint"))
    assert ok.result() == {"positions": 3}
    assert isinstance(bad.exception(), ValueError)


def test_several_search_budgets_are_graded_and_judged_each_on_its_own(tmp_path: Path) -> None:
    game = ConnectFour()
    net = build_network(game, TINY, seed=2)
    path = tmp_path / "tiny.ckpt"
    save_checkpoint_file(path, net, make_meta(net, game=game, model_id="tiny"))
    grades = grade_checkpoint(str(path), [2, 6], 9)
    assert list(grades["searches"]) == ["net-mcts-2", "net-mcts-6"]
    assert grades["search_name"] == "net-mcts-2" and grades["search"] == grades["searches"]["net-mcts-2"]
    assert set(grades["seconds"]) == {"raw", "net-mcts-2", "net-mcts-6"}
    assert all(s["overall"]["count"] == 9 for s in grades["searches"].values())

    perfect = {**grades["searches"]["net-mcts-6"]["overall"], "outcome_optimal": 1.0, "exactly_optimal": 1.0}
    strong_at_6 = {
        **grades,
        "searches": {
            **grades["searches"],
            "net-mcts-6": {**grades["searches"]["net-mcts-6"], "overall": perfect},
        },
    }
    point = _point(10.0, strong_at_6, "tiny")
    assert target_status([point], whole_set=True, search="net-mcts-6")["reached"]
    assert target_status([point], whole_set=True, search="net-mcts-99")["first_at_minutes"] is None
    headline = grades["search"]["overall"]
    assert target_status([point], whole_set=True)["reached"] == (
        headline["outcome_optimal"] >= TARGET["outcome_optimal"]
        and headline["exactly_optimal"] >= TARGET["exactly_optimal"]
    )
    line, table = point_line(point, "tiny"), curve_table([point], {"tiny": "tiny"})
    assert "net-mcts-2" in line and "net-mcts-6" in line and "100.0 / 100.0" in line
    assert "mcts-2" in table.splitlines()[0] and "mcts-6" in table.splitlines()[0]


def test_sims_flag_takes_a_list_and_refuses_bad_ones(capsys) -> None:
    assert _parse(["--sims", "200,800"]).sims == [200, 800]
    assert _parse([]).sims == [200, 800]
    for bad in ("0", "200,200", "a,1", ""):
        try:
            _parse(["--sims", bad])
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"--sims {bad!r} was accepted")
    assert "--sims" in capsys.readouterr().err


def test_an_interrupted_grading_keeps_what_is_graded_and_marks_the_rest(capsys) -> None:
    graded: cf.Future[dict] = cf.Future()
    running: cf.Future[dict] = cf.Future()
    obs = Observation(
        points=[
            Point("initial", 0, 0, "a", 0, future=graded),
            Point("promotion", 1, 1, "b", 9, future=running),
        ]
    )
    graded.set_exception(ValueError("bad checkpoint"))
    abandon_grading(obs)
    print_ready(obs, {"a": "a", "b": "b"})
    out = capsys.readouterr().out.splitlines()
    assert obs.printed == 2 and "bad checkpoint" in out[0] and "grading interrupted" in out[1]
    assert obs.points[1].grades is None and not running.done()
