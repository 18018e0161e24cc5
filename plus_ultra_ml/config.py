"""Typed, frozen experiment configuration.

One YAML file holds every section of an experiment (data, regimes, features, windows, costs,
model, pretrain, train, rl, walkforward, baselines, portfolio, tracking, service, automation). It is parsed into frozen
pydantic models: an unknown key, a wrong type or a value out of range is a `ConfigError` that
names the dotted key and the file. Dotted overrides (``model.depth=4``) are applied before
validation, their values parsed as YAML scalars.

Each section belongs to the room that reads it; a room adds fields to its own section only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from plus_ultra_ml.errors import PlusUltraError


class ConfigError(PlusUltraError):
    """A config file or override is invalid; the message names the key and the fix."""


class Section(BaseModel):
    """Base for every config section: frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
class DataConfig(Section):
    """Where the candles are and which slice of them an experiment uses."""

    db_path: str = "data/fixture.db"  # relative paths resolve against the working directory
    symbols: tuple[str, ...] | None = None  # None: every symbol in `assets`/`series`
    start: str | None = None  # inclusive ISO timestamp (UTC), None: from the first bar
    end: str | None = None  # inclusive ISO timestamp (UTC), None: to the last bar
    freq: str | None = None  # expected bar spacing ("15min", "1h", "1D"); None: inferred
    # Trading calendar when assets.exchange is not set: an exchange code (XNYS, XNAS, XLON, ...), "24/7",
    # "24/5" or "FX" (data.calendar module docstring); None: inferred from the timestamps (logged).
    calendar: str | None = None
    ffill_limit: int = Field(0, ge=0)  # max consecutive missing open bars forward-filled; never back-filled
    include_indicators: bool = True  # pivot `indicators` into `ind__<name>` columns
    jump_threshold: float = Field(0.4, gt=0)  # |log close-to-close| above this is a warning
    busy_timeout_s: float = Field(10.0, gt=0)  # wait this long for a writer's lock


class UniverseConfig(Section):
    """A universe of generated stocks (`plus-ultra fixture --universe N`; plus_ultra_ml/synthetic/universe.py).

    Returns follow a factor model: a market factor, one factor per sector and idiosyncratic noise
    whose volatility differs by name; names list late and delist early (a ragged, survivorship-free
    panel). The planted signals are cross-sectional: alt_0's rank across names, and each sector's
    momentum, predict next-bar returns relative to the universe. Volatilities are annual, converted
    per bar with the calendar's bars per year.
    """

    size: int = Field(500, ge=10)  # symbols, named U0001, U0002, ...
    sectors: int = Field(11, ge=1)  # the GICS count; names are dealt to sectors evenly at random
    calendar: str = "XNYS"  # 1D bars: this exchange's sessions (assets.exchange); intraday: 24/7 grid
    # The planted signal: mean per-date Pearson IC (the Qlib IC) across names, vs the next-bar return.
    alt_ic: float = Field(0.03, gt=0, lt=0.5)  # of alt_0 (the oracle's IC is sqrt(alt_ic^2 + sector_momentum_ic^2))
    sector_momentum_ic: float = Field(0.02, ge=0, lt=0.5)  # of the sector momentum state
    sector_momentum_persistence: float = Field(0.97, ge=0, lt=1)  # AR(1) of past sector shocks (~33-bar memory)
    market_premium: float = Field(0.05, ge=0, lt=0.5)  # annual expected excess return per unit of market beta
    market_vol: float = Field(0.16, gt=0, lt=1)  # annual volatility of the market factor
    sector_vol: float = Field(0.10, ge=0, lt=1)  # annual volatility of each sector factor
    market_beta_range: tuple[float, float] = (0.5, 1.5)  # per-name market loading, uniform
    sector_beta_range: tuple[float, float] = (0.5, 1.5)  # per-name loading on its own sector, uniform
    idio_vol_range: tuple[float, float] = (0.15, 0.45)  # per-name annual idiosyncratic volatility, log-uniform
    late_listing: float = Field(0.3, ge=0, le=1)  # share of names whose first bar is after the grid's first
    early_delisting: float = Field(0.2, ge=0, le=1)  # share of names whose last bar is before the grid's last
    min_listed_bars: int = Field(300, ge=50)  # every name trades at least this many consecutive bars

    @model_validator(mode="after")
    def _ranges(self) -> UniverseConfig:
        for name in ("market_beta_range", "sector_beta_range", "idio_vol_range"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"fixture.universe.{name} must be (low, high) with 0 <= low <= high, got {(low, high)}")
        if self.idio_vol_range[0] <= 0:
            raise ValueError("fixture.universe.idio_vol_range must start above 0: every name has its own noise")
        if self.sectors > self.size:
            raise ValueError(f"fixture.universe.sectors ({self.sectors}) exceeds the universe size ({self.size})")
        if self.alt_ic**2 + self.sector_momentum_ic**2 >= 0.25:
            raise ValueError("fixture.universe: alt_ic^2 + sector_momentum_ic^2 must stay below 0.25")
        return self


