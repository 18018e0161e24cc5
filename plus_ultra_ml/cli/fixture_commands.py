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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace PATH if it exists")] = False,
    config: Annotated[Path | None, typer.Option(help="experiment YAML whose `fixture` section is the base")] = None,
) -> None:
    """Build the synthetic regime-switching market (OHLCV, alt data, truth) into a new database."""
    import time

    from pydantic import ValidationError
    from rich.table import Table

    from plus_ultra_ml.config import ConfigError, FixtureConfig, load_config
    from plus_ultra_ml.synthetic.fixture import build_fixture, fixture_grid

    names = _symbols(symbols, ctx.args)
    overrides = {"symbols": names, "rows": rows, "freq": freq, "alt_features": alt_features, "seed": seed}
    base = load_config(config).fixture.model_dump() if config else {}
    try:
        cfg = FixtureConfig(**{**base, **{k: v for k, v in overrides.items() if v is not None}})
    except ValidationError as error:
        problems = "; ".join(f"--{_option(e['loc'])}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"invalid fixture options: {problems}") from None

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
