"""The contract of `OnlineStore`, run against every backend: RocksDB (a temporary directory) and
Cassandra (the real node, a fresh uuid4 keyspace for this module).

Each test writes under fresh group names instead of cleaning up.
"""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state.exceptions import InvalidRecordError, StoreClosedError
from state.online import OnlineRecord, OnlineStore, open_store
from state.online.base import MAX_REVISION, wall_clock_ms

pytestmark = pytest.mark.integration

BACKENDS = [
    "rocksdb",
    pytest.param("cassandra", marks=pytest.mark.cassandra),  # unlogged batches of rows sharing a replica
    pytest.param("cassandra-unbatched", marks=pytest.mark.cassandra),  # one INSERT per request
]
DAY_MS = 86_400_000
#: A recent event time, so records written with a TTL are not already expired.
NOW = wall_clock_ms()


@dataclass(frozen=True)
class Backend:
    open: Callable[[], OnlineStore]
    #: Whether the stores `open` returns share one database (Cassandra: so several may write at
    #: once), or each gets its own (RocksDB: one owner per database).
    shared: bool


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """Opens stores on this module's database (RocksDB: a new directory each time)."""
    if request.param == "rocksdb":

        def open_rocksdb() -> OnlineStore:
            return open_store("rocksdb", path=tmp_path_factory.mktemp("rocksdb") / "db")

        yield Backend(open_rocksdb, shared=False)
        return
    settings_ = request.getfixturevalue("cassandra_settings")
    keyspace = f"test_{uuid.uuid4().hex[:12]}"
    options = {**settings_.model_dump(), "keyspace": keyspace}
    if request.param == "cassandra-unbatched":
        options["write_batch_rows"] = 1
    yield Backend(lambda: open_store("cassandra", **options), shared=True)
    from state.cassandra.session import close, connect

    session = connect(settings_)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    finally:
        close(session)


@pytest.fixture(scope="module")
def store(backend: Backend) -> Iterator[OnlineStore]:
    with backend.open() as opened:
        yield opened


def fresh_group() -> str:
    return f"g_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def group() -> str:
    return fresh_group()


def record(group: str, entity: str, event_time: int = NOW, revision: int = 0, **values: Any) -> OnlineRecord:
    return OnlineRecord(group, entity, event_time, values or {"x": event_time, "rev": revision}, b"", revision)


# -- round trip and multi-get ------------------------------------------------------------------


def test_round_trip(store: OnlineStore, group: str) -> None:
    written = OnlineRecord(group, "zone-7", NOW, {"requests_10m": 3, "mean_1h": 2.5}, b"tiles", 4)
    store.upsert([written])
    assert store.get(group, "zone-7") == written
    assert store.get_many([(group, "zone-7")]) == {(group, "zone-7"): written}


def test_missing_key_reads_none(store: OnlineStore, group: str) -> None:
    assert store.get(group, "nobody") is None
    assert store.get_many([]) == {}


def test_multi_get_across_groups_and_entities_with_missing_keys(store: OnlineStore) -> None:
    groups = [fresh_group() for _ in range(3)]
    written = {
        (g, f"e{i}"): record(g, f"e{i}", NOW + i, a=g, i=i) for g in groups for i in range(4) if (i + len(g)) % 4 != 3
    }
    store.upsert(list(written.values()))
    keys = [(g, f"e{i}") for g in groups for i in range(5)] + [(fresh_group(), "e0"), (groups[0], "e0")]

    result = store.get_many(keys)

    assert set(result) == set(keys)
    for key in keys:
        assert result[key] == written.get(key), key
    assert sum(value is not None for value in result.values()) == len(written)


