"""Trading calendars: resolution order, annualisation from the calendar, and what the data layer does
with them (no bar on a closed session, every missing open session a gap, daily stamps fixed to UTC)."""

from __future__ import annotations

import logging
import sqlite3

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import DataConfig
from plus_ultra_ml.data import calendar as C
from plus_ultra_ml.data.gaps import find_gaps
from plus_ultra_ml.data.ingest import IngestOptions, ingest_frame
from plus_ultra_ml.data.panel import build_panel
from plus_ultra_ml.data.validate import validate_database
from plus_ultra_ml.errors import DataContractError

UTC = "UTC"


def _candles(times: pd.DatetimeIndex, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, len(times))))
    return pd.DataFrame({"timestamp": times, "open": close, "high": close * 1.001, "low": close * 0.999,
                         "close": close, "volume": 1.0})


def _set_exchange(db, symbol: str, exchange: str) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE assets SET exchange = ? WHERE symbol = ?", (exchange, symbol))


@pytest.mark.parametrize(("name", "spacing", "expected"), [
    ("24/7", "15min", 35_064.0),  # 365.25 * 96: the fixture's grid
    ("24/7", "1h", 8_766.0),
    ("24/7", "1D", 365.25),
    ("24/5", "1D", 365.25 * 5 / 7),
    ("FX", "1h", 365.25 * 24 * 5 / 7),  # Sunday 17:00 to Friday 17:00 New York: 120 hours a week
])
def test_bars_per_year_of_regular_calendars(name, spacing, expected):
    assert C.get_calendar(name).bars_per_year(pd.Timedelta(spacing)) == pytest.approx(expected, rel=1e-12)


def test_exchange_codes_map_to_library_calendars_and_xnys_has_about_252_sessions():
    assert {C.get_calendar(code).name for code in ("XNYS", "NYSE", "nyse")} == {"XNYS"}
    assert C.get_calendar("NASDAQ").name == "XNAS"
    assert 251 < C.get_calendar("XNYS").periods_per_year < 253
    # 2024-07-04 is a holiday; 2024-07-03 closes early at 13:00 New York
    days = C.get_calendar("XNYS").expected_bars(pd.Timestamp("2024-07-01", tz=UTC), pd.Timestamp("2024-07-08", tz=UTC),
                                                pd.Timedelta("1D"))
    assert [d.day for d in days] == [1, 2, 3, 5, 8]
    hours = C.get_calendar("XNYS").expected_bars(pd.Timestamp("2024-07-03 13:30", tz=UTC),
                                                 pd.Timestamp("2024-07-03 20:30", tz=UTC), pd.Timedelta("1h"))
    assert len(hours) == 4  # 09:30..13:00 New York


def test_fx_week_opens_sunday_and_closes_friday_at_five_new_york():
    fx = C.get_calendar("FX")
    times = pd.to_datetime(["2024-03-08 21:59", "2024-03-08 22:00",  # Friday, EST: 17:00 NY = 22:00 UTC
                            "2024-03-10 20:59", "2024-03-10 21:00"], utc=True)  # Sunday, EDT: 21:00 UTC
    assert fx.is_open(times).tolist() == [True, False, False, True]


def test_unknown_names_are_errors_that_say_the_fix():
    with pytest.raises(DataContractError, match="unknown trading calendar 'MOON'.*XNYS"):
        C.get_calendar("MOON")
    times = {"AAA": pd.date_range("2024-01-01", periods=10, freq="B", tz=UTC)}
    with pytest.raises(DataContractError, match=r"symbol AAA: assets.exchange is 'MOON'.*set it to an exchange code"):
        C.resolve_calendars(times, {"AAA": "MOON"})


def test_resolution_order_exchange_then_config_then_inferred(caplog):
    hours = pd.date_range("2024-01-01", periods=24 * 14, freq="1h", tz=UTC)
    times = {s: hours[hours.dayofweek < 5] for s in ("AAA", "BBB")}
    resolved = C.resolve_calendars(times, {"AAA": "XNYS"}, "FX")
    assert (resolved["AAA"].name, resolved["BBB"].name) == ("XNYS", "FX")
    with caplog.at_level(logging.INFO, logger="plus_ultra_ml.data.calendar"):
        inferred = C.resolve_calendars(times)
    assert {c.name for c in inferred.values()} == {"24/5"}  # two weeks of weekday hours, no weekend bars
    assert "inferred from its timestamps: 24/5; pin it with data.calendar: 24/5" in caplog.text


@pytest.mark.parametrize(("times", "expected"), [
    (pd.date_range("2024-01-01", periods=2000, freq="1h", tz=UTC), "24/7"),
    (pd.bdate_range("2024-01-01", periods=300, tz=UTC), "24/5"),  # a business-day grid trades US holidays
    (pd.DatetimeIndex(C.get_calendar("XNYS").sessions(pd.Timestamp("2020-01-01"), pd.Timestamp("2021-01-01")))
     .tz_localize(UTC), "XNYS"),
])
def test_inference_from_the_data(times, expected):
    assert C.infer_calendar(times).name == expected


def test_periods_per_year_does_not_depend_on_how_many_bars_are_scored():
    days = pd.bdate_range("2020-01-01", periods=800, tz=UTC)
    scattered = days[np.r_[0:100, 400:500]]  # two non-adjacent folds
    assert C.periods_per_year(days) == C.periods_per_year(scattered) == C.periods_per_year(days[:30])


