"""Plus Ultra's pure ML library: data contract, features, models, training, RL, evaluation.

Never imports dagster; the orchestration layer (`plus_ultra_assets`) imports this, not the reverse.
"""

__version__ = "0.1.0"
