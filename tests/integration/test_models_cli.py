"""``jetzero models`` against a real server, on a tic-tac-toe run with a tiny net: list with
statuses, export verified by digest (round trip into another run), import refusals."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from engine.checkpoint import load_checkpoint_file, make_meta, save_checkpoint
from engine.network import DEFAULT_TICTACTOE_NETWORK, build_network
from scripts.cli import app
from streams import events as ev
from streams import names
from streams.objects import put_object, sha256
from tests.integration.test_promotion_cli import (  # noqa: F401 - config: the fixture
    RUN,
    TTT,
    add_model,
    all_events,
    candidate_file,
    config,
    in_log,
    refused_files,
    registry,
    seed_run,
)

pytestmark = pytest.mark.integration
GEN0 = f"{RUN}-gen0"


def models(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["models", *(str(a) for a in args)])
    print(result.output)  # shown when a test fails
    return result.exit_code, result.output


def test_export_round_trip_is_verified_by_digest(tmp_path, config, nats_settings):  # noqa: F811
    seed_run(nats_settings)
    recorded = registry(nats_settings).models[GEN0]
    code, out = models("export", "champion", "-o", tmp_path / "out" / "champ.pt", "--config", config)
    assert code == 0 and recorded.digest in out
    data = (tmp_path / "out" / "champ.pt").read_bytes()
    assert sha256(data) == recorded.digest
    _, meta = load_checkpoint_file(tmp_path / "out" / "champ.pt", TTT)
    assert meta.model_id == GEN0
    code, out = models("export", GEN0, "-o", tmp_path / "by-id.pt", "--config", config)
    assert code == 0 and (tmp_path / "by-id.pt").read_bytes() == data

    # into another run of the same game and architecture: the same bytes, one generation up
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace(f"run: {RUN}", "run: other"))
    in_log(nats_settings, lambda store: _seed_other(store))
    code, out = models("import", tmp_path / "by-id.pt", "--config", other)
    assert code == 0 and "imported" in out
    code, out = models("list", "--json", "--config", other)
    entry = next(e for e in json.loads(out) if e["model_id"] == GEN0)
    assert (entry["digest"], entry["generation"], entry["status"]) == (recorded.digest, 1, "new")
    code, out = models("import", tmp_path / "by-id.pt", "--config", other)
    assert code == 0 and "already in run other" in out


async def _seed_other(store) -> None:
    """Generation 0 of run ``other``: another tiny net of the same game and architecture."""
    net = build_network(TTT, DEFAULT_TICTACTOE_NETWORK, seed=5)
    data = save_checkpoint(net, make_meta(net, game=TTT, model_id="other-gen0"))
    name = names.model_object("other-gen0")
    digest = await put_object(store.log, names.OBJ_MODELS, name, data)
    await store.append(ev.CheckpointSaved.new("other", model_id="other-gen0", object_name=name,
                                              digest=digest, game="tictactoe", source="initial"))


def test_export_refuses_bytes_that_fail_their_digest_and_unknown_models(tmp_path, config, nats_settings):  # noqa: F811
    seed_run(nats_settings)

    async def tamper(store) -> None:  # the stored object replaced behind the log's back
        await put_object(store.log, names.OBJ_MODELS, names.model_object(GEN0), b"other bytes")

    in_log(nats_settings, tamper)
    code, out = models("export", "champion", "-o", tmp_path / "x.pt", "--config", config)
    assert code == 2 and "digest" in out and not (tmp_path / "x.pt").exists()
    code, out = models("export", "nobody", "-o", tmp_path / "y.pt", "--config", config)
    assert code == 2 and "no model nobody" in out


def test_import_refuses_corrupt_files_other_games_and_architectures(tmp_path, config, nats_settings):  # noqa: F811
    seed_run(nats_settings)
    before = all_events(nats_settings)
    for path, reason in refused_files(tmp_path):
        code, out = models("import", path, "--config", config)
        assert code == 2 and reason in " ".join(out.split()), path
    assert all_events(nats_settings) == before  # nothing recorded
    code, out = models("import", candidate_file(tmp_path / "good.pt", "good-model"), "--config", config)
    assert code == 0 and "imported good-model" in out
    assert registry(nats_settings).models["good-model"].source == "import"


def test_list_shows_every_model_with_its_status_elo_and_digest(config, nats_settings):  # noqa: F811
    seed_run(nats_settings)

    async def story(store) -> None:
        for seed, model in enumerate(["m1", "m2", "m3", "m4"], start=1):
            await add_model(store, model, 1, seed=seed, source="trainer")
        await store.append(ev.MatchScheduled.new(RUN, match_id="x2",
                                                 candidate=ev.PlayerSpec(kind="model", model_id="m2"),
                                                 opponent=ev.PlayerSpec(kind="model", model_id=GEN0)))
        await store.append(ev.MatchCompleted.new(RUN, match_id="x2", verdict="reject", pairs=4,
                                                 pentanomial=[1, 1, 1, 1, 0], elo=-40.0, elo_ci95=90.0,
                                                 llr=-3.0, lower=-2.9, upper=2.9))
        await store.append(ev.CandidateRejected.new(RUN, model_id="m2", reason="sprt: H0"))
        await store.append(ev.CandidatePromoted.new(RUN, model_id="m1", previous_champion=GEN0,
                                                    generation=1))
        await store.append(ev.CandidatePromoted.new(RUN, model_id="m3", previous_champion="m1",
                                                    generation=1))

    in_log(nats_settings, story)
    first = registry(nats_settings).promotions[1].seq  # m1's promotion

    async def rollback(store) -> None:
        await store.append(ev.ChampionRolledBack.new(RUN, to_promotion_seq=first, model_id="m1",
                                                     reverted_models=["m3"], reason="test"))

    in_log(nats_settings, rollback)
    code, out = models("list", "--json", "--config", config)
    assert code == 0
    entries = {e["model_id"]: e for e in json.loads(out)}
    assert {m: e["status"] for m, e in entries.items()} == {
        GEN0: "promoted", "m1": "champion", "m2": "rejected", "m3": "reverted", "m4": "new"}
    recorded = registry(nats_settings).models
    assert all(e["digest"] == recorded[m].digest and e["generation"] == recorded[m].generation
               for m, e in entries.items())
    assert entries["m2"]["elo"] is not None and entries["m4"]["elo"] is None
    code, table = models("list", "--config", config)
    assert code == 0 and "reverted" in table and recorded["m4"].digest[:12] in table
