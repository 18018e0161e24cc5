"""Orchestration above training, RL and evaluation: assemble training data, run walk-forward folds."""
