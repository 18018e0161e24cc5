"""Every architecture learns a planted signal from the past that no memoryless model can see.

Target at bar t: y_t = x[t-3, 0] + tanh(2 x[t-1, 1]) - 0.5 x[t-2, 2]. Every term is an earlier
bar (lags 1, 2, 3; one nonlinear), so a model that does not read the past explains none of it.
The naive baseline predicts the mean (MSE = Var(y)); a short Adam fit on CPU must cut that by
5x on fresh held-out windows. (Measured across seeds 0-2: held-out MSE 0.4-5% of the baseline
for every architecture.)
"""

from __future__ import annotations

import torch

T, F, LAG = 16, 4, 3
STEPS, BATCH = 120, 32


def _planted(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, T, F, generator=generator)
    y = torch.zeros(n, T)
    y[:, LAG:] = x[:, :-LAG, 0] + torch.tanh(2 * x[:, LAG - 1 : -1, 1]) - 0.5 * x[:, LAG - 2 : -2, 2]
    return x, y  # y[:, :LAG] is undefined (no history) and left out of every loss


def _mse(net, x, y) -> float:
    with torch.no_grad():
        return (net(x).forecast[..., 0][:, LAG:] - y[:, LAG:]).square().mean().item()


def test_fits_a_planted_lagged_nonlinear_signal_well_beyond_the_mean(arch, make_net):
    net = make_net(arch, n_features=F, horizons=1, d_model=32, seed=0).train()
    g = torch.Generator().manual_seed(1)
    x_test, y_test = _planted(256, g)
    baseline = y_test[:, LAG:].var().item()
    untrained = _mse(net.eval(), x_test, y_test)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(STEPS):
        x, y = _planted(BATCH, g)
        out = net(x)
        loss = (out.forecast[..., 0][:, LAG:] - y[:, LAG:]).square().mean() + out.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained = _mse(net.eval(), x_test, y_test)
    assert untrained > 0.8 * baseline  # the fit, not the initialisation, explains the signal
    assert trained < 0.2 * baseline, f"{arch}: held-out MSE {trained:.3f} vs mean baseline {baseline:.3f}"
