"""dogbreed: classify dog photos into the 120 Stanford Dogs breeds."""

__version__ = "0.1.0"
