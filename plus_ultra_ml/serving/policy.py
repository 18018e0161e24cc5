"""Serving a PPO policy: its position at a bar, from the bars up to that bar only.

A PPO policy (rl/, `policy.pt`) is stateful: its action at bar t reads the position it held into t
and the net PnL of its last K decisions. A request/response service keeps no such state, so the
served position is defined from the data alone (`rl.evaluate.replay_positions`): the deterministic
policy walked from flat over the symbol's last `replay_bars` decision bars ending at t. By default
`replay_bars` is the episode length the policy was trained on (its lineage's
`rl.steps_per_rollout`); `service.policy_replay_bars` overrides it. The service (predictor.py, from
its bounded read) and `plus-ultra predict` (offline.py, from the whole history) compute it the same
way, so they agree bar for bar.

Forecasts of a served policy come from its network's forecast head (with the `frozen` PPO mode,
the supervised parent's, unchanged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from plus_ultra_ml.config import ServiceConfig, config_from_dict
from plus_ultra_ml.data.windows import Split, WindowedData, build_targets
from plus_ultra_ml.rl.evaluate import replay_positions
from plus_ultra_ml.rl.policy import RowEncoder
from plus_ultra_ml.rl.trained import TrainedPolicy

SEGMENT = "replay"


def replay_bars(policy: TrainedPolicy, service: ServiceConfig) -> int:
    """Decision bars walked from flat before each served position (see the module docstring)."""
    if service.policy_replay_bars is not None:
        return service.policy_replay_bars
    return config_from_dict(policy.lineage.config, source="the policy's lineage config").rl.steps_per_rollout


def policy_windowed(policy: TrainedPolicy, features: pd.DataFrame, panel: pd.DataFrame) -> WindowedData:
    """The policy's inputs over a (symbol, timestamp) frame: its features scaled with its scaler, the
    next-bar return and causal volatility from `panel`'s closes, symbol codes in the policy's vocabulary
    (minus one, as the env expects), and as `ends[SEGMENT]` every row whose window is complete and finite.

    features: unscaled, at least the policy's feature columns; panel: the same index, with `close`.
    """
    frame = features[list(policy.feature_names)]
    raw = frame.to_numpy(np.float32)  # (N, F)
    targets = build_targets(panel.reindex(frame.index), 1)
    volatility = targets.volatility.to_numpy(np.float64)
    symbols = pd.Categorical(frame.index.get_level_values("symbol"))
    model_ids = policy.policy.net.encode_symbols([str(c) for c in symbols.categories]).cpu().numpy()
    codes = model_ids[symbols.codes] - 1  # the env adds one back; a symbol outside the vocabulary is -1 (id 0)
    finite = np.isfinite(raw).all(axis=1)
    run = np.zeros(len(raw) + 1, dtype=np.int64)  # (N + 1,) prefix sums of finite rows
    np.cumsum(finite, out=run[1:])
    t = np.arange(policy.window - 1, len(raw))
    same = symbols.codes[t] == symbols.codes[t - policy.window + 1]
    ends = t[((run[t + 1] - run[t + 1 - policy.window]) == policy.window) & same & np.isfinite(volatility[t])]
    times = frame.index.get_level_values("timestamp")
    return WindowedData(
        features=np.nan_to_num(policy.scaler.transform(raw), nan=0.0),  # rows outside `ends` are never read
        targets=np.zeros((len(raw), 1), np.float32), next_return=np.nan_to_num(
            targets.next_return.to_numpy(np.float32), nan=0.0),  # the newest bar's is unknown: it earns nothing
        volatility=np.nan_to_num(volatility.astype(np.float32), nan=1.0),
        symbol_ids=codes.astype(np.int64), timestamps=times.asi8, feature_names=list(policy.feature_names),
        symbols=[str(c) for c in symbols.categories], window=policy.window, horizon=policy.horizon,
        split=Split({SEGMENT: (times.min(), times.max())}, 0), scaler=policy.scaler, ends={SEGMENT: ends},
    )


def served_positions(policy: TrainedPolicy, features: pd.DataFrame, panel: pd.DataFrame, bars: int, *,
                     latest_only: bool = False, batch_size: int = 1024) -> pd.Series:
    """The served position (replayed from flat over `bars` decision bars) at every decision row of the
    frame, or at each symbol's newest decision row (`latest_only`), on the (symbol, timestamp) index."""
    features = features.sort_index()  # runs of consecutive rows are consecutive bars of one symbol
    data = policy_windowed(policy, features, panel)
    rows = data.ends[SEGMENT]
    if latest_only and len(rows):
        last = np.r_[data.symbol_ids[rows[1:]] != data.symbol_ids[rows[:-1]], True]  # frames are symbol-sorted
        rows = rows[last]
    if not len(rows):
        return pd.Series(np.empty(0), index=features.index[:0], name="position")
    encoder = RowEncoder.of(policy.policy.net.backbone, data, batch_size)
    position = replay_positions(policy.policy, encoder, data, SEGMENT, rows, policy.env, bars)
    return pd.Series(position, index=features.index[rows], name="position")