class FixtureConfig(Section):
    """The built-in synthetic market the README demo and tests use (`plus-ultra fixture`)."""

    symbols: tuple[str, ...] = ("SPY", "QQQ", "IWM", "EFA")  # ignored when `universe` is set
    rows: int = Field(20_000, ge=500)  # bars per symbol
    freq: Literal["15min", "1h", "1D"] = "15min"  # intraday: 24/7 grid; 1D: business days
    alt_features: int = Field(2, ge=1)
    seed: int = 7
    start: str = "2020-01-01T00:00:00Z"  # first bar (UTC)
    # The planted signal (equations in plus_ultra_ml/synthetic/fixture.py).
    alt_ic: float = Field(0.05, gt=0, lt=0.5)  # Pearson IC of alt_0[t] vs the return t -> t+1, per symbol
    alt_persistence: float = Field(0.95, ge=0, lt=1)  # AR(1) coefficient of the alt factor
    trend_drift: float = Field(0.03, ge=0, lt=0.5)  # drift per bar in up/down regimes, in bar-vol units
    momentum: float = Field(0.04, ge=0, lt=0.5)  # momentum coefficient: +m when trending, -m when flat
    momentum_persistence: float = Field(0.95, ge=0, lt=1)  # AR(1) coefficient of the momentum state
    market_correlation: float = Field(0.5, ge=0, lt=1)  # share of shock variance from the common factor
    vol_regime_bars: float = Field(800, ge=2)  # mean duration of a volatility regime (bars)
    trend_regime_bars: float = Field(400, ge=2)  # mean duration of a trend regime (bars)
    # None: the regime-switching market of `symbols` above; set: a generated universe instead
    # (rows, freq, alt_features, seed, start and alt_persistence still apply; the fields above do not).
    universe: UniverseConfig | None = None

    @model_validator(mode="after")
    def _distinct_symbols(self) -> FixtureConfig:
        if self.universe is not None and self.universe.min_listed_bars > self.rows:
            raise ValueError(f"fixture.universe.min_listed_bars ({self.universe.min_listed_bars}) exceeds "
                             f"fixture.rows ({self.rows}); lower it or add rows")
        if not self.symbols:
            raise ValueError("fixture.symbols must name at least one symbol")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"fixture.symbols has duplicates: {list(self.symbols)}")
        if any(not symbol.strip() or symbol != symbol.strip() for symbol in self.symbols):
            raise ValueError(f"fixture.symbols must be non-empty names without spaces: {list(self.symbols)}")
        return self


class RegimeConfig(Section):
    """Causal regime labels: thresholds from the past only (expanding or rolling)."""

    vol_window: int = Field(20, ge=2)  # bars in the realised-volatility estimate
    liquidity_window: int = Field(20, ge=2)  # bars in the dollar-volume average
    trend_window: int = Field(50, ge=2)  # bars in the trend slope (log-price drift / vol)
    min_history: int = Field(200, ge=10)  # past bars a threshold needs; before that: unlabelled
    lookback: int | None = Field(None, ge=10)  # None: expanding thresholds; N: last N bars only
    low_quantile: float = Field(1 / 3, gt=0, lt=1)
    high_quantile: float = Field(2 / 3, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> RegimeConfig:
        if not self.low_quantile < self.high_quantile:
            raise ValueError("regimes.low_quantile must be below regimes.high_quantile")
        return self


class FeaturesConfig(Section):
    """Which registry features to compute."""

    families: tuple[str, ...] | None = None  # None: every default family
    include: tuple[str, ...] | None = None  # explicit feature names (overrides families)
    exclude: tuple[str, ...] = ()
    alpha158: bool = False  # the Alpha158-style family is opt-in (slow on CPU)
    strict: bool = False  # raise on a feature whose inputs are missing instead of skipping it
    # Annualisation of volatility features; None: bars per year of the panel's trading calendar
    # (data.calendar: assets.exchange / data.calendar / inferred), recorded in the feature set.
    periods_per_year: float | None = Field(None, gt=0)
    # Regime label -> code mapping; None: data.regimes.REGIME_VOCABULARY (recorded with the features).
    regime_vocabulary: dict[str, tuple[str, ...]] | None = None


class WindowsConfig(Section):
    """Training windows and the time-ordered, purged segment split shared by every stage."""

    window: int = Field(64, ge=2)  # bars per input window (T)
    horizon: int = Field(5, ge=1)  # forward-return horizons 1..H
    stride: int = Field(1, ge=1)
    embargo: int | None = Field(None, ge=0)  # gap between segments; None: window + horizon
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)  # held-out tail the production model reports on

    @property
    def effective_embargo(self) -> int:
        minimum = self.window + self.horizon
        return minimum if self.embargo is None else max(self.embargo, minimum)


