"""The monitoring report: one self-contained HTML page (inline SVG, no script, nothing fetched).

Drawn from the `MonitoringMetric` and `Alert` events of one model (`affresco.monitoring`):
accuracy over time per partition node, drift per model input, the traffic (predictions, missing
features, latency), the alerts, and each version side by side per partition (champion vs
challenger). Every text is escaped: names, partitions and messages come from events.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from monitoring.compare import compare_versions
from streams.events.platform import Alert, MonitoringMetric

__all__ = ["render_report"]

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
_W, _H, _PAD = 760, 240, 48


def render_report(model: str, metrics: Sequence[MonitoringMetric], alerts: Sequence[Alert]) -> str:
    """The report's HTML; with no metric of `model`, a page that says so (no empty axes)."""
    metrics = [m for m in metrics if m.model == model]
    alerts = [a for a in alerts if a.model == model]
    if not metrics:
        body = f"<p class='empty'>No monitoring data for model {_e(model)} yet: run <code>affresco monitor</code> " \
               "on its predictions and outcomes first.</p>"  # fmt: skip
        return _page(model, body)
    finest = min(m.window_end - m.window_start for m in metrics)
    fine = [m for m in metrics if m.window_end - m.window_start == finest]
    start, end = min(m.window_start for m in fine), max(m.window_end for m in fine)
    parts = [f"<p>{len(metrics):,} metric values, {_when(start)} to {_when(end)}, windows of {finest // 60_000} min; "
             f"{sum(a.state == 'firing' for a in alerts)} alert(s) fired.</p>"]  # fmt: skip
    parts.append("<h2>Accuracy per partition node</h2>")
    for name in ("mae", "bias", "rmse", "mape", "auc", "log_loss", "calibration_error"):
        series = _series(fine, name, lambda m: m.partition is not None, lambda m: f"v{m.model_version} {m.partition}")
        if series:
            parts.append(_chart(name, series))
    parts.append("<h2>Drift per model input (PSI of the latest window against training)</h2>")
    longest = max(m.window_end - m.window_start for m in metrics)
    coarse = [m for m in metrics if m.window_end - m.window_start == longest]  # drift wants many predictions
    latest: dict[str, tuple[int, float]] = {}
    for m in coarse:
        version_level = m.partition is None and m.model_version is not None
        if version_level and m.metric.startswith("psi:") and m.window_end >= latest.get(m.metric, (0, 0.0))[0]:
            latest[m.metric] = (m.window_end, m.value)
    if latest:
        parts.append(_bars({k.removeprefix("psi:"): v for k, (_, v) in sorted(latest.items())}, "PSI"))
    psi = _series(
        fine, "feature_psi_max", lambda m: m.partition is not None, lambda m: f"v{m.model_version} {m.partition}"
    )
    if psi:
        parts.append(_chart("feature_psi_max", psi))
    parts.append("<h2>Traffic</h2>")
    for name in (
        "predictions",
        "missing_feature_rate",
        "fallback_rate",
        "latency_p99_ms",
        "feature_age_p50_ms",
        "prediction_psi",
    ):
        series = _series(fine, name, lambda m: m.partition is None and m.model_version is not None,
                         lambda m: f"v{m.model_version}")  # fmt: skip
        if series:
            parts.append(_chart(name, series))
    parts.append("<h2>Alerts</h2>")
    if alerts:
        rows = "".join(f"<tr><td>{_when(a.event_time)}</td><td class='{_e(a.state)}'>{_e(a.state)}</td>"
                       f"<td>{_e(a.severity)}</td><td>{_e(a.rule)}</td><td>{_e(a.partition or 'all')}</td>"
                       f"<td>{_e(a.message)}</td></tr>"
                       for a in sorted(alerts, key=lambda a: a.event_time))  # fmt: skip
        parts.append("<table><tr><th>at</th><th>state</th><th>severity</th><th>rule</th><th>partition</th>"
                     f"<th>message</th></tr>{rows}</table>")  # fmt: skip
    else:
        parts.append("<p>No alert fired.</p>")
    parts.append(_versions(metrics))
    return _page(model, "".join(parts))


def _series(
    metrics: Sequence[MonitoringMetric],
    name: str,
    keep: Callable[[MonitoringMetric], bool],
    label: Callable[[MonitoringMetric], str],
) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for m in metrics:
        if m.metric == name and keep(m):
            out[label(m)].append((m.window_end, m.value))
    return {k: sorted(v) for k, v in sorted(out.items())}


