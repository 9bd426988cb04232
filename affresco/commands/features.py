"""`affresco features apply|list|describe|deprecate|get`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings
from affresco.commands._stores import open_online_store
from processors.exceptions import ProcessorsError
from state.exceptions import StateError
from streams.exceptions import StreamsError

__all__ = ["app"]

app = typer.Typer(
    help="Feature groups: apply definitions, inspect the registry, read online values.", no_args_is_help=True
)
console = Console()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@app.command("apply")
def apply(
    paths: list[Path] = typer.Argument(..., help="YAML files or directories of feature groups."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate only; register nothing."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Validate every definition (all problems at once) and register the groups' versions."""
    from processors.definitions import load_groups
    from processors.registry import FeatureRegistry

    try:
        groups = load_groups(paths)
    except ProcessorsError as exc:
        fail(str(exc), code=2)
    if dry_run:
        for g in groups:
            console.print(f"ok {g.ref} ({len(g.features)} features, source {g.topic}/{g.event_type})")
        return
    try:
        outcomes = FeatureRegistry(kafka_settings(bootstrap_servers)).apply(groups)
    except (ProcessorsError, StreamsError) as exc:
        fail(str(exc))
    for o in outcomes:
        console.print(f"{o.action:>10}  {o.ref}")


@app.command("list")
def list_groups(bootstrap_servers: str | None = BootstrapOption) -> None:
    """Every registered group version, with its status."""
    from processors.registry import FeatureRegistry

    try:
        records = FeatureRegistry(kafka_settings(bootstrap_servers)).records()
    except StreamsError as exc:
        fail(str(exc))
    table = Table("group", "version", "entity", "source", "features", "status")
    for rec in sorted(records.values(), key=lambda r: (r.group, r.version)):
        spec = rec.spec
        status = rec.status if rec.status == "active" else f"[yellow]deprecated[/]: {rec.deprecation_reason}"
        table.add_row(
            rec.group,
            str(rec.version),
            spec["entity"],
            f"{spec['source']['topic']}/{spec['source']['event_type']}",
            str(len(spec["features"])),
            status,
        )
    console.print(table)


@app.command("describe")
def describe(
    group: str = typer.Argument(..., help="Group name (latest version) or name:vN."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """The registered definition of a group version, as JSON."""
    from processors.registry import FeatureRegistry

    try:
        [(_, rec)] = FeatureRegistry(kafka_settings(bootstrap_servers)).resolve([group])
    except (ProcessorsError, StreamsError) as exc:
        fail(str(exc))
    if rec.status == "deprecated":
        err_console.print(f"[yellow]warning:[/] {rec.ref} is deprecated: {rec.deprecation_reason}")
    typer.echo(
        json.dumps(
            {
                "ref": rec.ref,
                "fingerprint": rec.fingerprint,
                "status": rec.status,
                "deprecation_reason": rec.deprecation_reason,
                "spec": rec.spec,
            },
            indent=2,
        )
    )


@app.command("deprecate")
def deprecate(
    group: str = typer.Argument(..., help="Group name."),
    version: int = typer.Option(..., "--version", "-v", min=1, help="The version to deprecate."),
    reason: str = typer.Option(..., "--reason", help="Shown to everyone who uses this version."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Mark a group version deprecated (it keeps working; users are warned)."""
    from processors.registry import FeatureRegistry

    try:
        rec = FeatureRegistry(kafka_settings(bootstrap_servers)).deprecate(group, version, reason)
    except (ProcessorsError, StreamsError) as exc:
        fail(str(exc))
    console.print(f"deprecated {rec.ref}: {reason}")


@app.command("get")
def get(
    group: str = typer.Argument(..., help="Group name (latest version) or name:vN."),
    entity: str = typer.Argument(..., help="Entity key, e.g. a zone id."),
    store: str | None = typer.Option(None, "--store", help="rocksdb or cassandra.", envvar="AFFRESCO_ONLINE_STORE"),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Print the current values of one entity as JSON (as of its latest event, and as of now)."""
    from affresco.settings import PlatformSettings
    from processors.registry import FeatureRegistry

    if store not in (None, "rocksdb", "cassandra"):
        msg = f"expected rocksdb or cassandra, got {store!r}"
        raise typer.BadParameter(msg, param_hint="--store")
    settings = PlatformSettings()
    try:
        [(compiled, rec)] = FeatureRegistry(kafka_settings(bootstrap_servers)).resolve([group])
        with open_online_store(settings, store, read_only=True) as online:
            now = int(time.time() * 1000)
            record = online.get(compiled.ref, entity, now_ms=now)
    except (ProcessorsError, StreamsError, StateError) as exc:
        fail(str(exc))
    if rec.status == "deprecated":
        err_console.print(f"[yellow]warning:[/] {rec.ref} is deprecated: {rec.deprecation_reason}")
    if record is None:
        fail(f"no values for {compiled.ref} entity {entity!r} (never seen, or older than the TTL)")
    out: dict[str, object] = {
        "group": compiled.name,
        "version": compiled.version,
        "entity": entity,
        "event_time": record.event_time,
        "as_of": _iso(record.event_time),
        "revision": record.revision,
        "values": record.values,
    }
    if record.state and now >= record.event_time:
        # Windows keep sliding after the last event: the same kernel gives the values as of now.
        from processors.engine import EntityState, GroupEngine

        out["values_now"] = GroupEngine(compiled).values(EntityState.from_bytes(record.state), now)
    typer.echo(json.dumps(out, indent=2))