class CostConfig(Section):
    """Trading costs, shared by the PnL objective, the backtester and the RL environment."""

    transaction_bps: float = Field(1.0, ge=0)  # per unit of |position change|
    slippage_bps: float = Field(0.5, ge=0)  # per unit of |position change|
    holding_bps: float = Field(0.0, ge=0)  # per bar, per unit of |position|


class ExecutionConfig(Section):
    """When orders fill (evaluation/execution.py). Lag 0 is a market-on-close fill with zero latency:
    the position decided with bar t's data fills at bar t's close and earns r[t+1]; lag L fills at the
    close of bar t+L. The walk-forward report is booked at `execution_lag` and shows every strategy's
    net Sharpe at each of `compare_lags` side by side."""

    execution_lag: int = Field(0, ge=0, le=100)
    compare_lags: list[int] = [0, 1]

    @model_validator(mode="after")
    def _lags(self) -> "ExecutionConfig":
        if any(lag < 0 for lag in self.compare_lags) or len(set(self.compare_lags)) != len(self.compare_lags):
            raise ValueError(f"backtest.compare_lags must be distinct bar counts >= 0, got {self.compare_lags}")
        return self


class ModelConfig(Section):
    """Backbone architecture by registry name, its own parameters, and the heads.

    `backbone` holds the parameters of the selected architecture only; it is checked against that
    architecture's dataclass when the model is built (plus_ultra_ml.models.registry), so an
    unknown or mistyped key fails there with its dotted name. Switching architecture by override
    usually needs `model.backbone={}` too (sizes of one architecture are not keys of another).
    """

    architecture: str = "hybrid_transformer"
    backbone: dict[str, Any] = Field(default_factory=dict)  # validated by the architecture's config
    quantiles: tuple[float, ...] = ()  # extra quantile outputs of the forecast head, increasing in (0, 1)
    symbol_embedding_dim: int = Field(8, ge=0)  # 0: no symbol embedding
    symbol_dropout: float = Field(0.1, ge=0, lt=1)  # training share shown the unknown-symbol id
    policy_init_log_std: float = Field(-0.5, ge=-5, le=2)  # PPO policy's initial log-std (pre-tanh)

    @model_validator(mode="after")
    def _quantiles_increasing(self) -> ModelConfig:
        q = self.quantiles
        if any(not 0 < level < 1 for level in q) or any(a >= b for a, b in zip(q, q[1:])):
            raise ValueError(f"model.quantiles must be strictly increasing levels in (0, 1), got {list(q)}")
        return self


class LoopConfig(Section):
    """Optimiser, schedule, budget and checkpointing shared by pretraining and supervised training.

    AdamW with a linear warm-up over `warmup_steps` optimiser steps, then a cosine decay from `lr`
    to `min_lr_ratio * lr` at the last step of the run. One Lightning loop runs either kind.
    """

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)  # decoupled (AdamW); not applied to biases, norms, embeddings
    warmup_steps: int = Field(50, ge=0)  # linear warm-up from 0; capped at the run's total steps
    min_lr_ratio: float = Field(0.1, ge=0, le=1)  # the cosine ends at lr * min_lr_ratio
    gradient_clip: float | None = Field(1.0, gt=0)  # max global grad norm; None: no clipping
    limit_train_batches: int | None = Field(None, ge=1)  # batches per epoch; None: every training window
    limit_val_batches: int | None = Field(None, ge=1)  # None: every validation window
    # Per-epoch validation (the monitor that picks the best checkpoint) on at most this many windows: one
    # fixed seeded sample, the same every epoch, drawn uniformly over (symbol, bar) windows, so it binds only
    # for a large universe. None: every window. The final validation metrics always score every window.
    val_windows: int | None = Field(None, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)  # epochs without a better monitor value; None: off
    checkpoint_every_n_steps: int | None = Field(None, ge=1)  # refresh last.ckpt every N steps (None: per epoch)
    checkpoint_dir: str | None = None  # None: $PLUS_ULTRA_HOME/checkpoints/<kind>/<run key>


