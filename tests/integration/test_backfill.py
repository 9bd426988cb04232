"""Backfill replays the log through the same engine: its values equal the stream processor's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backfill import BackfillJob, run_backfill
from backfill.source import SourceKind
from processors.runtime.flow import ProcessorOptions, run_processor
from processors.runtime.sink import OutputConfig
from state.online import open_store
from streams.admin import TopicAdmin
from streams.settings import KafkaSettings
from tests.integration.processor_helpers import (
    T0,
    compile_groups,
    demo_group_docs,
    fields_of,
    group_docs,
    judge,
    latest_times,
    produce_simulation,
    read_records,
)
from tests.reference import group_values_as_of

pytestmark = pytest.mark.integration

END = T0 + 365 * 24 * 3_600_000


def test_replay_equals_streaming_for_every_demo_feature_from_kafka_and_past_retention_from_the_archive(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    trips, pings = unique("trips"), unique("pings")
    # Some events out of order, some late: the replays must reject exactly the stream's late events.
    produce_simulation(kafka_settings, trips, pings, n=12_000, seed=21, delayed=0.03)
    groups = compile_groups(demo_group_docs(trips, pings))
    assert sum(len(g.features) for g in groups) == 16  # the demo's four groups, every feature
    judged = {g.ref: judge(kafka_settings, g) for g in groups}
    streamed_db, offline = tmp_path / "streamed", tmp_path / "offline"
    counters = run_processor(
        groups,
        OutputConfig(
            kafka_settings, lambda: open_store("rocksdb", path=streamed_db), offline, emit_feature_updates=False
        ),
        ProcessorOptions(until_idle=True),
    )
    assert sum(counters.groups[g.ref].late for g in groups) > 0
    streamed_history = {g.ref: _history(offline, g, "stream") for g in groups}

    def backfill_equals_streaming(source: SourceKind) -> None:
        db = tmp_path / f"backfilled-{source}"
        for group in groups:
            # From the archive the processor wrote; from Kafka into an offline store of its own.
            root = offline if source == "archive" else tmp_path / "offline-kafka"
            job = BackfillJob(group, source, T0, END, root, tmp_path / "cp", chunk_size=1500, load_online=True)
            report = run_backfill(job, kafka_settings, lambda: open_store("rocksdb", path=db))
            assert report.invalid == 0 and report.late == counters.groups[group.ref].late, (source, group.ref)
            latest = latest_times(group, judged[group.ref].accepted)
            assert report.loaded_online == len(latest) > 0
            keys = [(group.ref, e) for e in latest]
            streamed, backfilled = read_records(streamed_db, keys), read_records(db, keys)
            differ = [k for k in keys if streamed[k] != backfilled[k]]
            assert not differ, (source, group.ref, differ[:3])
            # The offline history too: the same rows, row for row, whoever wrote them.
            assert _history(root, group, "backfill") == streamed_history[group.ref], (source, group.ref)

    backfill_equals_streaming("kafka")
    # Past Kafka's retention: the topics are gone, only the raw archive still has the history.
    TopicAdmin(kafka_settings).delete([trips, pings])
    backfill_equals_streaming("archive")


def _history(root: Path, group: Any, written_by: str) -> list[dict[str, Any]]:
    """The rows of a group's dataset one job wrote (each once), without the writer column."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(root / group.name / f"v{group.version}", format="parquet").to_table()
    rows = table.filter(pc.equal(table["written_by"], written_by)).drop_columns(["written_by"]).to_pylist()
    unique = {(r["entity_key"], r["event_time"]): r for r in rows}
    return [unique[k] for k in sorted(unique)]


