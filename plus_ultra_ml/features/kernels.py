"""Causal rolling kernels over one symbol's contiguous float64 history (numba, compiled once, cached).

Every kernel maps ``x[0..m)`` to ``y[0..m)`` where ``y[t]`` is a function of ``x[0..t]`` only: no
kernel ever reads ``x[t + 1]``. Conventions shared by all of them:

- Warm-up: ``y[t]`` is NaN until its window holds ``n`` values (``t < n - 1`` for a window kernel
  starting at bar 0), never 0. A window that contains a NaN yields NaN.
- Recursive smoothers (EMA, Wilder's RMA) skip leading NaNs and are seeded with the simple mean of
  their first ``n`` valid inputs, the way TA-Lib seeds them; a NaN after the seed propagates.
- Undefined statistics (a correlation or skew of a constant window, a ratio over a zero total)
  are NaN; a textbook "neutral" value is used only where the docstring says so.
- Windows of small size (<= a few hundred bars) are recomputed exactly, window by window
  (O(m * n), exact and stable); the indicators TA-Lib benchmarks (SMA, std, EMA, Wilder) use
  O(m) running updates (Welford's add/remove for the variance).

Kernels take float64 arrays and return new float64 arrays; the pipeline casts to float32 once.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

NAN = np.nan
# "contract" lets LLVM fuse a * b + c into one FMA (faster recursions); it never reorders sums, so a
# kernel stays a deterministic function of its prefix (bit-identical when the future is cut off).
_JIT = {"cache": True, "nogil": True, "fastmath": {"contract"}, "error_model": "numpy"}  # IEEE: x / 0 is inf, never an exception


# --------------------------------------------------------------------------------------------
# shifts and point transforms
# --------------------------------------------------------------------------------------------
@njit(**_JIT)
def lag(x, k):
    """y[t] = x[t - k] for k >= 1 (NaN for t < k). A negative k would read the future: refused."""
    if k < 1:
        raise ValueError("lag k must be >= 1: a negative shift reads the future")
    m = x.shape[0]
    out = np.empty(m)
    for t in range(min(k, m)):
        out[t] = NAN
    for t in range(k, m):
        out[t] = x[t - k]
    return out


@njit(**_JIT)
def diff(x, k):
    """y[t] = x[t] - x[t - k] for k >= 1, NaN for t < k (log returns: diff of log prices)."""
    if k < 1:
        raise ValueError("diff k must be >= 1: a negative shift reads the future")
    m = x.shape[0]
    out = np.empty(m)
    for t in range(min(k, m)):
        out[t] = NAN
    for t in range(k, m):
        out[t] = x[t] - x[t - k]
    return out


# --------------------------------------------------------------------------------------------
# recursive smoothers (TA-Lib seeding: simple mean of the first n valid values)
# --------------------------------------------------------------------------------------------
@njit(**_JIT)
def _seed(x, n, out):
    """Fill out with NaN up to the seed bar; return (seed bar index, seed value) or (m, nan)."""
    m = x.shape[0]
    start = 0
    while start < m and math.isnan(x[start]):
        start += 1
    end = start + n - 1
    for t in range(min(end, m)):
        out[t] = NAN
    if end >= m:
        return m, NAN
    total = 0.0
    for t in range(start, end + 1):
        total += x[t]
    return end, total / n


@njit(**_JIT)
def ema(x, n):
    """Exponential moving average, alpha = 2 / (n + 1), seeded with the mean of the first n valid values."""
    out = np.empty(x.shape[0])
    end, prev = _seed(x, n, out)
    if end >= x.shape[0]:
        return out
    alpha = 2.0 / (n + 1.0)
    keep = 1.0 - alpha  # prev * keep + x * alpha: x * alpha is off the recursion's latency chain
    out[end] = prev
    for t in range(end + 1, x.shape[0]):
        prev = prev * keep + x[t] * alpha
        out[t] = prev
    return out


@njit(**_JIT)
def wilder(x, n):
    """Wilder's running moving average: y[t] = (y[t-1] * (n - 1) + x[t]) / n, seeded with a simple mean."""
    out = np.empty(x.shape[0])
    end, prev = _seed(x, n, out)
    if end >= x.shape[0]:
        return out
    out[end] = prev
    keep = (n - 1.0) / n  # multiply, never divide, inside the recursion (a division is a long latency chain)
    take = 1.0 / n
    for t in range(end + 1, x.shape[0]):
        prev = prev * keep + x[t] * take
        out[t] = prev
    return out