class PretrainConfig(LoopConfig):
    """Self-supervised pretraining of the backbone (objectives/pretext.py). Runs on `train`'s hardware."""

    objective: Literal["masked", "contrastive"] = "masked"
    # masked reconstruction: hide time steps (or patches of them), reconstruct the hidden features
    mask_prob: float = Field(0.25, gt=0, lt=1)  # share of time steps hidden
    mask_patch_len: int = Field(1, ge=1)  # 1: single time steps; P: runs of P consecutive steps
    # TS2Vec-style contrastive: two augmented views; the second also loses a random prefix (context crop)
    temperature: float = Field(0.1, gt=0)  # InfoNCE temperature on cosine similarities
    jitter_std: float = Field(0.1, ge=0)  # additive noise, in scaled-feature units
    scale_std: float = Field(0.1, ge=0)  # per-window, per-feature multiplicative noise (log-normal)
    time_mask_prob: float = Field(0.1, ge=0, lt=1)  # time steps zeroed in a view
    max_crop_fraction: float = Field(0.5, ge=0, lt=1)  # the second view drops up to this share of its past
    temporal_weight: float = Field(0.5, ge=0, le=1)  # temporal vs instance-wise term (TS2Vec's alpha)


class LossConfig(Section):
    """Weights of the supervised loss (objectives.losses.RiskLossWeights) plus the MoE auxiliary term."""

    forecast: float = Field(1.0, ge=0)  # Huber/MSE on volatility-scaled forward returns (all horizons)
    quantile: float = Field(0.0, ge=0)  # pinball loss of the quantile head (needs model.quantiles)
    sharpe: float = Field(0.1, ge=0)  # -Sharpe (per bar) of the position head's net PnL along each window
    sortino: float = Field(0.0, ge=0)
    drawdown: float = Field(0.0, ge=0)  # additive max drawdown of that PnL (per-bar return units)
    utility: float = Field(0.0, ge=0)  # -mean-variance utility of that PnL (objectives.losses.mean_variance_utility)
    forecast_kind: Literal["huber", "mse"] = "huber"
    huber_delta: float = Field(1.0, gt=0)  # in volatility units
    aux: float = Field(1.0, ge=0)  # multiplies the backbone's own auxiliary loss (MoE balancing), if any
    risk_aversion: float = Field(1.0, ge=0)  # the utility's lambda, in `pnl_units`
    pnl_units: Literal["return", "volatility"] = "return"  # volatility: PnL / the bar's causal volatility
    # Cross-sectional terms (objectives/cross_section.py; they need train.cross_section, date-grouped batches):
    ic: float = Field(0.0, ge=0)  # -per-date Pearson IC of the h=1 forecast with the next return across names
    listnet: float = Field(0.0, ge=0)  # ListNet cross-entropy of the h=1 forecast's ranking across names
    listnet_temperature: float = Field(0.01, gt=0)  # in return units: the softness of the target ranking
    # -mean-variance utility of the long-short book (gross 1) the position head implies, per bar in return
    # units: a daily book earns ~1e-3 a bar, so a weight of ~100 puts it beside a forecast loss of ~1
    portfolio_utility: float = Field(0.0, ge=0)
    portfolio_risk_aversion: float = Field(10.0, ge=0)  # that utility's lambda, in return units
    # Scale on the gradient the PnL terms (sharpe, sortino, drawdown, utility) send into the backbone;
    # the position head always gets all of it. 1: the backbone serves the head's PnL as much as the
    # forecast; 0: the backbone learns from the forecast loss alone (no IC is traded for the head's PnL).
    position_backbone_grad: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _some_term(self) -> LossConfig:
        terms = ("forecast", "quantile", "sharpe", "sortino", "drawdown", "utility", "ic", "listnet", "portfolio_utility")
        if not any(getattr(self, name) > 0 for name in terms):
            raise ValueError(f"train.loss: every weight of {', '.join(terms)} is 0, so the loss would be constant; "
                             "set one above 0")
        return self


class CrossSectionConfig(Section):
    """Date-grouped training batches (training/datamodule.py `DateBatchSampler`): each batch holds the
    windows of up to `names_per_date` names ending at each of `dates_per_batch` training dates, so a loss
    can compare names at one date (train.loss.ic, listnet, portfolio_utility). `train.batch_size` then
    does not apply to training batches (rows per batch = dates_per_batch x names at each date)."""

    dates_per_batch: int = Field(4, ge=1)
    names_per_date: int | None = Field(64, ge=3)  # sampled without replacement per date and epoch; None: all names