def test_a_new_version_is_backfilled_over_all_history_from_the_archive(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    trips, pings = unique("trips"), unique("pings")
    events = produce_simulation(kafka_settings, trips, pings, n=6000, seed=8)
    v1 = group_docs(trips, pings)[0]
    offline = tmp_path / "offline"
    run_processor(
        compile_groups([v1]),
        OutputConfig(kafka_settings, lambda: open_store("rocksdb", path=tmp_path / "v1"), offline,
                     emit_feature_updates=False),
        ProcessorOptions(until_idle=True),
    )  # fmt: skip
    # v2 adds a feature over a longer window: its values need all of history, not just what v1 kept.
    longer = {"name": "mean_surge_1d", "agg": "mean", "expr": "surge", "window": "1d"}
    v2_doc = {**v1, "version": 2, "features": [*v1["features"], longer]}
    [v2] = compile_groups([v2_doc])
    job = BackfillJob(v2, "archive", T0, END, offline, tmp_path / "cp", chunk_size=1000, load_online=True)
    db = tmp_path / "v2"
    report = run_backfill(job, kafka_settings, lambda: open_store("rocksdb", path=db))
    rows = fields_of(events, v2.event_type)
    latest = latest_times(v2, rows)
    assert report.loaded_online == len(latest) > 0 and report.accepted == len(rows)
    records = read_records(db, [(v2.ref, e) for e in latest])
    for entity, (t, _) in latest.items():
        record = records[(v2.ref, entity)]
        assert record is not None and record.event_time == t
        expected = group_values_as_of(v2, rows, t)[entity]
        assert record.values == expected, entity


def test_interrupted_backfill_resumes_to_the_same_result(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    trips, pings = unique("trips"), unique("pings")
    events = produce_simulation(kafka_settings, trips, pings, n=8000, seed=4)
    group = compile_groups(group_docs(trips, pings))[0]

    def job(name: str) -> BackfillJob:
        return BackfillJob(
            group, "kafka", T0, END, tmp_path / name, tmp_path / f"cp-{name}", chunk_size=500, load_online=True
        )

    whole = run_backfill(job("whole"), kafka_settings, lambda: open_store("rocksdb", path=tmp_path / "whole.db"))
    part = run_backfill(
        job("parts"), kafka_settings, lambda: open_store("rocksdb", path=tmp_path / "parts.db"), max_chunks=2
    )
    assert part.chunks == 2 and not part.resumed
    rest = run_backfill(job("parts"), kafka_settings, lambda: open_store("rocksdb", path=tmp_path / "parts.db"))
    assert rest.resumed and rest.read == whole.read and rest.accepted == whole.accepted
    keys = [(group.ref, e) for e in latest_times(group, fields_of(events, group.event_type))]
    assert len(keys) == whole.loaded_online > 0
    assert read_records(tmp_path / "whole.db", keys) == read_records(tmp_path / "parts.db", keys)


def test_a_backfill_leaves_no_cyclic_garbage(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    # run_backfill turns the cyclic GC off while it runs (reference counting frees everything):
    # that stays safe only as long as nothing in it makes reference cycles, invalid records included.
    import gc

    from streams.producer import EventProducer

    trips, pings = unique("trips"), unique("pings")
    produce_simulation(kafka_settings, trips, pings, n=3000, seed=9)
    with EventProducer(kafka_settings) as producer:
        producer.send_raw(trips, b'{"event_time": 1}', headers=[("event_type", b"trip_requested")])
        producer.send_raw(trips, b"not json", headers=[("event_type", b"trip_requested")])
    group = compile_groups(group_docs(trips, pings))[0]
    job = BackfillJob(group, "kafka", T0, END, tmp_path / "o", tmp_path / "cp", chunk_size=700, load_online=True)
    gc.collect()
    assert gc.isenabled()
    report = run_backfill(job, kafka_settings, lambda: open_store("rocksdb", path=tmp_path / "db"))
    assert gc.isenabled()  # restored
    assert report.invalid == 2 and report.chunks > 1
    assert gc.collect() == 0


def test_empty_range_does_nothing(kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path) -> None:
    trips, pings = unique("trips"), unique("pings")
    produce_simulation(kafka_settings, trips, pings, n=500, seed=4)
    group = compile_groups(group_docs(trips, pings))[0]
    job = BackfillJob(
        group, "kafka", T0 - 10 * 3_600_000, T0 - 3_600_000, tmp_path / "o", tmp_path / "cp", load_online=True
    )
    report = run_backfill(job, kafka_settings, lambda: open_store("rocksdb", path=tmp_path / "db"))
    assert (report.read, report.updates, report.loaded_online) == (0, 0, 0)


def test_cli_backfill_and_bad_arguments(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from affresco.cli import app
    from tests.integration.processor_helpers import write_yaml

    trips, pings = unique("trips"), unique("pings")
    produce_simulation(kafka_settings, trips, pings, n=1500, seed=2)
    docs = group_docs(trips, pings)
    defs = write_yaml(docs, tmp_path / "defs")
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "AFFRESCO_DATA_DIR": str(tmp_path / "data")})
    name = str(docs[0]["group"])
    ok = runner.invoke(
        app, ["backfill", name, "-d", str(defs), "--from", "2026-01-01", "--to", "2026-02-01", "--load-online"]
    )
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout.strip().splitlines()[-1])
    assert report["read"] > 0 and report["loaded_online"] > 0 and report["invalid"] == 0
    backwards = runner.invoke(app, ["backfill", name, "-d", str(defs), "--from", "2026-02-01", "--to", "2026-01-01"])
    assert backwards.exit_code == 2 and "must be after" in backwards.output
    bad_source = runner.invoke(
        app, ["backfill", name, "-d", str(defs), "--from", "2026-01-01", "--to", "2026-01-02", "--source", "s3"]
    )
    assert bad_source.exit_code == 2 and "expected kafka or archive" in bad_source.output
    bad_time = runner.invoke(app, ["backfill", name, "-d", str(defs), "--from", "yesterday", "--to", "2026-01-02"])
    assert bad_time.exit_code == 2 and "expected an ISO-8601 time" in bad_time.output
    unknown = runner.invoke(app, ["backfill", "nope", "-d", str(defs), "--from", "2026-01-01", "--to", "2026-01-02"])
    assert unknown.exit_code == 2 and "not defined" in unknown.output


def test_consistency_is_zero_on_a_clean_run_and_catches_a_wrong_value(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    from dataclasses import replace

    from backfill.consistency import check_consistency

    trips, pings = unique("trips"), unique("pings")
    produce_simulation(kafka_settings, trips, pings, n=5000, seed=8)
    group = compile_groups(group_docs(trips, pings))[0]
    db = tmp_path / "online"
    run_processor([group], OutputConfig(kafka_settings, lambda: open_store("rocksdb", path=db), None),
                  ProcessorOptions(until_idle=True, archive=False))  # fmt: skip
    from streams.producer import EventProducer
    from streams.topics import Topics

    with EventProducer(kafka_settings) as producer:  # a stray record on the feature topic: counted, not fatal
        producer.send_raw(Topics(kafka_settings).features(group.name), b"not a feature update")
    report = check_consistency(group, kafka_settings, lambda: open_store("rocksdb", path=db, access="read_only"))
    assert report.invalid_updates == 1
    assert report.sampled > 10 and report.compared == 2 * report.sampled  # online and the FeatureUpdate log
    assert (report.mismatches, report.lagging, report.mismatch_rate) == (0, 0, 0.0)

    # Corrupt one online value (same event time, newer revision): the check must notice.
    with open_store("rocksdb", path=db) as store:
        entity = next(e for e in ("nyc-01", "lon-01", "sfo-01", "sao-01") if store.get(group.ref, e))
        record = store.get(group.ref, entity)
        assert record is not None
        store.upsert([replace(record, values={**record.values, "requests_10m": 999}, revision=999)])
    bad = check_consistency(group, kafka_settings, lambda: open_store("rocksdb", path=db, access="read_only"))
    assert bad.mismatches == 1 and bad.examples[0]["entity"] == entity and bad.examples[0]["source"] == "online"
    assert bad.examples[0]["differences"]["requests_10m"]["produced"] == 999


def test_cli_training_set_from_outcome_events(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    import json

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from affresco.cli import app
    from processors.prediction import features_instant
    from tests.integration.processor_helpers import write_yaml
    from tests.reference import group_values_as_of

    trips, pings = unique("trips"), unique("pings")
    events = produce_simulation(kafka_settings, trips, pings, n=3000, seed=6)
    from streams.producer import EventProducer

    with EventProducer(kafka_settings) as producer:  # an invalid label: counted, never a row
        producer.send_raw(trips, b'{"event_time": 1}', headers=[("event_type", b"trip_completed")])
    docs = group_docs(trips, pings)
    defs = write_yaml(docs, tmp_path / "defs")
    demand, supply = (str(d["group"]) for d in docs)
    out = tmp_path / "train.parquet"
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "AFFRESCO_DATA_DIR": str(tmp_path / "data")})
    result = runner.invoke(app, [
        "training-set", "--labels", trips, "-d", str(defs), "--out", str(out), "--entity", f"{supply}=pickup_zone",
        "--features", f"{demand}:requests_10m,{demand}:mean_km_1h,{supply}:available_10m",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    table = pq.read_table(out).to_pylist()
    completed = [e for e in events if e.type_name() == "trip_completed"]
    assert summary["rows"] == len(table) == len(completed)
    assert summary["invalid_labels"] == 1
    group = compile_groups(docs)[0]
    requested = fields_of(events, "trip_requested")
    leaked = 0
    for row in table[::25]:  # strictly before the request: the trip's own request and later events never leak in
        t = row["requested_at"]
        expected = group_values_as_of(group, requested, features_instant(t)).get(row["pickup_zone"])
        assert row[f"{demand}__requests_10m"] == (None if expected is None else expected["requests_10m"])
        inclusive = group_values_as_of(group, requested, t).get(row["pickup_zone"]) or {}
        leaked += inclusive.get("requests_10m") != row[f"{demand}__requests_10m"]
    assert leaked > 0  # as of the request time inclusive, the trip's own request would be counted
    bad = runner.invoke(app, ["training-set", "--labels", trips, "-d", str(defs), "--out", str(out),
                              "--features", "zone_demand-requests"])  # fmt: skip
    assert bad.exit_code == 2 and "expected group:feature" in bad.output
    # Labels from a Parquet file whose time column is a timestamp (µs): the same values as epoch ms.
    import pyarrow as pa

    first = pq.read_table(out).slice(0, 200)
    stamped = first.set_column(
        first.column_names.index("requested_at"), "requested_at",
        pa.array([t * 1000 for t in first.column("requested_at").to_pylist()], pa.timestamp("us")),
    )  # fmt: skip
    labels = tmp_path / "labels.parquet"
    pq.write_table(stamped.select(["requested_at", "pickup_zone"]), labels)
    out2 = tmp_path / "t2.parquet"
    again = runner.invoke(app, ["training-set", "--labels", str(labels), "-d", str(defs), "--out", str(out2),
                                "--features", f"{demand}:requests_10m", "--workers", "1"])  # fmt: skip
    assert again.exit_code == 0, again.output
    feature = f"{demand}__requests_10m"
    assert pq.read_table(out2).column(feature).to_pylist() == first.column(feature).to_pylist()
