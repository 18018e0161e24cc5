"""Regime labels at growing size: ours (order-statistic tree) against pandas' expanding quantile, and the feature registry.

Usage:
    python benchmarks/bench_regimes.py [--symbols 10] [--rows 100000,300000,1000000,4000000]
        [--reference-max 1000000] [--repeats 2] [--lookback N]

Data: `bench_features.make_panel` (a seeded random-walk panel of 15-minute bars), --symbols names,
each row count split evenly over them. For every size it prints, best of --repeats, wall and CPU
seconds of
    ours        data.regimes.label_regimes (statistics + thresholds by data.order_statistics)
    pandas      the same labels with thresholds from groupby().expanding().quantile() (the
                implementation this replaced; the reference), up to --reference-max rows
    features    compute_features with the default registry (the issue's yardstick), up to
                --reference-max rows
and checks that both label sets are identical (it prints the number of differing cells). Times
interleave ours and the reference in one process; the machine may be shared, so CPU seconds are
printed too. The last column is the growth exponent of ours' CPU time between consecutive sizes
(log time ratio / log size ratio; CPU rather than wall so a shared machine bends it less): 1.0 is linear. Prints numbers only; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import PPY, make_panel  # noqa: E402

from plus_ultra_ml.config import FeaturesConfig, RegimeConfig  # noqa: E402
from plus_ultra_ml.data import regimes  # noqa: E402
from plus_ultra_ml.features.pipeline import compute_features  # noqa: E402


def pandas_labels(panel: pd.DataFrame, cfg: RegimeConfig) -> pd.DataFrame:
    """The reference: the same statistics, thresholds by pandas' per-symbol expanding/rolling quantile."""
    stats = regimes.regime_statistics(panel, cfg)
    ordered = stats.sort_index(level=["symbol", "timestamp"])
    count = ordered.groupby(level="symbol", observed=True, sort=False).cumcount().to_numpy() + 1
    out = {}
    for name, categories in regimes.REGIME_VOCABULARY.items():
        s = ordered[name]
        grouped = s.groupby(level="symbol", observed=True, sort=False)

        def windows():
            return grouped.expanding(min_periods=1) if cfg.lookback is None else grouped.rolling(cfg.lookback, min_periods=1)

        low = windows().quantile(cfg.low_quantile).droplevel(0).reindex(s.index).to_numpy()
        high = windows().quantile(cfg.high_quantile).droplevel(0).reindex(s.index).to_numpy()
        x = s.to_numpy()
        codes = np.where(x < low, 0, np.where(x > high, 2, 1))
        codes = np.where(np.isnan(x) | np.isnan(low) | np.isnan(high) | (count < cfg.min_history), -1, codes)
        out[name] = pd.Categorical.from_codes(codes, categories=list(categories), ordered=True)
    return pd.DataFrame(out, index=ordered.index).reindex(panel.index)


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(best wall s, CPU s of that call, result)."""
    best = (math.inf, math.inf, None)
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best[0]:
            best = (wall, cpu, result)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--rows", default="100000,300000,1000000,4000000")
    parser.add_argument("--reference-max", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lookback", type=int, default=None)
    args = parser.parse_args()
    cfg = RegimeConfig(lookback=args.lookback)
    features_cfg = FeaturesConfig(periods_per_year=PPY)

    warm = make_panel(2, 600, seed=1)
    regimes.label_regimes(warm, cfg)
    compute_features(warm, features_cfg, regimes.label_regimes(warm, cfg))  # numba compile / cache load

    print(f"regime labels, {args.symbols} symbols, lookback {cfg.lookback}; best of {args.repeats}; wall s [CPU s]")
    print(f"{'rows':>10}{'ours':>18}{'pandas':>18}{'ratio':>8}{'features':>18}{'ours/feat':>10}{'differ':>8}{'growth':>8}")
    previous = None
    for rows in (int(r) for r in args.rows.split(",")):
        panel = make_panel(args.symbols, rows // args.symbols)
        ours_wall, ours_cpu, ours = timed(lambda: regimes.label_regimes(panel, cfg), args.repeats)
        reference = feat = "-"
        ratio = per_feature = differ = "-"
        if rows <= args.reference_max:
            ref_wall, ref_cpu, ref = timed(lambda: pandas_labels(panel, cfg), args.repeats)
            feat_wall, feat_cpu, _ = timed(lambda: compute_features(panel, features_cfg, ours), args.repeats)
            reference, feat = f"{ref_wall:.2f} [{ref_cpu:.2f}]", f"{feat_wall:.2f} [{feat_cpu:.2f}]"
            ratio, per_feature = f"{ref_wall / ours_wall:.1f}x", f"{ours_wall / feat_wall:.2f}"
            differ = str(int(sum((ours[c].astype(str) != ref[c].astype(str)).sum() for c in ours.columns)))
        growth = "-" if previous is None else f"{math.log(ours_cpu / previous[1]) / math.log(rows / previous[0]):.2f}"
        print(f"{rows:>10,}{f'{ours_wall:.2f} [{ours_cpu:.2f}]':>18}{reference:>18}{ratio:>8}{feat:>18}"
              f"{per_feature:>10}{differ:>8}{growth:>8}")
        previous = (rows, ours_cpu)


if __name__ == "__main__":
    main()
