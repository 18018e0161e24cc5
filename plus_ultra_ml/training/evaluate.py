"""A trained network's predictions on one segment's windows: the input of every held-out score.

`predict_segment` runs `SupervisedModule.model_step` (no gradient, eval mode) over the windows of
`WindowedData.ends[segment]`, whose inputs and targets lie wholly inside that segment, scaled with
statistics fitted on the training rows, and returns them as `evaluation.heldout.SegmentPredictions`
(forecasts in return units at each window's last bar, the position head, the realised targets).
Scoring them (IC, net Sharpe through the backtester, the baselines) is evaluation/heldout.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from plus_ultra_ml.data.windows import WindowedData
from plus_ultra_ml.evaluation.heldout import SegmentPredictions
from plus_ultra_ml.training.lit_modules import SupervisedModule


def predict_segment(module: SupervisedModule, data: WindowedData, segment: str = "test",
                    batch_size: int = 512) -> SegmentPredictions:
    """Run `module.model_step` over every window of `segment` (no gradient, eval mode)."""
    dataset = data.dataset(segment)
    if len(dataset) == 0:
        raise ValueError(f"segment {segment!r} has no windows to evaluate")
    device = module.device
    was_training = module.training
    module.eval()
    chunks: dict[str, list[np.ndarray]] = {}
    total, parts, count = 0.0, {}, 0
    try:
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                batch = {k: v.to(device) for k, v in batch.items()}
                step = module.model_step(batch)
                n = len(batch["x"])
                total += float(step.loss) * n
                for name, value in step.parts.items():
                    parts[name] = parts.get(name, 0.0) + float(value) * n
                count += n
                out = {
                    "forecast": (step.output.forecast[:, -1] * step.scale[:, -1]).double(),  # (B, H)
                    "position": step.output.position[:, -1].double(),  # (B,)
                    "target": batch["y"][:, -1].double(),  # (B, H)
                    "next_return": batch["r"][:, -1].double(),
                    "volatility": batch["vol"][:, -1].double(),
                    "symbol": batch["symbol"],
                    "end": batch["end"],
                }
                for key, value in out.items():
                    chunks.setdefault(key, []).append(value.cpu().numpy())
    finally:
        module.train(was_training)
    cat = {k: np.concatenate(v) for k, v in chunks.items()}
    H = cat["forecast"].shape[1]
    index = pd.MultiIndex.from_arrays(
        [pd.Categorical.from_codes(cat["symbol"], categories=data.symbols),
         pd.to_datetime(cat["end"], utc=True)], names=["symbol", "timestamp"])
    columns = {f"forecast_{h + 1}": cat["forecast"][:, h] for h in range(H)}
    columns["position"] = cat["position"]
    columns.update({f"target_{h + 1}": cat["target"][:, h] for h in range(H)})
    columns["next_return"] = cat["next_return"]
    columns["volatility"] = cat["volatility"]
    frame = pd.DataFrame(columns, index=index).sort_index()
    return SegmentPredictions(frame, total / count, {k: v / count for k, v in parts.items()}, segment)
