"""`plus-ultra` command line: thin wrappers over the library, one module per room."""

from plus_ultra_ml.cli.app import app

__all__ = ["app"]
