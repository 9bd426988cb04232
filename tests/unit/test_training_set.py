"""Point-in-time joins: each label gets the value as of its time, never anything later; TTL respected."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from backfill.training import FeatureRequest, point_in_time_join
from processors.definitions import FeatureGroup, compile_spec
from processors.engine import SourceRow
from processors.exceptions import ProcessorsError
from streams.sim import simulate
from tests.reference import group_values_as_of

T0 = 1_767_225_600_000
HOUR = 3_600_000


def group(**over: Any) -> FeatureGroup:
    doc: dict[str, Any] = {
        "group": "zone_demand", "version": 1, "owner": "t", "description": "t", "entity": "zone",
        "key": "pickup_zone", "ttl": "2h", "source": {"topic": "rides.trips", "event_type": "trip_requested"},
        "features": [
            {"name": "n_10m", "agg": "count", "window": "10m"},
            {"name": "km_1h", "agg": "mean", "expr": "distance_km", "window": "1h"},
            {"name": "riders_1h", "agg": "approx_distinct", "expr": "rider_id", "window": "1h"},
            {"name": "last_dropoff", "expr": "dropoff_zone"},
        ],
    }  # fmt: skip
    doc.update(over)
    g, problems = compile_spec(doc, "test")
    assert g is not None, problems
    return g


def join(
    labels: list[dict[str, Any]], requests: list[FeatureRequest], events: dict[str, list[SourceRow]]
) -> list[dict[str, Any]]:
    return point_in_time_join(pa.Table.from_pylist(labels), "t", requests, events).to_pylist()


def test_values_equal_the_reference_as_of_each_label_time() -> None:
    g = group()
    events = list(simulate(6000, seed=12, start_ms=T0))
    requests = [e.__dict__ for e in events if e.type_name() == "trip_requested"]
    labels = [
        {"trip_id": e.trip_id, "pickup_zone": e.pickup_zone, "t": e.requested_at, "eta_s": e.eta_s}  # type: ignore[attr-defined]
        for e in events
        if e.type_name() == "trip_completed"
    ]
    rows = [SourceRow(f, 0, i) for i, f in enumerate(requests)]
    request = FeatureRequest(g, ("n_10m", "km_1h", "riders_1h", "last_dropoff"), "pickup_zone")
    joined = join(labels, [request], {g.ref: rows})
    assert len(joined) == len(labels) > 100
    for label, row in list(zip(labels, joined, strict=True))[::3]:
        expected = group_values_as_of(g, requests, label["t"]).get(label["pickup_zone"])
        for f in request.features:
            got = row[request.column(f)]
            want = None if expected is None else expected[f]
            assert got == want, (label, f)  # exact, floats included
        assert row["eta_s"] == label["eta_s"]  # label columns pass through


def test_a_later_event_never_leaks_and_ttl_expires() -> None:
    g = group()

    def req(i: int, t: int, zone: str = "z") -> SourceRow:
        fields = {"event_time": t, "event_type": "trip_requested", "trip_id": f"t{i}", "rider_id": f"r{i}",
                  "country": "US", "city": "c", "pickup_zone": zone, "dropoff_zone": f"d{i}", "distance_km": 1.0 + i,
                  "surge": 1.0}  # fmt: skip
        return SourceRow(fields, 0, i)

    rows = [req(0, T0), req(1, T0 + 60_000), req(2, T0 + 60_001)]  # the last one is 1 ms after the label
    labels = [{"zone": "z", "t": T0 + 60_000}, {"zone": "z", "t": T0 + 60_001}, {"zone": "z", "t": T0 + 3 * HOUR},
              {"zone": "other", "t": T0 + 60_000}, {"zone": None, "t": T0}]  # fmt: skip
    request = FeatureRequest(g, ("n_10m", "km_1h", "last_dropoff"), "zone")
    out = join(labels, [request], {g.ref: rows})
    assert (out[0]["zone_demand__n_10m"], out[0]["zone_demand__km_1h"], out[0]["zone_demand__last_dropoff"]) == (
        2,
        1.5,
        "d1",
    )
    assert (out[1]["zone_demand__n_10m"], out[1]["zone_demand__last_dropoff"]) == (3, "d2")
    assert out[2]["zone_demand__n_10m"] is None  # 3 h after the last event: older than the 2 h TTL
    assert out[3]["zone_demand__n_10m"] is None and out[4]["zone_demand__n_10m"] is None


def test_empty_events_give_nulls() -> None:
    g = group()
    out = join([{"zone": "z", "t": T0}], [FeatureRequest(g, ("n_10m",), "zone")], {})
    assert out == [{"zone": "z", "t": T0, "zone_demand__n_10m": None}]


def test_groups_joined_in_forked_workers_equal_one_process() -> None:
    demand, by_city = group(), group(group="by_city", key="city")
    events = [e.__dict__ for e in simulate(3000, seed=5, start_ms=T0) if e.type_name() == "trip_requested"]
    rows = [SourceRow(f, 0, i) for i, f in enumerate(events)]
    labels = pa.Table.from_pylist(
        [{"pickup_zone": e["pickup_zone"], "city": e["city"], "t": e["event_time"]} for e in events]
    )
    requests = [
        FeatureRequest(demand, ("n_10m", "riders_1h"), "pickup_zone"),
        FeatureRequest(by_city, ("km_1h",), "city"),
    ]
    events_by_ref = {demand.ref: rows, by_city.ref: rows}
    one = point_in_time_join(labels, "t", requests, events_by_ref)
    forked = point_in_time_join(labels, "t", requests, events_by_ref, workers=2)
    assert forked.equals(one)
    assert one.column("by_city__km_1h").null_count < one.num_rows  # values, not only nulls


def test_non_string_entity_columns_match_keys_as_python_str() -> None:
    # The engine keys entities by str(key); a label column of bools must find them the same way.
    g = group(key="surge > 1.5")  # bool keys: "True" / "False"

    def request(i: int) -> SourceRow:
        fields = {"event_time": T0 + i, "event_type": "trip_requested", "trip_id": f"t{i}", "rider_id": "r",
                  "country": "US", "city": "c", "pickup_zone": "z", "dropoff_zone": "d", "distance_km": 1.0,
                  "surge": 2.0 if i % 2 else 1.0}  # fmt: skip
        return SourceRow(fields, 0, i)

    labels = [{"zone": True, "t": T0 + 10}, {"zone": False, "t": T0 + 10}, {"zone": None, "t": T0 + 10}]
    out = join(labels, [FeatureRequest(g, ("n_10m",), "zone")], {g.ref: [request(i) for i in range(6)]})
    assert [r["zone_demand__n_10m"] for r in out] == [3, 3, None]


def test_label_times_may_be_timestamps_of_any_unit_and_must_be_times() -> None:
    g = group()
    rows = [SourceRow({"event_time": T0 + i * 1000, "event_type": "trip_requested", "trip_id": f"t{i}",
                       "rider_id": "r", "country": "US", "city": "c", "pickup_zone": "z", "dropoff_zone": "d",
                       "distance_km": 1.0, "surge": 1.0}, 0, i) for i in range(5)]  # fmt: skip
    request = [FeatureRequest(g, ("n_10m",), "zone")]
    as_ms = pa.table({"zone": ["z"], "t": pa.array([T0 + 2500], pa.int64())})
    as_us = pa.table({"zone": ["z"], "t": pa.array([(T0 + 2500) * 1000], pa.timestamp("us"))})
    got = [
        point_in_time_join(t, "t", request, {g.ref: rows}).column("zone_demand__n_10m").to_pylist()
        for t in (as_ms, as_us)
    ]
    assert got == [[3], [3]]  # events at +0, +1 s and +2 s are in; +3 s is after the label
    with pytest.raises(ProcessorsError, match="epoch milliseconds or timestamps"):
        point_in_time_join(pa.table({"zone": ["z"], "t": ["yesterday"]}), "t", request, {g.ref: rows})


def test_the_prediction_rule_leaves_out_the_request_s_own_event() -> None:
    """Features of a prediction at t are as of t - 1 ms: the trip's own request (at t) never counts."""
    g = group()
    events = list(simulate(6000, seed=12, start_ms=T0))
    requests = [e.__dict__ for e in events if e.type_name() == "trip_requested"]
    labels = [{"pickup_zone": r["pickup_zone"], "t": r["event_time"]} for r in requests]  # one label per request
    rows = [SourceRow(f, 0, i) for i, f in enumerate(requests)]
    request = FeatureRequest(g, ("n_10m",), "pickup_zone")
    inclusive = join(labels, [request], {g.ref: rows})
    table = point_in_time_join(pa.Table.from_pylist(labels), "t", [request], {g.ref: rows}, before=True)
    before = table.to_pylist()
    for label, a, b in zip(labels, inclusive, before, strict=True):
        expected = group_values_as_of(g, requests, label["t"] - 1).get(label["pickup_zone"])
        assert b["zone_demand__n_10m"] == (None if expected is None else expected["n_10m"])
        assert a["zone_demand__n_10m"] >= 1  # as of t inclusive, the request counts itself
    leaks = sum(a["zone_demand__n_10m"] != b["zone_demand__n_10m"] for a, b in zip(inclusive, before, strict=True))
    assert leaks == len(labels)  # every row: each request is its own event
