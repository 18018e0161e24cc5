"""A sequential, cost-aware trading environment: many (symbol, start bar) episodes stepped at once.

The seed's "PPO" was a one-shot bandit with no portfolio state. Here an episode is a walk along
one symbol's bars, and what an agent did before matters: the position it holds into a bar decides
what a new target position costs, and its recent PnL is part of what it sees.

Bars and rows: the environment reads `WindowedData` arrays (one row per (symbol, bar), all
symbols stacked). An episode is a run of consecutive decision bars t0, t0+1, ... of one symbol,
each a window end of the chosen segment (so its window of features and its next-bar return lie
inside that segment: data/windows.py), and, for training episodes, the bar after the last one too
(its state bootstraps the truncated return). Episodes therefore never leave the segment.

One step at decision bar t (docs/architecture.md's convention):

    observation   the feature window ending at t (rows t-T+1..t; the agent encodes it), the symbol,
                  the position p[t-1] held into bar t, and the net PnL of the last K decisions
                  (t-K..t-1, each known at the close of bar t) divided by the causal volatility
                  at t. Nothing from bar t+1 or later (tests/ml/rl/test_env.py perturbs the future).
    action        the target position p[t] in [-1, 1], held from the close of t to the close of t+1.
    reward        objectives.pnl.pnl_breakdown(p[t], r[t+1], costs, previous_position=p[t-1]):
                  the canonical next-bar PnL net of trading and holding costs, called one bar at a
                  time with the held position, which equals the whole-path PnL (and the backtester).
                  Optional risk shaping, from this bar's and past PnL only (return units):
                  differential_sharpe  reward = (1 - c) * net + c * D_t * vol0, with D_t Moody &
                                       Saffell's (1998) differential Sharpe ratio of the episode's
                                       net PnL (EMA rate eta, second moment started at vol0^2, vol0
                                       the causal volatility at the episode's first bar; D_1 * vol0
                                       = the first PnL), c = risk_coef in [0, 1];
                  drawdown             reward = net - c * (increase of the episode's drawdown of
                                       additive PnL), c = risk_coef >= 0.

Episodes all start together (`reset`) and each ends after its own number of bars (the time limit
of a rollout or the end of an evaluation path); an episode that has ended stays put and earns 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from plus_ultra_ml.config import CostConfig, RLConfig
from plus_ultra_ml.data.windows import WindowedData
from plus_ultra_ml.errors import PlusUltraError
from plus_ultra_ml.objectives.pnl import PnlBreakdown, pnl_breakdown

Shaping = Literal["none", "differential_sharpe", "drawdown"]
DSR_FLOOR = 1e-12  # floor of the EMA variance in the differential Sharpe denominator


# --------------------------------------------------------------------------------------------
# where episodes may run
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentPaths:
    """Maximal runs of consecutive decision bars of one symbol among a segment's window ends.

    start (P,) row of each run's first bar; length (P,) bars; symbol (P,) data code.
    """

    segment: str
    start: np.ndarray
    length: np.ndarray
    symbol: np.ndarray

    @property
    def bars(self) -> int:
        return int(self.length.sum())


def segment_paths(data: WindowedData, segment: str) -> SegmentPaths:
    """The runs of `data.ends[segment]`: a run breaks where the next row is not the next bar of the same symbol."""
    if segment not in data.ends:
        raise PlusUltraError(f"no segment {segment!r} in the windowed data; have {sorted(data.ends)}")
    rows = np.sort(np.asarray(data.ends[segment], dtype=np.int64))
    if len(rows) == 0:
        raise PlusUltraError(
            f"the {segment} segment has no decision bars (no complete window with finite features and "
            "targets); use more data or a smaller windows.window"
        )
    breaks = (np.diff(rows) != 1) | (data.symbol_ids[rows[1:]] != data.symbol_ids[rows[:-1]])
    first = np.concatenate([[0], np.flatnonzero(breaks) + 1])
    last = np.concatenate([first[1:] - 1, [len(rows) - 1]])
    return SegmentPaths(segment, rows[first], rows[last] - rows[first] + 1, data.symbol_ids[rows[first]])


def episode_starts(paths: SegmentPaths, bars: int) -> np.ndarray:
    """Rows t0 such that t0 .. t0 + bars (the bootstrap bar included) lie in one run: (S,) sorted."""
    room = paths.length - bars  # starts per run: t0 = start .. start + length - 1 - bars
    if (room <= 0).all():
        raise PlusUltraError(
            f"the {paths.segment} segment has no run of {bars + 1} consecutive bars for an episode of {bars} "
            f"bars (longest run: {int(paths.length.max())}); lower rl.steps_per_rollout"
        )
    keep = room > 0
    counts = room[keep]
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(paths.start[keep], counts) + offsets


# --------------------------------------------------------------------------------------------
# the environment
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvConfig:
    costs: CostConfig
    recent_pnl_bars: int = 4  # K past net PnLs in the observation
    risk_shaping: Shaping = "none"
    risk_coef: float = 0.0
    dsr_eta: float = 0.01

    @classmethod
    def from_config(cls, rl: RLConfig, costs: CostConfig) -> EnvConfig:
        return cls(costs, rl.recent_pnl_bars, rl.risk_shaping, rl.risk_coef, rl.dsr_eta)

    @property
    def state_dim(self) -> int:
        """Width of `Observation.state()`: the held position and K recent PnLs."""
        return 1 + self.recent_pnl_bars


class Observation(NamedTuple):
    """What the agent knows at the close of decision bar t, per episode (E,)."""

    row: Tensor  # (E,) long: row of bar t; its feature window is rows t-T+1..t (TradingEnv.windows)
    symbol: Tensor  # (E,) long: model symbol ids (data code + 1; 0 is the model's unknown symbol)
    position: Tensor  # (E,) float64: p[t-1], the position held into bar t
    recent_pnl: Tensor  # (E, K) float64: net PnL of decisions t-K..t-1 over the volatility at t, oldest first

    def state(self) -> Tensor:
        """(E, 1 + K) float32: the portfolio part of the observation, as the policy reads it."""
        return torch.cat([self.position[:, None], self.recent_pnl], dim=1).float()


class Step(NamedTuple):
    reward: Tensor  # (E,) float64: net PnL plus risk_coef * shaping (= net PnL without shaping); 0 once ended
    pnl: PnlBreakdown  # gross, trading_cost, holding_cost, net, each (E,) float64; 0 once ended
    active: Tensor  # (E,) bool: the episode acted at this step
    done: Tensor  # (E,) bool: the episode's last bar was this step (a time limit: bootstrap from next_obs)
    next_obs: Observation


class TradingEnv:
    """Vectorised episodes over one segment of `WindowedData` (see the module docstring).

    `reset(starts, lengths)` starts E episodes at rows `starts` (E,), each `lengths` bars long;
    `sample_starts(n, generator)` draws uniform training starts with room for a bootstrap bar.
    """

    def __init__(self, data: WindowedData, segment: str, cfg: EnvConfig):
        self.cfg = cfg
        self.segment = segment
        self.window = data.window
        self.features = torch.from_numpy(data.features)  # (N, F) float32, shared with `data`
        self.next_return = torch.from_numpy(data.next_return).double()  # (N,) r[t+1] at row t
        self.volatility = torch.from_numpy(data.volatility).double()  # (N,) causal, up to and including t
        self.symbol_ids = torch.from_numpy(data.symbol_ids).long()  # (N,) data codes
        self.paths = segment_paths(data, segment)
        self._starts: dict[int, Tensor] = {}
        self._episode: tuple[Tensor, Tensor] | None = None

    # ---- episodes ------------------------------------------------------------------------
    def valid_starts(self, bars: int) -> Tensor:
        if bars not in self._starts:
            self._starts[bars] = torch.from_numpy(episode_starts(self.paths, bars))
        return self._starts[bars]

    def sample_starts(self, n: int, bars: int, generator: torch.Generator) -> Tensor:
        """(n,) uniform starts of `bars`-bar episodes (+ a bootstrap bar) inside the segment."""
        starts = self.valid_starts(bars)
        return starts[torch.randint(len(starts), (n,), generator=generator)]

    def reset(self, starts: Tensor, lengths: Tensor | int) -> Observation:
        starts = torch.as_tensor(starts, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long).expand(starts.shape).clone()
        if (lengths < 1).any():
            raise ValueError("every episode needs at least one bar")
        E, K = len(starts), self.cfg.recent_pnl_bars
        self._episode = (starts, lengths)
        self.row = starts.clone()  # (E,) decision bar of the next step
        self.steps = torch.zeros(E, dtype=torch.long)
        self.position = torch.zeros(E, dtype=torch.float64)  # p[t-1]: episodes start flat
        self.history = torch.zeros(E, K, dtype=torch.float64)  # net PnL of the last K decisions
        # shaping state: EMAs of PnL and PnL^2 (differential Sharpe), additive equity and its peak
        self.scale0 = self.volatility[starts]  # (E,) causal volatility at the first bar
        self.ema_mean = torch.zeros(E, dtype=torch.float64)
        self.ema_square = self.scale0.square()
        self.equity = torch.zeros(E, dtype=torch.float64)
        self.peak = torch.zeros(E, dtype=torch.float64)
        return self.observe()

    def _ready(self) -> tuple[Tensor, Tensor]:
        if self._episode is None:
            raise RuntimeError("TradingEnv.reset() must be called before stepping")
        return self._episode

    @property
    def n_envs(self) -> int:
        return len(self._ready()[0])

    def episode_rows(self, bootstrap: bool = True) -> Tensor:
        """(E, Lmax [+1]) rows every episode visits, in order: bar t0 + i at column i; columns past an
        episode's end repeat its last row (its bootstrap bar when `bootstrap`). For batch encoding."""
        starts, lengths = self._ready()
        extra = 1 if bootstrap else 0
        columns = torch.arange(int(lengths.max()) + extra)
        return starts[:, None] + torch.minimum(columns[None, :], (lengths - 1 + extra)[:, None])

    def windows(self, rows: Tensor) -> Tensor:
        """Feature windows ending at `rows` (...,) -> (..., T, F): rows t-T+1..t, nothing later."""
        offsets = torch.arange(-self.window + 1, 1)
        return self.features[rows[..., None] + offsets]

    def model_symbols(self, rows: Tensor) -> Tensor:
        return self.symbol_ids[rows] + 1

    # ---- stepping ------------------------------------------------------------------------
    def observe(self) -> Observation:
        vol = self.volatility[self.row]  # (E,) known at the close of bar t
        # state tensors are replaced, never changed in place, so an observation can share them
        return Observation(self.row, self.model_symbols(self.row), self.position, self.history / vol[:, None])

    def step(self, action: Tensor) -> Step:
        """Hold `action` (E,) in [-1, 1] from bar t to t+1; reward = the canonical net PnL (+ shaping)."""
        _, lengths = self._ready()
        action = action.detach().to(torch.float64).reshape(-1)
        if action.shape != self.position.shape:
            raise ValueError(f"action must have shape ({len(self.position)},), got {tuple(action.shape)}")
        if not bool((action.abs() <= 1.0).all()):  # False for NaN as well
            raise ValueError("actions are target positions and must be finite and in [-1, 1]")
        active = self.steps < lengths
        everyone = bool(active.all())  # the common case: skip the masking
        r = self.next_return[self.row]  # (E,) r[t+1] of the decision bar
        if everyone:
            target = action
            parts = pnl_breakdown(target[:, None], r[:, None], self.cfg.costs, previous_position=self.position)
            parts = PnlBreakdown(*(x[:, 0] for x in parts))
        else:
            target = torch.where(active, action, self.position)  # an ended episode keeps its position ...
            r = torch.where(active, r, 0.0)
            parts = pnl_breakdown(target[:, None], r[:, None], self.cfg.costs, previous_position=self.position)
            parts = PnlBreakdown(*(torch.where(active, x[:, 0], 0.0) for x in parts))  # ... and earns nothing
        net = parts.net
        shaped = self.cfg.risk_shaping != "none"
        reward = net + self.cfg.risk_coef * self._shaping(net, active) if shaped else net
        self.position = target
        if self.cfg.recent_pnl_bars:
            shifted = torch.cat([self.history[:, 1:], net[:, None]], dim=1)
            self.history = shifted if everyone else torch.where(active[:, None], shifted, self.history)
        self.steps = self.steps + active.long()
        done = active & (self.steps == lengths)
        self.row = self.row + (active & ~done).long()  # an ended episode stays on its last bar ...
        next_obs = self.observe()
        if bool(done.any()):  # ... and its next state is the bar after it (the bootstrap state)
            # (clamped at the data's last row: only an evaluation walk ending on the newest bar reaches it,
            # and nothing reads its bootstrap state)
            bootstrap_row = torch.clamp(self.row + done.long(), max=len(self.volatility) - 1)
            next_obs = next_obs._replace(row=bootstrap_row, symbol=self.model_symbols(bootstrap_row),
                                         recent_pnl=self.history / self.volatility[bootstrap_row][:, None])
        return Step(reward, parts, active, done, next_obs)

    def _shaping(self, net: Tensor, active: Tensor) -> Tensor:
        """Risk term from this step's net PnL and the episode's past PnL only (return units)."""
        if self.cfg.risk_shaping == "drawdown":
            before = self.peak - self.equity
            equity = self.equity + net
            peak = torch.maximum(self.peak, equity)
            self.equity = torch.where(active, equity, self.equity)
            self.peak = torch.where(active, peak, self.peak)
            return torch.where(active, -((peak - equity) - before), 0.0)
        # differential Sharpe ratio (Moody & Saffell 1998): the first-order change of an EMA Sharpe
        eta = self.cfg.dsr_eta
        d_mean = net - self.ema_mean
        d_square = net.square() - self.ema_square
        variance = (self.ema_square - self.ema_mean.square()).clamp_min(DSR_FLOOR)
        dsr = (self.ema_square * d_mean - 0.5 * self.ema_mean * d_square) / variance.pow(1.5)
        self.ema_mean = torch.where(active, self.ema_mean + eta * d_mean, self.ema_mean)
        self.ema_square = torch.where(active, self.ema_square + eta * d_square, self.ema_square)
        return torch.where(active, dsr * self.scale0 - net, 0.0)
