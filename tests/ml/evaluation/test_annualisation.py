"""Reports and held-out metrics annualise from the panel's resolved trading calendars, never from the
scored rows (issue 15: non-adjacent daily folds once gave 131 bars/year; the fixture 34,498, not 35,064)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from plus_ultra_ml.config import CostConfig, DataConfig, FixtureConfig
from plus_ultra_ml.data import calendar as C
from plus_ultra_ml.data.panel import build_panel
from plus_ultra_ml.evaluation.predictions import PERIODS_PER_YEAR
from plus_ultra_ml.evaluation.report import build_report, report_periods_per_year
from plus_ultra_ml.synthetic.fixture import build_fixture

COSTS = CostConfig(transaction_bps=1.0, slippage_bps=0.0, holding_bps=0.0)
XNYS_DAILY = C.get_calendar("XNYS").bars_per_year(pd.Timedelta("1D"))


def _two_far_folds(**attrs) -> pd.DataFrame:
    """Daily predictions of two folds a year apart (what `--fold` on non-adjacent folds scores)."""
    sessions = pd.DatetimeIndex(C.get_calendar("XNYS").sessions(pd.Timestamp("2015-01-01"),
                                                                 pd.Timestamp("2017-12-31"))).tz_localize("UTC")
    times = sessions[:250].append(sessions[500:750])
    rng = np.random.default_rng(0)
    index = pd.MultiIndex.from_arrays([pd.Categorical(["SPX"] * len(times)), times], names=["symbol", "timestamp"])
    frame = pd.DataFrame({"next_return": rng.normal(0, 0.01, len(times)), "position__buy_and_hold": 1.0,
                          "fold": np.repeat(["fold_a", "fold_c"], 250)}, index=index)
    frame.attrs.update(attrs)
    return frame


def test_report_annualises_with_the_recorded_calendar_on_non_adjacent_daily_folds():
    report = build_report(_two_far_folds(**{PERIODS_PER_YEAR: XNYS_DAILY}), COSTS)
    assert 251 < report.periods_per_year < 253 and report.periods_per_year == pytest.approx(XNYS_DAILY)
    assert "annualised with 252 bars/year" in report.notes[0]


def test_an_explicit_value_wins_and_a_missing_record_is_inferred_with_a_warning(caplog):
    assert report_periods_per_year(_two_far_folds(**{PERIODS_PER_YEAR: 300.0}), 252.0) == 252.0
    with caplog.at_level(logging.WARNING, logger="plus_ultra_ml.evaluation.report"):
        inferred = report_periods_per_year(_two_far_folds())
    assert "record no calendar annualisation" in caplog.text
    assert inferred == pytest.approx(XNYS_DAILY)  # the calendar inferred (holidays absent), not a row count


def test_the_fixture_panel_annualises_at_35064(tmp_path):
    db = tmp_path / "fixture.db"
    build_fixture(db, FixtureConfig(symbols=("AAA", "BBB"), rows=600, alt_features=1, seed=1))
    panel = build_panel(db, DataConfig(db_path=str(db))).panel
    assert C.panel_periods_per_year(panel) == pytest.approx(35_064.0)
    keep = np.random.default_rng(0).random(len(panel)) < 0.8  # a fifth of the bars gone: not a count
    assert C.panel_periods_per_year(panel[keep]) == pytest.approx(35_064.0)
    assert C.panel_periods_per_year(panel, pinned=1_000.0) == 1_000.0


def test_segment_annualisation_uses_what_the_windows_carry(caplog):
    from plus_ultra_ml.data.windows import WindowedData
    from plus_ultra_ml.evaluation.heldout import segment_periods_per_year

    hours = pd.date_range("2024-01-06", periods=50, freq="1h", tz="UTC").asi8  # a weekend: inferred 24/7
    data = WindowedData(*(np.zeros(1),) * 5, hours, [], [], 1, 1, None, None, periods_per_year=XNYS_DAILY)
    assert segment_periods_per_year(data) == XNYS_DAILY
    bare = WindowedData(*(np.zeros(1),) * 5, hours, [], [], 1, 1, None, None)
    with caplog.at_level(logging.WARNING, logger="plus_ultra_ml.evaluation.heldout"):
        assert segment_periods_per_year(bare) == pytest.approx(365.25 * 24)
    assert "carry no calendar annualisation" in caplog.text


@pytest.mark.slow
def test_walkforward_on_two_non_adjacent_daily_folds_reports_the_calendars_bars_per_year(tmp_path):
    from arch.data import sp500

    from plus_ultra_ml.cli import app
    from plus_ultra_ml.data.ingest import IngestOptions, ingest_frame
    from tests.ml.training.test_cli import ROOT, TINY

    frame = sp500.load().reset_index()
    frame["Date"] = frame["Date"].dt.strftime("%Y-%m-%d")
    db = tmp_path / "spx.db"
    ingest_frame(db, frame, IngestOptions(symbol="SPX", timezone="America/New_York", adjust_column="Adj Close"))
    folds = ["walkforward.n_folds=3", "walkforward.test_bars=250", "walkforward.val_bars=250",
             "walkforward.min_train_bars=1500", "walkforward.ppo=false", "regimes.min_history=100"]
    args = ["walkforward", "--config", str(ROOT / "configs" / "smoke.yaml"), "--db", str(db), "--out",
            str(tmp_path / "wf"), *TINY, *folds]
    listed = CliRunner().invoke(app, [*args, "--list"])
    assert listed.exit_code == 0, listed.output
    names = sorted({word for word in listed.output.split() if word.startswith("fold_")})
    assert len(names) == 3
    result = CliRunner().invoke(app, [*args, "--fold", names[0], "--fold", names[2]])
    assert result.exit_code == 0, result.output
    predictions = pd.read_parquet(tmp_path / "wf" / "predictions.parquet")
    assert sorted(predictions["fold"].unique()) == [names[0], names[2]]
    assert predictions.attrs[PERIODS_PER_YEAR] == pytest.approx(XNYS_DAILY)  # recorded by each fold
    assert "annualised with 252 bars/year" in (tmp_path / "wf" / "report.md").read_text()