class DiagnosticsConfig(Section):
    """Thresholds of the training diagnostics callback; crossing one logs a warning (never stops training)."""

    enabled: bool = True
    noise_scale_ratio: float = Field(10.0, gt=1)  # warn if batch size and gradient-noise scale differ by more
    noise_scale_ema: float = Field(0.95, ge=0, lt=1)  # smoothing of the noise-scale estimate's parts
    coverage_tolerance: float = Field(0.1, gt=0, lt=1)  # warn if |coverage(q) - q| exceeds it
    min_ic: float = 0.0  # warn if a horizon's validation IC is at or below this


class TrainConfig(LoopConfig):
    """Supervised training (and the hardware both kinds of training run on)."""

    loss: LossConfig = LossConfig()
    # Curriculum over window length: epochs 0..k-1 use curriculum[0], the next k curriculum[1], ...
    # (k = curriculum_epochs), then windows.window. The horizon and the heads never change.
    curriculum: tuple[int, ...] = ()
    curriculum_epochs: int = Field(1, ge=1)
    # Date-grouped batches for the cross-sectional loss terms; None: windows shuffled one by one.
    cross_section: CrossSectionConfig | None = None
    # best checkpoint and early stopping follow it; val/ic_date: the mean per-date IC of the h=1 forecast
    monitor: Literal["val/loss", "val/ic", "val/ic_date"] = "val/loss"
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    # hardware (Lightning's names), used by pretraining too
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"  # "ddp" works on CPU (gloo) with devices > 1
    precision: str = "32-true"  # "bf16-mixed" on a recent GPU
    num_workers: int = Field(0, ge=0)
    deterministic: bool = True  # same seed, same metrics (CPU); some GPU kernels refuse it
    # torch intra-op threads while training on CPU; None: torch's default (one per core). On a busy
    # shared machine 1 thread was ~10x faster per step than 2 (threads spin waiting for each other).
    cpu_threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _curriculum_increasing(self) -> TrainConfig:
        c = self.curriculum
        if any(w < 2 for w in c) or any(a >= b for a, b in zip(c, c[1:])):
            raise ValueError(f"train.curriculum must be strictly increasing window lengths >= 2, got {list(c)}")
        return self

    @model_validator(mode="after")
    def _cross_section_terms(self) -> TrainConfig:
        terms = {name: getattr(self.loss, name) for name in ("ic", "listnet", "portfolio_utility")}
        used = [name for name, weight in terms.items() if weight > 0]
        if used and self.cross_section is None:
            raise ValueError(f"train.loss.{used[0]} compares names at one date and needs date-grouped batches: "
                             "set train.cross_section (for example {dates_per_batch: 4, names_per_date: 64})")
        if self.monitor == "val/ic_date" and self.cross_section is None:
            raise ValueError("train.monitor val/ic_date needs train.cross_section (validation by whole dates)")
        return self


class RLSelectionConfig(Section):
    """Which policy a PPO run hands on: the PPO policy or the supervised position head (rl/select.py).

    The candidate is the PPO policy the run produced (`candidate`: the best update by validation
    net Sharpe, or the last update). Rules, all on the validation segment only:
    significant_gain  keep the candidate only when its mean net PnL per bar beats the head's on the
                      same validation bars, significantly: the lower end of a one-sided (1 - alpha)
                      paired stationary block-bootstrap interval of the per-bar difference is above 0;
    best_val          keep the candidate whenever PPO moved at all (best update > 0): the old rule;
    always_head       never keep it (the fold's policy is the supervised head).
    Chosen on the fixture's development folds (docs/rl.md).
    """

    rule: Literal["significant_gain", "best_val", "always_head"] = "significant_gain"
    candidate: Literal["best", "last"] = "last"  # chosen on development folds (docs/rl.md)
    alpha: float = Field(0.05, gt=0, lt=0.5)  # one-sided level of the gain test
    block: int | None = Field(None, ge=1)  # mean block length in bars; None: round(bars ** (1/3))
    resamples: int = Field(1000, ge=100)


