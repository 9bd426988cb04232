"""Live mode: a client asks for each trip's prediction before the trip's events go out.

    >>> from streams.sim import simulate
    >>> asked = []
    >>> class Recorder:
    ...     def predict_rows(self, rows):
    ...         asked.extend(rows)
    ...         return 0
    >>> out = list(with_predictions(simulate(200, seed=1, start_ms=1_714_550_400_000), Recorder()))
    >>> len(out), len(asked) == sum(e.event_type == "trip_requested" for e in out)
    (200, True)

`with_predictions` passes events through in order; it holds back a few of them so that trip
requests close in time are predicted in one batch, and yields a `trip_requested` (and so, the
stream being sorted by event time, everything that follows it) only after its prediction was
asked for. The row is what the rider's app knows at request time: the request's fields, its event
time as `requested_at` (the model's time field: the prediction's event time) and the trip id as
`join_key`, with which monitoring pairs the prediction with the trip's outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from streams.events.base import Event
from streams.events.domain import TripRequested

__all__ = ["LiveStats", "Predictor", "request_row", "with_predictions"]


class Predictor(Protocol):
    """Whatever asks for predictions: returns how many of the rows failed (it counts and retries itself)."""

    def predict_rows(self, rows: list[dict[str, Any]], /) -> int: ...


@dataclass
class LiveStats:
    """Trip requests predicted before they went out, and how many of those predictions failed."""

    requested: int = 0
    failed: int = 0
    batches: int = 0


def request_row(request: TripRequested) -> dict[str, Any]:
    """The prediction request for a trip request, as the rider's app would send it.

    >>> from streams.events.domain import TripRequested
    >>> r = TripRequested(event_time=1_714_550_400_000, trip_id="t-1", rider_id="r-000001", country="BR",
    ...                   city="sao", pickup_zone="sao-03", dropoff_zone="sao-07", distance_km=4.2)
    >>> request_row(r)["join_key"], request_row(r)["requested_at"]
    ('t-1', 1714550400000)
    """
    return {
        "pickup_zone": request.pickup_zone,
        "city": request.city,
        "country": request.country,
        "rider_id": request.rider_id,
        "distance_km": request.distance_km,
        "requested_at": request.event_time,
        "join_key": request.trip_id,
    }


def with_predictions(
    events: Iterator[Event],
    predictor: Predictor,
    *,
    batch_size: int = 50,
    max_span_ms: int = 2_000,
    stats: LiveStats | None = None,
) -> Iterator[Event]:
    """`events`, each trip request predicted (in batches of up to `batch_size`) before it is yielded.

    A batch closes when it holds `batch_size` requests or when the next event is more than
    `max_span_ms` of event time after its first request: a request's features are read when its
    batch is sent, so a long span would read the later ones' features before the events in
    between were produced.
    """
    if batch_size < 1:
        msg = f"batch_size must be >= 1, got {batch_size}"
        raise ValueError(msg)
    stats = stats if stats is not None else LiveStats()
    held: list[Event] = []
    rows: list[dict[str, Any]] = []
    first_ms = 0

    def flush() -> Iterator[Event]:
        if rows:
            stats.batches += 1
            stats.requested += len(rows)
            stats.failed += predictor.predict_rows(list(rows))
            rows.clear()
        yield from held
        held.clear()

    for event in events:
        if rows and event.event_time - first_ms > max_span_ms:
            yield from flush()
        if isinstance(event, TripRequested):
            if not rows:
                first_ms = event.event_time
            rows.append(request_row(event))
            held.append(event)
            if len(rows) >= batch_size:
                yield from flush()
        elif rows:
            held.append(event)  # behind a request still waiting for its prediction
        else:
            yield event
    yield from flush()
