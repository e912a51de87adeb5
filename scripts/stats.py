"""``jetzero stats``: the rating math on numbers typed at the command line.

    jetzero stats sprt --pentanomial 43,61,144,55,37 --elo0 0 --elo1 2 --model normalized
    jetzero stats elo --trinomial 90,200,110 --json
    jetzero stats glicko2 --rating 1500 --rd 200 --volatility 0.06 --tau 0.5 \
        --game 1400,30,1 --game 1550,100,0 --game 1700,300,0

Counts are from the candidate's point of view: ``--trinomial L,D,W`` per game or
``--pentanomial LL,LD,WLDD,WD,WW`` per colour-swapped game pair. Option values are parsed
here rather than by typer so that any bad argument gives one ``error: ...`` line on stderr
and exit code 2.
"""

from __future__ import annotations

import math
from typing import NoReturn

import msgspec
import typer

from engine.glicko2 import Rating, rate
from engine.rating import EloEstimate, elo_from_pentanomial, elo_from_trinomial, sprt
from engine.sprt import MODELS

app = typer.Typer(
    name="stats",
    help="Elo, likelihood of superiority and SPRT from match results.",
    no_args_is_help=True,
    add_completion=False,
)

USAGE_ERROR = 2
_LENIENT = {"allow_extra_args": True, "ignore_unknown_options": True}

_PENTANOMIAL_HELP = "Game-pair counts LL,LD,WLDD,WD,WW (WLDD = one win one loss, or two draws)."
_TRINOMIAL_HELP = "Game counts L,D,W."
_JSON_HELP = "Print one JSON object instead of text."


