"""The online store interface: event-time-versioned records, batched upsert and multi-get, TTL.

A record is the latest state of one entity of one feature group: its feature values, the opaque
processor state beside them (e.g. window tiles), and the version `(event_time, revision)` of the
latest event folded in. Every backend (RocksDB, Cassandra) implements `OnlineStore` and passes the
same contract tests (`tests/integration/test_online_store_contract.py`):

- `upsert` writes a record only if its version is ≥ the stored one: a replay never regresses to
  older data, and re-applying a record is idempotent. Versions compare as tuples, with no bound on
  the revision but int64's. Of equal versions the last write wins, whole: values, state and TTL
  always come from one write. Several records for one (group, entity) in one call are coalesced
  first: only the greatest version is written (ties: the last one).
- `get_many` reads any mix of groups and entities in one call (one round trip where the backend
  allows); a record whose TTL has run out reads as `None`.
- Checkpoints are small named blobs (e.g. consumed offsets) kept in the same store.

>>> store.upsert([OnlineRecord("zone_demand", "zone-7", 1_700_000_000_000, {"requests_10m": 3})],
...              ttl_ms=7 * 86_400_000)                                        # doctest: +SKIP
>>> store.get("zone_demand", "zone-7").values                                 # doctest: +SKIP
{'requests_10m': 3}
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from state.exceptions import InvalidRecordError, ReadOnlyStoreError, StoreClosedError

__all__ = [
    "MAX_EVENT_TIME",
    "MAX_REVISION",
    "FeatureValue",
    "OnlineRecord",
    "OnlineStore",
    "RecordKey",
    "coalesce",
    "stored_record",
    "wall_clock_ms",
]

logger = logging.getLogger(__name__)

#: A feature value as stored online. Floats should be finite: the values are encoded as JSON
#: (as in `FeatureUpdate` events), where NaN and ±inf become `None`.
FeatureValue = float | int | str | bool | None
#: (group, entity): the key of one record.
RecordKey = tuple[str, str]

#: Revisions order records of equal event time: any signed 64-bit value ≥ 0 (both backends store
#: an int64). A busy entity may take thousands of revisions within one millisecond.
MAX_REVISION = 2**63 - 1
#: The greatest event time (UTC ms) accepted, about year 294,000: its microseconds still fit a
#: signed 64-bit count (how Arrow, Parquet and Cassandra count time), and adding a TTL of up to
#: 20 years stays within int64. Anything near it is a unit mistake, not a date.
MAX_EVENT_TIME = (2**63 - 1) // 1000


def wall_clock_ms() -> int:
    """The wall clock as UTC epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class OnlineRecord:
    """The latest state of one entity of one feature group.

    `event_time` is the UTC epoch milliseconds of the latest event folded in; `revision` (0 to
    `MAX_REVISION`) orders two records of the same event time (the greater wins). Together they are
    the record's `version`, compared as a tuple. `state` is opaque processor state stored beside the
    values (b"" when unused); a backend stores values and state as one unit, never mixing writes.

    >>> OnlineRecord("zone_demand", "zone-7", 1_700_000_000_000, {"requests_10m": 3}).version
    (1700000000000, 0)
    """

    group: str
    entity: str
    event_time: int
    values: dict[str, FeatureValue]
    state: bytes = b""
    revision: int = 0

    def __post_init__(self) -> None:
        # Cheap checks on the fast path; numpy integers and bytearrays are normalised, not refused.
        group, entity = self.group, self.entity
        if type(group) is not str or not group or "\x00" in group:
            msg = f"OnlineRecord.group must be a non-empty str without NUL characters, got {group!r}"
            raise InvalidRecordError(msg)
        if type(entity) is not str or not entity:
            msg = f"OnlineRecord(group={group!r}).entity must be a non-empty str, got {entity!r}"
            raise InvalidRecordError(msg)
        if type(self.event_time) is not int:
            object.__setattr__(self, "event_time", _as_int(self.event_time, "event_time", group, entity))
        if not 0 <= self.event_time <= MAX_EVENT_TIME:
            msg = (
                f"OnlineRecord(group={group!r}, entity={entity!r}).event_time must be UTC epoch ms in "
                f"[0, {MAX_EVENT_TIME}], got {self.event_time}"
            )
            raise InvalidRecordError(msg)
        if type(self.revision) is not int:
            object.__setattr__(self, "revision", _as_int(self.revision, "revision", group, entity))
        if not 0 <= self.revision <= MAX_REVISION:
            msg = (
                f"OnlineRecord(group={group!r}, entity={entity!r}).revision must be in [0, {MAX_REVISION}], "
                f"got {self.revision}"
            )
            raise InvalidRecordError(msg)
        if type(self.values) is not dict:
            msg = (
                f"OnlineRecord(group={group!r}, entity={entity!r}).values must be a dict of feature name to "
                f"value, got {type(self.values).__name__}"
            )
            raise InvalidRecordError(msg)
        if type(self.state) is not bytes:
            if not isinstance(self.state, bytearray | memoryview):
                msg = (
                    f"OnlineRecord(group={group!r}, entity={entity!r}).state must be bytes, "
                    f"got {type(self.state).__name__}"
                )
                raise InvalidRecordError(msg)
            object.__setattr__(self, "state", bytes(self.state))

    @property
    def key(self) -> RecordKey:
        """(group, entity)."""
        return (self.group, self.entity)

    @property
    def version(self) -> tuple[int, int]:
        """(event_time, revision): a record replaces a stored one only if its version is ≥."""
        return (self.event_time, self.revision)


