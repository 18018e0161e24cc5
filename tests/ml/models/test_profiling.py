"""The profiler's numbers are consistent with what it measures; the CLI prints them."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from plus_ultra_ml.cli.app import app
from plus_ultra_ml.profiling import count_flops, profile_model


def test_flops_of_a_linear_backbone_are_counted_exactly(make_net):
    """state_space with 1 layer, no FFN: the counted matmuls are known in closed form."""
    net = make_net("state_space", n_layers=1, ffn_mult=0, expand=1, d_model=8, n_features=5, symbol_dim=0)
    B, T, D, F, H = 2, 10, 8, 5, 3
    forward, train = count_flops(net, torch.randn(B, T, F), None, torch.float32)
    per_bar = F * D + D * 2 * D + D * D + D * H + D * 1  # embed, SSM in/out projections, two heads
    expected = 2 * B * T * per_bar  # the SSM kernel and FFTs are elementwise work: not counted
    assert forward == expected
    assert 2 * forward < train <= 3 * forward  # backward: grads of inputs and weights (not of x)


def test_lstm_flops_are_added_where_the_counter_is_blind(make_net):
    net = make_net("temporal_fusion", d_model=8, n_heads=2)
    forward, _ = count_flops(net, torch.randn(2, 6, 5), None, torch.float32)
    lstm = 2 * 2 * 6 * 4 * 8 * (8 + 8)
    assert forward > lstm


def test_profile_model_reports_consistent_figures(make_net):
    net = make_net("hybrid_transformer")
    result = profile_model(net, seq_len=16, batch_size=4, steps=2, warmup=1, matmul_size=256)
    assert result.parameters == sum(p.numel() for p in net.parameters())
    assert result.forward_flops > 0 and result.train_flops > 2 * result.forward_flops
    assert result.windows_per_s > 0 and result.matmul_peak_flops > 0
    assert result.activation_bytes > 0
    assert result.mfu == result.train_flops * result.windows_per_s / result.matmul_peak_flops


def test_cli_profile_prints_the_table():
    runner = CliRunner()
    result = runner.invoke(app, ["profile", "--architecture", "state_space", "--seq-len", "8",
                                 "--batch-size", "2", "--steps", "1", "--warmup", "0", "--n-features", "4"])
    assert result.exit_code == 0, result.output
    assert "windows / s" in result.output and "MFU" in result.output


def test_cli_profile_names_an_unknown_architecture():
    result = CliRunner().invoke(app, ["profile", "--architecture", "transformr"])
    assert result.exit_code == 1
    assert "unknown model.architecture 'transformr'" in result.output