def test_the_async_multi_get_reads_what_the_multi_get_reads(store: OnlineStore) -> None:
    """Serving's read (asyncio): the same records, missing keys, duplicates and expiry as `get_many`."""
    import asyncio

    groups = [fresh_group() for _ in range(2)]
    written = [record(g, f"e{i}", NOW - i, i=i) for g in groups for i in range(300)]
    store.upsert(written[:100], ttl_ms=DAY_MS)
    store.upsert(written[100:])
    keys = [r.key for r in written] + [(groups[0], "nobody"), written[0].key]
    for now in (NOW, NOW + 2 * DAY_MS):  # the second: the first 100 expired
        assert asyncio.run(store.get_many_async(keys, now_ms=now)) == store.get_many(keys, now_ms=now)
    assert sum(v is not None for v in asyncio.run(store.get_many_async(keys, now_ms=NOW + 2 * DAY_MS)).values()) == 500


def test_a_large_batch_of_mixed_sizes_round_trips(store: OnlineStore) -> None:
    groups = [fresh_group() for _ in range(3)]
    written = [
        OnlineRecord(groups[i % 3], f"e{i}", NOW - i, {"i": i, "s": "x" * (i % 50)}, bytes([i % 251]) * (i % 7 * 200))
        for i in range(2_000)
    ]
    store.upsert(written)
    assert store.get_many([r.key for r in written]) == {r.key: r for r in written}


def test_a_heavy_batch_of_large_states_round_trips(store: OnlineStore, group: str) -> None:
    # ~30 MB in one call: more than a connection's socket buffer takes at once.
    written = [OnlineRecord(group, f"e{i}", NOW, {"i": i}, bytes([i % 256]) * 100_000) for i in range(300)]
    store.upsert(written)
    assert store.get_many([r.key for r in written]) == {r.key: r for r in written}


def test_one_upsert_spans_several_groups(store: OnlineStore) -> None:
    a, b = fresh_group(), fresh_group()
    store.upsert([record(a, "e"), record(b, "e", NOW + 1)])
    assert store.get(a, "e") == record(a, "e")
    assert store.get(b, "e") == record(b, "e", NOW + 1)


# -- versions ----------------------------------------------------------------------------------


def test_older_version_never_overwrites_newer(store: OnlineStore, group: str) -> None:
    newer = record(group, "e", NOW)
    store.upsert([newer])
    store.upsert([record(group, "e", NOW - 1)])
    store.upsert([record(group, "e", NOW - 1, revision=999)])
    store.upsert([record(group, "e", NOW - 1, revision=MAX_REVISION)])
    assert store.get(group, "e") == newer


def test_newer_version_replaces_older(store: OnlineStore, group: str) -> None:
    store.upsert([record(group, "e", NOW - 10)])
    newer = record(group, "e", NOW)
    store.upsert([newer])
    assert store.get(group, "e") == newer


@pytest.mark.parametrize("order", ["ascending", "descending", "shuffled"])
def test_within_one_batch_greatest_version_wins(store: OnlineStore, group: str, order: str) -> None:
    versions = [(NOW - 5, 0), (NOW, 1), (NOW, 0), (NOW - 1, 7), (NOW - 3, 999)]
    batch = [record(group, "e", event_time, revision) for event_time, revision in sorted(versions)]
    if order == "descending":
        batch.reverse()
    elif order == "shuffled":
        batch = [batch[i] for i in (2, 4, 0, 1, 3)]
    store.upsert(batch)
    assert store.get(group, "e") == record(group, "e", NOW, 1)


def test_equal_version_reapplied_is_idempotent(store: OnlineStore, group: str) -> None:
    once = OnlineRecord(group, "e", NOW, {"count": 2}, b"s", 5)
    store.upsert([once])
    store.upsert([once])
    store.upsert([once, once])
    assert store.get(group, "e") == once


def test_greater_revision_wins_at_equal_event_time(store: OnlineStore, group: str) -> None:
    store.upsert([record(group, "e", NOW, revision=1)])
    store.upsert([record(group, "e", NOW, revision=2)])
    assert store.get(group, "e") == record(group, "e", NOW, revision=2)
    store.upsert([record(group, "e", NOW, revision=0)])
    assert store.get(group, "e") == record(group, "e", NOW, revision=2)


