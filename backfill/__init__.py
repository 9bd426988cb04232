"""affresco backfill."""
