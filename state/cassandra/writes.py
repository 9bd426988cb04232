"""Sending many writes to Cassandra: a bounded window of `execute_async` futures, and optional
unlogged batches of records that share a replica.

A record is a `Unit`: the statements of one partition, always in one request. Batches only group
units whose partitions have the same first replica, and stay under Cassandra's batch-size warning
(5 KiB; each unit's size is an upper bound of what Cassandra counts) and its cross-partition
warning (10 partitions); a unit too big for a batch travels alone. Measured figures are in
`store.py`.

cassandra-driver does not block when a connection's socket buffer is full: it fails the request
with "Connection … is overloaded" (seen here with ~30 MB of 100 kB states in one upsert). Such a
request was never sent, so `execute_windowed` lets the window drain and sends it again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from state.exceptions import StoreUnavailableError

if TYPE_CHECKING:
    from cassandra.cluster import ResponseFuture, Session
    from cassandra.query import BoundStatement

__all__ = ["Request", "Unit", "execute_windowed", "replica_batches"]

#: How often a request refused by a busy connection is sent, at most.
_BUSY_ATTEMPTS = 12

#: A statement and its parameters (None when the statement is already bound, e.g. a batch).
Request = tuple[Any, Sequence[Any] | None]


def execute_windowed(
    session: Session, requests: Iterable[Request], *, window: int, errors: tuple[type[BaseException], ...], what: str
) -> int:
    """Execute `requests` with at most `window` in flight; returns how many were sent.

    When the driver refuses a request because its socket buffer is full ("Connection … is
    overloaded", i.e. nothing was sent), everything in flight settles, and the request is sent
    again after a short pause (up to `_BUSY_ATTEMPTS` times). On any other failure, sending
    stops, the in-flight requests settle, and `StoreUnavailableError` counts the failures
    (others may have been applied: the writes are idempotent, so the caller may retry the call).
    """
    in_flight: deque[tuple[ResponseFuture, Request, int]] = deque()
    retry: deque[tuple[Request, int]] = deque()
    failures: list[BaseException] = []
    sent = 0
    source = iter(requests)
    execute = session.execute_async

    def settle_oldest() -> None:
        future, request, attempt = in_flight.popleft()
        try:
            future.result()
        except errors as exc:
            if not _is_busy(exc) or attempt + 1 >= _BUSY_ATTEMPTS:
                failures.append(exc)
            else:
                retry.append((request, attempt + 1))

    while not failures:
        if retry:
            while in_flight and not failures:
                settle_oldest()
            if failures:
                break
            request, attempt = retry.popleft()
            time.sleep(min(0.001 * 2**attempt, 0.1))  # let the socket drain
        else:
            next_request = next(source, None)
            if next_request is None:
                while in_flight:
                    settle_oldest()
                if retry:
                    continue
                break
            request, attempt = next_request, 0
        if len(in_flight) >= window:
            settle_oldest()
        in_flight.append((execute(*request), request, attempt))
        sent += 1
    while in_flight:
        settle_oldest()
    if failures:
        msg = f"{what}: {len(failures)} request(s) failed (others may be applied); first: {failures[0]}"
        raise StoreUnavailableError(msg) from failures[0]
    return sent


def _is_busy(exc: BaseException) -> bool:
    """Whether the driver refused the request before sending it (its connection's buffer was full)."""
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionBusy

    if isinstance(exc, ConnectionBusy):
        return True
    causes = list(exc.errors.values()) if isinstance(exc, NoHostAvailable) and isinstance(exc.errors, dict) else []
    return bool(causes) and all(isinstance(cause, ConnectionBusy) for cause in causes)


class Unit(NamedTuple):
    """One record's bound statements, sent in one request, and an upper bound of its batch size."""

    #: Statements of one partition: Cassandra applies them as one mutation, atomically and
    #: isolated (the first one routes the request).
    statements: tuple[BoundStatement, ...]
    #: Bytes Cassandra counts for them against `batch_size_warn_threshold`, or more.
    size: int


def replica_batches(
    units: Iterable[Unit], *, session: Session, keyspace: str, consistency_level: int, max_units: int, max_bytes: int
) -> Iterator[Request]:
    """`units` as unlogged batches: each unit whole, several units only if their partitions share a replica.

    A batch holds at most `max_units` units and `max_bytes` of their sizes; a unit over
    `max_bytes` travels alone (Cassandra does not size-check a batch of one partition). With
    `max_units` 1, every unit is its own request.
    """
    from cassandra.query import BatchStatement, BatchType

    def batch() -> BatchStatement:
        return BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=consistency_level)

    def alone(unit: Unit) -> Request:
        if len(unit.statements) == 1:
            return unit.statements[0], None
        single = batch()
        for statement in unit.statements:
            single.add(statement)
        return single, None

    if max_units <= 1:
        for unit in units:
            yield alone(unit)
        return
    metadata = session.cluster.metadata
    open_batches: dict[Any, tuple[BatchStatement, list[int]]] = {}  # replica -> (batch, [units, bytes])
    for unit in units:
        statements, size = unit
        if size >= max_bytes:
            yield alone(unit)
            continue
        replicas = metadata.get_replicas(keyspace, statements[0].routing_key)
        replica = replicas[0] if replicas else None
        entry = open_batches.get(replica)
        if entry is not None and entry[1][1] + size > max_bytes:
            yield entry[0], None
            entry = None
        if entry is None:
            entry = open_batches[replica] = (batch(), [0, 0])
        for statement in statements:
            entry[0].add(statement)
        entry[1][0] += 1
        entry[1][1] += size
        if entry[1][0] >= max_units:
            yield entry[0], None
            del open_batches[replica]
    for open_batch, _ in open_batches.values():
        yield open_batch, None