def test_revisions_have_no_cap_below_int64(store: OnlineStore, group: str) -> None:
    for revision in (999, 1_000, 65_536, 2**31, 2**32 + 1, MAX_REVISION - 1, MAX_REVISION):
        store.upsert([record(group, "e", NOW, revision)])
        assert store.get(group, "e") == record(group, "e", NOW, revision)
    store.upsert([record(group, "e", NOW, 1_000)])
    assert store.get(group, "e") == record(group, "e", NOW, MAX_REVISION)


def test_a_rewrite_of_an_equal_version_replaces_the_record_entirely(store: OnlineStore, group: str) -> None:
    store.upsert([OnlineRecord(group, "e", NOW, {"a": 1, "b": 2.5}, b"first state", 1_234)], ttl_ms=DAY_MS)
    second = OnlineRecord(group, "e", NOW, {"c": "three"}, b"", 1_234)
    store.upsert([second])  # no TTL now: the rewrite's own lifetime counts
    assert store.get(group, "e") == second
    assert store.get(group, "e", now_ms=NOW + 10 * DAY_MS) == second
    third = OnlineRecord(group, "e", NOW, {}, b"third", 1_234)
    store.upsert([third], ttl_ms=DAY_MS)
    assert store.get(group, "e") == third
    assert store.get(group, "e", now_ms=NOW + DAY_MS + 1) is None


# -- many updates of one entity: the greatest version, whole ---------------------------------


def whole(group: str, entity: str, event_time: int, revision: int, writer: int = 0) -> OnlineRecord:
    """A record whose state encodes its own version and values, so a torn record is detectable.

    Its values sort up with `writer` and its state down: a store settling ties cell by cell (by
    the greater bytes, as Cassandra does) would pick values and state from different writers.
    """
    values = {"writer": writer, "revision": revision, "tag": f"{entity}/{revision}/{writer}"}
    body = orjson.dumps({"version": [event_time, revision], "values": values})
    return OnlineRecord(group, entity, event_time, values, bytes([255 - writer]) + body * (1 + revision % 3), revision)


