"""`CassandraStore`: the distributed online store, one Cassandra table through cassandra-driver.

Table (created if missing, in `CassandraSettings.keyspace`, itself created with the configured
replication)::

    online_features(group text, entity text, event_time bigint, revision int, values blob,
                    state blob, expires_at bigint, PRIMARY KEY ((group, entity)))
    online_checkpoints(name text PRIMARY KEY, data blob)

Version ordering costs no read and no lightweight transaction: every record is written
`USING TIMESTAMP event_time·1000 + revision` (the version as microseconds), so Cassandra's
last-write-wins never lets an older version overwrite a newer one, and re-writing a version is
idempotent. `USING TTL` is the remaining lifetime in whole seconds, rounded up; `expires_at`
(UTC ms; int64 max = never) makes reads at an explicit `now_ms` exact. Values use the shared
JSON encoding (`state.online.codec`).

Writes go out with `execute_async`, at most `write_window` requests in flight, each request an
unlogged batch of up to `write_batch_rows` rows whose partitions share a replica (~4x the rows/s
of one INSERT per request here; see `writes.py`); the first failure is raised after the
in-flight ones settle. `get_many` sends one prepared single-partition SELECT per key at once and
gathers them (`read_mode="in_per_group"`, one `entity IN ?` per group, measured no faster here:
both ~1.5 ms p50 for 3 keys).

>>> with CassandraStore(CassandraSettings(keyspace="features")) as store:      # doctest: +SKIP
...     store.get_many([("zone_demand", "zone-7"), ("zone_weather", "zone-7")])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from state.cassandra.options import CassandraSettings
from state.cassandra.session import close, connect, require_driver
from state.cassandra.writes import Request, execute_windowed, replica_batches
from state.exceptions import InvalidRecordError, StoreUnavailableError
from state.online.base import OnlineRecord, OnlineStore, RecordKey, stored_record, wall_clock_ms
from state.online.codec import decode_values, encode_values

if TYPE_CHECKING:
    from cassandra.cluster import ExecutionProfile, Session
    from cassandra.query import PreparedStatement

__all__ = ["CassandraStore", "CassandraStoreOptions"]

logger = logging.getLogger(__name__)

Consistency = Literal["ONE", "LOCAL_ONE", "QUORUM", "LOCAL_QUORUM", "ALL"]

#: expires_at of a record without TTL.
NEVER = 2**63 - 1
#: Cassandra refuses TTLs above 20 years.
MAX_TTL_S = 630_720_000
_NAME = r"^[a-zA-Z][a-zA-Z0-9_]{0,47}$"
_SCAN_PAGE = 1_000
#: Bytes a row costs beyond its blobs and names (bigints, int, blob framing), for batch sizing.
_ROW_OVERHEAD = 48


class CassandraStoreOptions(BaseSettings):
    """How the Cassandra online store names its tables and talks to the cluster."""

    model_config = SettingsConfigDict(env_prefix="AFFRESCO_CASSANDRA_STORE_", frozen=True, extra="forbid")

    table: str = Field("online_features", pattern=_NAME)
    checkpoint_table: str = Field("online_checkpoints", pattern=_NAME)
    write_window: int = Field(256, ge=1, le=10_000, description="Write requests in flight at most (execute_async).")
    write_batch_rows: int = Field(
        10,
        ge=1,
        le=100,
        description="Rows per unlogged batch of partitions sharing a replica; 1 sends one INSERT per request.",
    )
    write_batch_bytes: int = Field(
        4_096, ge=256, description="Size cap of a batch (Cassandra warns above 5 KiB, fails above 50 KiB)."
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
        # Encode everything first: an unencodable record fails the call before anything is sent.
        bound: list[tuple[Any, ...]] = []
        sizes: list[int] = []
        for record in records:
            values = encode_values(record.values, record.group, record.entity)
            if ttl_ms is None:
                expires_at, ttl_s = NEVER, 0
            else:
                expires_at = record.event_time + ttl_ms
                # Round up, so Cassandra never drops a record before `expires_at`.
                ttl_s = min(max(-(-(expires_at - now) // 1000), 1), MAX_TTL_S)
            timestamp = record.event_time * 1000 + record.revision
            row = (record.group, record.entity, record.event_time, record.revision, values, record.state)
            bound.append((*row, expires_at, timestamp, ttl_s))
            sizes.append(len(values) + len(record.state) + len(record.group) + len(record.entity) + _ROW_OVERHEAD)
        options = self.options
        requests = replica_batches(
            self._session,
            self.settings.keyspace,
            self._insert,
            bound,
            max_rows=options.write_batch_rows,
            max_bytes=options.write_batch_bytes,
            sizes=sizes,
        )
        self._send(requests, f"upsert into {self.where}")
        if checkpoint is not None:
            self._write_checkpoint(*checkpoint)

    def _read(self, keys: list[RecordKey], now_ms: int) -> dict[RecordKey, OnlineRecord]:
        found: dict[RecordKey, OnlineRecord] = {}
        try:
            if self.options.read_mode == "per_key":
                futures = [
                    self._session.execute_async(self._select, key, execution_profile=self._tuples) for key in keys
                ]
                for (group, entity), future in zip(keys, futures, strict=True):
                    for row in future.result():
                        self._collect(found, group, entity, row, now_ms)
            else:
                by_group: dict[str, list[str]] = {}
                for group, entity in keys:
                    by_group.setdefault(group, []).append(entity)
                group_futures = [
                    (group, self._session.execute_async(self._select_in, params, execution_profile=self._tuples))
                    for group, params in ((group, (group, entities)) for group, entities in by_group.items())
                ]
                for group, future in group_futures:
                    for entity, *row in future.result():
                        self._collect(found, group, entity, row, now_ms)
        except self._errors as exc:
            msg = f"get_many from {self.where} ({len(keys)} keys) failed: {exc}"
            raise StoreUnavailableError(msg) from exc
        return found

    def _delete_group(self, group: str) -> None:
        # The partition key is (group, entity): finding a group's entities means a filtered scan.
        # Each row is deleted at its own write timestamp, so a newer version written meanwhile survives.
        try:
            rows = self._session.execute(self._scan_group, (group,), execution_profile=self._tuples)
            targets = ((self._delete, (timestamp, group, entity)) for entity, timestamp in rows)
            self._send(targets, f"delete_group {group!r} from {self.where}")
        except self._errors as exc:
            msg = f"delete_group {group!r}: scanning {self.where} failed: {exc}"
            raise StoreUnavailableError(msg) from exc

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
        self, found: dict[RecordKey, OnlineRecord], group: str, entity: str, row: Sequence[Any], now_ms: int
    ) -> None:
        event_time, revision, values, state, expires_at = row
        if now_ms > expires_at:
            return
        found[(group, entity)] = stored_record(
            group, entity, event_time, decode_values(values, group, entity), state or b"", revision
        )

    def _send(self, requests: Iterable[Request], what: str) -> None:
        execute_windowed(self._session, requests, window=self.options.write_window, errors=self._errors, what=what)

    def _create_schema(self) -> None:
        keyspace, options = self.settings.keyspace, self.options
        replication = ", ".join(f"'{key}': '{value}'" for key, value in self.settings.replication().items())
        statements = [
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{{replication}}}",
            f"CREATE TABLE IF NOT EXISTS {keyspace}.{options.table} ("
            '"group" text, entity text, event_time bigint, revision int, "values" blob, state blob, '
            'expires_at bigint, PRIMARY KEY (("group", entity)))',
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
        columns = 'event_time, revision, "values", state, expires_at'
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

        self._insert = prepare(
            f'INSERT INTO {table} ("group", entity, {columns}) VALUES (?, ?, ?, ?, ?, ?, ?) '
            "USING TIMESTAMP ? AND TTL ?",
            write_cl,
        )
        self._select = prepare(f'SELECT {columns} FROM {table} WHERE "group" = ? AND entity = ?', read_cl)
        self._select_in = prepare(f'SELECT entity, {columns} FROM {table} WHERE "group" = ? AND entity IN ?', read_cl)
        self._scan_group = prepare(
            f'SELECT entity, WRITETIME(event_time) FROM {table} WHERE "group" = ? ALLOW FILTERING', read_cl
        )
        self._scan_group.fetch_size = _SCAN_PAGE
        self._delete = prepare(f'DELETE FROM {table} USING TIMESTAMP ? WHERE "group" = ? AND entity = ?', write_cl)
        self._put_checkpoint = prepare(f"INSERT INTO {checkpoints} (name, data) VALUES (?, ?)", write_cl)
        self._get_checkpoint = prepare(f"SELECT data FROM {checkpoints} WHERE name = ?", read_cl)


def _check_ttl(ttl_ms: int | None) -> None:
    if ttl_ms is not None and ttl_ms > MAX_TTL_S * 1000:
        msg = f"upsert: ttl_ms {ttl_ms} exceeds Cassandra's maximum TTL of {MAX_TTL_S} s (20 years)"
        raise InvalidRecordError(msg)