# --------------------------------------------------------------------------------------------
# O(m) running windows
# --------------------------------------------------------------------------------------------
@njit(**_JIT)
def rolling_sum(x, n):
    """Sum of the last n values (running add/remove); NaN while the window holds a NaN."""
    m = x.shape[0]
    out = np.empty(m)
    total = 0.0
    nans = 0
    for t in range(m):
        v = x[t]
        if math.isnan(v):
            nans += 1
        else:
            total += v
        if t >= n:
            u = x[t - n]
            if math.isnan(u):
                nans -= 1
            else:
                total -= u
        out[t] = total if (t >= n - 1 and nans == 0) else NAN
    return out


@njit(**_JIT)
def rolling_mean(x, n):
    """Mean of the last n values."""
    out = rolling_sum(x, n)
    for t in range(out.shape[0]):
        out[t] = out[t] / n
    return out


@njit(**_JIT)
def _window_moments(x, s, n):
    """Exact (mean, sum of squared deviations) of x[s:s+n], two passes."""
    mean = 0.0
    for j in range(s, s + n):
        mean += x[j]
    mean /= n
    m2 = 0.0
    for j in range(s, s + n):
        d = x[j] - mean
        m2 += d * d
    return mean, m2


@njit(**_JIT)
def rolling_mean_var(x, n, ddof):
    """(mean, variance with divisor n - ddof) of the last n values in O(1) per bar.

    Between exact two-pass recomputations (every n bars, and whenever the window has just become
    valid) the entering value v replaces the leaving one u in one update:
    mean' = mean + (v - u) / n, M2' = M2 + (v - u)(v - mean' + u - mean). Recomputing every n
    bars keeps rounding from accumulating (a running update alone drifts by ~1e-7 relative over
    100k bars of a wandering price). A window of n identical values has exactly that mean and
    variance 0 (tracked by the run of equal values). The recomputation schedule depends only on
    the bar index, so the output at t is the same whatever follows t.
    """
    m = x.shape[0]
    mu = np.empty(m)
    var = np.empty(m)
    inv_n = 1.0 / n
    inv_dof = 1.0 / (n - ddof)
    mean = 0.0
    m2 = 0.0
    nans = 0
    run = 0
    valid = False  # whether (mean, m2) describe the window ending at t - 1
    prev = NAN
    countdown = 0  # bars until the next exact recomputation
    for t in range(m):
        v = x[t]
        if math.isnan(v):
            nans += 1
            run = 0
        else:
            run = run + 1 if v == prev else 1
        if t >= n and math.isnan(x[t - n]):
            nans -= 1
        prev = v
        if t < n - 1 or nans > 0:
            valid = False
            mu[t] = NAN
            var[t] = NAN
            continue
        if valid and countdown > 0:
            u = x[t - n]
            new_mean = mean + (v - u) * inv_n
            m2 += (v - u) * (v - new_mean + u - mean)
            mean = new_mean
            countdown -= 1
        else:
            mean, m2 = _window_moments(x, t - n + 1, n)
            valid = True
            countdown = n - 1
        if run >= n:
            mu[t] = v
            var[t] = 0.0
        else:
            mu[t] = mean
            var[t] = (m2 if m2 > 0.0 else 0.0) * inv_dof
    return mu, var


