"""affresco processors."""