_new = object.__new__
# The slots' own descriptors: setting through them skips the frozen __setattr__ (twice as fast).
_slots = vars(OnlineRecord)
_SET_GROUP = _slots["group"].__set__
_SET_ENTITY = _slots["entity"].__set__
_SET_EVENT_TIME = _slots["event_time"].__set__
_SET_VALUES = _slots["values"].__set__
_SET_STATE = _slots["state"].__set__
_SET_REVISION = _slots["revision"].__set__


def stored_record(
    group: str, entity: str, event_time: int, values: dict[str, FeatureValue], state: bytes, revision: int
) -> OnlineRecord:
    """An `OnlineRecord` built without validation: for backends returning what they stored (hot path)."""
    record: OnlineRecord = _new(OnlineRecord)
    _SET_GROUP(record, group)
    _SET_ENTITY(record, entity)
    _SET_EVENT_TIME(record, event_time)
    _SET_VALUES(record, values)
    _SET_STATE(record, state)
    _SET_REVISION(record, revision)
    return record


def _as_int(value: object, field: str, group: str, entity: str) -> int:
    if not isinstance(value, bool):  # bools are ints to Python, never to us
        try:
            return operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            pass
    msg = f"OnlineRecord(group={group!r}, entity={entity!r}).{field} must be an int, got {value!r}"
    raise InvalidRecordError(msg)


def coalesce(records: Sequence[OnlineRecord]) -> list[OnlineRecord]:
    """Per (group, entity), the record of greatest version; of equal versions, the last one.

    >>> a = OnlineRecord("g", "e", 2, {"x": 1}); b = OnlineRecord("g", "e", 1, {"x": 0})
    >>> coalesce([a, b]) == [a]
    True
    """
    best: dict[RecordKey, OnlineRecord] = {}
    for record in records:
        key = (record.group, record.entity)
        current = best.get(key)
        if current is None or (record.event_time, record.revision) >= (current.event_time, current.revision):
            best[key] = record
    return list(best.values())


