"""affresco state."""