def assert_whole(read: OnlineRecord | None) -> OnlineRecord:
    """`read` exists, and its values and state come from one write of its version."""
    assert read is not None
    body = read.state[1 : 1 + (len(read.state) - 1) // (1 + read.revision % 3)]
    assert orjson.loads(body) == {"version": list(read.version), "values": read.values}, read
    assert read == whole(read.group, read.entity, read.event_time, read.revision, read.values["writer"])  # type: ignore[arg-type]
    return read


#: Revisions of one entity at one event time, well past 999 (the cap revisions once had).
REVISIONS = 3_000
ENTITIES = ("busy-0", "busy-1", "busy-2")


def shuffled_writes(group: str, seed: int, writers: int = 1) -> list[list[OnlineRecord]]:
    """Per writer, its share of every entity's revisions 0..REVISIONS, shuffled together.

    Each writer also writes the greatest version, with a payload of its own: writers tie there.
    """
    rng = random.Random(seed)
    shares: list[list[OnlineRecord]] = [[] for _ in range(writers)]
    for entity in ENTITIES:
        for revision in range(REVISIONS):
            shares[revision % writers].append(whole(group, entity, NOW, revision, revision % writers))
        for writer in range(writers):
            shares[writer].append(whole(group, entity, NOW, REVISIONS, writer))
    for share in shares:
        rng.shuffle(share)
    return shares


def calls(records: list[OnlineRecord], seed: int, largest: int) -> list[list[OnlineRecord]]:
    """`records` cut into upsert calls of 1 to `largest` records."""
    rng = random.Random(seed)
    out, start = [], 0
    while start < len(records):
        size = rng.randint(1, largest)
        out.append(records[start : start + size])
        start += size
    return out


@pytest.mark.parametrize("ttl_ms", [None, DAY_MS], ids=["no-ttl", "ttl"])
@pytest.mark.parametrize("split", ["one-call", "across-calls"])
def test_many_revisions_of_one_entity_keep_the_greatest_whole(
    store: OnlineStore, group: str, ttl_ms: int | None, split: str
) -> None:
    (writes,) = shuffled_writes(group, seed=11)
    for batch in [writes] if split == "one-call" else calls(writes, seed=12, largest=24):
        store.upsert(batch, ttl_ms=ttl_ms)
    result = store.get_many([(group, entity) for entity in ENTITIES])
    assert result == {(group, entity): whole(group, entity, NOW, REVISIONS) for entity in ENTITIES}
    later = store.get(group, ENTITIES[0], now_ms=NOW + 2 * DAY_MS)
    assert later == (None if ttl_ms else whole(group, ENTITIES[0], NOW, REVISIONS))


@pytest.mark.parametrize("ttl_ms", [None, DAY_MS], ids=["no-ttl", "ttl"])
def test_concurrent_out_of_order_writers_keep_the_greatest_version_whole(
    backend: Backend, store: OnlineStore, group: str, ttl_ms: int | None
) -> None:
    writers = 4
    shares = shuffled_writes(group, seed=21, writers=writers)
    plans = [calls(share, seed=22 + writer, largest=16) for writer, share in enumerate(shares)]
    if backend.shared:
        # Each writer its own store (its own connections and client clock), all at once.
        start = threading.Barrier(writers)

        def write(plan: list[list[OnlineRecord]]) -> None:
            with backend.open() as own:
                start.wait(timeout=60)
                for batch in plan:
                    own.upsert(batch, ttl_ms=ttl_ms)

        with ThreadPoolExecutor(writers) as pool:
            for done in [pool.submit(write, plan) for plan in plans]:
                done.result()
    else:
        # One owner per database: the writers' calls interleave in a random order instead.
        turns = [writer for writer, plan in enumerate(plans) for _ in plan]
        random.Random(23).shuffle(turns)
        pending = [iter(plan) for plan in plans]
        for writer in turns:
            store.upsert(next(pending[writer]), ttl_ms=ttl_ms)
    for entity in ENTITIES:
        read = assert_whole(store.get(group, entity))
        assert read.version == (NOW, REVISIONS)  # whichever writer's tie came last


# -- TTL ---------------------------------------------------------------------------------------


def test_ttl_expiry_at_explicit_now(store: OnlineStore, group: str) -> None:
    ttl_ms = DAY_MS
    written = record(group, "e", NOW)
    store.upsert([written], ttl_ms=ttl_ms)
    assert store.get(group, "e", now_ms=NOW) == written
    assert store.get(group, "e", now_ms=NOW + ttl_ms) == written  # the boundary is still alive
    assert store.get(group, "e", now_ms=NOW + ttl_ms + 1) is None
    assert store.get_many([(group, "e")], now_ms=NOW + ttl_ms + 1) == {(group, "e"): None}


def test_records_without_ttl_never_expire(store: OnlineStore, group: str) -> None:
    written = record(group, "e", NOW)
    store.upsert([written])
    assert store.get(group, "e", now_ms=NOW + 100_000 * DAY_MS) == written


def test_ttl_belongs_to_each_written_version(store: OnlineStore, group: str) -> None:
    store.upsert([record(group, "e", NOW - 1)], ttl_ms=DAY_MS)
    newer = record(group, "e", NOW)
    store.upsert([newer])  # no TTL now
    assert store.get(group, "e", now_ms=NOW + 10 * DAY_MS) == newer


def test_already_expired_records_are_not_written(store: OnlineStore, group: str) -> None:
    old = NOW - 3 * DAY_MS
    store.upsert([record(group, "e", old)], ttl_ms=DAY_MS)
    assert store.get(group, "e", now_ms=old) is None


# -- payloads ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state", [b"", b"\x00\x01\xff" * 10, bytes(range(256)) * 400], ids=["empty", "binary", "100kB"]
)
def test_state_bytes_round_trip(store: OnlineStore, group: str, state: bytes) -> None:
    written = OnlineRecord(group, "e", NOW, {"n": 1}, state)
    store.upsert([written])
    read = store.get(group, "e")
    assert read is not None
    assert read.state == state
    assert type(read.state) is bytes