@njit(**_JIT)
def rolling_std(x, n, ddof):
    """Standard deviation of the last n values (divisor n - ddof)."""
    _, var = rolling_mean_var(x, n, ddof)
    for t in range(var.shape[0]):
        var[t] = math.sqrt(var[t])
    return var


# --------------------------------------------------------------------------------------------
# exact per-window kernels (O(m * n); n is small)
# --------------------------------------------------------------------------------------------
@njit(**_JIT)
def rolling_max(x, n):
    """Maximum of the last n values."""
    m = x.shape[0]
    out = np.full(m, NAN)
    for t in range(n - 1, m):
        best = x[t - n + 1]
        for j in range(t - n + 2, t + 1):
            if x[j] > best:
                best = x[j]
        bad = False
        for j in range(t - n + 1, t + 1):
            if math.isnan(x[j]):
                bad = True
                break
        out[t] = NAN if bad else best
    return out


@njit(**_JIT)
def rolling_min(x, n):
    """Minimum of the last n values."""
    return -rolling_max(-x, n)


@njit(**_JIT)
def rolling_argmax(x, n):
    """1-based position of the window's maximum, counted from the window's oldest bar (first on ties)."""
    m = x.shape[0]
    out = np.full(m, NAN)
    for t in range(n - 1, m):
        s = t - n + 1
        best = x[s]
        pos = 0
        bad = math.isnan(best)
        for j in range(1, n):
            v = x[s + j]
            if math.isnan(v):
                bad = True
                break
            if v > best:
                best = v
                pos = j
        if not bad:
            out[t] = pos + 1.0
    return out


@njit(**_JIT)
def rolling_argmin(x, n):
    """1-based position of the window's minimum, counted from the window's oldest bar (first on ties)."""
    return rolling_argmax(-x, n)


@njit(**_JIT)
def _insort(buf, size, v):
    pos = np.searchsorted(buf[:size], v, side="right")
    for j in range(size, pos, -1):
        buf[j] = buf[j - 1]
    buf[pos] = v


@njit(**_JIT)
def _remove_sorted(buf, size, v):
    pos = np.searchsorted(buf[:size], v, side="left")
    for j in range(pos, size - 1):
        buf[j] = buf[j + 1]


@njit(**_JIT)
def rolling_quantile(x, n, q):
    """q-quantile of the last n values, linear interpolation between order statistics (numpy/pandas)."""
    m = x.shape[0]
    out = np.full(m, NAN)
    buf = np.empty(n)
    size = 0
    nans = 0
    h = q * (n - 1)
    lo = int(math.floor(h))
    hi = min(lo + 1, n - 1)
    frac = h - lo
    for t in range(m):
        v = x[t]
        if math.isnan(v):
            nans += 1
        else:
            _insort(buf, size, v)
            size += 1
        if t >= n:
            u = x[t - n]
            if math.isnan(u):
                nans -= 1
            else:
                _remove_sorted(buf, size, u)
                size -= 1
        if t >= n - 1 and nans == 0:
            out[t] = buf[lo] + (buf[hi] - buf[lo]) * frac
    return out


@njit(**_JIT)
def rolling_rank_pct(x, n):
    """Percentile rank of x[t] within its last n values: average rank of ties / n (pandas rank(pct=True))."""
    m = x.shape[0]
    out = np.full(m, NAN)
    for t in range(n - 1, m):
        v = x[t]
        less = 0
        equal = 0
        bad = False
        for j in range(t - n + 1, t + 1):
            u = x[j]
            if math.isnan(u):
                bad = True
                break
            if u < v:
                less += 1
            elif u == v:
                equal += 1
        if not bad:
            out[t] = (less + (equal + 1) / 2.0) / n
    return out


