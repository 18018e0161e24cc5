"""Features group: the registry's causal features + regime codes, one float32 column each."""

import dagster as dg
import pandas as pd

from plus_ultra_assets.metadata import frame_summary
from plus_ultra_assets.resources import ExperimentConfigResource

GROUP = "features"


@dg.asset(
    group_name=GROUP,
    io_manager_key="parquet_io",
    kinds={"pandas", "parquet", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec("finite_after_warmup", asset="feature_table", blocking=True,
                          description="no +-inf anywhere; no NaN after a feature's warm-up (alt data excepted)"),
        dg.AssetCheckSpec("causal", asset="feature_table", blocking=True,
                          description="truncating the future changes no past value (symbol sample, random cuts)"),
        dg.AssetCheckSpec("not_constant", asset="feature_table", blocking=True,
                          description="no feature is constant over the whole table"),
    ],
    description="Registry features (returns, momentum, volatility, volume, regime, spectral, cross-asset, alt) "
    "computed causally per symbol; parquet under the artifacts root, queryable with `plus-ultra sql`.",
)
def feature_table(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                  market_panel: pd.DataFrame, regime_labels: pd.DataFrame):
    from plus_ultra_ml.features.pipeline import compute_features
    from plus_ultra_ml.features.quality import (
        causality_spot_check,
        constant_columns,
        infinite_columns,
        nan_fraction_after_warmup,
    )

    cfg = experiment.load()
    result = compute_features(market_panel, cfg.features, regime_labels)
    frame = result.frame
    frame.attrs["plus_ultra.features"] = result.metadata()  # travels inside the parquet file
    nan_after = nan_fraction_after_warmup(result)
    late_nans = {k: v for k, v in nan_after.items() if v > 0 and not k.startswith("alt_")}
    infinite = infinite_columns(frame)
    constant = constant_columns(frame)
    mismatches = causality_spot_check(market_panel, result, cfg)
    yield dg.Output(frame, metadata={
        **frame_summary(frame),
        "feature_count": len(frame.columns),
        "feature_fingerprint": result.fingerprint,
        "skipped": dg.MetadataValue.json(dict(result.skipped)),
        "nan_fraction_after_warmup": dg.MetadataValue.json(nan_after),
        "regime_vocabulary": dg.MetadataValue.json({k: list(v) for k, v in result.vocabulary.items()}),
        "periods_per_year": result.periods_per_year or 0.0,
    })
    yield dg.AssetCheckResult(check_name="finite_after_warmup", passed=not infinite and not late_nans,
                              severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"infinite": dg.MetadataValue.json(infinite),
                                        "nan_after_warmup": dg.MetadataValue.json(late_nans)})
    yield dg.AssetCheckResult(check_name="causal", passed=not mismatches, severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"mismatches": dg.MetadataValue.json([m.__dict__ for m in mismatches[:10]])})
    yield dg.AssetCheckResult(check_name="not_constant", passed=not constant, severity=dg.AssetCheckSeverity.ERROR,
                              metadata={"constant": dg.MetadataValue.json(constant)})
