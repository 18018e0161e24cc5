"""Model specs: a saved network rebuilds from the file alone, vocabulary and heads included."""

from __future__ import annotations

import pytest
import torch

from plus_ultra_ml.models.spec import ModelSpecError, build_from_spec, load_model, model_spec, save_model


def _trained_a_little(net):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    out = net(torch.randn(2, 12, 5), torch.tensor([1, 2]))
    (out.forecast.square().mean() + out.position.mean() + out.aux_loss).backward()
    opt.step()
    return net.eval()


def test_save_load_round_trip_rebuilds_the_same_network(arch, make_net, tmp_path):
    net = _trained_a_little(make_net(arch, quantiles=(0.1, 0.9)))
    path = save_model(net, tmp_path / "model.pt")
    loaded = load_model(path).eval()
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


def test_a_spec_nested_in_a_checkpoint_dict_loads_with_weights_only(make_net, tmp_path):
    """How the training room embeds it: one key of a larger checkpoint dict."""
    net = make_net("state_space")
    torch.save({"epoch": 3, "plus_ultra_model": model_spec(net)}, tmp_path / "ckpt.pt")
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    rebuilt = build_from_spec(checkpoint["plus_ultra_model"])
    x = torch.randn(1, 6, 5)
    assert torch.equal(rebuilt.eval()(x).hidden, net.eval()(x).hidden)


def test_spec_with_an_unknown_backbone_key_is_refused_by_name(make_net):
    spec = model_spec(make_net("hybrid_transformer"))
    spec["backbone"]["depht"] = 3
    with pytest.raises(ModelSpecError, match="model.backbone.depht"):
        build_from_spec(spec)


def test_spec_whose_weights_do_not_fit_its_recipe_is_refused(make_net):
    spec = model_spec(make_net("hybrid_transformer"))
    spec["n_features"] = 7
    with pytest.raises(ModelSpecError, match="do not fit"):
        build_from_spec(spec)


@pytest.mark.parametrize("payload", [b"not a torch file", b""])
def test_foreign_or_truncated_files_are_model_spec_errors(tmp_path, payload):
    path = tmp_path / "broken.pt"
    path.write_bytes(payload)
    with pytest.raises(ModelSpecError, match="not a readable torch file"):
        load_model(path)


def test_a_dict_without_the_format_tag_is_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ModelSpecError, match="not a plus_ultra.model_spec"):
        load_model(tmp_path / "other.pt")
