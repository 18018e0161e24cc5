"""Serving resolves trading calendars as training did (assets.exchange, data.calendar, lineage), never
from the request window; served gaps are judged against the calendar's sessions."""

from __future__ import annotations

import dataclasses
import sqlite3

import pandas as pd
import pytest

from plus_ultra_ml.checkpoints.supervised import load_checkpoint
from plus_ultra_ml.data import calendar as C
from plus_ultra_ml.data.ingest import IngestOptions, ingest_frame
from plus_ultra_ml.serving.calendars import resolve_served
from plus_ultra_ml.serving.history import read_recent
from plus_ultra_ml.serving.predictor import Predictor

UTC = "UTC"
QUARTER_HOUR = pd.Timedelta("15min")


@pytest.fixture(scope="module")
def lineage(checkpoint):
    return load_checkpoint(checkpoint).lineage


def _with(lineage, *, calendar: str | None = None, recorded: dict | None | bool = True):
    """The lineage with data.calendar set in its config and/or its recorded calendars replaced (False: removed)."""
    config = {**lineage.config, "data": {**lineage.config["data"], "calendar": calendar}}
    panel = dict(lineage.panel)
    if recorded is False:
        for key in ("calendars", "periods_per_year", "bar_spacing"):
            panel.pop(key, None)
    elif isinstance(recorded, dict):
        panel["calendars"] = recorded
    return dataclasses.replace(lineage, config=config, panel=panel)


def test_training_lineage_records_the_resolved_calendars_and_bars_per_year(training_data):
    record = training_data.panel_record()
    assert record["calendars"] == {"AAA": "24/7", "BBB": "24/7", "CCC": "24/7"}  # the fixture's assets.exchange
    assert record["bar_spacing"] == str(QUARTER_HOUR)
    assert record["periods_per_year"] == pytest.approx(35_064.0)
    assert training_data.panel_record(periods_per_year=9_000.0)["periods_per_year"] == 9_000.0  # pinned


def test_served_calendar_order_exchange_then_config_then_lineage(lineage, market, tmp_path):
    universe = ("AAA", "BBB", "CCC")
    xnys = {s: "XNYS" for s in universe}
    # nothing in the database read, no data.calendar: what training recorded (here: XNYS, not the data's 24/7)
    served = resolve_served(_with(lineage, recorded=xnys), universe)
    assert dict(served.names) == xnys
    assert served.periods_per_year == pytest.approx(C.get_calendar("XNYS").bars_per_year(QUARTER_HOUR))
    # the training config's data.calendar beats the recorded one
    served = resolve_served(_with(lineage, calendar="FX", recorded=xnys), universe)
    assert set(served.names.values()) == {"FX"}
    # assets.exchange of the served database beats both (the fixture stores 24/7)
    served = resolve_served(_with(lineage, calendar="FX", recorded=xnys), universe, db_path=market)
    assert set(served.names.values()) == {"24/7"}
    assert served.periods_per_year == pytest.approx(35_064.0)


def test_an_old_checkpoint_without_a_record_infers_from_the_training_span_not_the_request(lineage, market, tmp_path,
                                                                                          caplog):
    db = tmp_path / "no_exchange.db"
    db.write_bytes(market.read_bytes())
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE assets SET exchange = NULL")
    with caplog.at_level("INFO", logger="plus_ultra_ml.data.calendar"):
        served = resolve_served(_with(lineage, recorded=False), ("AAA", "BBB", "CCC"), db_path=db)
    assert set(served.names.values()) == {"24/7"}
    assert "inferred from its timestamps" in caplog.text  # the last resort says so
    assert served.periods_per_year == pytest.approx(35_064.0)
    # no database and nothing recorded: nothing is claimed (the featuriser infers from the bars, logged)
    bare = resolve_served(_with(lineage, recorded=False), ("AAA", "BBB", "CCC"))
    assert dict(bare.names) == {} and bare.periods_per_year is None


def test_predictor_annualises_from_the_calendar_without_reloading_the_training_panel(checkpoint, market,
                                                                                     monkeypatch):
    import plus_ultra_ml.data.store as store

    def refuse(*args, **kwargs):
        raise AssertionError("the training panel was reloaded to infer the annualisation")

    monkeypatch.setattr(store, "load_panel", refuse)  # calendars recorded in lineage: no full reload needed
    predictor = Predictor.load(checkpoint, db_path=market, warm=False)
    assert predictor.recipe.features.periods_per_year == pytest.approx(35_064.0)
    assert dict(predictor.recipe.calendars) == {"AAA": "24/7", "BBB": "24/7", "CCC": "24/7"}


# --------------------------------------------------------------------------------------------
# gaps of served history, on real US sessions
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spx(tmp_path_factory):
    """arch's S&P 500 daily sample, no assets.exchange, with the open session 2018-12-20 deleted."""
    from arch.data import sp500

    frame = sp500.load().reset_index()
    frame["Date"] = frame["Date"].dt.strftime("%Y-%m-%d")
    db = tmp_path_factory.mktemp("spx_serving") / "spx.db"
    ingest_frame(db, frame, IngestOptions(symbol="SPX", timezone="America/New_York", adjust_column="Adj Close"))
    with sqlite3.connect(db) as connection:
        connection.execute("DELETE FROM series WHERE timestamp LIKE '2018-12-20%'")
    return db


def test_served_gaps_are_missing_open_sessions_and_closed_sessions_are_not(spx):
    # the newest 20 stored bars span 2018-11-30 .. 2018-12-31: XNYS closes 12-05 (day of mourning) and 12-25
    recent = read_recent(spx, ["SPX"], 20, ffill_limit=2, calendars={"SPX": "XNYS"})
    assert recent.panel.attrs[C.CALENDAR_ATTR] == {"SPX": "XNYS"}
    assert recent.gaps[["after", "before", "missing_bars"]].values.tolist() == [
        [pd.Timestamp("2018-12-19", tz=UTC), pd.Timestamp("2018-12-21", tz=UTC), 1]]
    assert recent.filled_bars == 1
    times = recent.panel.loc["SPX"].index
    assert pd.Timestamp("2018-12-20", tz=UTC) in times
    assert pd.Timestamp("2018-12-25", tz=UTC) not in times and pd.Timestamp("2018-12-05", tz=UTC) not in times


def test_served_gaps_follow_the_calendar_given_not_a_guess(spx):
    # a 24/5 calendar (FX-like weekdays, no holidays) makes the two closed US sessions gaps too:
    # the calendar passed in decides, whatever the bars read look like
    recent = read_recent(spx, ["SPX"], 20, ffill_limit=0, calendars={"SPX": "24/5"})
    missing = set(recent.gaps["after"].dt.strftime("%Y-%m-%d"))
    assert missing == {"2018-12-04", "2018-12-19", "2018-12-24"}
    assert recent.filled_bars == 0
