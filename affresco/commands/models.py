"""`affresco models list|show|deploy|rollback|retire`: the model registry, a replay of `affresco.models`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings
from models.exceptions import ModelsError
from streams.exceptions import StreamsError

if TYPE_CHECKING:
    from models.leaderboard import LeaderboardRow
    from models.registry import AliasRecord, ModelRegistry, VersionRecord
    from streams.events.platform import ModelVersion

__all__ = ["app"]

app = typer.Typer(
    help="The model registry: leaderboard, versions and aliases (events on the compacted affresco.models topic).",
    no_args_is_help=True,
)
console = Console()

ReasonOption = typer.Option(None, "--reason", "-r", help="Why (kept in the registry event).")


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _registry(bootstrap_servers: str | None) -> ModelRegistry:
    from models.registry import ModelRegistry

    return ModelRegistry(kafka_settings(bootstrap_servers))


def _num(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


# -- list --------------------------------------------------------------------------------------------
@app.command("list")
def list_models(
    model: str | None = typer.Option(None, "--model", "-m", help="Only this model."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per version (JSON lines)."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """The leaderboard: every version, best first by its task's metric (rmse lower, auc higher), with baselines."""
    from models.leaderboard import leaderboard

    try:
        state = _registry(bootstrap_servers).state()
        rows = leaderboard(state, model)
    except (ModelsError, StreamsError) as exc:
        fail(str(exc))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.to_json(), sort_keys=True))
        return
    if not rows:
        console.print("no model versions registered yet (training registers them: `affresco train`)")
        return
    by_model: dict[str, list[LeaderboardRow]] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    for name, model_rows in by_model.items():
        console.print(_leaderboard_table(name, model_rows))


#: The columns of the table (every metric is in `--json` and `models show`): the task's primary
#: metric and one more, so that the leaderboard fits an 80-column terminal.
_TABLE_METRICS = {"regression": ("rmse", "r2"), "binary": ("auc", "log_loss")}


def _leaderboard_table(name: str, rows: list[LeaderboardRow]) -> Table:
    from rich import box

    from models.leaderboard import BASELINES, PRIMARY_METRIC

    tasks = sorted({r.task for r in rows if r.task})
    metrics = list(dict.fromkeys(m for t in tasks for m in _TABLE_METRICS[t]))
    primaries = [PRIMARY_METRIC[t][0] for t in tasks]
    title = (
        f"{name} ({', '.join(tasks) or 'task unknown'}; ranked by {', '.join(primaries) or '-'}; all metrics: --json)"
    )
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("#", "version", "aliases", *metrics):
        table.add_column(column, justify="left" if column in ("version", "aliases") else "right", no_wrap=True)
    for baseline in BASELINES:
        for p in primaries:
            table.add_column(f"{baseline.removeprefix('baseline_').replace('_', ' ')} {p}", justify="right")
    table.add_column("own models", justify="right", no_wrap=True)
    for r in rows:
        version = f"v{r.version}" + (" [yellow]retired[/]" if r.status == "retired" else "")
        cells = [_num(r.rank), version, escape(", ".join(r.aliases)) or "-"]
        cells += [_num(r.metrics.get(m)) for m in metrics]
        cells += [_num(r.baselines.get(b, {}).get(p)) for b in BASELINES for p in primaries]
        nodes, fallback = r.counts.get("nodes"), r.counts.get("nodes_fallback")
        cells.append("-" if nodes is None or fallback is None else f"{int(nodes - fallback)}/{int(nodes)}")
        table.add_row(*cells)
    return table


