"""`affresco report`: a model's monitoring as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import typer

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings

__all__ = ["report"]


def report(
    model: str = typer.Option(..., "--model", "-m", help="The model whose monitoring to draw."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Draw the model's monitoring (metrics per partition over time, drift per input, traffic, alerts,
    versions side by side) from affresco.monitoring into a page that opens without a network."""
    from monitoring.published import read_published
    from monitoring.report import render_report
    from streams.exceptions import StreamsError

    if not out.parent.is_dir():
        msg = f"expected a file in an existing directory, got {str(out)!r}"
        raise typer.BadParameter(msg, param_hint="--out")
    try:
        metrics, alerts = read_published(model, kafka_settings(bootstrap_servers))
    except StreamsError as exc:
        fail(str(exc))
    out.write_text(render_report(model, metrics, alerts))
    said = f"{len(metrics):,} metric values, {len(alerts)} alert events" if metrics else "no monitoring data yet"
    err_console.print(f"wrote {out} ({said})", highlight=False)