@app.command("sprt", context_settings=_LENIENT)
def sprt_command(
    ctx: typer.Context,
    pentanomial: str | None = typer.Option(None, metavar="LL,LD,WLDD,WD,WW", help=_PENTANOMIAL_HELP),
    trinomial: str | None = typer.Option(None, metavar="L,D,W", help=_TRINOMIAL_HELP),
    elo0: str | None = typer.Option(None, metavar="FLOAT", help="Elo of H0 (required)."),
    elo1: str | None = typer.Option(None, metavar="FLOAT", help="Elo of H1 (required)."),
    model: str = typer.Option("logistic", metavar="logistic|normalized", help="Elo model of the bounds."),
    alpha: str = typer.Option("0.05", metavar="FLOAT", help="False-acceptance rate."),
    beta: str = typer.Option("0.05", metavar="FLOAT", help="False-rejection rate."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Log-likelihood ratio, Wald bounds and verdict of an SPRT, with the Elo estimate."""
    _no_extra(ctx)
    kind, counts = _counts(pentanomial, trinomial)
    if elo0 is None or elo1 is None:
        _fail("--elo0 and --elo1 are required")
    bounds = (_number("--elo0", elo0), _number("--elo1", elo1))
    if model not in MODELS:
        _fail(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    rates = (_number("--alpha", alpha), _number("--beta", beta))
    try:
        result = sprt(counts, bounds[0], bounds[1], alpha=rates[0], beta=rates[1], model=model)  # type: ignore[arg-type]
        estimate = _estimate(kind, counts) if sum(counts) else None
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        report = {
            kind: counts,
            "model": model,
            "elo0": bounds[0],
            "elo1": bounds[1],
            "alpha": rates[0],
            "beta": rates[1],
            **msgspec.structs.asdict(result),
            "estimate": None if estimate is None else msgspec.structs.asdict(estimate),
        }
        typer.echo(msgspec.json.encode(report).decode())
        return
    typer.echo(f"{kind:<11} {counts}")
    typer.echo(f"{'hypotheses':<11} H0 {bounds[0]:g}, H1 {bounds[1]:g} ({model} Elo)")
    typer.echo(
        f"{'LLR':<11} {result.llr:.3f} (bounds {result.lower:.3f}, {result.upper:.3f}; "
        f"alpha {rates[0]:g}, beta {rates[1]:g})"
    )
    typer.echo(f"{'verdict':<11} {result.verdict}")
    if estimate is not None:
        _print_estimate(estimate)


@app.command("elo", context_settings=_LENIENT)
def elo_command(
    ctx: typer.Context,
    pentanomial: str | None = typer.Option(None, metavar="LL,LD,WLDD,WD,WW", help=_PENTANOMIAL_HELP),
    trinomial: str | None = typer.Option(None, metavar="L,D,W", help=_TRINOMIAL_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Elo ± 95% interval, likelihood of superiority and normalized Elo."""
    _no_extra(ctx)
    kind, counts = _counts(pentanomial, trinomial)
    try:
        estimate = _estimate(kind, counts)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        report = {kind: counts, **msgspec.structs.asdict(estimate)}
        typer.echo(msgspec.json.encode(report).decode())
        return
    typer.echo(f"{kind:<11} {counts}")
    _print_estimate(estimate)


@app.command("glicko2", context_settings=_LENIENT)
def glicko2_command(
    ctx: typer.Context,
    rating: str = typer.Option("1500", metavar="FLOAT", help="The player's rating."),
    rd: str = typer.Option("350", metavar="FLOAT", help="The player's rating deviation."),
    volatility: str = typer.Option("0.06", metavar="FLOAT", help="The player's volatility."),
    tau: str = typer.Option("0.5", metavar="FLOAT", help="The system constant τ."),
    game: list[str] = typer.Option(
        [], metavar="OPP_RATING,OPP_RD,SCORE", help="One game of the period (repeat); none: an idle period."
    ),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """One Glicko-2 rating period (Glickman 2013): the new rating, RD and volatility."""
    _no_extra(ctx)
    player = Rating(_number("--rating", rating), _number("--rd", rd), _number("--volatility", volatility))
    games = [_glicko_game(text) for text in game]
    try:
        result = rate(player, games, _number("--tau", tau))
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(msgspec.json.encode(msgspec.structs.asdict(result)).decode())
        return
    typer.echo(f"{'games':<11} {len(games)}" + ("" if games else " (an idle period)"))
    typer.echo(f"{'rating':<11} {result.rating:.2f}")
    typer.echo(f"{'RD':<11} {result.rd:.2f}")
    typer.echo(f"{'volatility':<11} {result.volatility:.6f}")


def _glicko_game(text: str) -> tuple[Rating, float]:
    try:
        opp_rating, opp_rd, score = (float(part) for part in text.split(","))
    except ValueError:
        _fail(f"--game takes three numbers OPP_RATING,OPP_RD,SCORE, got {text!r}")
    if not all(map(math.isfinite, (opp_rating, opp_rd, score))):
        _fail(f"--game takes finite numbers, got {text!r}")
    if not opp_rd > 0:
        _fail(f"--game: the opponent's RD must be positive, got {text!r}")
    if not 0 <= score <= 1:
        _fail(f"--game: the score must be in [0, 1] (1 win, 0.5 draw, 0 loss), got {text!r}")
    return Rating(opp_rating, opp_rd), score


def _print_estimate(estimate: EloEstimate) -> None:
    typer.echo(f"{'Elo':<11} {estimate.elo:.2f} ± {_width(estimate.ci95)} (95%)")
    typer.echo(f"{'LOS':<11} {100 * estimate.los:.1f}%")
    typer.echo(f"{'nElo':<11} {estimate.nelo:.2f} ± {_width(estimate.nelo_ci95)} (95%)")
    typer.echo(f"{'games':<11} {estimate.games}")


def _width(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "inf"


def _estimate(kind: str, counts: list[int]) -> EloEstimate:
    if kind == "pentanomial":
        return elo_from_pentanomial(counts)
    return elo_from_trinomial(counts)


def _counts(pentanomial: str | None, trinomial: str | None) -> tuple[str, list[int]]:
    if (pentanomial is None) == (trinomial is None):
        _fail("give exactly one of --pentanomial LL,LD,WLDD,WD,WW or --trinomial L,D,W")
    if pentanomial is not None:
        return "pentanomial", _count_list("--pentanomial", pentanomial, 5)
    assert trinomial is not None
    return "trinomial", _count_list("--trinomial", trinomial, 3)


def _count_list(option: str, text: str, length: int) -> list[int]:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != length or not all(part.isascii() and part.isdigit() for part in parts):
        _fail(f"{option} takes {length} comma-separated non-negative integers, got {text!r}")
    return [int(part) for part in parts]


def _number(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        _fail(f"{option} takes a number, got {text!r}")
    if not math.isfinite(value):
        _fail(f"{option} takes a finite number, got {text!r}")
    return value


def _no_extra(ctx: typer.Context) -> None:
    if ctx.args:
        _fail(f"unexpected argument(s): {' '.join(ctx.args)} (see --help)")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


if __name__ == "__main__":
    app()
