"""model.pt: a written network rebuilds from the file alone, vocabulary and heads included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plus_ultra_ml.checkpoints.format import CheckpointError
from plus_ultra_ml.checkpoints.supervised import load_checkpoint, write_checkpoint
from plus_ultra_ml.data.windows import RobustScaler
from plus_ultra_ml.lineage import LineageRecord, now_utc


def _trained_a_little(net):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    out = net(torch.randn(2, 12, 5), torch.tensor([1, 2]))
    (out.forecast.square().mean() + out.position.mean() + out.aux_loss).backward()
    opt.step()
    return net.eval()


def _write(net, path):
    record = LineageRecord(kind="supervised", created_at=now_utc(), database={}, panel={}, features={}, config={},
                           config_hash="x", code_version={}, seed=0, data_cutoff="2024-01-01T00:00:00+00:00",
                           split={})
    scaler = RobustScaler(np.zeros(5, np.float32), np.ones(5, np.float32))
    return write_checkpoint(path, kind="supervised", net=net, feature_names=list("abcde"), scaler=scaler, window=12,
                            horizon=3, lineage=record)


def test_save_load_round_trip_rebuilds_the_same_network(arch, make_net, tmp_path):
    net = _trained_a_little(make_net(arch, quantiles=(0.1, 0.9)))
    path = _write(net, tmp_path / "model.pt")
    loaded = load_checkpoint(path).net.eval()
    assert loaded.recipe == net.recipe
    assert loaded.vocabulary.symbols == ("AAA", "BBB", "CCC")
    x = torch.randn(3, 12, 5)
    ids = loaded.encode_symbols(["CCC", "AAA", "ZZZ"])  # ZZZ: not in the vocabulary -> id 0
    assert ids.tolist() == [3, 1, 0]
    expected, got = net(x, ids), loaded(x, ids)
    for a, b in zip(expected, got):
        if a is not None:
            assert torch.equal(a, b)
    hidden = expected.hidden
    assert torch.equal(net.policy(hidden)[0], loaded.policy(hidden)[0])


@pytest.mark.parametrize("payload", [b"not a torch file", b""])
def test_foreign_or_truncated_files_are_checkpoint_errors(tmp_path, payload):
    path = tmp_path / "broken.pt"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(path)


def test_a_dict_without_the_format_tag_is_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a plus_ultra.checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