# --------------------------------------------------------------------------------------------
# the data layer on real sessions
# --------------------------------------------------------------------------------------------
def _us_daily(tmp_path, timezone: str):
    from arch.data import sp500

    frame = sp500.load().reset_index()
    frame["Date"] = frame["Date"].dt.strftime("%Y-%m-%d")  # dates, as a CSV from a data vendor has them
    db = tmp_path / "spx.db"
    ingest_frame(db, frame, IngestOptions(symbol="SPX", timezone=timezone, adjust_column="Adj Close"))
    return db, frame


@pytest.mark.parametrize("timezone", ["America/New_York", "UTC", "Asia/Tokyo"])
def test_daily_us_stock_gets_no_fake_bars_and_stamps_do_not_move_with_dst(tmp_path, timezone):
    # Before the calendar: with --timezone America/New_York and ffill_limit 2, the S&P 500 sample got
    # 85 invented bars (38 on DST weekends, 47 on market holidays).
    db, frame = _us_daily(tmp_path, timezone)
    built = build_panel(db, DataConfig(db_path=str(db), ffill_limit=2))
    times = built.panel.index.get_level_values("timestamp")
    assert built.filled_bars == 0 and len(built.panel) == len(frame)
    assert set(times.strftime("%H:%M:%S")) == {"00:00:00"}  # the session date's midnight UTC
    assert times[0] == pd.Timestamp(frame["Date"].iloc[0], tz=UTC)
    assert built.panel.attrs[C.CALENDAR_ATTR] == {"SPX": "XNYS"}  # inferred: its holidays have no bars
    assert not [i for i in validate_database(db).issues if i.rule in ("gap", "closed_session")]


def test_a_missing_us_session_is_filled_once_and_a_holiday_never(tmp_path):
    db, frame = _us_daily(tmp_path, "America/New_York")
    with sqlite3.connect(db) as connection:  # delete Wednesday 2012-07-03 (the 4th is a holiday)
        connection.execute("DELETE FROM series WHERE timestamp LIKE '2012-07-03%'")
    _set_exchange(db, "SPX", "NYSE")
    built = build_panel(db, DataConfig(db_path=str(db), ffill_limit=2))
    assert built.filled_bars == 1
    assert built.gaps[["after", "before", "missing_bars"]].values.tolist() == [
        [pd.Timestamp("2012-07-02", tz=UTC), pd.Timestamp("2012-07-05", tz=UTC), 1]]
    assert pd.Timestamp("2012-07-04", tz=UTC) not in built.panel.loc["SPX"].index


def test_24_7_hourly_series_with_3_percent_deleted_reports_every_hole(tmp_path):
    rng = np.random.default_rng(0)
    grid = pd.date_range("2023-01-01", periods=5000, freq="1h", tz=UTC)
    keep = np.sort(rng.choice(len(grid), size=int(len(grid) * 0.97), replace=False))
    db = tmp_path / "btc.db"
    ingest_frame(db, _candles(grid).iloc[keep], IngestOptions(symbol="BTC"))
    report = validate_database(db)
    (gap,) = [i for i in report.issues if i.rule == "gap"]
    assert gap.severity == "warning" and "150 open bars missing on calendar 24/7" in gap.message
    assert report.passed() and not report.passed(strict=True)  # validate warns; strict fails
    gaps = find_gaps(build_panel(db, DataConfig(db_path=str(db))).panel)
    assert int(gaps["missing_bars"].sum()) == len(grid) - len(keep)


def test_assets_exchange_decides_the_calendar_and_a_bad_one_is_an_error(tmp_path):
    grid = pd.date_range("2024-01-01", periods=24 * 21, freq="1h", tz=UTC)  # three weeks, 24/7
    db = tmp_path / "x.db"
    ingest_frame(db, _candles(grid), IngestOptions(symbol="AAA"))
    _set_exchange(db, "AAA", "24/5")
    report = validate_database(db)
    (closed,) = [i for i in report.issues if i.rule == "closed_session"]
    assert closed.count == 24 * 6  # three weekends on a weekday calendar (the last Sunday is partly outside)
    _set_exchange(db, "AAA", "MOON")
    (bad,) = [i for i in validate_database(db).issues if i.rule == "unknown_calendar"]
    assert bad.severity == "error" and "symbol AAA" in bad.message and "'MOON'" in bad.message
    with pytest.raises(DataContractError, match="symbol AAA: assets.exchange is 'MOON'"):
        build_panel(db, DataConfig(db_path=str(db)))


def test_data_calendar_applies_when_assets_exchange_is_empty(tmp_path):
    grid = pd.date_range("2024-01-01", periods=24 * 21, freq="1h", tz=UTC)
    db = tmp_path / "x.db"
    ingest_frame(db, _candles(grid), IngestOptions(symbol="AAA"))
    built = build_panel(db, DataConfig(db_path=str(db), calendar="FX"))
    assert built.panel.attrs[C.CALENDAR_ATTR] == {"AAA": "FX"}
    with pytest.raises(DataContractError, match="unknown trading calendar 'MOON'"):
        build_panel(db, DataConfig(db_path=str(db), calendar="MOON"))


def test_times_by_symbol_matches_a_mask_per_symbol_in_first_seen_order():
    """The one-pass grouping gives each symbol exactly its rows, in their order, symbols as first seen."""
    rng = np.random.default_rng(3)
    symbols = rng.choice(np.array(["B", "A", "C", "D"], dtype=object), size=400)
    times = pd.DatetimeIndex(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.permutation(400), unit="h"))
    grouped = C.times_by_symbol(symbols, times)
    assert list(grouped) == list(pd.unique(symbols))
    for name, got in grouped.items():
        assert got.equals(times[symbols == name])
        assert str(got.tz) == "UTC"
    assert C.times_by_symbol(np.array([], dtype=object), pd.DatetimeIndex([], tz="UTC")) == {}
