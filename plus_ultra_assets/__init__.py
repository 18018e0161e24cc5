"""Plus Ultra's Dagster layer: thin software-defined assets over `plus_ultra_ml`.

Module imports stay light (no torch, no data): the code location is re-imported by the webserver,
the daemon, every run and every step.
"""
