"""configs/daily.yaml plans, with no overrides, on a daily series of 8 years: at least one closed fold whose
training segment still has finite feature rows after the preset's warm-up (regimes.min_history etc.)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from plus_ultra_ml.config import load_config
from plus_ultra_ml.data.ingest import IngestOptions, ingest_frame
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.evaluation.walkforward import plan_folds
from plus_ultra_ml.experiments.dataset import load_training_data

DAILY = Path(__file__).resolve().parents[3] / "configs" / "daily.yaml"
EIGHT_YEARS = 8 * 252  # sessions


def test_daily_preset_is_expanding_without_forward_fill():
    cfg = load_config(DAILY)
    assert cfg.walkforward.mode == "expanding" and cfg.data.ffill_limit == 0
    assert all(isinstance(v, int) for v in (cfg.walkforward.test_bars, cfg.walkforward.val_bars,
                                             cfg.walkforward.min_train_bars))  # sessions, not calendar spans


def test_daily_preset_plans_on_eight_years_of_business_days():
    cfg = load_config(DAILY)
    days = pd.bdate_range("2010-01-04", periods=EIGHT_YEARS, tz="UTC")
    folds = plan_folds(days, cfg.walkforward, cfg.windows)
    assert len(folds) == cfg.walkforward.n_folds
    with pytest.raises(PlusUltraError, match="no closed walk-forward fold"):  # the floor is real: 4 years is too short
        plan_folds(days[: 4 * 252], cfg.walkforward, cfg.windows)


def test_daily_preset_first_fold_has_finite_training_rows_on_eight_years_of_sp500(tmp_path):
    from arch.data import sp500

    raw = sp500.load().iloc[:EIGHT_YEARS].reset_index()  # 1999-01 .. 2006-12
    db = tmp_path / "spx8.db"
    ingest_frame(db, raw, IngestOptions(symbol="SPX", adjust_column="Adj Close"))
    cfg = load_config(DAILY, [f"data.db_path={db}"])
    data = load_training_data(cfg, db)
    times = data.features.index.get_level_values("timestamp")
    folds = plan_folds(times, cfg.walkforward, cfg.windows)
    assert len(folds) >= 1
    first, last = folds[0].split.bounds["train"]
    train = data.features[(times >= first) & (times <= last)]
    finite = np.isfinite(train.to_numpy(np.float64)).all(axis=1)
    if data.regimes is not None:  # the regime labels are inputs too: labelled rows only
        labelled = data.regimes.reindex(train.index).notna().all(axis=1).to_numpy()
        finite &= labelled
    # enough finite rows for training windows (window + horizon each), well beyond the warm-up
    assert finite.sum() >= 10 * (cfg.windows.window + cfg.windows.horizon), (finite.sum(), len(train))
    assert finite[-1]  # the warm-up is at the start: the end of the training segment is usable