class RLConfig(Section):
    """PPO fine-tuning of the supervised model as a trading policy (plus_ultra_ml/rl, docs/rl.md).

    One update = one rollout of `n_envs` fresh episodes of `steps_per_rollout` bars each (random
    symbol and start inside the training segment), then `epochs` passes of minibatch PPO over it,
    then a deterministic evaluation (mean action) on the validation segment.
    Action: a squashed Gaussian, position = tanh(u), u ~ N(mean, std); the mean starts as the
    supervised position head's pre-tanh output, so update 0 trades exactly like the supervised model.
    """

    updates: int = Field(10, ge=1)
    steps_per_rollout: int = Field(128, ge=2)  # bars per episode (= per rollout; the bar after bootstraps)
    n_envs: int = Field(32, ge=1)  # episodes per rollout, vectorised in one tensor
    gamma: float = Field(0.8, ge=0, le=1)  # per bar: rewards are immediate; a position's cost echoes a few bars
    gae_lambda: float = Field(0.9, ge=0, le=1)
    clip: float = Field(0.2, gt=0, lt=1)  # PPO ratio clip
    value_clip: float | None = Field(0.2, gt=0)  # clip of the value change around the rollout's value; None: off
    entropy_coef: float = Field(1e-3, ge=0)
    value_coef: float = Field(0.5, ge=0)
    epochs: int = Field(4, ge=1)  # passes over each rollout
    minibatch_size: int = Field(512, ge=1)
    target_kl: float | None = Field(0.02, gt=0)  # stop an update's epochs once approx KL > 1.5 x this; None: off
    max_grad_norm: float = Field(0.5, gt=0)
    lr: float = Field(3e-4, gt=0)
    anneal_lr: bool = True  # linear decay to lr * final_lr_ratio at the last update
    final_lr_ratio: float = Field(0.0, ge=0, le=1)
    backbone_lr_ratio: float = Field(0.1, gt=0, le=1)  # backbone lr = lr * ratio (partial / full modes)
    # What trains: frozen = heads only (backbone states cached once); partial = also the last
    # `partial_units` units of the backbone (top-level modules, each block of a ModuleList one unit);
    # full = every backbone weight.
    freeze: Literal["frozen", "partial", "full"] = "frozen"
    partial_units: int = Field(2, ge=1)
    action_distribution: Literal["squashed_gaussian"] = "squashed_gaussian"
    init_log_std: float | None = Field(None, ge=-5, le=2)  # pre-tanh log-std at the start; None: model.policy_init_log_std
    recent_pnl_bars: int = Field(4, ge=0)  # past net PnLs (volatility units) in the observation
    reward_scale: float | None = Field(None, gt=0)  # rewards x this for optimisation; None: 1 / std(train next-bar returns)
    # Optional risk shaping of the reward (return units, from this bar's and past PnL only; rl/env.py):
    # differential_sharpe: (1 - c) * net + c * differential Sharpe (Moody & Saffell 1998, EMA rate
    # dsr_eta) x the episode's starting volatility, c = risk_coef in [0, 1];
    # drawdown: net - c * increase of the episode's drawdown, c = risk_coef >= 0.
    risk_shaping: Literal["none", "differential_sharpe", "drawdown"] = "none"
    risk_coef: float = Field(0.0, ge=0)
    dsr_eta: float = Field(0.01, gt=0, lt=1)
    include_initial: bool = True  # the supervised policy (update 0) competes for "best by validation Sharpe"
    collapse_std: float = Field(1e-3, ge=0)  # validation positions with a smaller std count as collapsed
    eval_batch_size: int = Field(1024, ge=1)  # windows per backbone call when encoding a segment
    # torch intra-op threads while PPO runs (restored after); None: torch's default. The per-bar
    # policy steps are tiny ops: on a shared CPU one thread is often many times faster than two.
    threads: int | None = Field(None, ge=1)
    device: str = "cpu"  # where the backbone runs ("cuda"); heads, env and per-bar steps stay on the CPU
    selection: RLSelectionConfig = RLSelectionConfig()  # PPO policy or supervised head (validation only)

    @model_validator(mode="after")
    def _shaping_weight(self) -> RLConfig:
        if self.risk_shaping == "differential_sharpe" and self.risk_coef > 1:
            raise ValueError("rl.risk_coef mixes PnL and the differential Sharpe: it must be in [0, 1]")
        return self


class WalkForwardConfig(Section):
    """Anchored walk-forward folds (evaluation/walkforward.py). Lengths: bars (int) or spans ("30D")."""

    mode: Literal["expanding", "sliding"] = "expanding"
    n_folds: int | None = Field(3, ge=1)  # the most recent closed folds; None: every closed fold
    test_bars: int | str = 1000
    val_bars: int | str = 500
    train_bars: int | str | None = None  # sliding mode: training length; None: expanding
    min_train_bars: int | str | None = 2000  # expanding mode: bars before the first fold's embargo
    step_bars: int | str | None = None  # distance between fold starts; None: test_bars (tiling)
    embargo: int | None = Field(None, ge=0)  # None: windows.window + windows.horizon (never less)
    seeds: int = Field(1, ge=1)  # models per fold with seeds seed..seed+seeds-1 (report mean and std)
    ppo: bool = True  # fine-tune with PPO after the supervised model in each fold