def test_values_of_every_feature_value_type(store: OnlineStore, group: str) -> None:
    values: dict[str, Any] = {
        "int": 42,
        "negative": -7,
        "big": 2**62,
        "zero_float": 0.0,
        "float": 3.141592653589793,
        "tiny": 1e-300,
        "str": "Zürich → 東京 🚕",
        "empty_str": "",
        "true": True,
        "false": False,
        "none": None,
        "名前": "unicode feature name",
    }
    store.upsert([OnlineRecord(group, "e", NOW, values)])
    read = store.get(group, "e")
    assert read is not None
    assert read.values == values
    assert {name: type(value) for name, value in read.values.items()} == {
        name: type(value) for name, value in values.items()
    }


def test_empty_values_and_unicode_entities(store: OnlineStore, group: str) -> None:
    entities = ["zürich", "東京", "a/b:c", "with space", "x" * 300]
    store.upsert([OnlineRecord(group, entity, NOW, {}) for entity in entities])
    result = store.get_many([(group, entity) for entity in entities])
    assert all(result[(group, entity)] == OnlineRecord(group, entity, NOW, {}) for entity in entities)


# -- delete_group and checkpoints --------------------------------------------------------------


def test_delete_group_removes_only_that_group(store: OnlineStore) -> None:
    doomed, kept = fresh_group(), fresh_group()
    store.upsert([record(doomed, f"e{i}") for i in range(20)] + [record(kept, "e0")])
    store.write_checkpoint(f"{doomed}.offsets", b"kept")

    store.delete_group(doomed)

    assert store.get_many([(doomed, f"e{i}") for i in range(20)]) == {(doomed, f"e{i}"): None for i in range(20)}
    assert store.get(kept, "e0") == record(kept, "e0")
    assert store.read_checkpoint(f"{doomed}.offsets") == b"kept"
    newer = record(doomed, "e1", NOW + 1)
    store.upsert([newer])
    assert store.get(doomed, "e1") == newer


def test_a_group_deleted_then_replayed_reads_again(store: OnlineStore, group: str) -> None:
    written = [whole(group, f"e{i}", NOW, 5_000 + i) for i in range(5)]
    store.upsert(written)
    store.delete_group(group)
    assert store.get(group, "e0") is None
    store.upsert(written)  # the same versions: a replay
    assert store.get_many([r.key for r in written]) == {r.key: r for r in written}


def test_delete_group_of_an_unknown_group_is_a_no_op(store: OnlineStore) -> None:
    store.delete_group(fresh_group())


def test_checkpoints(store: OnlineStore) -> None:
    name = f"proc.{uuid.uuid4().hex[:8]}"
    assert store.read_checkpoint(name) is None
    store.write_checkpoint(name, b'{"partition": 0, "offset": 41}')
    assert store.read_checkpoint(name) == b'{"partition": 0, "offset": 41}'
    store.write_checkpoint(name, b"\x00\xff")
    assert store.read_checkpoint(name) == b"\x00\xff"
    store.write_checkpoint(name, b"")
    assert store.read_checkpoint(name) == b""


def test_checkpoint_written_with_an_upsert(store: OnlineStore, group: str) -> None:
    name = f"proc.{uuid.uuid4().hex[:8]}"
    store.upsert([record(group, "e")], checkpoint=(name, b"offset=7"))
    assert store.get(group, "e") == record(group, "e")
    assert store.read_checkpoint(name) == b"offset=7"
    store.upsert([], checkpoint=(name, b"offset=8"))
    assert store.read_checkpoint(name) == b"offset=8"


