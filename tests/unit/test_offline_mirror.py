"""The offline Parquet mirror and raw archive: layout on disk, DuckDB and pyarrow readers,
deduplication, time ranges, atomic writes (no server needed)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from state.exceptions import MirrorError
from state.offline import ParquetMirror, RawArchive, read_mirror, read_raw, remove_stale_temporaries
from state.offline.layout import PARTITIONING, partition_filter

HOUR = 3_600_000
T0 = int(datetime(2024, 3, 9, 22, 0, tzinfo=UTC).timestamp() * 1000)  # crosses midnight at T0 + 2h
PART = re.compile(r"^dt=\d{4}-\d{2}-\d{2}/hour=\d{2}/part-[0-9a-f]{32}\.parquet$")


def rows(n: int, *, start: int = T0, step: int = HOUR // 2, city: str = "a") -> list[dict[str, Any]]:
    return [
        {
            "entity_key": f"{city}-zone-{i % 3}",
            "event_time": start + i * step,
            "revision": i + 1,
            "requests_10m": i,
            "mean_distance_1h": None if i % 4 == 0 else i / 2,
            "written_by": "stream",
        }
        for i in range(n)
    ]


def files_under(base: Path) -> list[str]:
    return sorted(str(path.relative_to(base)) for path in base.rglob("*") if path.is_file())


def test_layout_on_disk_is_hive_partitioned_by_event_hour(tmp_path: Path) -> None:
    written = ParquetMirror(tmp_path, "zone_demand", 1).write(rows(8))  # 4 hours: 22h, 23h, 00h, 01h

    base = tmp_path / "zone_demand" / "v1"
    assert sorted(written) == sorted(base / name for name in files_under(base))
    names = files_under(base)
    assert len(names) == 4
    assert all(PART.match(name) for name in names), names
    assert [name.rsplit("/", 1)[0] for name in names] == [
        "dt=2024-03-09/hour=22",
        "dt=2024-03-09/hour=23",
        "dt=2024-03-10/hour=00",
        "dt=2024-03-10/hour=01",
    ]


def test_duckdb_reads_it_with_hive_partitioning(tmp_path: Path) -> None:
    ParquetMirror(tmp_path, "zone_demand", 1).write(rows(8))
    source = f"read_parquet('{tmp_path}/zone_demand/v1/*/*/*.parquet', hive_partitioning=true)"

    columns = {name: kind for name, kind, *_ in duckdb.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    found = duckdb.sql(
        f"SELECT dt, hour, count(*), sum(requests_10m) FROM {source} GROUP BY ALL ORDER BY ALL"
    ).fetchall()

    assert {"entity_key", "event_time", "revision", "written_by", "dt", "hour"} <= set(columns)
    assert columns["dt"] == "DATE"
    assert [(str(dt), int(hour), n) for dt, hour, n, _ in found] == [
        ("2024-03-09", 22, 2),
        ("2024-03-09", 23, 2),
        ("2024-03-10", 0, 2),
        ("2024-03-10", 1, 2),
    ]
    assert sum(total for *_, total in found) == sum(range(8))


def test_duckdb_types_the_padded_hour_as_asked(tmp_path: Path) -> None:
    # DuckDB keeps zero-padded partition values ('00', '07') as VARCHAR unless told otherwise.
    ParquetMirror(tmp_path, "zone_demand", 1).write(rows(8))
    files = f"{tmp_path}/zone_demand/v1/*/*/*.parquet"
    source = f"read_parquet('{files}', hive_partitioning=true, hive_types={{'hour': INTEGER}})"
    assert duckdb.sql(f"SELECT DISTINCT hour FROM {source} ORDER BY 1").fetchall() == [(0,), (1,), (22,), (23,)]


def test_pyarrow_dataset_reads_it(tmp_path: Path) -> None:
    ParquetMirror(tmp_path, "zone_demand", 1).write(rows(8))
    dataset = ds.dataset(tmp_path / "zone_demand" / "v1", format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 8
    assert {"dt", "hour"} <= set(table.column_names)
    assert table.schema.field("revision").type == pa.int64()


def test_read_mirror_round_trip_sorted_and_typed(tmp_path: Path) -> None:
    mirror = ParquetMirror(tmp_path, "zone_demand", 1)
    mirror.write(list(reversed(rows(8))))

    table = read_mirror(tmp_path, "zone_demand", 1)

    assert table.column("event_time").to_pylist() == [T0 + i * HOUR // 2 for i in range(8)]
    assert table.column("requests_10m").to_pylist() == list(range(8))
    assert table.schema.field("entity_key").type == pa.string()
    assert "dt" not in table.column_names
    assert mirror.read(columns=["entity_key", "dt", "hour"]).column_names == ["entity_key", "dt", "hour"]


def test_duplicates_from_an_at_least_once_writer_are_read_once(tmp_path: Path) -> None:
    mirror = ParquetMirror(tmp_path, "zone_demand", 1)
    mirror.write(rows(6))
    mirror.write(rows(6)[2:5])  # replayed after a crash
    mirror.write(rows(2, city="b"))  # same times, other entities: not duplicates

    table = read_mirror(tmp_path, "zone_demand", 1)

    assert table.num_rows == 8
    assert sorted(zip(table["entity_key"].to_pylist(), table["event_time"].to_pylist(), strict=True)) == sorted(
        [(r["entity_key"], r["event_time"]) for r in rows(6) + rows(2, city="b")]
    )
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/zone_demand/v1/*/*/*.parquet')").fetchall() == [
        (11,)
    ]


def test_time_range_is_half_open_and_prunes_partitions(tmp_path: Path) -> None:
    ParquetMirror(tmp_path, "zone_demand", 1).write(rows(8))

    def times(**bounds: int) -> list[int]:
        return read_mirror(tmp_path, "zone_demand", 1, **bounds).column("event_time").to_pylist()

    assert times(start_ms=T0 + HOUR, end_ms=T0 + 3 * HOUR) == [
        T0 + HOUR,
        T0 + 3 * HOUR // 2,
        T0 + 2 * HOUR,
        T0 + 5 * HOUR // 2,
    ]
    assert times(start_ms=T0 + HOUR + 1) == [T0 + 3 * HOUR // 2 + k * HOUR // 2 for k in range(5)]
    assert times(end_ms=T0 + 1) == [T0]
    assert times(start_ms=T0 + 10 * HOUR) == []
    dataset = ds.dataset(tmp_path / "zone_demand" / "v1", format="parquet", partitioning=PARTITIONING)
    pruned = dataset.get_fragments(filter=partition_filter(T0 + HOUR, T0 + 3 * HOUR))
    assert sorted(Path(fragment.path).parent.name for fragment in pruned) == ["hour=00", "hour=23"]
    with pytest.raises(MirrorError, match=r"end_ms .* is before start_ms"):
        times(start_ms=T0 + HOUR, end_ms=T0)


def test_empty_writes_are_no_ops(tmp_path: Path) -> None:
    assert ParquetMirror(tmp_path, "zone_demand", 1).write([]) == []
    assert ParquetMirror(tmp_path, "zone_demand", 1).write(pa.table({"entity_key": pa.array([], pa.string())})) == []
    assert RawArchive(tmp_path).write([]) == []
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MirrorError, match="no offline data at"):
        read_mirror(tmp_path, "zone_demand", 1)


def test_a_pyarrow_table_is_accepted_and_its_types_normalised(tmp_path: Path) -> None:
    table = pa.table(
        {
            "entity_key": ["a", "b"],
            "event_time": pa.array([T0, T0 + 1], pa.int64()),
            "score": [0.5, None],
            "revision": pa.array([3, 3], pa.int32()),
            "written_by": ["backfill", "backfill"],
        }
    )
    ParquetMirror(tmp_path, "scores", None).write(table)
    assert files_under(tmp_path / "scores")[0].startswith("dt=2024-03-09/hour=22/")
    read = read_mirror(tmp_path, "scores")
    assert read.schema.field("revision").type == pa.int64()
    assert read.schema.field("written_by").type == pa.string()


def test_column_types_that_drift_between_files_are_unified(tmp_path: Path) -> None:
    mirror = ParquetMirror(tmp_path, "zone_demand", 1)
    mirror.write([{**rows(1)[0], "mean_distance_1h": None}])  # a null-typed column in this file
    mirror.write(rows(2)[1:])
    table = read_mirror(tmp_path, "zone_demand", 1)
    assert table.schema.field("mean_distance_1h").type == pa.float64()
    assert table.column("mean_distance_1h").to_pylist() == [None, 0.5]


def test_a_declared_schema_keeps_types_stable(tmp_path: Path) -> None:
    schema = pa.schema(
        [
            ("entity_key", pa.string()),
            ("event_time", pa.int64()),
            ("mean_distance_1h", pa.float64()),
            ("revision", pa.int64()),
            ("written_by", pa.string()),
        ]
    )
    mirror = ParquetMirror(tmp_path, "zone_demand", 1, schema=schema)
    [path] = mirror.write([{"entity_key": "a", "event_time": T0, "revision": 1, "written_by": "stream"}])
    assert pa.parquet.read_schema(path).field("mean_distance_1h").type == pa.float64()


def test_bad_rows_are_reported_all_at_once(tmp_path: Path) -> None:
    mirror = ParquetMirror(tmp_path, "zone_demand", 1)
    with pytest.raises(MirrorError) as caught:
        mirror.write([{"entity_key": "a", "event_time": None, "dt": "x", "revision": 1}])
    message = str(caught.value)
    for problem in ["'dt'", "'event_time' has 1 null", "'written_by' (string) is missing"]:
        assert problem in message
    with pytest.raises(MirrorError, match="must be UTC epoch ms ≥ 0"):
        mirror.write([{**rows(1)[0], "event_time": -5}])
    assert not (tmp_path / "zone_demand").exists()


@pytest.mark.parametrize(
    ("dataset", "version", "message"),
    [("raw", 1, "reserved for the raw event archive"), ("../up", 1, "dataset must be"), ("ok", 0, "version must be")],
)
def test_bad_names_are_refused(tmp_path: Path, dataset: str, version: int, message: str) -> None:
    with pytest.raises(MirrorError, match=message):
        ParquetMirror(tmp_path, dataset, version)


def test_no_temporary_file_is_left_and_none_is_read(tmp_path: Path) -> None:
    mirror = ParquetMirror(tmp_path, "zone_demand", 1)
    mirror.write(rows(2))
    folder = next((tmp_path / "zone_demand" / "v1").glob("dt=*/hour=*"))
    assert not list(folder.glob(".*"))
    (folder / ".part-crashed.999999999.parquet.tmp").write_bytes(b"PAR1 half a file")  # a killed writer's
    (folder / f".part-running.{os.getpid()}.parquet.tmp").write_bytes(b"PAR1")  # a live writer's
    assert read_mirror(tmp_path, "zone_demand", 1).num_rows == 2
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/zone_demand/v1/*/*/*.parquet')").fetchall() == [
        (2,)
    ]
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in folder.glob(".*")] == [f".part-running.{os.getpid()}.parquet.tmp"]


def raw_events(topic: str, n: int, *, start: int = T0) -> list[dict[str, Any]]:
    return [
        {
            "topic": topic,
            "kafka_partition": i % 2,
            "kafka_offset": i // 2,
            "key": f"zone-{i}".encode(),
            "value": b'{"event_time": %d}' % (start + i * HOUR),
            "event_time": start + (n - i) * HOUR // 3,  # event times out of offset order
            "event_type": "trip_requested",
        }
        for i in range(n)
    ]


def test_raw_archive_layout_dedup_and_kafka_order(tmp_path: Path) -> None:
    archive = RawArchive(tmp_path)
    archive.write(raw_events("rides.trips", 6) + raw_events("rides.payments", 2))
    archive.write(raw_events("rides.trips", 6)[:3])  # repeated after a crash

    base = tmp_path / "raw" / "rides.trips"
    assert all(PART.match(name) for name in files_under(base))
    assert (tmp_path / "raw" / "rides.payments").is_dir()
    table = read_raw(tmp_path, "rides.trips")
    assert table.num_rows == 6
    assert list(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (1, 2),
    ]
    assert table.schema.field("key").type == pa.binary()
    assert table["key"][0].as_py() == b"zone-0"
    within = archive.read(
        "rides.trips", start_ms=T0 + HOUR, end_ms=T0 + 2 * HOUR, columns=["kafka_offset", "event_time"]
    )
    assert within.column_names == ["kafka_offset", "event_time"]
    assert all(T0 + HOUR <= t < T0 + 2 * HOUR for t in within["event_time"].to_pylist())
    assert within.num_rows == 3
    duck = duckdb.sql(
        f"SELECT DISTINCT topic FROM read_parquet('{tmp_path}/raw/*/*/*/*.parquet', hive_partitioning=true) ORDER BY 1"
    ).fetchall()
    assert duck == [("rides.payments",), ("rides.trips",)]


def test_raw_archive_accepts_null_keys_values_and_event_types(tmp_path: Path) -> None:
    event = {**raw_events("rides.trips", 1)[0], "key": None, "value": None, "event_type": None}
    RawArchive(tmp_path).write([event])
    assert read_raw(tmp_path, "rides.trips").select(["key", "value", "event_type"]).to_pylist() == [
        {"key": None, "value": None, "event_type": None}
    ]
    with pytest.raises(MirrorError, match="column 'event_time' has 1 null"):
        RawArchive(tmp_path).write([{**event, "event_time": None}])


def test_raw_archive_refuses_extra_columns_and_bad_topics(tmp_path: Path) -> None:
    with pytest.raises(MirrorError, match="do not fit the declared schema"):
        RawArchive(tmp_path).write([{**raw_events("t", 1)[0], "extra": 1}])
    with pytest.raises(MirrorError, match="topic must be"):
        RawArchive(tmp_path).write([{**raw_events("t", 1)[0], "topic": "../etc"}])
    with pytest.raises(MirrorError, match="no offline data at"):
        read_raw(tmp_path, "never.archived")
