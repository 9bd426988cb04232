"""`affresco training-set`: labels + point-in-time-correct features → Parquet."""

from __future__ import annotations

import json
import os
import resource
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings
from affresco.commands.process import resolve_groups
from processors.exceptions import ProcessorsError
from state.exceptions import StateError
from streams.exceptions import StreamsError, UnknownEventTypeError

if TYPE_CHECKING:
    from processors.engine import SourceRow
    from streams.settings import KafkaSettings

__all__ = ["training_set"]


def _parse_features(text: str) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = defaultdict(list)
    for item in (p.strip() for p in text.split(",") if p.strip()):
        group, sep, feature = item.partition(":")
        if not sep or not group or not feature:
            msg = f"expected group:feature[,group:feature…] such as zone_demand:requests_10m, got {item!r}"
            raise typer.BadParameter(msg, param_hint="--features")
        wanted[group].append(feature)
    if not wanted:
        msg = "expected at least one group:feature"
        raise typer.BadParameter(msg, param_hint="--features")
    return wanted


def _labels_from_topic(topic: str, label_type: str, settings: KafkaSettings) -> tuple[list[dict[str, Any]], int]:
    """Valid label events as rows, and how many records of the type were invalid (skipped, counted)."""
    from streams.codec import Rejection
    from streams.events.registry import event_class
    from streams.replay import ReplayRange, replay
    from streams.routing import Accepted, RecordRouter

    try:
        cls = event_class(label_type)
    except UnknownEventTypeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--label-type") from None
    # Routed exactly as the stream processor routes them: the event_type header, else the body's.
    router = RecordRouter([cls], max_bytes=settings.max_message_bytes, max_future_ms=settings.max_future_ms)
    rows: list[dict[str, Any]] = []
    invalid = 0
    now = int(time.time() * 1000)
    for batch in replay(topic, ReplayRange(), settings):
        for m in batch:
            routed = router.route(m, now)
            if isinstance(routed, Accepted):
                rows.append(dict(routed.event.__dict__))
            elif isinstance(routed, Rejection) and routed.expected_type == cls.type_name():
                invalid += 1  # dead-lettered by whoever consumed it first; here it is counted, not used
    return rows, invalid


def training_set(
    labels: str = typer.Option(..., "--labels", help="A topic of outcome events, or a .parquet file of label rows."),
    features: str = typer.Option(
        ..., "--features", help="group:feature,… e.g. zone_demand:requests_10m,city_eta:mean_eta_s_1h"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write."),
    label_type: str = typer.Option("trip_completed", "--label-type", help="Event type of label events (topic labels)."),
    time_column: str = typer.Option(
        "requested_at", "--time-field", help="Label column with the prediction time (features are taken as of it)."
    ),
    entity: list[str] = typer.Option([], "--entity", help="group=label_column when the group's key field differs."),
    source: str = typer.Option("kafka", "--source", help="Where feature source events come from: kafka or archive."),
    definitions: Path | None = typer.Option(None, "--definitions", "-d", help="YAML instead of the registry."),
    workers: int = typer.Option(
        os.cpu_count() or 1, "--workers", min=1, help="Processes joining groups in parallel (default: CPU cores)."
    ),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Build a point-in-time-correct training set: every feature as of each label's time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from affresco.settings import PlatformSettings
    from backfill.resources import peak_rss_mb
    from backfill.source import read_chunks
    from backfill.training import FeatureRequest, label_times, point_in_time_join

    if source not in ("kafka", "archive"):
        msg = f"expected kafka or archive, got {source!r}"
        raise typer.BadParameter(msg, param_hint="--source")
    wanted = _parse_features(features)
    mapping = {}
    for item in entity:
        name, sep, col = item.partition("=")
        if not sep or not name or not col:
            msg = f"expected group=label_column, got {item!r}"
            raise typer.BadParameter(msg, param_hint="--entity")
        mapping[name] = col
    settings, kafka = PlatformSettings(), kafka_settings(bootstrap_servers)
    started = time.monotonic()
    try:
        groups = resolve_groups(list(wanted), definitions, bootstrap_servers)
        if labels.endswith(".parquet"):
            label_table, invalid_labels = pq.read_table(labels), 0
        else:
            label_rows, invalid_labels = _labels_from_topic(labels, label_type, kafka)
            label_table = pa.Table.from_pylist(label_rows)
        if not label_table.num_rows:
            fail(f"no label rows in {labels}")
        columns = label_table.column_names
        if time_column not in columns:
            fail(f"--time-field: label rows have no column {time_column!r} (columns: {', '.join(columns)})")
        until = int(label_times(label_table, time_column).max()) + 1
        requests: list[FeatureRequest] = []
        events: dict[str, Sequence[SourceRow]] = {}
        for g in groups:
            unknown = [f for f in wanted[g.name] if f not in g.feature_names]
            if unknown:
                fail(f"{g.ref} has no feature {', '.join(unknown)} (features: {', '.join(g.feature_names)})")
            column = mapping.get(g.name) or next(iter(g.key.fields), "")
            if column not in columns:
                fail(f"{g.ref}: label rows have no column {column!r} for its entity; give --entity {g.name}=<column>")
            requests.append(FeatureRequest(g, tuple(wanted[g.name]), column))
            rows: list[SourceRow] = []
            for chunk in read_chunks(g, source, 0, until, settings=kafka, offline_root=settings.offline,  # type: ignore[arg-type]
                                     chunk_size=200_000):  # fmt: skip
                rows += chunk.rows
            events[g.ref] = rows
        joined = point_in_time_join(label_table, time_column, requests, events, workers=workers)
    except (ProcessorsError, StreamsError, StateError) as exc:
        fail(str(exc))
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(joined, out)
    filled = {r.column(f): len(joined) - joined.column(r.column(f)).null_count for r in requests for f in r.features}
    err_console.print(f"wrote {len(joined):,} rows to {out}", highlight=False)
    peak = max(peak_rss_mb(), peak_rss_mb(resource.RUSAGE_CHILDREN))  # workers included
    summary = {"rows": len(joined), "out": str(out), "invalid_labels": invalid_labels, "non_null": filled,
               "seconds": round(time.monotonic() - started, 2), "peak_rss_mb": peak}  # fmt: skip
    typer.echo(json.dumps(summary))