class OnlineStore(ABC):
    """Online feature state: event-time-versioned upsert, batched multi-get, TTL, checkpoints.

    Subclasses implement the `_write`, `_read`, `_delete_group`, `_write_checkpoint`,
    `_read_checkpoint` and `_close` hooks; validation, coalescing and TTL bookkeeping live here
    so every backend behaves the same. A store is used from one thread at a time.
    """

    _closed: bool = False
    #: False for stores opened for reading only (they raise `ReadOnlyStoreError` on writes).
    writable: bool = True
    #: True for stores that see another process's writes only after `refresh()` (a RocksDB secondary).
    follows_owner: bool = False
    #: True for stores in this process (RocksDB): a read is local I/O, no network and no server to lose.
    embedded: bool = False

    # -- public API -------------------------------------------------------------------------

    def upsert(
        self,
        records: Sequence[OnlineRecord],
        *,
        ttl_ms: int | None = None,
        checkpoint: tuple[str, bytes] | None = None,
    ) -> None:
        """Write each record whose version is ≥ the stored version of its (group, entity).

        Records of one (group, entity) are coalesced first (greatest version; ties: the last).
        A record of a version equal to the stored one replaces it entirely — values, state and
        TTL — so of equal versions the last write wins, in one call and across calls (Cassandra:
        the last by the writing clients' clocks, i.e. the driver's client-side timestamps). A
        stored record is always one write's, never a mix of two.
        With `ttl_ms`, a record reads as missing once `now > event_time + ttl_ms`; records already
        expired by the wall clock are not written at all. `checkpoint=(name, data)` is written
        with the records: atomically where the backend allows (RocksDB), otherwise only after
        every record was acknowledged (Cassandra) — a checkpoint never runs ahead of the data.
        """
        self._check_writable("upsert")
        if ttl_ms is not None and (type(ttl_ms) is not int or ttl_ms <= 0):
            msg = f"upsert: ttl_ms must be a positive int of milliseconds or None, got {ttl_ms!r}"
            raise InvalidRecordError(msg)
        if checkpoint is not None:
            _check_checkpoint_name(checkpoint[0])
            _check_checkpoint_data(checkpoint[0], checkpoint[1])
            checkpoint = (checkpoint[0], bytes(checkpoint[1]))
        for index, record in enumerate(records):
            if type(record) is not OnlineRecord:
                msg = f"upsert: records[{index}] must be an OnlineRecord, got {type(record).__name__}"
                raise InvalidRecordError(msg)
        winners = coalesce(records)
        if ttl_ms is not None:
            oldest_alive = wall_clock_ms() - ttl_ms
            alive = [record for record in winners if record.event_time >= oldest_alive]
            if len(alive) < len(winners):
                logger.debug("upsert: %d record(s) already expired, not written", len(winners) - len(alive))
            winners = alive
        if winners or checkpoint is not None:
            self._write(winners, ttl_ms, checkpoint)

    def get_many(self, keys: Sequence[RecordKey], *, now_ms: int | None = None) -> dict[RecordKey, OnlineRecord | None]:
        """The records of `keys` — any mix of groups and entities — in one call.

        Every requested key is in the result; missing and expired records map to `None`. A record
        is expired when `now_ms > event_time + ttl_ms` (`now_ms` defaults to the wall clock).
        """
        self._check_open("get_many")
        wanted = _wanted_keys(keys, "get_many")
        now = _resolve_now(now_ms)
        found = self._read(wanted, now) if wanted else {}
        return {key: found.get(key) for key in wanted}

    async def get_many_async(
        self, keys: Sequence[RecordKey], *, now_ms: int | None = None
    ) -> dict[RecordKey, OnlineRecord | None]:
        """`get_many` for an asyncio caller: the event loop is free while the store answers.

        Cancelling the call (e.g. a time budget) abandons the read; nothing waits for it.
        """
        self._check_open("get_many_async")
        wanted = _wanted_keys(keys, "get_many_async")
        now = _resolve_now(now_ms)
        found = await self._read_async(wanted, now) if wanted else {}
        return {key: found.get(key) for key in wanted}

    def refresh(self) -> None:  # noqa: B027 - a no-op by default, not abstract: most stores need none
        """Make writes by other processes visible; a no-op for stores whose reads always see them."""

    def get(self, group: str, entity: str, *, now_ms: int | None = None) -> OnlineRecord | None:
        """The record of one (group, entity), or `None` if missing or expired."""
        return self.get_many([(group, entity)], now_ms=now_ms)[(group, entity)]

    def delete_group(self, group: str) -> None:
        """Remove every record of `group` (checkpoints are kept).

        Meant for retiring or rebuilding a group: records written after it returns read normally,
        whatever their version, so replaying the same events rebuilds the group. A record of a
        greater version written while it runs survives (Cassandra deletes each entity's versions
        up to the one its scan found).
        """
        self._check_writable("delete_group")
        if type(group) is not str or not group or "\x00" in group:
            msg = f"delete_group: group must be a non-empty str without NUL characters, got {group!r}"
            raise InvalidRecordError(msg)
        self._delete_group(group)

    def write_checkpoint(self, name: str, data: bytes) -> None:
        """Store a small named blob (e.g. a processor's consumed offsets), replacing the previous one."""
        self._check_writable("write_checkpoint")
        _check_checkpoint_name(name)
        _check_checkpoint_data(name, data)
        self._write_checkpoint(name, bytes(data))

    def read_checkpoint(self, name: str) -> bytes | None:
        """The blob last written under `name`, or `None`."""
        self._check_open("read_checkpoint")
        _check_checkpoint_name(name)
        return self._read_checkpoint(name)

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def close(self) -> None:
        """Flush and release the backend; later calls raise `StoreClosedError`. Idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- backend hooks ----------------------------------------------------------------------

    @abstractmethod
    def _write(self, records: list[OnlineRecord], ttl_ms: int | None, checkpoint: tuple[str, bytes] | None) -> None:
        """Write coalesced records (one per key) unless the stored version is greater (equal: replace)."""

    @abstractmethod
    def _read(self, keys: list[RecordKey], now_ms: int) -> dict[RecordKey, OnlineRecord]:
        """The stored, unexpired records of distinct `keys`; absent keys may be left out."""

    async def _read_async(self, keys: list[RecordKey], now_ms: int) -> dict[RecordKey, OnlineRecord]:
        """`_read` off the event loop; a store with a native async client overrides it (Cassandra)."""
        return await asyncio.get_running_loop().run_in_executor(None, self._read, keys, now_ms)

    @abstractmethod
    def _delete_group(self, group: str) -> None: ...

    @abstractmethod
    def _write_checkpoint(self, name: str, data: bytes) -> None: ...

    @abstractmethod
    def _read_checkpoint(self, name: str) -> bytes | None: ...

    @abstractmethod
    def _close(self) -> None: ...

    # -- helpers ----------------------------------------------------------------------------

    def _check_open(self, operation: str) -> None:
        if self._closed:
            msg = f"{type(self).__name__}.{operation}: the store is closed"
            raise StoreClosedError(msg)

    def _check_writable(self, operation: str) -> None:
        self._check_open(operation)
        if not self.writable:
            msg = f"{type(self).__name__}.{operation}: the store was opened for reading only"
            raise ReadOnlyStoreError(msg)


def _resolve_now(value: int | None) -> int:
    if value is None:
        return wall_clock_ms()
    if type(value) is not int:
        msg = f"get_many: now_ms must be an int of UTC epoch milliseconds or None, got {value!r}"
        raise InvalidRecordError(msg)
    return value


def _wanted_keys(keys: Sequence[RecordKey], what: str) -> list[RecordKey]:
    """The distinct keys, in order, each checked to be a (group, entity) tuple of two str."""
    wanted: dict[RecordKey, None] = {}
    for index, key in enumerate(keys):
        if type(key) is not tuple or len(key) != 2 or type(key[0]) is not str or type(key[1]) is not str:
            msg = f"{what}: keys[{index}] must be a (group, entity) tuple of two str, got {key!r}"
            raise InvalidRecordError(msg)
        wanted[key] = None
    return list(wanted)


def _check_checkpoint_name(name: object) -> None:
    if type(name) is not str or not name or "\x00" in name:
        msg = f"checkpoint name must be a non-empty str without NUL characters, got {name!r}"
        raise InvalidRecordError(msg)


def _check_checkpoint_data(name: str, data: object) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        msg = f"checkpoint {name!r}: data must be bytes, got {type(data).__name__}"
        raise InvalidRecordError(msg)
