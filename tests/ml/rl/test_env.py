"""The trading environment: rewards are the canonical PnL (= backtester), episodes stay in their
segment, observations never read the future, shaping uses the past only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from plus_ultra_ml.config import CostConfig, WindowsConfig
from plus_ultra_ml.data.windows import build_targets, build_windows, split_by_fraction
from plus_ultra_ml.evaluation.backtest import run_backtest
from plus_ultra_ml.objectives.pnl import position_pnl, position_pnl_numpy
from plus_ultra_ml.rl.env import EnvConfig, TradingEnv, episode_starts, segment_paths
from plus_ultra_ml.rl.policy import ActorCritic

from .conftest import COSTS, planted_data, planted_frames, tiny_net


def _data_and_panel(seed=0, bars=600, symbols=("AAA", "BBB")):
    features, panel = planted_frames(symbols=symbols, bars=bars, seed=seed)
    cfg = WindowsConfig(window=8, horizon=1, val_fraction=0.2, test_fraction=0.2)
    split = split_by_fraction(features.index.get_level_values("timestamp"), cfg)
    return build_windows(features, build_targets(panel, 1), split, cfg), panel


def _run(env: TradingEnv, starts, actions: torch.Tensor):
    """Step env from `starts` through actions (L, E); returns per-step rewards (L, E) and observations."""
    obs = env.reset(starts, actions.shape[0])
    rewards, observations = [], []
    for a in actions:
        observations.append(obs)
        step = env.step(a)
        rewards.append(step.reward)
        obs = step.next_obs
    return torch.stack(rewards), observations


def _backtest_episode(data, panel, start: int, actions: np.ndarray, costs: CostConfig) -> float:
    symbol = data.symbols[data.symbol_ids[start]]
    times = pd.to_datetime(data.timestamps[start : start + len(actions)], utc=True)
    close = panel["close"].xs(symbol, level="symbol").to_frame(symbol)
    positions = pd.DataFrame({symbol: actions}, index=times)
    return float(run_backtest(positions, close, costs).returns[symbol].sum())


def test_summed_rewards_equal_the_backtester_for_the_same_actions():
    data, panel = _data_and_panel()
    env = TradingEnv(data, "train", EnvConfig(COSTS))
    gen = torch.Generator().manual_seed(1)
    starts = env.sample_starts(6, 40, gen)
    actions = torch.rand(40, 6, generator=gen, dtype=torch.float64) * 2 - 1
    rewards, _ = _run(env, starts, actions)
    for e in range(6):
        expected = _backtest_episode(data, panel, int(starts[e]), actions[:, e].numpy(), COSTS)
        assert rewards[:, e].sum().item() == pytest.approx(expected, abs=1e-9)
        assert expected != 0.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_env_pnl_and_backtest_agree_on_random_paths(seed):
    """env (one bar at a time) == objectives.pnl (torch and numba, whole path) == run_backtest, to 1e-6."""
    rng = np.random.default_rng(seed)
    costs = CostConfig(transaction_bps=float(rng.uniform(0, 20)), slippage_bps=float(rng.uniform(0, 10)),
                       holding_bps=float(rng.uniform(0, 2)))
    data, panel = _data_and_panel(seed=seed, bars=500)
    env = TradingEnv(data, "train", EnvConfig(costs))
    L, E = 60, 5
    starts = env.sample_starts(E, L, torch.Generator().manual_seed(seed))
    # random positions with repeats (no trade) and both bounds
    actions = torch.from_numpy(rng.choice([-1.0, -0.3, 0.0, 0.25, 1.0, rng.uniform(-1, 1)], size=(L, E)))
    rewards, _ = _run(env, starts, actions)
    rows = starts[None, :] + torch.arange(L)[:, None]  # (L, E)
    r = torch.from_numpy(data.next_return).double()[rows]
    whole_path = position_pnl(actions.T, r.T, costs)  # (E, L)
    numba_path = position_pnl_numpy(actions.T.numpy(), r.T.numpy(), costs)
    for e in range(E):
        backtest = _backtest_episode(data, panel, int(starts[e]), actions[:, e].numpy(), costs)
        assert rewards[:, e].numpy() == pytest.approx(whole_path[e].numpy(), abs=1e-12)
        assert whole_path[e].numpy() == pytest.approx(numba_path[e], abs=1e-12)
        assert rewards[:, e].sum().item() == pytest.approx(backtest, abs=1e-6)


def test_episodes_live_inside_the_training_segment():
    data = planted_data()
    env = TradingEnv(data, "train", EnvConfig(COSTS))
    L = 64
    starts = env.sample_starts(4000, L, torch.Generator().manual_seed(0))
    env.reset(starts, L)
    rows = env.episode_rows(bootstrap=True).numpy()  # every bar visited, the bootstrap bar included
    assert np.isin(rows, data.ends["train"]).all()
    first, last = data.split.bounds["train"]
    times = data.timestamps[rows]
    assert (times >= first.value).all() and (times <= last.value).all()
    # one symbol per episode, consecutive bars
    assert (data.symbol_ids[rows] == data.symbol_ids[rows[:, :1]]).all()
    assert (np.diff(rows, axis=1) == 1).all()
    # every valid start can be drawn and none past the segment
    valid = env.valid_starts(L).numpy()
    assert set(np.unique(starts.numpy())) <= set(valid)
    assert valid.max() + L <= data.ends["train"].max()


def test_segment_paths_break_at_symbols_and_gaps():
    data = planted_data()
    ends = np.sort(data.ends["val"])
    gapped = dataclasses.replace(data, ends={**data.ends, "val": np.delete(ends, [10, 11])})
    paths = segment_paths(gapped, "val")
    assert len(segment_paths(data, "val").start) == len(data.symbols)  # one run per symbol ...
    assert len(paths.start) == len(data.symbols) + 1  # ... and the gap splits one of them
    assert paths.bars == len(ends) - 2
    for start, n in zip(paths.start, paths.length):
        run = np.arange(start, start + n)
        assert np.isin(run, gapped.ends["val"]).all()
        assert (gapped.symbol_ids[run] == gapped.symbol_ids[start]).all()
    with pytest.raises(Exception, match="no run of"):
        episode_starts(paths, int(paths.length.max()))


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_observation_never_reads_the_future(seed):
    """Perturb every row of the symbol after bar t_k: observations and policy outputs up to t_k do not change."""
    data = planted_data()
    net = tiny_net(data)
    policy = ActorCritic(net, EnvConfig(COSTS).state_dim)
    env = TradingEnv(data, "train", EnvConfig(COSTS))
    L, k = 30, 12
    starts = env.sample_starts(1, L, torch.Generator().manual_seed(seed))
    actions = torch.rand(L, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1

    def outputs(env):
        rewards, observations = _run(env, starts, actions)
        per_step = []
        with torch.no_grad():
            for obs in observations:
                windows = env.windows(obs.row)
                out = policy(policy.net.backbone(windows, obs.symbol)[:, -1], obs.state())
                per_step.append((windows, obs.state(), out.mean, out.value))
        return rewards, per_step

    rewards, before = outputs(env)
    cut = int(starts[0]) + k  # row of decision bar t_k
    future = (np.arange(len(data.features)) > cut) & (data.symbol_ids == data.symbol_ids[cut])
    rng = np.random.default_rng(seed)
    perturbed = dataclasses.replace(
        data,
        features=np.where(future[:, None], rng.normal(size=data.features.shape), data.features).astype(np.float32),
        next_return=np.where(future, rng.normal(0, 0.01, len(future)), data.next_return).astype(np.float32),
        volatility=np.where(future, rng.uniform(0.001, 0.01, len(future)), data.volatility).astype(np.float32),
    )
    rewards_p, after = outputs(TradingEnv(perturbed, "train", EnvConfig(COSTS)))
    for t in range(k + 1):
        for a, b in zip(before[t], after[t]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.equal(rewards[: k + 1], rewards_p[: k + 1])  # the reward at t_k earns r[t_k + 1], stored at row t_k
    assert not torch.equal(before[k + 1][0], after[k + 1][0])  # the perturbation does reach bar t_k + 1 ...
    assert not torch.equal(before[k + 1][2], after[k + 1][2])  # ... and the policy there
    assert not torch.equal(rewards[k + 1 :], rewards_p[k + 1 :])


def test_recent_pnl_is_the_past_net_pnl_in_volatility_units():
    data = planted_data()
    env = TradingEnv(data, "train", EnvConfig(COSTS, recent_pnl_bars=3))
    starts = env.sample_starts(2, 10, torch.Generator().manual_seed(0))
    actions = torch.full((10, 2), 0.5, dtype=torch.float64)
    rewards, observations = _run(env, starts, actions)
    obs = observations[5]
    vol = torch.from_numpy(data.volatility).double()[obs.row]
    torch.testing.assert_close(obs.recent_pnl * vol[:, None], rewards[2:5].T)
    assert torch.equal(obs.position, torch.full((2,), 0.5, dtype=torch.float64))
    assert torch.equal(observations[0].recent_pnl, torch.zeros(2, 3, dtype=torch.float64))


def test_drawdown_shaping_sums_to_pnl_minus_the_final_drawdown():
    data = planted_data()
    coef = 0.7
    plain = TradingEnv(data, "train", EnvConfig(COSTS))
    shaped = TradingEnv(data, "train", EnvConfig(COSTS, risk_shaping="drawdown", risk_coef=coef))
    starts = plain.sample_starts(5, 50, torch.Generator().manual_seed(2))
    actions = torch.rand(50, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2 - 1
    net, _ = _run(plain, starts, actions)
    reward, _ = _run(shaped, starts, actions)
    equity = torch.cat([torch.zeros(1, 5, dtype=torch.float64), net.cumsum(0)])
    final_drawdown = equity.cummax(0).values[-1] - equity[-1]
    torch.testing.assert_close(reward.sum(0), net.sum(0) - coef * final_drawdown)
    assert (final_drawdown > 0).any()


def test_differential_sharpe_starts_at_the_pnl():
    data = planted_data()
    plain = TradingEnv(data, "train", EnvConfig(COSTS))
    dsr = TradingEnv(data, "train", EnvConfig(COSTS, risk_shaping="differential_sharpe", risk_coef=1.0))
    starts = plain.sample_starts(4, 40, torch.Generator().manual_seed(2))
    actions = torch.full((40, 4), 0.8, dtype=torch.float64)
    net, _ = _run(plain, starts, actions)
    reward, _ = _run(dsr, starts, actions)
    torch.testing.assert_close(reward[0], net[0])  # D_1 * vol0 is the first PnL
    assert not torch.allclose(reward[1:], net[1:])
    assert torch.isfinite(reward).all()


def test_ended_episodes_hold_and_earn_nothing():
    data = planted_data()
    env = TradingEnv(data, "val", EnvConfig(COSTS))
    paths = env.paths
    starts = torch.tensor([int(paths.start[0]), int(paths.start[0])])
    obs = env.reset(starts, torch.tensor([3, 6]))
    for t in range(6):
        step = env.step(torch.tensor([0.5, -0.5], dtype=torch.float64))
        assert bool(step.active[0]) == (t < 3)
        if t >= 3:
            assert step.reward[0] == 0 and step.pnl.trading_cost[0] == 0
        assert bool(step.done[0]) == (t == 2) and bool(step.done[1]) == (t == 5)
        if t == 2:  # the state after its last step is the bar after its last bar (for bootstrapping)
            assert int(step.next_obs.row[0]) == int(starts[0]) + 3
        obs = step.next_obs
    assert int(obs.row[0]) == int(starts[0]) + 2 and float(obs.position[0]) == 0.5  # then it stays put


def test_actions_outside_the_position_range_are_refused():
    data = planted_data()
    env = TradingEnv(data, "train", EnvConfig(COSTS))
    env.reset(env.sample_starts(2, 5, torch.Generator().manual_seed(0)), 5)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        env.step(torch.tensor([1.5, 0.0]))
    with pytest.raises(ValueError, match="finite"):
        env.step(torch.tensor([float("nan"), 0.0]))
