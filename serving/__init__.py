"""affresco serving."""
