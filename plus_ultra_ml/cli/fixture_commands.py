"""`plus-ultra fixture`: build the synthetic market database with its planted, documented signal."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from plus_ultra_ml.cli.common import console, err_console, user_errors

_DEFAULTS_HELP = "default: FixtureConfig"
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-^=]*$")


@user_errors
def fixture(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="the SQLite file to create")],
    symbols: Annotated[
        list[str] | None,
        typer.Option(
            "--symbols",
            help="symbols, after PATH: --symbols SPY QQQ IWM (or SPY,QQQ,IWM, or repeated); " + _DEFAULTS_HELP,
        ),
    ] = None,
    rows: Annotated[int | None, typer.Option(help="bars per symbol; " + _DEFAULTS_HELP)] = None,
    freq: Annotated[str | None, typer.Option(help="15min | 1h (24/7 grid) | 1D (business days)")] = None,
    alt_features: Annotated[int | None, typer.Option(help="alternative-data indicators alt_0..alt_{K-1}")] = None,
    seed: Annotated[int | None, typer.Option(help="same seed, same bytes; " + _DEFAULTS_HELP)] = None,
    universe: Annotated[int | None, typer.Option(
        help="build a universe of N generated stocks (U0001..) instead of --symbols: market + sector factor "
             "model, ragged listings, exchange sessions for 1D (fixture.universe, UniverseConfig)")] = None,
    sectors: Annotated[int | None, typer.Option(help="sectors of the universe (with --universe; default 11)")] = None,
    alt_ic: Annotated[float | None, typer.Option(
        help="with --universe: the mean per-date cross-sectional IC of alt_0 (default 0.03)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace PATH if it exists")] = False,
    config: Annotated[Path | None, typer.Option(help="experiment YAML whose `fixture` section is the base")] = None,
) -> None:
    """Build the synthetic regime-switching market (OHLCV, alt data, truth) into a new database.

    With --universe N: N stocks on the exchange calendar (XNYS for --freq 1D), a market and sector
    factor model, names that list late and delist early, and a planted cross-sectional signal
    (alt_0, sector momentum) whose dollar-neutral oracle the truth table keeps. Example:
    plus-ultra fixture data/universe.db --universe 500 --freq 1D --rows 2520 --seed 7
    """
    import time

    from pydantic import ValidationError
    from rich.table import Table

    from plus_ultra_ml.config import ConfigError, FixtureConfig, load_config
    from plus_ultra_ml.synthetic.fixture import build_fixture, fixture_grid

    names = _symbols(symbols, ctx.args)
    overrides = {"symbols": names, "rows": rows, "freq": freq, "alt_features": alt_features, "seed": seed}
    base = load_config(config).fixture.model_dump() if config else {}
    wanted = {"size": universe, "sectors": sectors, "alt_ic": alt_ic}
    if universe is None and (sectors is not None or alt_ic is not None) and not base.get("universe"):
        raise ConfigError("--sectors and --alt-ic shape a universe; add --universe N (or a fixture.universe section)")
    if any(v is not None for v in wanted.values()):
        if names:
            raise ConfigError("--symbols and --universe exclude each other: a universe names its own symbols")
        overrides["universe"] = {**(base.get("universe") or {}), **{k: v for k, v in wanted.items() if v is not None}}
    try:
        cfg = FixtureConfig(**{**base, **{k: v for k, v in overrides.items() if v is not None}})
    except ValidationError as error:
        problems = "; ".join(f"--{_option(e['loc'])}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"invalid fixture options: {problems}") from None
    if cfg.universe is not None:
        _build_universe(path, cfg, overwrite)
        return

    started = time.perf_counter()
    with err_console.status(f"building {len(cfg.symbols)} symbols x {cfg.rows:,} bars into {path}"):
        truth = build_fixture(path, cfg, overwrite=overwrite)
    elapsed = time.perf_counter() - started

    grid = fixture_grid(cfg)
    table = Table(title=f"fixture {path}", show_header=False)
    table.add_row("symbols", ", ".join(cfg.symbols))
    table.add_row("rows", f"{cfg.rows:,} bars x {len(cfg.symbols)} symbols = {cfg.rows * len(cfg.symbols):,}")
    table.add_row("time range (UTC)", f"{grid[0]:%Y-%m-%d %H:%M} .. {grid[-1]:%Y-%m-%d %H:%M} ({cfg.freq})")
    table.add_row("bars per year", f"{truth.bars_per_year:,.1f}")
    table.add_row("oracle IC (pooled)", f"{truth.oracle_ic:.4f}")
    table.add_row("alt IC (pooled)", ", ".join(f"{k} {v:.4f}" for k, v in truth.alt_ic.items()))
    costs = truth.costs
    cost_text = f"{costs['transaction_bps'] + costs['slippage_bps']:g} bps/turnover, {costs['holding_bps']:g} bps/bar held"
    table.add_row("oracle Sharpe gross / net", f"{truth.oracle_sharpe_gross:.2f} / {truth.oracle_sharpe_net:.2f} ({cost_text}; "
                  "best policy given the true mu, sigma and costs)")
    table.add_row("sign(mu) rule Sharpe gross / net", f"{truth.sign_oracle_sharpe_gross:.2f} / "
                  f"{truth.sign_oracle_sharpe_net:.2f} (the format-1 oracle, for comparison)")
    table.add_row("seed", str(cfg.seed))
    table.add_row("built in", f"{elapsed:.2f} s")
    console.print(table)


def _build_universe(path: Path, cfg, overwrite: bool) -> None:
    import time

    from rich.table import Table

    from plus_ultra_ml.synthetic.universe import build_universe, universe_grid

    started = time.perf_counter()
    with err_console.status(f"building a universe of {cfg.universe.size} symbols x {cfg.rows:,} bars into {path}"):
        truth = build_universe(path, cfg, overwrite=overwrite)
    elapsed = time.perf_counter() - started
    grid = universe_grid(cfg)
    symbols = truth.factor_model["symbols"]
    ic = truth.ic
    table = Table(title=f"universe fixture {path}", show_header=False)
    table.add_row("symbols", f"{len(symbols)} ({symbols[0]} .. {symbols[-1]}), {cfg.universe.sectors} sectors")
    late = sum(first != grid[0].strftime("%Y-%m-%dT%H:%M:%SZ") for first, _ in truth.listings.values())
    early = sum(last != grid[-1].strftime("%Y-%m-%dT%H:%M:%SZ") for _, last in truth.listings.values())
    table.add_row("listings", f"{late} list after the first bar, {early} delist before the last")
    table.add_row("time range (UTC)", f"{grid[0]:%Y-%m-%d} .. {grid[-1]:%Y-%m-%d} ({cfg.freq}, {len(grid):,} bars, "
                  f"calendar {truth.calendar})")
    table.add_row("bars per year", f"{truth.bars_per_year:,.1f}")
    table.add_row("oracle IC (mean per date)", f"{ic['truth_oracle']['ic']:.4f} (expected "
                  f"{truth.expected_ic['truth_oracle']:.4f}), rank IC {ic['truth_oracle']['rank_ic']:.4f}")
    table.add_row("alt IC (mean per date)", ", ".join(f"{k} {v['ic']:.4f}" for k, v in ic.items() if k.startswith("alt_")))
    table.add_row("sector momentum IC", f"{ic['truth_sector_momentum']['ic']:.4f}")
    table.add_row("dollar-neutral oracle Sharpe gross / net", f"{truth.oracle_sharpe_gross:.2f} / {truth.oracle_sharpe_net:.2f}")
    table.add_row("seed", str(cfg.seed))
    table.add_row("built in", f"{elapsed:.2f} s")
    console.print(table)


def _option(loc: tuple) -> str:
    """The command-line spelling of a FixtureConfig field (model-level checks concern --symbols)."""
    return str(loc[0]).replace("_", "-") if loc else "symbols"


def _symbols(option: list[str] | None, extra: list[str]) -> tuple[str, ...] | None:
    """--symbols values (comma-split) plus the bare words click left over after them."""
    from plus_ultra_ml.config import ConfigError

    if extra and not option:
        raise ConfigError(f"unexpected arguments {extra}; symbols go after PATH as --symbols {' '.join(extra)}")
    if not option:
        return None
    names = [name.strip() for value in [*option, *extra] for name in value.split(",") if name.strip()]
    bad = [name for name in names if not _SYMBOL.match(name)]
    if bad:
        raise ConfigError(f"--symbols: {bad} are not symbol names (letters, digits, . _ - ^ =)")
    return tuple(names)