@njit(**_JIT)
def rolling_corr(x, y, n):
    """Pearson correlation of the last n pairs (two-pass per window); NaN if either side is constant."""
    m = x.shape[0]
    out = np.full(m, NAN)
    for t in range(n - 1, m):
        s = t - n + 1
        mx = 0.0
        my = 0.0
        for j in range(s, t + 1):
            mx += x[j]
            my += y[j]
        if math.isnan(mx) or math.isnan(my):
            continue
        mx /= n
        my /= n
        sxy = 0.0
        sxx = 0.0
        syy = 0.0
        for j in range(s, t + 1):
            dx = x[j] - mx
            dy = y[j] - my
            sxy += dx * dy
            sxx += dx * dx
            syy += dy * dy
        if sxx > 0.0 and syy > 0.0:
            out[t] = sxy / math.sqrt(sxx * syy)
    return out


@njit(**_JIT)
def rolling_linreg(y, n):
    """Least-squares line of the last n values on time 0..n-1: (slope per bar, R^2, residual of the last bar).

    R^2 is NaN for a constant window (0/0).
    """
    m = y.shape[0]
    slope = np.full(m, NAN)
    r2 = np.full(m, NAN)
    resid = np.full(m, NAN)
    xbar = (n - 1) / 2.0
    sxx = n * (n * n - 1.0) / 12.0
    for t in range(n - 1, m):
        s = t - n + 1
        my = 0.0
        for j in range(n):
            my += y[s + j]
        if math.isnan(my):
            continue
        my /= n
        sxy = 0.0
        syy = 0.0
        for j in range(n):
            d = y[s + j] - my
            sxy += (j - xbar) * d
            syy += d * d
        b = sxy / sxx
        slope[t] = b
        resid[t] = y[t] - (my + b * (n - 1 - xbar))
        if syy > 0.0:
            r2[t] = sxy * sxy / (sxx * syy)
    return slope, r2, resid


@njit(**_JIT)
def rolling_slope(y, n):
    """Least-squares slope (per bar) of the last n values on time."""
    return rolling_linreg(y, n)[0]


@njit(**_JIT)
def rolling_moments(x, n):
    """Bias-corrected sample skewness G1 and excess kurtosis G2 of the last n values (pandas' rolling skew/kurt).

    NaN for a constant window; n must be >= 4.
    """
    m = x.shape[0]
    skew = np.full(m, NAN)
    kurt = np.full(m, NAN)
    for t in range(n - 1, m):
        s = t - n + 1
        mean = 0.0
        for j in range(s, t + 1):
            mean += x[j]
        if math.isnan(mean):
            continue
        mean /= n
        m2 = 0.0
        m3 = 0.0
        m4 = 0.0
        for j in range(s, t + 1):
            d = x[j] - mean
            d2 = d * d
            m2 += d2
            m3 += d2 * d
            m4 += d2 * d2
        m2 /= n
        m3 /= n
        m4 /= n
        if m2 <= 0.0:
            continue
        g1 = m3 / m2**1.5
        skew[t] = g1 * math.sqrt(n * (n - 1.0)) / (n - 2.0)
        g2 = m4 / (m2 * m2) - 3.0
        kurt[t] = ((n + 1.0) * g2 + 6.0) * (n - 1.0) / ((n - 2.0) * (n - 3.0))
    return skew, kurt


@njit(**_JIT)
def rolling_mean_abs_dev(x, n):
    """Mean absolute deviation from the window mean, over the last n values."""
    m = x.shape[0]
    out = np.full(m, NAN)
    for t in range(n - 1, m):
        s = t - n + 1
        mean = 0.0
        for j in range(s, t + 1):
            mean += x[j]
        mean /= n
        dev = 0.0
        for j in range(s, t + 1):
            dev += abs(x[j] - mean)
        out[t] = dev / n
    return out


