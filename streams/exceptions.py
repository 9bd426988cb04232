"""Errors of the `streams` package.

StreamsError
├── UnknownEventTypeError   a name that is no event type
├── ProduceError            Kafka did not accept some records (delivery reports)
├── TopicError              a topic could not be created or described
└── ReplayError             a replay range that cannot be served
"""

from __future__ import annotations

__all__ = ["ProduceError", "ReplayError", "StreamsError", "TopicError", "UnknownEventTypeError"]


class StreamsError(Exception):
    """Root of every error raised by `streams`."""


class UnknownEventTypeError(StreamsError, KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown event type {name!r}; expected one of: {', '.join(known)}")

    def __str__(self) -> str:
        return str(self.args[0])


class ProduceError(StreamsError):
    """Some records were not acknowledged by Kafka."""

    def __init__(self, failed: int, first_errors: list[str]) -> None:
        self.failed = failed
        self.first_errors = first_errors
        super().__init__(f"{failed} record(s) were not delivered; first errors: {'; '.join(first_errors)}")


class TopicError(StreamsError):
    """A topic could not be created, found or described."""


class ReplayError(StreamsError):
    """A replay range is invalid or cannot be served from this topic."""
