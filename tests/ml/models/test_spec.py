"""Model specs: a network as plain containers rebuilds itself (file round-trips: tests/ml/checkpoints/)."""

from __future__ import annotations

import pytest
import torch

from plus_ultra_ml.models.spec import ModelSpecError, build_from_spec, model_spec


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
