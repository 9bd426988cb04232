"""affresco: a streaming-first, event-sourced machine-learning platform."""

__all__ = ["__version__"]

__version__ = "0.1.0"