# -- errors and lifecycle ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"group": ""}, "group must be a non-empty str"),
        ({"group": "a\x00b"}, "without NUL"),
        ({"entity": ""}, "entity must be a non-empty str"),
        ({"event_time": -1}, "event_time must be UTC epoch ms"),
        ({"event_time": True}, "event_time must be an int"),
        ({"revision": -1}, f"revision must be in [0, {MAX_REVISION}]"),
        ({"revision": MAX_REVISION + 1}, f"revision must be in [0, {MAX_REVISION}]"),
        ({"revision": 1.0}, "revision must be an int"),
        ({"values": [1, 2]}, "values must be a dict"),
        ({"state": "text"}, "state must be bytes"),
    ],
)
def test_invalid_records_are_refused(fields: dict[str, Any], message: str) -> None:
    arguments = {"group": "g", "entity": "e", "event_time": NOW, "values": {}, **fields}
    with pytest.raises(InvalidRecordError, match=message.replace("[", r"\[").replace("]", r"\]")):
        OnlineRecord(**arguments)


def test_an_unencodable_value_fails_the_whole_call_before_writing(store: OnlineStore, group: str) -> None:
    with pytest.raises(InvalidRecordError, match=rf"group='{group}', entity='bad'.*values must map"):
        store.upsert([record(group, "good"), OnlineRecord(group, "bad", NOW, {"x": object()})])
    assert store.get(group, "good") is None


def test_bad_arguments_are_refused(store: OnlineStore, group: str) -> None:
    with pytest.raises(InvalidRecordError, match="ttl_ms must be a positive int"):
        store.upsert([record(group, "e")], ttl_ms=0)
    with pytest.raises(InvalidRecordError, match=r"records\[0\] must be an OnlineRecord, got dict"):
        store.upsert([{"group": group}])  # type: ignore[list-item]
    with pytest.raises(InvalidRecordError, match=r"keys\[1\] must be a \(group, entity\) tuple"):
        store.get_many([(group, "e"), group])  # type: ignore[list-item]
    with pytest.raises(InvalidRecordError, match="checkpoint name"):
        store.write_checkpoint("", b"")


def test_closed_store_refuses_use(backend: Backend, group: str) -> None:
    with backend.open() as other:
        other.upsert([record(group, "e")])
    assert other.closed
    other.close()  # idempotent
    with pytest.raises(StoreClosedError, match="closed"):
        other.get(group, "e")
    with pytest.raises(StoreClosedError, match="closed"):
        other.upsert([record(group, "e")])


# -- property: the final record is the max-version record, the last of equal ones -------------

_writes = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 2)),  # entity, event_time offset, revision
    min_size=1,
    max_size=40,
)


@given(writes=_writes, cuts=st.lists(st.integers(0, 40), max_size=6))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_final_record_is_the_max_version_record(
    store: OnlineStore, writes: list[tuple[int, int, int]], cuts: list[int]
) -> None:
    group = fresh_group()

    def make(index: int, entity: int, offset: int, revision: int) -> OnlineRecord:
        # Equal versions differ by `index`: of those, the last write wins.
        return OnlineRecord(
            group, f"e{entity}", NOW + offset, {"v": f"{offset}.{revision}", "i": index}, bytes([index]), revision
        )

    records = [make(index, *write) for index, write in enumerate(writes)]
    bounds = sorted({0, len(records), *(cut for cut in cuts if cut < len(records))})
    for start, end in itertools.pairwise(bounds):
        store.upsert(records[start:end])

    expected: dict[tuple[str, str], OnlineRecord] = {}
    for written in records:
        best = expected.get(written.key)
        if best is None or written.version >= best.version:
            expected[written.key] = written
    keys = [(group, f"e{entity}") for entity in range(4)]
    assert store.get_many(keys) == {key: expected.get(key) for key in keys}
