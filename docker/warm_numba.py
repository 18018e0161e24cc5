"""Compile the feature kernels once at image build time, so the first request does not wait ~15 s.

The numba kernels of plus_ultra_ml.features are decorated with cache=True; with NUMBA_CACHE_DIR
set (the images set it to a directory the runtime user can read) their machine code is written
there. This script builds a tiny synthetic market, computes every feature family (Alpha158
included) and the regime labels, which compiles each kernel for the float64 signatures the
pipeline uses. Prints what it compiled and how long it took.
"""

import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    from plus_ultra_ml.config import FeaturesConfig, FixtureConfig, RegimeConfig
    from plus_ultra_ml.data.regimes import label_regimes
    from plus_ultra_ml.data.store import load_panel
    from plus_ultra_ml.features.pipeline import compute_features
    from plus_ultra_ml.synthetic.fixture import build_fixture

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "warm.db"
        build_fixture(db, FixtureConfig(symbols=("AAA", "BBB", "CCC"), rows=600, alt_features=1, seed=1))
        panel = load_panel(db)
        regimes = label_regimes(panel, RegimeConfig(min_history=50))
        result = compute_features(panel, FeaturesConfig(alpha158=True), regimes)
    print(f"numba cache {os.environ.get('NUMBA_CACHE_DIR', '(beside the sources)')}: {result.frame.shape[1]} features "
          f"computed in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
