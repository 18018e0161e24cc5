"""Backbones, heads and model specs (docs/models.md).

- `registry`: architecture name -> (config dataclass, backbone); `build_from_config`, `build_model`.
- one file per architecture: hybrid_transformer, omni_mixture, moe_transformer, state_space,
  temporal_fusion; `layers` holds the blocks several of them share.
- `heads`: forecast, position, policy and value heads; the symbol vocabulary.
- `network`: `PlusUltraNet` (backbone + heads) and its `ModelRecipe`.
- `spec`: save/load a network as plain containers (`model_spec`, `build_from_spec`).
- `profiling`: FLOPs, throughput, memory and MFU (`plus-ultra profile`).
Nothing is imported here: `import plus_ultra_ml.models` stays free of torch.
"""