@njit(**_JIT)
def band_energy_fraction(r, n, k_lo, k_hi):
    """Share of a window's variance carried by DFT frequencies k_lo..k_hi (cycles per n bars).

    For the last n values d (demeaned), with X_k their DFT, Parseval gives
    sum_{k=0}^{n-1} |X_k|^2 = n * sum d^2. The band's two-sided energy (k and n - k, Nyquist once)
    divided by that total is in [0, 1]; 1 <= k_lo <= k_hi <= n // 2. NaN for a constant window.
    """
    m = r.shape[0]
    out = np.full(m, NAN)
    nb = k_hi - k_lo + 1
    cos_t = np.empty((nb, n))
    sin_t = np.empty((nb, n))
    weight = np.empty(nb)
    for b in range(nb):
        k = k_lo + b
        weight[b] = 1.0 if 2 * k == n else 2.0
        for j in range(n):
            angle = 2.0 * math.pi * k * j / n
            cos_t[b, j] = math.cos(angle)
            sin_t[b, j] = math.sin(angle)
    for t in range(n - 1, m):
        s = t - n + 1
        mean = 0.0
        for j in range(n):
            mean += r[s + j]
        if math.isnan(mean):
            continue
        mean /= n
        total = 0.0
        for j in range(n):
            d = r[s + j] - mean
            total += d * d
        if total <= 0.0:
            continue
        band = 0.0
        for b in range(nb):
            re = 0.0
            im = 0.0
            for j in range(n):
                re += r[s + j] * cos_t[b, j]
                im += r[s + j] * sin_t[b, j]
            band += weight[b] * (re * re + im * im)
        out[t] = min(band / (n * total), 1.0)
    return out


# --------------------------------------------------------------------------------------------
# fused textbook indicators (one pass each; these are the ones benchmarked against TA-Lib)
# --------------------------------------------------------------------------------------------
@njit(**_JIT)
def rsi(close, n):
    """Wilder's RSI: 100 * avg_gain / (avg_gain + avg_loss), Wilder-smoothed, seeded with the mean of
    the first n changes (first value at bar n). A window with no movement at all is 50 (neutral)."""
    m = close.shape[0]
    out = np.empty(m)
    for t in range(min(n, m)):
        out[t] = NAN
    if m <= n:
        return out
    gain = 0.0
    loss = 0.0
    for t in range(1, n + 1):
        d = close[t] - close[t - 1]
        if d > 0:
            gain += d
        else:
            loss -= d
    gain /= n
    loss /= n
    out[n] = 100.0 * gain / (gain + loss) if gain + loss > 0 else 50.0
    keep = (n - 1.0) / n
    take = 1.0 / n
    for t in range(n + 1, m):
        d = close[t] - close[t - 1]
        g = d if d > 0 else 0.0
        lo = -d if d < 0 else 0.0
        gain = gain * keep + g * take
        loss = loss * keep + lo * take
        total = gain + loss
        out[t] = 100.0 * gain / total if total > 0 else 50.0
    return out


@njit(**_JIT)
def macd_line(close, fast, slow):
    """EMA(close, fast) - EMA(close, slow), both SMA-seeded EMAs (fast < slow), in one pass with no
    intermediate array; the two independent recursions interleave, which hides their latency.
    First value at bar slow - 1 (after leading NaNs)."""
    m = close.shape[0]
    out = np.empty(m)
    start = 0
    while start < m and math.isnan(close[start]):
        start += 1
    fast_end = start + fast - 1
    slow_end = start + slow - 1
    for t in range(min(slow_end, m)):
        out[t] = NAN
    if slow_end >= m:
        return out
    fast_value = 0.0
    for t in range(start, fast_end + 1):
        fast_value += close[t]
    fast_value /= fast
    slow_value = 0.0
    for t in range(start, slow_end + 1):
        slow_value += close[t]
    slow_value /= slow
    a_fast = 2.0 / (fast + 1.0)
    a_slow = 2.0 / (slow + 1.0)
    k_fast = 1.0 - a_fast
    k_slow = 1.0 - a_slow
    for t in range(fast_end + 1, slow_end + 1):
        fast_value = fast_value * k_fast + close[t] * a_fast
    out[slow_end] = fast_value - slow_value
    for t in range(slow_end + 1, m):
        x = close[t]
        fast_value = fast_value * k_fast + x * a_fast
        slow_value = slow_value * k_slow + x * a_slow
        out[t] = fast_value - slow_value
    return out


