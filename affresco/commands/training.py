"""`affresco training-set`: labels + point-in-time-correct features → Parquet."""

from __future__ import annotations

import json
import os
import resource
import time
from collections import defaultdict
from pathlib import Path

import typer

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings
from affresco.commands.process import resolve_groups
from processors.exceptions import ProcessorsError
from state.exceptions import StateError
from streams.exceptions import StreamsError, UnknownEventTypeError

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


def training_set(
    labels: str = typer.Option(..., "--labels", help="A topic of outcome events, or a .parquet file of label rows."),
    features: str = typer.Option(
        ..., "--features", help="group:feature,… e.g. zone_demand:requests_10m,city_eta:mean_eta_s_1h"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write."),
    label_type: str = typer.Option("trip_completed", "--label-type", help="Event type of label events (topic labels)."),
    time_column: str = typer.Option(
        "requested_at",
        "--time-field",
        help="Label column with the prediction time (features as of 1 ms before it: never the request's own event).",
    ),
    entity: list[str] = typer.Option([], "--entity", help="group=label_column when the group's key field differs."),
    source: str = typer.Option("kafka", "--source", help="Where feature source events come from: kafka or archive."),
    definitions: Path | None = typer.Option(None, "--definitions", "-d", help="YAML instead of the registry."),
    workers: int = typer.Option(
        os.cpu_count() or 1, "--workers", min=1, help="Processes joining groups in parallel (default: CPU cores)."
    ),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Build a point-in-time-correct training set: every feature as a prediction at each label's time sees it."""
    import pyarrow.parquet as pq

    from affresco.settings import PlatformSettings
    from backfill.resources import peak_rss_mb
    from backfill.training import FeatureRequest, build_training_set

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
        for g in groups:
            unknown = [f for f in wanted[g.name] if f not in g.feature_names]
            if unknown:
                fail(f"{g.ref} has no feature {', '.join(unknown)} (features: {', '.join(g.feature_names)})")
        built = build_training_set(
            labels, [FeatureRequest(g, tuple(wanted[g.name]), mapping.get(g.name) or next(iter(g.key.fields), ""))
                     for g in groups],
            time_column=time_column, label_type=label_type, source=source, settings=kafka,
            offline_root=settings.offline, workers=workers,
        )  # fmt: skip
        joined, invalid_labels, requests = built.table, built.invalid_labels, built.requests
    except UnknownEventTypeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--label-type") from None
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
