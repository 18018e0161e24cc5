"""A trained network's predictions on one segment's windows: the input of every held-out score.

`predict_segment` runs `SupervisedModule.model_step` (no gradient, eval mode) over the windows of
`WindowedData.ends[segment]`, whose inputs and targets lie wholly inside that segment, scaled with
statistics fitted on the training rows, and returns them as `evaluation.heldout.SegmentPredictions`
(forecasts in return units at each window's last bar, the position head, the realised targets).
The whole window's outputs feed the loss; the frame is read from the last bar's backbone state, and
with an `encoder` (models/encoder.py) those states are stored so nothing encodes these windows again.
`segment_frame` is the same frame from an encoder's states alone (no loss): the walk-forward fold's
train and test predictions. Scoring them (IC, net Sharpe through the backtester, the baselines) is
evaluation/heldout.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from plus_ultra_ml.data.windows import WindowDataset, WindowedData
from plus_ultra_ml.evaluation.heldout import SegmentPredictions
from plus_ultra_ml.models.encoder import RowEncoder
from plus_ultra_ml.models.network import PlusUltraNet
from plus_ultra_ml.training.datamodule import date_loader, dates_of
from plus_ultra_ml.training.lit_modules import SupervisedModule, horizon_scale


@torch.no_grad()
def frame_from_states(net: PlusUltraNet, states: Tensor, data: WindowedData, rows: np.ndarray) -> pd.DataFrame:
    """The prediction frame at decision rows (M,) from their last-bar backbone states (M, D).

    Columns forecast_1..H (return units: the head's volatility-scaled forecast times vol * sqrt(h)),
    position, target_1..H, next_return, volatility; index (symbol, timestamp), sorted."""
    device = net.position_head.linear.weight.device
    hidden = states.to(device, torch.float32)[:, None, :]  # (M, 1, D)
    forecast, _ = net.forecast_head(hidden)  # (M, 1, H)
    vol = torch.from_numpy(data.volatility[rows]).to(device)  # (M,)
    scale = horizon_scale(vol[:, None], forecast.shape[-1])  # (M, 1, H)
    forecast = (forecast[:, 0] * scale[:, 0]).double().cpu().numpy()  # (M, H)
    position = net.position_head(hidden)[:, 0].double().cpu().numpy()  # (M,)
    target = data.targets[rows].astype(np.float64)  # (M, H)
    index = pd.MultiIndex.from_arrays(
        [pd.Categorical.from_codes(data.symbol_ids[rows], categories=data.symbols),
         pd.to_datetime(data.timestamps[rows], utc=True)], names=["symbol", "timestamp"])
    columns = {f"forecast_{h + 1}": forecast[:, h] for h in range(forecast.shape[1])}
    columns["position"] = position
    columns.update({f"target_{h + 1}": target[:, h] for h in range(target.shape[1])})
    columns["next_return"] = data.next_return[rows].astype(np.float64)
    columns["volatility"] = data.volatility[rows].astype(np.float64)
    return pd.DataFrame(columns, index=index).sort_index()


def _segment_rows(data: WindowedData, segment: str) -> np.ndarray:
    rows = np.asarray(data.ends.get(segment, ()), dtype=np.int64)
    if len(rows) == 0:
        raise ValueError(f"segment {segment!r} has no windows to evaluate")
    return rows


def segment_frame(net: PlusUltraNet, encoder: RowEncoder, data: WindowedData, segment: str) -> pd.DataFrame:
    """`predict_segment`'s frame of `segment` from `encoder`'s states of `net`'s backbone (no loss)."""
    if encoder.backbone is not net.backbone:
        raise ValueError("the encoder must encode this network's own backbone")
    rows = _segment_rows(data, segment)
    was_training = net.training
    net.eval()
    try:
        return frame_from_states(net, encoder(torch.from_numpy(rows)), data, rows)
    finally:
        net.train(was_training)


def _evaluation_batches(module: SupervisedModule, data: WindowedData, segment: str, dataset: WindowDataset,
                        batch_size: int) -> tuple[np.ndarray | None, DataLoader]:
    """Batches in the order of `rows` (order None), or, when the module trains on cross-sections
    (train.cross_section), whole dates of about `batch_size` windows, so the cross-sectional loss terms
    see every name of a date; `order` then holds the dataset positions in loader order."""
    if module.train_cfg.cross_section is None:
        return None, DataLoader(dataset, batch_size=batch_size, shuffle=False)
    dates = dates_of(np.asarray(data.ends[segment]), data.timestamps)
    return np.concatenate(dates), date_loader(dataset, dates, batch_size)


def predict_segment(module: SupervisedModule, data: WindowedData, segment: str = "test",
                    batch_size: int = 512, encoder: RowEncoder | None = None) -> SegmentPredictions:
    """Run `module.model_step` over every window of `segment` (no gradient, eval mode).

    `encoder`: an encoder of `module.net.backbone` over `data`'s rows; the last-bar states of this pass
    are stored in it (they are exactly the states it would compute)."""
    if encoder is not None and (encoder.backbone is not module.net.backbone
                                or encoder.features.data_ptr() != torch.from_numpy(data.features).data_ptr()):
        raise ValueError("the encoder must encode this module's backbone over these windows' rows")
    rows = _segment_rows(data, segment)
    dataset = data.dataset(segment)
    device = module.device
    was_training = module.training
    module.eval()
    states: list[Tensor] = []
    total, parts, count = 0.0, {}, 0
    order, loader = _evaluation_batches(module, data, segment, dataset, batch_size)
    try:
        with torch.no_grad():
            for batch in loader:
                batch = {k: v.to(device) for k, v in batch.items()}
                step = module.model_step(batch)
                n = len(batch["x"])
                total += float(step.loss) * n
                for name, value in step.parts.items():
                    parts[name] = parts.get(name, 0.0) + float(value) * n
                count += n
                # a copy: a view of the last step (.cpu() is a no-op on the CPU) would keep every batch's
                # whole (B, T, D) output alive until the end: T times the states' memory
                states.append(step.output.hidden[:, -1].cpu().clone())  # (B, D)
            hidden = torch.cat(states)  # (M, D) in loader order
            if order is not None:  # date batches: back to the order of `rows`
                hidden = hidden[torch.from_numpy(np.argsort(order, kind="stable"))]
            if encoder is not None:
                encoder.put(torch.from_numpy(rows), hidden)
            frame = frame_from_states(module.net, hidden, data, rows)
    finally:
        module.train(was_training)
    return SegmentPredictions(frame, total / count, {k: v / count for k, v in parts.items()}, segment)
