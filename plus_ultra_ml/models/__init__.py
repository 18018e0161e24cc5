"""Backbones, heads and model specs (docs/models.md).

- `registry`: architecture name -> (config dataclass, backbone); `build_from_config`, `build_model`.
- one file per architecture: hybrid_transformer, omni_mixture, moe_transformer, state_space,
  temporal_fusion; `layers` holds the blocks several of them share.
- `heads`: forecast, position, policy and value heads; the symbol vocabulary.
- `network`: `PlusUltraNet` (backbone + heads) and its `ModelRecipe`.
- `spec`: a network as plain containers and back (`model_spec`, `build_from_spec`); no file I/O
  here (checkpoint files are plus_ultra_ml/checkpoints/'s, profiling is plus_ultra_ml/profiling.py).
Nothing is imported here: `import plus_ultra_ml.models` stays free of torch.
"""
