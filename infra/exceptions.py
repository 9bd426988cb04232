"""Errors raised by `infra/`, all rooted at `InfraError`.

InfraError                      anything that stops local Kafka/Cassandra from being fetched, started or stopped
├── UnknownServiceError         a service name other than the known ones
├── JavaError                   the configured Java is missing or the wrong version
├── FetchError                  Maven could not assemble a server's jars
├── PortConflictError           a port the server needs is held by another process
├── NotAnsweringError           a server did not answer its protocol's readiness query
├── ServiceStartError           the server exited or did not answer in time
└── ServiceStopError            the server would not die, even after SIGKILL
"""

from __future__ import annotations

__all__ = [
    "FetchError",
    "InfraError",
    "JavaError",
    "NotAnsweringError",
    "PortConflictError",
    "ServiceStartError",
    "ServiceStopError",
    "UnknownServiceError",
]


class InfraError(Exception):
    """Root of every error raised by `infra/`; its message is meant to be shown to a person as it is."""


class UnknownServiceError(InfraError, ValueError):
    """A service name that `infra/` does not know."""


class JavaError(InfraError):
    """The configured Java installation is missing or unsuitable."""


class FetchError(InfraError):
    """Maven could not download a server's jars."""


class PortConflictError(InfraError):
    """A port the server needs is already held by a process that is not that server."""


class NotAnsweringError(InfraError):
    """A server did not answer its readiness query (Kafka metadata, Cassandra `system.local`)."""


class ServiceStartError(InfraError):
    """A server process exited during start-up, or did not answer before its start timeout."""


class ServiceStopError(InfraError):
    """A server process survived SIGTERM and SIGKILL."""
