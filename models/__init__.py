"""affresco models."""
