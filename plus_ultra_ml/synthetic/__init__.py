"""Synthetic markets: candles generated with a planted signal whose strength the generator knows.

fixture.py builds the default fixture database (regime-switching candles, alternative-data
factors, evaluation-only truth indicators and the ``fixture_truth`` table). The truth is measured
with the shared metrics (evaluation/metrics.py) and the shared PnL (objectives/pnl.py), so this room
sits above evaluation and objectives: it may import evaluation, objectives, data and the core
modules. The CLI, the tests and the benchmarks import it, and the walk-forward fold (experiments) and
the supervised fit (training) call `fixture.oracle_reference`, which gives the same-bars oracle's
positions on a fixture database and None on any other.
"""
