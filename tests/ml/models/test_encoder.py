"""RowEncoder: each window encoded once per weights, and a cache that can never serve stale states."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from plus_ultra_ml.models.encoder import RowEncoder
from tests.ml.rl.conftest import planted_data, tiny_net


@pytest.fixture(scope="module")
def data():
    return planted_data(bars=400)


def reference(net, data, rows: np.ndarray) -> torch.Tensor:
    """The state by definition: the backbone on the window ending at each row, one row at a time, eval mode."""
    net.eval()
    with torch.no_grad():
        out = [net.backbone(torch.from_numpy(data.features[r - data.window + 1 : r + 1])[None],
                            torch.tensor([int(data.symbol_ids[r]) + 1]))[0, -1] for r in rows]
    return torch.stack(out)


def test_cached_states_are_the_backbones_last_bar_states_and_each_window_is_encoded_once(data):
    net = tiny_net(data)
    encoder = RowEncoder.of(net.backbone, data, batch_size=5)
    rows = np.concatenate([data.ends["train"][:13], data.ends["val"][:7], data.ends["test"][:4]])
    first = encoder(torch.from_numpy(rows))
    assert first.shape == (len(rows), net.backbone.d_model) and first.dtype == torch.float32
    torch.testing.assert_close(first, reference(net, data, rows), rtol=1e-5, atol=1e-6)  # batching: float rounding
    twice = torch.from_numpy(np.concatenate([rows, rows[::-1]])).reshape(2, -1)
    again = encoder(twice)
    assert encoder.encoded_windows == len(rows)  # nothing encoded a second time
    assert torch.equal(again[0], first) and torch.equal(again[1], first.flip(0))


def test_an_optimiser_step_on_the_backbone_drops_the_cache(data):
    net = tiny_net(data)
    encoder = RowEncoder.of(net.backbone, data, batch_size=64)
    rows = torch.from_numpy(data.ends["train"][:50])
    before = encoder(rows)
    optimiser = torch.optim.Adam(net.backbone.parameters(), lr=1e-2)
    encoder(rows, grad=True).square().sum().backward()
    optimiser.step()
    after = encoder(rows)
    assert encoder.encoded_windows == 3 * len(rows)  # cached pass, the gradient pass, the re-encode
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, reference(net, data, rows.numpy()), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("edit", ["data", "load_state_dict", "buffer"])
def test_no_edit_of_the_weights_can_reach_a_stale_state(data, edit):
    """Edits that bypass autograd's version counters too (`.data`, a state dict copy) re-encode."""
    net = tiny_net(data)
    encoder = RowEncoder.of(net.backbone, data, batch_size=64)
    rows = torch.from_numpy(data.ends["val"][:40])
    before = encoder(rows)
    if edit == "data":
        next(net.backbone.parameters()).data.mul_(1.5)
    elif edit == "load_state_dict":
        net.backbone.load_state_dict(tiny_net(data, seed=3).backbone.state_dict())
    else:
        weights = dict(net.backbone.named_parameters())
        name = max(weights, key=lambda k: weights[k].numel())
        weights[name].data.add_(0.1)
    after = encoder(rows)
    assert encoder.encoded_windows == 2 * len(rows)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, reference(net, data, rows.numpy()), rtol=1e-5, atol=1e-6)


def test_reloading_the_same_weights_keeps_the_cache(data):
    net = tiny_net(data)
    encoder = RowEncoder.of(net.backbone, data, batch_size=64)
    rows = torch.from_numpy(data.ends["val"][:40])
    before = encoder(rows)
    net.backbone.load_state_dict(copy.deepcopy(net.backbone.state_dict()))  # in-place copies, same values
    assert torch.equal(encoder(rows), before) and encoder.encoded_windows == len(rows)


def test_a_copy_with_equal_weights_and_rows_adopts_the_cache_and_anything_else_does_not(data):
    net = tiny_net(data)
    encoder = RowEncoder.of(net.backbone, data, batch_size=64)
    rows = torch.from_numpy(data.ends["test"][:30])
    states = encoder(rows)
    twin = copy.deepcopy(net)
    rebuilt = dataclasses.replace(data, features=data.features.copy())  # equal rows, another array
    shared = encoder.adopt(twin.backbone, rebuilt)
    assert torch.equal(shared(rows), states) and shared.encoded_windows == 0
    assert encoder.features.data_ptr() == shared.features.data_ptr()  # the older equal array is let go

    other = tiny_net(data, seed=5)
    fresh = encoder.adopt(other.backbone, data)
    torch.testing.assert_close(fresh(rows), reference(other, data, rows.numpy()), rtol=1e-5, atol=1e-6)
    assert fresh.encoded_windows == len(rows)

    moved = data.features.copy()
    moved[rows.numpy()] += 1.0
    shifted = dataclasses.replace(data, features=moved)
    changed = encoder.adopt(twin.backbone, shifted)
    changed(rows)
    assert changed.encoded_windows == len(rows)

    twin.backbone.requires_grad_(False)
    next(twin.backbone.parameters()).data.add_(1.0)  # the adopted copy changes: its cache goes, the original's stays
    torch.testing.assert_close(shared(rows), reference(twin, rebuilt, rows.numpy()), rtol=1e-5, atol=1e-6)
    assert torch.equal(encoder(rows), states) and encoder.encoded_windows == len(rows)


def test_put_states_serve_later_calls_only_for_the_same_weights(data):
    net = tiny_net(data)
    encoder = RowEncoder.of(net.backbone, data, batch_size=64)
    rows = torch.from_numpy(data.ends["train"][:20])
    computed = reference(net, data, rows.numpy())
    encoder.put(rows, computed)
    assert torch.equal(encoder(rows), computed) and encoder.encoded_windows == 0
    next(net.backbone.parameters()).data.mul_(0.5)
    encoder(rows)
    assert encoder.encoded_windows == len(rows)


def test_the_pass_runs_in_eval_mode_and_restores_the_callers_mode(data):
    net = tiny_net(data)
    net.backbone.train()
    encoder = RowEncoder.of(net.backbone, data, batch_size=64)
    rows = torch.from_numpy(data.ends["train"][:10])
    states = encoder(rows)
    assert net.backbone.training  # restored
    torch.testing.assert_close(states, reference(net, data, rows.numpy()), rtol=1e-5, atol=1e-6)


def test_kept_states_do_not_hold_the_backbone_s_whole_output():
    """A stored last-step state must own its memory: a view would keep each batch's (B, T, D) output alive."""
    import torch

    class Net(torch.nn.Module):
        d_model = 6

        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, symbols):  # (B, T, F) -> (B, T, D)
            return x.repeat(1, 1, 2)

    features = torch.arange(40 * 3, dtype=torch.float32).reshape(40, 3)
    encoder = RowEncoder(Net(), features, torch.zeros(40, dtype=torch.long), window=8, batch_size=16)
    states = encoder._encode(torch.arange(7, 40))
    assert states.shape == (33, 6)
    assert states.untyped_storage().nbytes() == states.numel() * states.element_size()