class BaselinesConfig(Section):
    """The baselines every model is compared with (evaluation/baselines.py)."""

    # LightGBM threads. 1 on CPU: with another job on a shared 2-core machine, 2 threads spin-wait
    # (fixture fold, best of 3: 1.18 s at 2 threads vs 0.80 s at 1; issue 15 saw 11-19 s vs 1.2 s).
    # With the cores free 2 threads are faster (0.48 s vs 0.80 s): raise it where cores are free.
    num_threads: int = Field(1, ge=1)
    vol_window: int = Field(20, ge=2)  # vol_target: bars of trailing realised volatility (bars <= t)
    # The cross-sectional baselines (pooled ridge / LightGBM on per-date ranks, 12-1 momentum, 1-month
    # reversal): None on a universe only (more than 20 symbols), True on any panel (e.g. 5 or 20 real
    # stocks ranked against each other), False never.
    cross_sectional: bool | None = None


class PortfolioConfig(Section):
    """How per-bar scores become portfolio weights (plus_ultra_ml/portfolio, docs/portfolio.md).

    per_symbol keeps today's book: every symbol is its own sleeve with its own position, the portfolio
    their equal-weight mean. The other constructions rank the names against each other at each bar and
    produce weights (fractions of the whole book's capital) that the backtester books as weights.
    """

    construction: Literal["per_symbol", "long_short", "long_only_topk"] = "per_symbol"
    weighting: Literal["rank", "topk"] = "rank"  # long_short: centred-rank weights, or top-k / bottom-k equal
    k: int = Field(50, ge=1)  # names held (long_only_topk), names per side (long_short topk)
    max_replace: int | None = Field(5, ge=0)  # long_only_topk: names replaced per rebalance at most; None: k
    gross_leverage: float = Field(1.0, gt=0, le=10)  # sum |w| of long_short (longs 1/2, shorts 1/2 of it)
    max_weight: float = Field(0.1, gt=0, le=1)  # |w| per name; long_only_topk needs k * max_weight >= 1
    max_turnover: float | None = Field(None, gt=0)  # sum |w[t] - w[t-1]| per rebalance; None: unlimited
    target_volatility: float | None = Field(None, gt=0)  # annual; scales the book down (never up); None: off
    vol_window: int = Field(60, ge=2)  # bars of trailing returns (bars <= t) in the volatility estimate
    vol_min_bars: int = Field(20, ge=2)  # fewer trailing returns than this: the book stays flat (warm-up)
    sector_neutral: bool = False  # long_short: weights sum to 0 within each assets.sector
    rebalance_every: int = Field(1, ge=1)  # bars between rebalances; weights are held in between
    # Constructions the report also books beside `construction`, on the same scores and limits (long-short
    # and long-only side by side); sector_neutral applies to the long_short one only.
    compare: list[Literal["long_short", "long_only_topk"]] = []

    @property
    def constructions(self) -> list[str]:
        """The weight constructions the report books: `construction` (unless per_symbol), then `compare`."""
        named = [self.construction, *self.compare]
        return [c for i, c in enumerate(named) if c != "per_symbol" and c not in named[:i]]

    def variant(self, construction: str) -> "PortfolioConfig":
        """This config with `construction` in place (the limits kept, sector neutrality only for long_short)."""
        return self.model_copy(update={"construction": construction, "compare": [],
                                       "sector_neutral": self.sector_neutral and construction == "long_short"})

    @model_validator(mode="after")
    def _consistent(self) -> "PortfolioConfig":
        if "long_only_topk" in (self.construction, *self.compare) and self.k * self.max_weight < 1 - 1e-12:
            raise ValueError(f"portfolio.k * portfolio.max_weight = {self.k * self.max_weight:g} < 1: a long-only "
                             "book of k names cannot be fully invested; raise k or max_weight")
        if self.sector_neutral and "long_short" not in (self.construction, *self.compare):
            raise ValueError("portfolio.sector_neutral needs a long_short construction or comparison (a long-only "
                             "book cannot sum to 0 within a sector)")
        if self.vol_min_bars > self.vol_window:
            raise ValueError("portfolio.vol_min_bars must be <= portfolio.vol_window")
        return self


