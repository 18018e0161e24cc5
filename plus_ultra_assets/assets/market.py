"""Market group: the database as an observable source, the validated panel, causal regime labels."""


import dagster as dg
import pandas as pd

from plus_ultra_assets.metadata import frame_summary, issues_table, last_bars_metadata
from plus_ultra_assets.resources import ArtifactsResource, ExperimentConfigResource, MarketDatabase

GROUP = "market"


@dg.observable_source_asset(
    key="market_db",
    group_name=GROUP,
    description="The user's SQLite candle database (read-only). Data version: per-symbol row counts and last bars "
    "(listed up to 20 symbols; above, summarised, with the whole table as parquet under metadata/market_db).",
)
def market_db(market_database: MarketDatabase, artifacts: ArtifactsResource) -> dg.ObserveResult:
    from plus_ultra_ml.data.store import data_version, series_summary

    path = market_database.resolve()
    summary = series_summary(path)
    version = data_version(summary)
    return dg.ObserveResult(
        data_version=dg.DataVersion(version),
        metadata={
            "db_path": dg.MetadataValue.path(str(path)),
            "symbols": len(summary),
            "rows": sum(int(s["rows"]) for s in summary.values()),
            **last_bars_metadata(summary, version, artifacts.root),  # summarised for a universe
        },
    )


@dg.asset(
    deps=[market_db],
    group_name=GROUP,
    io_manager_key="parquet_io",
    kinds={"sqlite", "pandas", "parquet"},
    check_specs=[
        dg.AssetCheckSpec("data_contract", asset="market_panel", blocking=True,
                          description="every validation rule of the data contract passes (errors block)"),
        dg.AssetCheckSpec("panel_schema", asset="market_panel", blocking=True,
                          description="the loaded panel matches the pandera PanelSchema"),
    ],
    description="Validated OHLCV (+ pivoted indicators) panel indexed by (symbol, timestamp), gaps forward-filled "
    "up to data.ffill_limit bars, never back-filled.",
)
def market_panel(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                 market_database: MarketDatabase):
    from plus_ultra_ml.data.panel import build_panel

    cfg = experiment.load()
    built = build_panel(market_database.resolve(), cfg.data)
    report = built.report
    yield dg.Output(
        built.panel,
        metadata={
            **frame_summary(built.panel),
            "db_path": dg.MetadataValue.path(str(built.db_path)),
            "db_fingerprint": built.db_fingerprint,
            "data_fingerprint": built.panel_fingerprint,
            "market_data_version": built.data_version,
            "config_hash": cfg.fingerprint(),
            "gaps": len(built.gaps),
            "bars_forward_filled": built.filled_bars,
            "validation_warnings": len(report.warnings),
        },
    )
    yield dg.AssetCheckResult(
        check_name="data_contract",
        passed=not report.errors,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if not report.errors else report.summary()[:2000],
        metadata={"errors": len(report.errors), "warnings": len(report.warnings),
                  "issues": issues_table(report.issues)},
    )
    yield dg.AssetCheckResult(
        check_name="panel_schema",
        passed=built.schema_error is None,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"schema_error": built.schema_error or "none"},
    )


@dg.asset(
    group_name=GROUP,
    io_manager_key="parquet_io",
    kinds={"pandas", "parquet"},
    check_specs=[
        dg.AssetCheckSpec("causal", asset="regime_labels", blocking=True,
                          description="removing future bars changes no past label (truncation test at random cuts)"),
    ],
    description="Volatility / liquidity / trend regimes per bar from expanding or rolling past-only thresholds.",
)
def regime_labels(context: dg.AssetExecutionContext, experiment: ExperimentConfigResource,
                  market_panel: pd.DataFrame):
    from plus_ultra_ml.data.causality import spread_cuts, truncation_mismatches
    from plus_ultra_ml.data.regimes import label_regimes

    cfg = experiment.load()
    labels = label_regimes(market_panel, cfg.regimes)
    mismatches = truncation_mismatches(lambda p: label_regimes(p, cfg.regimes), market_panel,
                                       spread_cuts(market_panel, n=3, seed=cfg.seed), full=labels)
    counts = {c: {str(k): int(v) for k, v in labels[c].value_counts(dropna=False).items()} for c in labels}
    yield dg.Output(labels, metadata={**frame_summary(labels), "label_counts": dg.MetadataValue.json(counts)})
    yield dg.AssetCheckResult(
        check_name="causal",
        passed=not mismatches,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"mismatches": dg.MetadataValue.json([m.__dict__ for m in mismatches[:10]]),
                  "cuts_checked": 3},
    )