# -- show --------------------------------------------------------------------------------------------
@app.command("show")
def show(
    name: str = typer.Argument(..., help="Model name."),
    version: int | None = typer.Option(None, "--version", "-v", min=1, help="This version (default: the latest)."),
    alias: str | None = typer.Option(None, "--alias", "-a", help="The version this alias points at."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """A version's registry record, the model's aliases with their history, and its bundle's manifest."""
    if version is not None and alias is not None:
        msg = "give --version or --alias, not both"
        raise typer.BadParameter(msg, param_hint="--version/--alias")
    try:
        state = _registry(bootstrap_servers).state()
        if version is not None:
            record = state.version(name, version)
        elif alias is not None:
            record = state.resolve(name, alias)
        else:
            state.check_model(name)
            versions = state.versions_of(name)
            if not versions:
                fail(f"model {name!r} has aliases but no version records")
            record = versions[-1]
    except (ModelsError, StreamsError) as exc:
        fail(str(exc))
    aliases = state.aliases_of(name)
    manifest, manifest_error = _manifest(record)
    if as_json:
        out = {
            "record": _record_json(record),
            "aliases": [_alias_json(a) for a in aliases],
            "manifest": _manifest_summary(manifest) if manifest is not None else None,
            "manifest_error": manifest_error,
        }
        typer.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    _print_record(record, state.aliases_pointing_at(name, record.version))
    _print_aliases(name, aliases, {r.version: r.status for r in state.versions_of(name)})
    if manifest_error is not None:
        err_console.print(f"[yellow]bundle not readable:[/] {escape(manifest_error)}")
    elif manifest is not None:
        _print_manifest(manifest)


def _manifest(record: VersionRecord) -> tuple[dict[str, Any] | None, str | None]:
    from models.bundle import read_manifest

    try:
        return read_manifest(record.bundle_uri, expected=record.sha256), None
    except ModelsError as exc:
        return None, str(exc)


def _record_json(r: VersionRecord) -> dict[str, Any]:
    return {
        "model": r.model,
        "version": r.version,
        "status": r.status,
        "task": r.task,
        "bundle_uri": r.bundle_uri,
        "sha256": dict(r.sha256),
        "metrics": dict(r.metrics),
        "registered_at": r.registered_at,
        "retired_at": r.retired_at,
        "reason": r.reason,
    }


def _alias_json(a: AliasRecord) -> dict[str, Any]:
    return {
        "alias": a.alias,
        "version": a.version,
        "previous": list(a.previous),
        "since": a.since,
        "action": a.action,
        "reason": a.reason,
    }


def _print_record(r: VersionRecord, pointing: list[str]) -> None:
    status = f"[yellow]retired[/] {_iso(r.retired_at)}" if r.status == "retired" else "registered"
    table = Table(title=f"{escape(r.model)} v{r.version}", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("status", status)
    table.add_row("aliases", escape(", ".join(pointing)) or "-")
    table.add_row("task", r.task or "-")
    table.add_row("registered", _iso(r.registered_at))
    table.add_row("bundle", escape(r.bundle_uri))
    table.add_row("files", f"{len(r.sha256)} with sha256")
    if r.reason:
        table.add_row("reason", escape(r.reason))
    for key, value in sorted(r.metrics.items()):
        table.add_row(escape(key), _num(value))
    console.print(table)


def _print_aliases(name: str, aliases: list[AliasRecord], status: dict[int, str]) -> None:
    if not aliases:
        console.print(f"no aliases for {escape(name)} (affresco models deploy {escape(name)} --version N --alias prod)")
        return
    table = Table("alias", "version", "since", "last move", "previously (most recent first)", "reason")
    table.title, table.title_justify = "aliases", "left"
    for a in aliases:
        previous = ", ".join(f"v{v}" + (" (retired)" if status.get(v) == "retired" else "") for v in a.previous)
        table.add_row(a.alias, f"v{a.version}", _iso(a.since), a.action, previous or "-", escape(a.reason or ""))
    console.print(table)


# -- the bundle's manifest ---------------------------------------------------------------------------
def _primary(metrics: object) -> str:
    """A node's headline metric: `rmse 4.2` (its own model's, or the flat mapping's)."""
    if not isinstance(metrics, dict):
        return "-"
    own = metrics.get("model", metrics)
    if not isinstance(own, dict):
        return "-"
    for key in ("rmse", "auc"):
        if isinstance(own.get(key), int | float):
            return f"{key} {own[key]:.4g}"
    return "-"


def _nodes(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    partitions = manifest.get("partitions")
    nodes = partitions.get("nodes") if isinstance(partitions, dict) else None
    return [n for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []


def _node_summary(node: dict[str, Any]) -> dict[str, Any]:
    serves = node.get("serves")
    used = node.get("used", serves is None or serves == node.get("id"))
    return {
        "id": node.get("id"),
        "parent": node.get("parent"),
        "rows_train": node.get("rows_train"),
        "rows_validation": node.get("rows_validation"),
        "trained": node.get("trained"),
        "serves": serves,
        "used": bool(used),
        "fallback": node.get("fallback", None if used else serves),
        "reason": node.get("reason"),
        "metric": _primary(node.get("metrics")),
    }


def _manifest_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    scalars = {k: v for k, v in manifest.items() if isinstance(v, str | int | float | bool) or v is None}
    return {
        **scalars,
        "files": sorted(manifest.get("files", {})),
        "nodes": [_node_summary(n) for n in _nodes(manifest)],
    }


def _depth(node: dict[str, Any], parents: dict[Any, Any]) -> int:
    depth, seen, current = 0, set(), node.get("parent")
    while current is not None and current not in seen and depth < 50:
        seen.add(current)
        depth += 1
        current = parents.get(current)
    return depth


def _print_manifest(manifest: dict[str, Any]) -> None:
    summary = _manifest_summary(manifest)
    table = Table(title="bundle manifest", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in sorted(summary.items()):
        if key not in ("files", "nodes"):
            table.add_row(escape(key), _num(value))
    table.add_row("files", escape(", ".join(summary["files"])) or "-")
    console.print(table)
    nodes = _nodes(manifest)
    if not nodes:
        return
    parents = {n.get("id"): n.get("parent") for n in nodes}
    tree = Table("node", "rows train", "rows val", "trained", "model", "metric", "reason", title="partition tree")
    tree.title_justify = "left"
    for node in nodes:
        s = _node_summary(node)
        served = "own" if s["used"] else f"[yellow]fallback[/] -> {escape(str(s['fallback'] or s['serves']))}"
        indent = "  " * int(node.get("depth", _depth(node, parents)))
        tree.add_row(
            indent + escape(str(s["id"])),
            _num(s["rows_train"]),
            _num(s["rows_validation"]),
            _num(s["trained"]),
            served,
            s["metric"],
            escape(str(s["reason"] or "")),
        )
    console.print(tree)


# -- actions -----------------------------------------------------------------------------------------
def _done(event: ModelVersion, detail: str | None = None) -> None:
    model = escape(event.model)
    if event.action == "retired":
        line = f"retired {model} v{event.version}"
    else:
        line = f"{event.action.replace('_', ' ')} {model}@{event.alias} -> v{event.version}"
    console.print(line + (f" ({detail})" if detail else ""), highlight=False)


@app.command("compare")
def compare(
    model: str = typer.Argument(..., help="The model whose versions to compare."),
    metric: str | None = typer.Option(
        None, "--metric", help="One accuracy metric (mae, rmse, bias, auc, …); all if unset."
    ),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Which version wins per partition node (champion vs challenger), from the published monitoring metrics:
    each version's accuracy on the windows both have."""
    from monitoring.compare import ACCURACY, compare_versions
    from monitoring.published import read_published
    from streams.exceptions import StreamsError

    if metric is not None and metric not in ACCURACY:
        msg = f"expected one of {', '.join(ACCURACY)}, got {metric!r}"
        raise typer.BadParameter(msg, param_hint="--metric")
    try:
        metrics, _ = read_published(model, kafka_settings(bootstrap_servers))
    except StreamsError as exc:
        fail(str(exc))
    found = [c for c in compare_versions(metrics, [metric] if metric else ACCURACY) if len(c.values) > 1]
    if not found:
        fail(f"no two versions of {model} have monitoring metrics on the same windows (deploy one as `shadow` "
             "and run `affresco monitor run` or `monitor replay --publish`)")  # fmt: skip
    table = Table(title=f"{model}: versions per partition node")
    versions = sorted({v for c in found for v in c.values})
    for column in ("partition", "metric", *(f"v{v}" for v in versions), "windows", "winner"):
        table.add_column(column)
    for c in found:
        cells = [f"{c.values[v]:.4g}" if v in c.values else "" for v in versions]
        table.add_row(c.partition, c.metric, *cells, str(c.windows), f"v{c.winner}" if c.winner else "tie")
    console.print(table)
    typer.echo(json.dumps([{"partition": c.partition, "metric": c.metric, "values": c.values, "pairs": c.pairs,
                            "windows": c.windows, "winner": c.winner} for c in found]))  # fmt: skip


@app.command("deploy")
def deploy(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Option(..., "--version", "-v", min=1, help="The version to deploy."),
    alias: str = typer.Option(..., "--alias", "-a", help="The alias to point at it, e.g. prod."),
    reason: str | None = ReasonOption,
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Point an alias at a registered version (where it pointed is kept for rollback)."""
    try:
        event = _registry(bootstrap_servers).deploy(name, version, alias, reason)
    except (ModelsError, StreamsError) as exc:
        fail(str(exc))
    _done(event, f"was v{event.previous[0]}" if event.previous else "new alias")


@app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Option(..., "--alias", "-a", help="The alias to move back, e.g. prod."),
    reason: str | None = ReasonOption,
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Point an alias back at the version it pointed at before (skipping retired ones)."""
    try:
        event = _registry(bootstrap_servers).rollback(name, alias, reason)
    except (ModelsError, StreamsError) as exc:
        fail(str(exc))
    _done(event, event.reason)


@app.command("retire")
def retire(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Option(..., "--version", "-v", min=1, help="The version to retire."),
    reason: str | None = ReasonOption,
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Retire a version no alias points at (it can no longer be deployed)."""
    try:
        event = _registry(bootstrap_servers).retire(name, version, reason)
    except (ModelsError, StreamsError) as exc:
        fail(str(exc))
    _done(event)
