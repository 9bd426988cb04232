"""affresco streams."""
