"""The package version: a leaf every layer may read (``pyproject.toml`` reads it too)."""

__version__ = "0.2.0"