class TrackingConfig(Section):
    mode: Literal["offline", "disabled", "online"] = "offline"
    project: str = "plus-ultra"


class ServiceConfig(Section):
    """The inference service and the production registry (plus_ultra_ml/serving, docs/serving.md)."""

    host: str = "127.0.0.1"  # loopback by default; 0.0.0.0 only inside a container or behind a proxy
    port: int = Field(8000, ge=1, le=65535)
    api_key_env: str = "PLUS_ULTRA_API_KEY"  # the environment variable holding the key (never the key itself)
    predict_requires_key: bool = True  # /reload always requires it; /health, /metrics, /config stay open
    max_symbols: int = Field(64, ge=1)  # symbols in one /predict request
    max_bars: int = Field(5000, ge=1)  # supplied bars per symbol in one /predict request
    max_request_bytes: int = Field(4_000_000, ge=1024)  # larger bodies get 413 before they are parsed
    registry_dir: str | None = None  # the production registry; None: $PLUS_ULTRA_HOME/registry
    # Bars per symbol read for one prediction; None: computed from the model (window + longest feature
    # warm-up + the bars after which recursive smoothing forgets its start, see serving/featurise.py).
    history_bars: int | None = Field(None, ge=2)
    convergence_tolerance: float = Field(1e-7, gt=0, lt=1e-2)  # weight left on bars older than the read
    # A served PPO policy's position at bar t: the policy walked from flat over the last this-many decision
    # bars (serving/policy.py); None: the episode length it was trained on (its rl.steps_per_rollout).
    policy_replay_bars: int | None = Field(None, ge=1)
    threads: int | None = Field(1, ge=1)  # torch intra-op threads of the service; None: torch's default
    device: str = "cpu"  # where the network runs ("cuda" in the GPU image); features are computed on the CPU


class AutomationConfig(Section):
    """Schedules and sensors of the Dagster layer (plus_ultra_assets/schedules.py, sensors.py).

    Read once, when plus_ultra_assets/definitions.py loads: a change takes effect when the code
    location reloads (the cron and the sensor interval cannot change later anyway).
    """

    nightly_cron: str = "0 2 * * *"  # production retraining, whatever happens
    timezone: str = "UTC"
    retrain_on_new_candles: bool = False  # new candles: refresh panel -> features only (False) or retrain
    sensor_interval_s: int = Field(60, ge=5)  # how often the new-candle sensor reads the database
    materialise_new_folds: bool = False  # a newly closed walk-forward fold is added and also run
    failure_webhook: str | None = None  # URL that receives a JSON line when a run fails


class ExperimentConfig(Section):
    """The whole experiment: every section, each with defaults."""

    name: str = "experiment"
    seed: int = 0
    data: DataConfig = DataConfig()
    fixture: FixtureConfig = FixtureConfig()
    regimes: RegimeConfig = RegimeConfig()
    features: FeaturesConfig = FeaturesConfig()
    windows: WindowsConfig = WindowsConfig()
    costs: CostConfig = CostConfig()
    backtest: ExecutionConfig = ExecutionConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()
    train: TrainConfig = TrainConfig()
    rl: RLConfig = RLConfig()
    walkforward: WalkForwardConfig = WalkForwardConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    tracking: TrackingConfig = TrackingConfig()
    service: ServiceConfig = ServiceConfig()
    automation: AutomationConfig = AutomationConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the resolved config (order-independent)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def _apply_override(tree: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form section.key=value")
    dotted, raw = override.split("=", 1)
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {override!r} has an empty key")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {key!r} is a value, not a section")
        node = child
    node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None


def _explain(error: ValidationError, source: str) -> ConfigError:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}' (remove it or check its spelling)")
        else:
            lines.append(f"'{key}': {item['msg']} (got {item.get('input')!r})")
    return ConfigError(f"invalid config {source}:\n  " + "\n  ".join(lines))


def config_from_dict(
    tree: Mapping[str, Any], overrides: Iterable[str] = (), source: str = "<dict>"
) -> ExperimentConfig:
    merged: dict[str, Any] = json.loads(json.dumps(dict(tree)))  # deep copy of plain data
    for override in overrides:
        _apply_override(merged, override)
    try:
        return ExperimentConfig.model_validate(merged)
    except ValidationError as error:
        raise _explain(error, source) from None


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read an experiment YAML and apply ``section.key=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (presets live in configs/)")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(tree).__name__}")
    return config_from_dict(tree, overrides, source=str(path))
