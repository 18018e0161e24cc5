"""Feature engine speed and memory: the full default registry, Alpha158, and five indicators vs TA-Lib.

Usage:
    python benchmarks/bench_features.py [--symbols 10] [--bars 100000] [--repeats 3]
    python benchmarks/bench_features.py --growth 10,100,500,2000 [--growth-bars 2500] [--growth-total 1000000]

Data: a seeded random-walk panel (15-minute bars) of --symbols x --bars rows with OHLCV, vwap and
two ind__ columns (one of them ind__truth_*, which must not pass through), built in memory.
Numba compilation is excluded from every timing (a warm-up call on a small panel first; its time
is printed). Times are best-of --repeats (median in brackets) wall seconds; the machine is shared,
so the median shows the noise. Prints numbers only; asserts nothing about time.

What is timed
    default registry   compute_features(panel, FeaturesConfig(), labels): every family except
                       Alpha158, regime labels passed in (labelling itself timed separately),
                       float32 frame out.
    alpha158           compute_features(panel, FeaturesConfig(families=("alpha158",))).
    per indicator      ours: the registered spec functions called per symbol exactly as the
                       pipeline calls them (float64 out); and end to end through compute_features
                       (include=(...), float32 frame). TA-Lib: its C function per symbol on the same
                       float64 arrays, plus the numpy needed to produce the same quantity
                           RSI        talib.RSI(close, 14)                      vs rsi_14
                           MACD       talib.MACD(close, 12, 26, 9)              vs macd, macd_signal, macd_hist
                           ATR        talib.ATR(high, low, close, 14)           vs atr_14
                           BB width   BBANDS(close, 20, 2, 2) -> (u - l) / m    vs bb_width_20
                           rvol       STDDEV(diff(log close), 20) * sqrt(20/19 * ppy)  vs rvol_20
Growth in symbols (--growth S1,S2,...): CPU seconds (time.process_time, one thread) per million rows
of the cross-asset family alone (mkt_ret_1/20, xs_disp_1, xs_rank_5/20: their kernels on the panel's
time groups, logret inputs precomputed) and of the whole default registry, at each symbol count
with (a) fixed bars per symbol (--growth-bars; total rows grow with S) and (b) a fixed total
(--growth-total rows; bars = total / S), and the growth exponent b of CPU ~ rows^b (a) and of
CPU ~ S^b at a fixed total (b): linear in rows is b = 1 in (a), b = 0 in (b). Regime labels are
random categories of the real label columns (labelling is timed in bench_regimes.py, not here).
Also the feature frame's dtypes and the peak traced memory of compute_features at each size.

Peak memory (1M-row panel unless --bars/--symbols say otherwise): numpy allocations traced by
tracemalloc during compute_features (the panel itself excluded), and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
import tracemalloc

import numpy as np
import pandas as pd

from plus_ultra_ml.config import FeaturesConfig, RegimeConfig
from plus_ultra_ml.features.pipeline import compute_features, panel_groups
from plus_ultra_ml.features.registry import default_registry

PPY = 35064.0  # 15-minute bars, around the clock


def make_panel(n_symbols: int, n_bars: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.date_range("2020-01-01", periods=n_bars, freq="15min", tz="UTC")
    parts = []
    for i in range(n_symbols):
        close = (20.0 + 10 * i) * np.exp(np.cumsum(rng.normal(0, 0.003, n_bars)))
        open_ = close * np.exp(rng.normal(0, 0.001, n_bars))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.001, n_bars)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.001, n_bars)))
        volume = np.exp(rng.normal(10, 0.5, n_bars))
        index = pd.MultiIndex.from_arrays([np.full(n_bars, f"S{i:03d}"), times], names=["symbol", "timestamp"])
        parts.append(pd.DataFrame({
            "open": open_, "high": high, "low": low, "close": close, "volume": volume,
            "vwap": (high + low + close) / 3, "ind__sentiment": rng.normal(0, 1, n_bars),
            "ind__truth_oracle": rng.normal(0, 1, n_bars),
        }, index=index))
    panel = pd.concat(parts)
    panel.index = panel.index.set_levels(panel.index.levels[0].astype("category"), level=0)
    return panel


def timed(fn, repeats: int) -> tuple[float, float]:
    """(best, median) wall seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def labels_for(panel: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    from plus_ultra_ml.data.regimes import label_regimes

    start = time.perf_counter()
    labels = label_regimes(panel, RegimeConfig())
    return labels, time.perf_counter() - start


def per_indicator(panel: pd.DataFrame, repeats: int) -> list[tuple[str, float, float, float]]:
    """[(indicator, ours kernels s, ours pipeline s, talib s)] best-of-repeats."""
    import talib

    groups = panel_groups(panel, with_time_groups=False)
    cols = {c: np.ascontiguousarray(panel[c].to_numpy(dtype=np.float64)) for c in ("high", "low", "close")}
    slices = [(int(s), int(e)) for s, e in zip(groups.starts, groups.ends)]
    registry = default_registry()

    def ours(names):
        def run():
            for s, e in slices:
                values = {}
                for name in names:
                    spec = registry[name]
                    args = [values[i] if i in values else cols[i][s:e] for i in spec.inputs]
                    runtime = {"periods_per_year": PPY} if spec.runtime else {}
                    values[name] = spec.fn(*args, **spec.params, **runtime)
        return run

    def pipeline(names):
        cfg = FeaturesConfig(include=tuple(names), periods_per_year=PPY)
        return lambda: compute_features(panel, cfg)

    def per_symbol(fn):
        def run():
            for s, e in slices:
                fn(*(cols[c][s:e] for c in ("high", "low", "close")))
        return run

    def bb(h, l, c):
        upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
        return (upper - lower) / middle

    def rvol(h, l, c):
        return talib.STDDEV(np.diff(np.log(c)), 20, 1.0) * np.sqrt(20 / 19 * PPY)

    cases = [
        ("RSI(14)", ["rsi_14"], lambda h, l, c: talib.RSI(c, 14)),
        ("MACD(12,26,9)", ["macd", "macd_signal", "macd_hist"], lambda h, l, c: talib.MACD(c, 12, 26, 9)),
        ("ATR(14)", ["atr_14"], lambda h, l, c: talib.ATR(h, l, c, 14)),
        ("Bollinger width(20,2)", ["bb_width_20"], bb),
        ("realised vol(20)", ["rvol_20"], rvol),
    ]
    rows = []
    for label, names, reference in cases:
        for fn in (ours(names), pipeline(names), per_symbol(reference)):
            fn()  # warm-up (allocator, caches)
        kernel, _ = timed(ours(names), repeats * 3)
        end_to_end, _ = timed(pipeline(names), repeats * 3)
        ta, _ = timed(per_symbol(reference), repeats * 3)
        rows.append((label, kernel, end_to_end, ta))
    return rows


def peak_memory(panel: pd.DataFrame, labels: pd.DataFrame, cfg: FeaturesConfig) -> tuple[float, float]:
    """(peak traced bytes during compute_features, output frame bytes)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    result = compute_features(panel, cfg, labels)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base, result.frame.memory_usage(index=False, deep=False).sum()


def random_labels(panel: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Regime labels with the real columns and categories (from label_regimes on a small panel),
    drawn at random: the feature step reads their codes; labelling's own cost is not this benchmark's."""
    template, _ = labels_for(make_panel(2, 400, seed=seed))
    rng = np.random.default_rng(seed)
    columns = {}
    for name in template.columns:
        categories = template[name].cat.categories
        codes = rng.integers(0, len(categories), len(panel))  # every bar labelled: windows need finite rows
        columns[name] = pd.Categorical.from_codes(codes, categories=categories)
    return pd.DataFrame(columns, index=panel.index)


def cross_asset_cpu(panel: pd.DataFrame) -> float:
    """CPU seconds of the cross-asset kernels on the panel (time groups built inside the timing)."""
    from plus_ultra_ml.features import cross_asset
    from plus_ultra_ml.features.returns import log_return

    groups0 = panel_groups(panel, with_time_groups=False)
    close = np.ascontiguousarray(panel["close"].to_numpy(np.float64))
    inputs = {}
    for k in (1, 5, 20):
        x = np.empty(len(panel))
        for s, e in zip(groups0.starts, groups0.ends):
            x[s:e] = log_return(close[s:e], k)
        inputs[k] = x
    start = time.process_time()
    groups = panel_groups(panel)
    for k in (1, 20):
        cross_asset.market_mean(inputs[k], groups)
    cross_asset.dispersion(inputs[1], groups)
    for k in (5, 20):
        cross_asset.cross_sectional_rank(inputs[k], groups)
    return time.process_time() - start


def _exponent(x: list[float], y: list[float]) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def growth(sizes: list[int], bars: int, total: int, repeats: int) -> None:
    """The symbol-growth table: CPU s per 1M rows of cross-asset and the default registry."""
    cfg = FeaturesConfig(periods_per_year=PPY)
    for label, shape in (("fixed bars", lambda s: bars), ("fixed total", lambda s: max(total // s, 60))):
        print(f"\n{label}: symbols x bars -> CPU s per 1M rows (best of {repeats}), peak traced MiB, frame dtypes")
        print(f"  {'symbols':>8}{'bars':>8}{'rows':>11}{'xs s':>9}{'xs s/M':>9}{'registry s':>12}{'reg s/M':>9}"
              f"{'peak MiB':>10}{'frame MiB':>10}  dtypes")
        rows_seen, xs_seen, reg_seen = [], [], []
        for n_symbols in sizes:
            n_bars = shape(n_symbols)
            panel = make_panel(n_symbols, n_bars)
            labels = random_labels(panel)
            rows = len(panel)
            xs = min(cross_asset_cpu(panel) for _ in range(repeats))
            reg = []
            for _ in range(repeats):
                start = time.process_time()
                result = compute_features(panel, cfg, labels)
                reg.append(time.process_time() - start)
                dtypes = sorted({str(d) for d in result.frame.dtypes})
                frame_mib = result.frame.memory_usage(index=False).sum() / 2**20
                del result
            peak, _ = peak_memory(panel, labels, cfg)
            print(f"  {n_symbols:>8,}{n_bars:>8,}{rows:>11,}{xs:>9.3f}{xs / rows * 1e6:>9.3f}{min(reg):>12.2f}"
                  f"{min(reg) / rows * 1e6:>9.3f}{peak / 2**20:>10.0f}{frame_mib:>10.0f}  {','.join(dtypes)}")
            rows_seen.append(rows), xs_seen.append(xs), reg_seen.append(min(reg))
            del panel, labels
        x = rows_seen if label == "fixed bars" else sizes
        what = "rows" if label == "fixed bars" else "symbols"
        print(f"  growth exponent b (CPU ~ {what}^b): cross-asset {_exponent(x, xs_seen):.2f}, "
              f"default registry {_exponent(x, reg_seen):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--growth", type=str, default="", help="symbol counts, e.g. 10,100,500,2000: growth table only")
    parser.add_argument("--growth-bars", type=int, default=2_500, help="bars per symbol of the fixed-bars rows")
    parser.add_argument("--growth-total", type=int, default=1_000_000, help="total rows of the fixed-total rows")
    args = parser.parse_args()
    if args.growth:
        small = make_panel(3, 500, seed=1)
        compute_features(small, FeaturesConfig(), labels_for(small)[0])  # numba compile / cache load
        cross_asset_cpu(small)
        growth([int(s) for s in args.growth.split(",")], args.growth_bars, args.growth_total, args.repeats)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"process peak RSS over the whole benchmark: {rss:.0f} MiB")
        return

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared with other work)")
    start = time.perf_counter()
    small = make_panel(3, 500, seed=1)
    compute_features(small, FeaturesConfig(alpha158=True), labels_for(small)[0])
    print(f"warm-up (numba compile or cache load, small panel): {time.perf_counter() - start:.2f} s")

    panel = make_panel(args.symbols, args.bars)
    rows = len(panel)
    print(f"panel: {args.symbols} symbols x {args.bars:,} bars = {rows:,} rows, "
          f"{panel.memory_usage(deep=True).sum() / 2**20:.0f} MiB")
    labels, label_s = labels_for(panel)
    print(f"regime labels (data.regimes.label_regimes, not a feature-engine cost): {label_s:.2f} s")

    default_cfg = FeaturesConfig(periods_per_year=PPY)
    result = compute_features(panel, default_cfg, labels)
    n_default = result.frame.shape[1]
    best, median = timed(lambda: compute_features(panel, default_cfg, labels), args.repeats)
    print(f"\ndefault registry: {n_default} features, {best:.2f} s best [{median:.2f} s median], "
          f"{rows / best / 1e6:.2f} M rows/s, {rows * n_default / best / 1e6:.0f} M values/s (target < 10 s)")
    print(f"  skipped: {dict(result.skipped)}")

    alpha_cfg = FeaturesConfig(families=("alpha158",), periods_per_year=PPY)
    n_alpha = compute_features(panel.iloc[: 2 * 500], alpha_cfg).frame.shape[1]
    best_a, median_a = timed(lambda: compute_features(panel, alpha_cfg), max(1, args.repeats - 1))
    print(f"alpha158: {n_alpha} features, {best_a:.2f} s best [{median_a:.2f} s median], "
          f"{rows / best_a / 1e6:.2f} M rows/s (target < 60 s)")

    print("\nper indicator, seconds for the whole panel (best of repeats); ratio = ours / TA-Lib (target <= 2)")
    print(f"  {'indicator':<24}{'ours kernels':>14}{'ours pipeline':>15}{'TA-Lib':>10}{'ratio':>8}{'ratio e2e':>11}")
    for label, kernel, end_to_end, ta in per_indicator(panel, args.repeats):
        print(f"  {label:<24}{kernel:>14.4f}{end_to_end:>15.4f}{ta:>10.4f}{kernel / ta:>8.2f}{end_to_end / ta:>11.2f}")

    del result
    peak_default, frame_default = peak_memory(panel, labels, default_cfg)
    peak_alpha, frame_alpha = peak_memory(panel, labels, FeaturesConfig(alpha158=True, periods_per_year=PPY))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\npeak memory, {rows:,} rows (tracemalloc, numpy allocations inside compute_features):")
    print(f"  default registry: peak {peak_default / 2**20:.0f} MiB, output frame {frame_default / 2**20:.0f} MiB float32")
    print(f"  default + alpha158: peak {peak_alpha / 2**20:.0f} MiB, output frame {frame_alpha / 2**20:.0f} MiB float32")
    print(f"  process peak RSS over the whole benchmark: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
