"""Checkpoints: the one room that writes and reads checkpoint files, below training, RL and serving.

Rooms: format.py (the file format: atomic write, ``torch.load(weights_only=True)`` read, the
embedded lineage record and its JSON sidecar), supervised.py (`model.pt`: pretrained backbones and
supervised models), backbone.py (warm starts: a backbone's weights from any Plus Ultra file into a
new network), policy.py (`policy.pt`: a PPO policy's parts), chain.py (an artifact's lineage read
back, and its parents followed), windows.py (a data set windowed exactly as a checkpoint saw it),
ref.py (`CheckpointRef`: the path and lineage one stage hands the next; torch-free).

It may import models/, data/, config, lineage and artifacts; never training, rl, serving or
evaluation (they import it). This file imports nothing, so `import plus_ultra_ml.checkpoints.ref`
loads no torch.
"""