def _chart(title: str, series: dict[str, list[tuple[int, float]]]) -> str:
    """A line per series over time, with its axes' ranges and a legend."""
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min([*ys, 0.0]), max(ys)
    y1 = y1 if y1 > y0 else y0 + 1

    def px(x: int, y: float) -> str:
        left = _PAD + (x - x0) / (x1 - x0) * (_W - 2 * _PAD)
        top = _H - _PAD - (y - y0) / (y1 - y0) * (_H - 2 * _PAD)
        return f"{left:.1f},{top:.1f}"

    lines, legend = [], []
    for i, (label, points) in enumerate(series.items()):
        color = _PALETTE[i % len(_PALETTE)]
        path = " ".join(px(x, y) for x, y in points)
        lines.append(f"<polyline class='series' fill='none' stroke='{color}' stroke-width='2' points='{path}'/>")
        lines += [f"<circle cx='{px(x, y).split(',')[0]}' cy='{px(x, y).split(',')[1]}' r='2.5' fill='{color}'/>"
                  for x, y in points]  # fmt: skip
        legend.append(f"<span style='color:{color}'>&#9632; {_e(label)}</span>")
    axes = (f"<line x1='{_PAD}' y1='{_H - _PAD}' x2='{_W - _PAD}' y2='{_H - _PAD}' stroke='#444'/>"
            f"<line x1='{_PAD}' y1='{_PAD}' x2='{_PAD}' y2='{_H - _PAD}' stroke='#444'/>"
            f"<text x='4' y='{_PAD}'>{y1:.4g}</text><text x='4' y='{_H - _PAD}'>{y0:.4g}</text>"
            f"<text x='{_PAD}' y='{_H - 20}'>{_when(x0)}</text>"
            f"<text x='{_W - _PAD - 120}' y='{_H - 20}'>{_when(x1)}</text>")  # fmt: skip
    return (f"<figure><figcaption>{_e(title)}</figcaption><svg width='{_W}' height='{_H}' viewBox='0 0 {_W} {_H}'>"
            f"{axes}{''.join(lines)}</svg><div class='legend'>{' '.join(legend)}</div></figure>")  # fmt: skip


def _bars(values: dict[str, float], unit: str) -> str:
    top = max([*values.values(), 0.25])
    height = 22 * len(values) + 10
    bars = []
    for i, (name, value) in enumerate(values.items()):
        width = max(value, 0.0) / top * (_W - 320)
        color = "#d62728" if value > 0.25 else "#ff7f0e" if value > 0.1 else "#2ca02c"
        bars.append(f"<text x='4' y='{22 * i + 16}'>{_e(name)}</text><rect class='bar' x='250' y='{22 * i + 4}' "
                    f"width='{width:.1f}' height='16' fill='{color}'/><text x='{256 + width:.1f}' y='{22 * i + 16}'>"
                    f"{value:.3f}</text>")  # fmt: skip
    return (f"<figure><figcaption>{_e(unit)} per input (green < 0.1 stable, orange < 0.25, red: shifted)"
            f"</figcaption><svg width='{_W}' height='{height}'>{''.join(bars)}</svg></figure>")  # fmt: skip


def _versions(metrics: Sequence[MonitoringMetric]) -> str:
    """Per partition, each version's accuracy on the windows they share (`monitoring.compare`)."""
    comparisons = [c for c in compare_versions(metrics, ("mae", "rmse", "auc", "log_loss")) if len(c.values) > 1]
    if not comparisons:
        return "<h2>Versions</h2><p>One version only: no challenger to compare.</p>"
    versions = sorted({v for c in comparisons for v in c.values})
    rows = []
    for c in comparisons:
        values = "".join(f"<td class='{'win' if c.winner == v else ''}'>{c.values[v]:.4g}</td>" if v in c.values
                         else "<td></td>" for v in versions)  # fmt: skip
        rows.append(f"<tr><td>{_e(c.partition)}</td><td>{_e(c.metric)}</td>{values}<td>{c.windows}</td></tr>")
    head = "".join(f"<th>v{v}</th>" for v in versions)
    return ("<h2>Versions (champion vs challenger, on the windows they share)</h2><table><tr><th>partition</th>"
            f"<th>metric</th>{head}<th>windows</th></tr>{''.join(rows)}</table>")  # fmt: skip


def _page(model: str, body: str) -> str:
    style = ("body{font-family:sans-serif;margin:24px;color:#222}svg{background:#fafafa;border:1px solid #ddd}"
             "text{font-size:11px}figure{margin:12px 0}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.firing{color:#d62728}"
             ".resolved{color:#2ca02c}.legend{font-size:12px}.win{font-weight:bold;color:#2ca02c}")  # fmt: skip
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>affresco monitoring: {_e(model)}</title>"
            f"<style>{style}</style></head><body><h1>Monitoring: {_e(model)}</h1>{body}</body></html>")  # fmt: skip


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
