"""`CassandraStore`: the distributed online store, one Cassandra table through cassandra-driver.

Tables (created if missing, in `CassandraSettings.keyspace`, itself created with the configured
replication)::

    online_records(group text, entity text, event_time bigint, revision bigint, record blob,
                   PRIMARY KEY ((group, entity), event_time, revision))
        WITH CLUSTERING ORDER BY (event_time DESC, revision DESC)
    online_checkpoints(name text PRIMARY KEY, data blob)

The version is the clustering key, so versions compare as tuples and never tie, and ordering
them costs no read and no lightweight transaction. An upsert of version v is one request to the
entity's partition (Cassandra applies it atomically and isolated): `UPDATE … USING TTL ? SET
record = ?` of row v, and `DELETE … WHERE (event_time, revision) < v`, which drops the older
versions. A read takes the partition's first row (`LIMIT 1`), the greatest version: an older
version written late lives below it, unread, until a newer write or its TTL removes it.

`record` is one cell holding values, state and `expires_at` (`codec.py`): Cassandra reconciles
cells one by one, so a single cell is what keeps a row from mixing two writes. No row marker
(UPDATE, not INSERT): the row lives exactly as long as that cell. Rewrites of one version are
ordered by the driver's client-side write timestamps: the last write wins, whole. `USING TTL` is
the remaining lifetime in whole seconds, rounded up; `expires_at` (UTC ms; int64 max = never)
makes reads at an explicit `now_ms` exact. An older version written after a newer one with a
*longer* TTL would read again once the newer one expires; with one TTL per group (how the
processors write) an older version never outlives a newer one.

The table was `online_features` (one row per entity, versions as `USING TIMESTAMP`) before:
that layout is never read with these statements; drop it once the new table is filled.

Writes go out with `execute_async`, at most `write_window` requests in flight, each request an
unlogged batch of up to `write_batch_rows` records whose partitions share a replica (see
`writes.py`); the first failure is raised after the in-flight ones settle. Measured on one busy
2-core machine running the node too (20k records of ~120 B values and ~1.2 KB state, calls of
5,000, median of 6): batches of 3 such records (5 KiB) ~9k records/s, one record per request
~5k, for new entities and updates alike; the one-row layout before did ~10k/~6k, and ~13k/~6k
for updates, which cost it no tombstone. `get_many` sends one prepared single-partition SELECT
per key at once and gathers them (`read_mode="in_per_group"`, one `entity IN ?` per group,
measured no faster here: both ~1.3 ms p50 for 3 keys).

>>> with CassandraStore(CassandraSettings(keyspace="features")) as store:      # doctest: +SKIP
...     store.get_many([("zone_demand", "zone-7"), ("zone_weather", "zone-7")])
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from state.cassandra.codec import NEVER, decode_cell, encode_cell
from state.cassandra.options import CassandraSettings
from state.cassandra.session import close, connect, require_driver
from state.cassandra.writes import Request, Unit, execute_windowed, replica_batches
from state.exceptions import InvalidRecordError, StoreUnavailableError
from state.online.base import OnlineRecord, OnlineStore, RecordKey, wall_clock_ms

if TYPE_CHECKING:
    from cassandra.cluster import ExecutionProfile, ResponseFuture, Session
    from cassandra.query import PreparedStatement

__all__ = ["CassandraStore", "CassandraStoreOptions"]

logger = logging.getLogger(__name__)

Consistency = Literal["ONE", "LOCAL_ONE", "QUORUM", "LOCAL_QUORUM", "ALL"]

#: Cassandra refuses TTLs above 20 years.
MAX_TTL_S = 630_720_000
_NAME = r"^[a-zA-Z][a-zA-Z0-9_]{0,47}$"
_SCAN_PAGE = 1_000
#: What Cassandra counts for a record's UPDATE and range DELETE beyond the cell's bytes, with a
#: margin: it measures 118 (5.0: clustering, cell timestamp/TTL/deletion time, the range
#: tombstone's bounds and deletion time; the partition key is not counted).
_RECORD_OVERHEAD = 128


class CassandraStoreOptions(BaseSettings):
    """How the Cassandra online store names its tables and talks to the cluster."""

    model_config = SettingsConfigDict(env_prefix="AFFRESCO_CASSANDRA_STORE_", frozen=True, extra="forbid")

    table: str = Field("online_records", pattern=_NAME)
    checkpoint_table: str = Field("online_checkpoints", pattern=_NAME)
    write_window: int = Field(256, ge=1, le=10_000, description="Write requests in flight at most (execute_async).")
    write_batch_rows: int = Field(
        10,
        ge=1,
        le=100,
        description="Records per unlogged batch of partitions sharing a replica; 1 sends one record per request.",
    )
    write_batch_bytes: int = Field(
        5_120,
        ge=256,
        description="Size cap of a batch as Cassandra counts it; keep it ≤ the node's batch_size_warn_threshold "
        "(5 KiB by default; Cassandra fails a batch above 50 KiB).",
    )
    read_mode: Literal["per_key", "in_per_group"] = Field(
        "per_key", description="One concurrent SELECT per key, or one `entity IN ?` SELECT per group."
    )
    write_consistency: Consistency = "LOCAL_QUORUM"
    read_consistency: Consistency = "LOCAL_QUORUM"
    create_schema: bool = Field(True, description="Create the keyspace and tables if missing.")


class CassandraStore(OnlineStore):
    """The online store in a Cassandra table (see the module docstring for the data model)."""

    def __init__(
        self,
        settings: CassandraSettings | None = None,
        options: CassandraStoreOptions | None = None,
        *,
        session: Session | None = None,
    ) -> None:
        """Connect (or use `session`, which the store then does not close) and prepare the statements."""
        require_driver()
        self.settings = settings if settings is not None else CassandraSettings()
        self.options = options if options is not None else CassandraStoreOptions()
        self._owns_session = session is None
        self._session: Session = session if session is not None else connect(self.settings)
        try:
            if self.options.create_schema:
                self._create_schema()
            self._prepare()
        except BaseException:
            if self._owns_session:
                close(self._session)
            raise

    @classmethod
    def from_options(cls, **options: Any) -> CassandraStore:
        """A store from keyword options: fields of `CassandraSettings` and of `CassandraStoreOptions`."""
        connection = {name: value for name, value in options.items() if name in CassandraSettings.model_fields}
        store = {name: value for name, value in options.items() if name not in connection}
        return cls(CassandraSettings(**connection), CassandraStoreOptions(**store))

    @property
    def where(self) -> str:
        """keyspace.table, for messages."""
        return f"{self.settings.keyspace}.{self.options.table}"

    @property
    def _checkpoints(self) -> str:
        return f"{self.settings.keyspace}.{self.options.checkpoint_table}"

    # -- OnlineStore hooks ------------------------------------------------------------------

    def _write(self, records: list[OnlineRecord], ttl_ms: int | None, checkpoint: tuple[str, bytes] | None) -> None:
        _check_ttl(ttl_ms)
        now = wall_clock_ms()
        put, prune = self._put.bind, self._prune.bind
        # Encode and bind everything first: an unencodable record fails the call before anything is sent.
        units: list[Unit] = []
        for record in records:
            if ttl_ms is None:
                expires_at, ttl_s = NEVER, 0
            else:
                expires_at = record.event_time + ttl_ms
                # Round up, so Cassandra never drops a record before `expires_at`.
                ttl_s = min(max(-(-(expires_at - now) // 1000), 1), MAX_TTL_S)
            cell = encode_cell(record, expires_at)
            key = (record.group, record.entity, record.event_time, record.revision)
            units.append(Unit((put((ttl_s, cell, *key)), prune(key)), len(cell) + _RECORD_OVERHEAD))
        options = self.options
        requests = replica_batches(
            units,
            session=self._session,
            keyspace=self.settings.keyspace,
            consistency_level=self._put.consistency_level,
            max_units=options.write_batch_rows,
            max_bytes=options.write_batch_bytes,
        )
        self._send(requests, f"upsert into {self.where}")
        if checkpoint is not None:
            self._write_checkpoint(*checkpoint)

    def _read(self, keys: list[RecordKey], now_ms: int) -> dict[RecordKey, OnlineRecord]:
        found: dict[RecordKey, OnlineRecord] = {}
        try:
            for group, entity, future in self._selects(keys):
                for row in future.result():
                    self._collect_row(found, group, entity, row, now_ms)
        except self._errors as exc:
            raise self._read_failed(keys, exc) from exc
        return found

    async def _read_async(self, keys: list[RecordKey], now_ms: int) -> dict[RecordKey, OnlineRecord]:
        # The driver's own futures, bridged to the event loop: no thread waits on a read, and a
        # read abandoned by its caller (a time budget) is simply never looked at again.
        loop = asyncio.get_running_loop()
        selects = [(group, entity, _awaitable(loop, future)) for group, entity, future in self._selects(keys)]
        found: dict[RecordKey, OnlineRecord] = {}
        try:
            for group, entity, rows in selects:
                for row in await rows:
                    self._collect_row(found, group, entity, row, now_ms)
        except self._errors as exc:
            raise self._read_failed(keys, exc) from exc
        finally:
            for _, _, rows in selects:
                rows.cancel()  # those not awaited (an error or a cancellation came first)
        return found

    def _selects(self, keys: list[RecordKey]) -> list[tuple[str, str | None, ResponseFuture]]:
        """The reads of `keys`, all sent: (group, entity or None for a group's IN select, the driver's future)."""
        if self.options.read_mode == "per_key":
            return [(group, entity, self._session.execute_async(self._select, (group, entity),
                                                                execution_profile=self._tuples))
                    for group, entity in keys]  # fmt: skip
        by_group: dict[str, list[str]] = {}
        for group, entity in keys:
            by_group.setdefault(group, []).append(entity)
        return [(group, None, self._session.execute_async(self._select_in, (group, entities),
                                                          execution_profile=self._tuples))
                for group, entities in by_group.items()]  # fmt: skip

    def _collect_row(
        self, found: dict[RecordKey, OnlineRecord], group: str, entity: str | None, row: Any, now_ms: int
    ) -> None:
        if entity is None:  # an IN select's row names its entity
            entity, event_time, revision, cell = row
        else:
            event_time, revision, cell = row
        self._collect(found, group, entity, event_time, revision, cell, now_ms)

    def _read_failed(self, keys: list[RecordKey], exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"get_many from {self.where} ({len(keys)} keys) failed: {exc}")

    def _delete_group(self, group: str) -> None:
        self._delete_up_to(group, self._group_versions(group))

    def _group_versions(self, group: str) -> Iterator[tuple[str, int, int]]:
        """(entity, event_time, revision) of the greatest stored version of each entity of `group`."""
        # The partition key is (group, entity): finding a group's entities means a filtered scan.
        try:
            rows = self._session.execute(self._scan_group, (group,), execution_profile=self._tuples)
            yield from rows  # pages are fetched while iterating
        except self._errors as exc:
            msg = f"delete_group {group!r}: scanning {self.where} failed: {exc}"
            raise StoreUnavailableError(msg) from exc

    def _delete_up_to(self, group: str, versions: Iterable[tuple[str, int, int]]) -> None:
        """Delete each entity's versions ≤ the given one, so a greater version written meanwhile survives."""
        targets = ((self._delete, (group, entity, event_time, revision)) for entity, event_time, revision in versions)
        self._send(targets, f"delete_group {group!r} from {self.where}")

    def _write_checkpoint(self, name: str, data: bytes) -> None:
        try:
            self._session.execute(self._put_checkpoint, (name, data))
        except self._errors as exc:
            msg = f"writing checkpoint {name!r} to {self._checkpoints} failed: {exc}"
            raise StoreUnavailableError(msg) from exc

    def _read_checkpoint(self, name: str) -> bytes | None:
        try:
            row = self._session.execute(self._get_checkpoint, (name,), execution_profile=self._tuples).one()
        except self._errors as exc:
            msg = f"reading checkpoint {name!r} from {self._checkpoints} failed: {exc}"
            raise StoreUnavailableError(msg) from exc
        return None if row is None or row[0] is None else bytes(row[0])

    def _close(self) -> None:
        if self._owns_session:
            close(self._session)

    # -- helpers ----------------------------------------------------------------------------

    def _collect(
        self,
        found: dict[RecordKey, OnlineRecord],
        group: str,
        entity: str,
        event_time: int,
        revision: int,
        cell: bytes | None,
        now_ms: int,
    ) -> None:
        if cell is None:  # never written by this store: its rows live only as long as their cell
            return
        record = decode_cell(group, entity, event_time, revision, cell, now_ms, self.where)
        if record is not None:
            found[(group, entity)] = record

    def _send(self, requests: Iterable[Request], what: str) -> None:
        execute_windowed(self._session, requests, window=self.options.write_window, errors=self._errors, what=what)

    def _create_schema(self) -> None:
        keyspace, options = self.settings.keyspace, self.options
        replication = ", ".join(f"'{key}': '{value}'" for key, value in self.settings.replication().items())
        statements = [
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{{replication}}}",
            f"CREATE TABLE IF NOT EXISTS {keyspace}.{options.table} ("
            '"group" text, entity text, event_time bigint, revision bigint, record blob, '
            'PRIMARY KEY (("group", entity), event_time, revision)) '
            "WITH CLUSTERING ORDER BY (event_time DESC, revision DESC)",
            f"CREATE TABLE IF NOT EXISTS {keyspace}.{options.checkpoint_table} (name text PRIMARY KEY, data blob)",
        ]
        for statement in statements:
            try:
                self._session.execute(statement, timeout=max(self.settings.request_timeout_s, 30.0))
            except self._errors as exc:
                msg = f"creating the online store schema in keyspace {keyspace!r} failed on `{statement}`: {exc}"
                raise StoreUnavailableError(msg) from exc

    def _prepare(self) -> None:
        from cassandra import ConsistencyLevel, DriverException, RequestExecutionException
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, NoHostAvailable
        from cassandra.query import tuple_factory

        self._errors: tuple[type[BaseException], ...] = (
            NoHostAvailable,
            DriverException,
            RequestExecutionException,
            OSError,
        )
        self._tuples: ExecutionProfile = self._session.execution_profile_clone_update(
            EXEC_PROFILE_DEFAULT, row_factory=tuple_factory
        )
        table, checkpoints = self.where, self._checkpoints
        partition = '"group" = ? AND entity = ?'
        write_cl = getattr(ConsistencyLevel, self.options.write_consistency)
        read_cl = getattr(ConsistencyLevel, self.options.read_consistency)

        def prepare(cql: str, consistency: int) -> PreparedStatement:
            try:
                prepared = self._session.prepare(cql)
            except self._errors as exc:
                msg = f"preparing `{cql}` failed (schema missing? create_schema={self.options.create_schema}): {exc}"
                raise StoreUnavailableError(msg) from exc
            prepared.consistency_level = consistency
            return prepared

        # No USING TIMESTAMP: the version is the clustering key; write times only order rewrites.
        self._put = prepare(
            f"UPDATE {table} USING TTL ? SET record = ? WHERE {partition} AND event_time = ? AND revision = ?",
            write_cl,
        )
        self._prune = prepare(f"DELETE FROM {table} WHERE {partition} AND (event_time, revision) < (?, ?)", write_cl)
        self._select = prepare(f"SELECT event_time, revision, record FROM {table} WHERE {partition} LIMIT 1", read_cl)
        self._select_in = prepare(
            f'SELECT entity, event_time, revision, record FROM {table} WHERE "group" = ? AND entity IN ? '
            "PER PARTITION LIMIT 1",
            read_cl,
        )
        self._scan_group = prepare(
            f'SELECT entity, event_time, revision FROM {table} WHERE "group" = ? PER PARTITION LIMIT 1 ALLOW FILTERING',
            read_cl,
        )
        self._scan_group.fetch_size = _SCAN_PAGE
        self._delete = prepare(f"DELETE FROM {table} WHERE {partition} AND (event_time, revision) <= (?, ?)", write_cl)
        self._put_checkpoint = prepare(f"INSERT INTO {checkpoints} (name, data) VALUES (?, ?)", write_cl)
        self._get_checkpoint = prepare(f"SELECT data FROM {checkpoints} WHERE name = ?", read_cl)


def _check_ttl(ttl_ms: int | None) -> None:
    if ttl_ms is not None and ttl_ms > MAX_TTL_S * 1000:
        msg = f"upsert: ttl_ms {ttl_ms} exceeds Cassandra's maximum TTL of {MAX_TTL_S} s (20 years)"
        raise InvalidRecordError(msg)


def _awaitable(loop: asyncio.AbstractEventLoop, future: ResponseFuture) -> asyncio.Future[list[Any]]:
    """An asyncio future of every row of a driver `ResponseFuture` (its pages fetched in turn)."""
    out: asyncio.Future[list[Any]] = loop.create_future()
    rows: list[Any] = []

    def settle(result: list[Any] | None, error: BaseException | None) -> None:  # on the event loop
        if out.done():
            return  # abandoned by its caller
        if error is not None:
            out.set_exception(error)
        else:
            out.set_result(result or [])

    def page(chunk: list[Any]) -> None:  # on the driver's I/O thread
        rows.extend(chunk)
        if future.has_more_pages:
            future.start_fetching_next_page()
        else:
            loop.call_soon_threadsafe(settle, rows, None)

    future.add_callbacks(page, lambda error: loop.call_soon_threadsafe(settle, None, error))
    return out
