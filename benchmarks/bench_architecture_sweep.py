"""Architecture sweep: architectures x widths x depths, trained and scored on the fixture, to a parquet catalogue.

Usage:
    python benchmarks/bench_architecture_sweep.py [--config configs/smoke.yaml] [--db data/fixture.db]
        [--architectures hybrid_transformer ...] [--widths 16 32] [--depths 1 2] [--seed 0]
        [--output $PLUS_ULTRA_HOME/benchmarks/architecture_sweep.parquet] [dotted overrides ...]

Every cell runs `plus_ultra_ml.training.fit.train_supervised` with the preset's `train:` budget (same
steps, same data, same seed) and only `model.architecture` / `model.backbone` changed. Depth means
`n_layers` (temporal_fusion: `n_attention_layers`). One row per cell: trained parameters, wall time,
steps, and the held-out (test tail) numbers: loss, IC next bar, IC / rank IC at horizon 1, the
position head's net Sharpe, the sign(forecast) net Sharpe, plus the best validation loss. The
catalogue is written atomically and printed as a Markdown table. The machine is shared: wall times
are noisy upper bounds.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench_supervised_ic import fixture_database, quiet
from plus_ultra_ml.artifacts import atomic_path, home
from plus_ultra_ml.config import load_config
from plus_ultra_ml.experiments.dataset import load_training_data
from plus_ultra_ml.training.fit import train_supervised

SIZES = {  # depth key and the other sizes of each architecture (small, CPU-friendly)
    "hybrid_transformer": ("n_layers", {"n_heads": 4, "d_state": 8, "ffn_mult": 2, "dropout": 0.1}),
    "omni_mixture": ("n_layers", {"n_heads": 4, "d_state": 8, "ffn_mult": 2, "pool": 8, "dropout": 0.1}),
    "moe_transformer": ("n_layers", {"n_heads": 4, "n_experts": 4, "top_k": 2, "expert_mult": 2, "dropout": 0.1}),
    "state_space": ("n_layers", {"d_state": 16, "expand": 2, "ffn_mult": 2, "dropout": 0.1}),
    "temporal_fusion": ("n_attention_layers", {"n_heads": 4, "lstm_layers": 1, "dropout": 0.1}),
}
COLUMNS = ("test_loss", "test_ic_next_bar", "test_ic_h1", "test_rank_ic_h1", "test_sharpe_net",
           "test_forecast_sharpe_net", "val_loss_best", "baseline_linear_ic_next_bar")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/smoke.yaml")
    parser.add_argument("--db", default="data/fixture.db")
    parser.add_argument("--architectures", nargs="+", default=list(SIZES))
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    quiet()

    db = fixture_database(Path(args.db))
    base = load_config(args.config, ["tracking.mode=disabled", f"data.db_path={db}", f"seed={args.seed}",
                                     *args.overrides])
    data = load_training_data(base, db)
    output = Path(args.output) if args.output else home() / "benchmarks" / "architecture_sweep.parquet"
    print(f"fixture {db}; preset {args.config} {' '.join(args.overrides)}; train budget: {base.train.epochs} epochs "
          f"x {base.train.limit_train_batches or 'all'} batches of {base.train.batch_size}; seed {args.seed}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="plus_ultra_sweep_") as root:
        for architecture, width, depth in itertools.product(args.architectures, args.widths, args.depths):
            depth_key, sizes = SIZES[architecture]
            backbone = {"d_model": width, depth_key: depth, **sizes}
            cfg = base.model_copy(update={"model": base.model.model_copy(
                update={"architecture": architecture, "backbone": backbone})})
            t0 = time.perf_counter()
            result = train_supervised(cfg, data, root=Path(root) / f"{architecture}-{width}-{depth}", resume=False)
            row = {"architecture": architecture, "width": width, "depth": depth,
                   "parameters": result.lineage.training["parameters"], "wall_s": time.perf_counter() - t0,
                   "steps": result.lineage.training["steps"], **{k: result.metrics.get(k) for k in COLUMNS}}
            rows.append(row)
            print(f"  {architecture} width {width} depth {depth}: {row['parameters']:,} params, {row['wall_s']:.0f} s, "
                  f"test loss {row['test_loss']:.4f}, IC {row['test_ic_next_bar']:.4f}", flush=True)
    table = pd.DataFrame(rows)
    table.attrs["plus_ultra.benchmark"] = {"config": args.config, "overrides": args.overrides, "seed": args.seed,
                                           "db": str(db)}
    with atomic_path(output) as tmp:
        table.to_parquet(tmp)
    print(f"catalogue: {output}")
    print(table.to_markdown(index=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