@njit(**_JIT)
def true_range(high, low, close):
    """max(high - low, |high - prev close|, |low - prev close|); NaN at bar 0 (no previous close)."""
    m = close.shape[0]
    out = np.empty(m)
    if m > 0:
        out[0] = NAN
    for t in range(1, m):
        pc = close[t - 1]
        out[t] = max(high[t] - low[t], abs(high[t] - pc), abs(low[t] - pc))
    return out


@njit(**_JIT)
def atr(high, low, close, n):
    """Wilder's average true range: Wilder RMA of the true range, seeded with the mean of TR[1..n]."""
    m = close.shape[0]
    out = np.empty(m)
    for t in range(min(n, m)):
        out[t] = NAN
    if m <= n:
        return out
    prev = 0.0
    for t in range(1, n + 1):
        pc = close[t - 1]
        prev += max(high[t] - low[t], abs(high[t] - pc), abs(low[t] - pc))
    prev /= n
    out[n] = prev
    keep = (n - 1.0) / n
    take = 1.0 / n
    for t in range(n + 1, m):
        pc = close[t - 1]
        hl = high[t] - low[t]
        hc = abs(high[t] - pc)
        lc = abs(low[t] - pc)
        tr = hl if hl > hc else hc  # explicit selects compile branch-free; max() of three does not
        tr = tr if tr > lc else lc
        prev = prev * keep + tr * take
        out[t] = prev
    return out


@njit(**_JIT)
def bollinger_width(close, n, k):
    """(upper - lower) / middle = 2 k sigma / SMA, sigma the population std of the last n closes."""
    mu, var = rolling_mean_var(close, n, 0)
    for t in range(mu.shape[0]):
        mu[t] = 2.0 * k * math.sqrt(var[t]) / mu[t]
    return mu


@njit(**_JIT)
def realised_vol(log_close, n, periods_per_year):
    """Sample std (ddof 1) of the last n one-bar log returns, times sqrt(periods per year).

    Takes log prices (numpy's vectorised log is several times faster than a scalar log here).
    """
    m = log_close.shape[0]
    r = np.empty(m)
    if m > 0:
        r[0] = NAN
    for t in range(1, m):
        r[t] = log_close[t] - log_close[t - 1]
    _, var = rolling_mean_var(r, n, 1)
    scale = math.sqrt(periods_per_year)
    for t in range(m):
        var[t] = math.sqrt(var[t]) * scale
    return var


@njit(**_JIT)
def ratio_or(num, den, fallback):
    """num / den, with `fallback` where den == 0 (a textbook neutral value); NaN where either is NaN."""
    m = num.shape[0]
    out = np.empty(m)
    for t in range(m):
        a = num[t]
        b = den[t]
        if math.isnan(a) or math.isnan(b):
            out[t] = NAN
        elif b == 0.0:
            out[t] = fallback
        else:
            out[t] = a / b
    return out


@njit(**_JIT)
def drift_tstat(r, n):
    """t-statistic of the mean of the last n values: mean / (std_ddof1 / sqrt(n)).

    A constant window gives 0 if its mean is 0, else +/- inf (a certain drift).
    """
    mean, var = rolling_mean_var(r, n, 1)
    out = np.empty(r.shape[0])
    for t in range(r.shape[0]):
        mu = mean[t]
        v = var[t]
        if math.isnan(mu):
            out[t] = NAN
        elif v > 0.0:
            out[t] = mu / math.sqrt(v / n)
        elif mu == 0.0:
            out[t] = 0.0
        else:
            out[t] = math.copysign(math.inf, mu)
    return out


@njit(**_JIT)
def normal_cdf(z):
    """Standard normal CDF, elementwise (NaN stays NaN)."""
    out = np.empty(z.shape[0])
    for t in range(z.shape[0]):
        out[t] = 0.5 * math.erfc(-z[t] / math.sqrt(2.0))
    return out
