"""Open cassandra-driver sessions from `CassandraSettings`; the only module that imports the driver.

>>> session = connect(CassandraSettings())           # doctest: +SKIP
>>> session.execute("SELECT release_version FROM system.local").one().release_version  # doctest: +SKIP
'5.0.6'
>>> close(session)                                    # doctest: +SKIP
"""

from __future__ import annotations

import socket
from types import ModuleType
from typing import TYPE_CHECKING

from state.cassandra.exceptions import CassandraDriverMissingError, CassandraUnavailableError
from state.cassandra.options import CassandraSettings

if TYPE_CHECKING:
    from cassandra.cluster import Session

__all__ = ["close", "connect", "ping", "require_driver"]

_INSTALL_HINT = "pip install 'affresco[cassandra]'"
_PROTOCOL_VERSION = 5


def require_driver() -> ModuleType:
    """The `cassandra.cluster` module; raises `CassandraDriverMissingError` naming the extra if absent."""
    try:
        import cassandra.cluster
    except ImportError as exc:
        msg = f"the Cassandra backend needs cassandra-driver, which is not installed: {_INSTALL_HINT} ({exc})"
        raise CassandraDriverMissingError(msg) from exc
    return cassandra.cluster


def connect(settings: CassandraSettings) -> Session:
    """A session on the cluster at `settings.contact_points`, not bound to a keyspace.

    Uses a token-aware, DC-aware default execution profile with `settings.request_timeout_s`, and
    retries a node that went down every `settings.reconnect_max_delay_s` at most, forever.
    Close it with `close(session)`, which shuts its cluster down. Raises
    `CassandraUnavailableError` if no contact point answers within `settings.connect_timeout_s`.
    """
    cluster_module = require_driver()
    from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy

    profile = cluster_module.ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        request_timeout=settings.request_timeout_s,
    )
    cluster = cluster_module.Cluster(
        contact_points=list(settings.contact_points),
        port=settings.port,
        execution_profiles={cluster_module.EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=settings.connect_timeout_s,
        control_connection_timeout=settings.connect_timeout_s,
        # Cassandra 4.0+ speaks v5; without a version the driver starts at DSE's and logs two downgrades.
        protocol_version=_PROTOCOL_VERSION,
        # Never give up (the driver's default stops after 64 attempts, ~2 min at this pace): a node
        # back after any outage is used again without restarting the process.
        reconnection_policy=ExponentialReconnectionPolicy(
            settings.reconnect_base_delay_s, settings.reconnect_max_delay_s, max_attempts=None
        ),
        # Requests are small writes, often several back to back (one per group of a multi-get):
        # with Nagle's algorithm the second waits for the first's delayed ACK, ~40 ms on Linux.
        # The Java driver sets TCP_NODELAY by default; the Python driver does not.
        sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    try:
        return cluster.connect()
    except _driver_errors() as exc:
        cluster.shutdown()
        msg = f"could not connect to Cassandra at {_where(settings)} within {settings.connect_timeout_s:g} s: {exc}"
        raise CassandraUnavailableError(msg) from exc


def close(session: Session) -> None:
    """Shut down the session and its cluster's connections and threads."""
    session.cluster.shutdown()


def ping(settings: CassandraSettings) -> str:
    """Connect, read `release_version` from `system.local` (e.g. '5.0.6'), and disconnect."""
    session = connect(settings)
    try:
        row = session.execute("SELECT release_version FROM system.local", timeout=settings.request_timeout_s).one()
    except _driver_errors() as exc:
        msg = f"Cassandra at {_where(settings)} did not answer `SELECT release_version FROM system.local`: {exc}"
        raise CassandraUnavailableError(msg) from exc
    finally:
        close(session)
    if row is None:
        msg = f"Cassandra at {_where(settings)} returned no row from system.local"
        raise CassandraUnavailableError(msg)
    return str(row.release_version)


def _driver_errors() -> tuple[type[BaseException], ...]:
    """What the driver raises when a node is unreachable, slow or refuses a request."""
    from cassandra import DriverException, RequestExecutionException
    from cassandra.cluster import NoHostAvailable

    return (NoHostAvailable, DriverException, RequestExecutionException, OSError)


def _where(settings: CassandraSettings) -> str:
    return ", ".join(f"{point}:{settings.port}" for point in settings.contact_points)
