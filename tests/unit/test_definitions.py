"""Feature-group YAML: the demo definitions load; bad YAML reports every problem, with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from affresco.cli import app
from processors.definitions import load_groups
from processors.durations import format_duration, parse_duration
from processors.exceptions import DefinitionError

DEMO = Path(__file__).resolve().parents[2] / "processors" / "features"

GOOD = """\
group: g
version: 1
owner: me
description: d
entity: zone
key: pickup_zone
source: {topic: rides.trips, event_type: trip_requested}
features:
  - {name: n_10m, agg: count, window: 10m}
"""


def test_demo_definitions_load() -> None:
    groups = {g.name: g for g in load_groups([DEMO])}
    assert set(groups) == {"zone_demand", "zone_supply", "rider_history", "city_eta"}
    zd = groups["zone_demand"]
    assert zd.ref == "zone_demand:v1" and zd.topic == "rides.trips" and zd.event_type == "trip_requested"
    assert zd.max_window_ms == 3_600_000
    assert groups["zone_supply"].filter is not None


def test_every_problem_is_reported_with_file_line_group_and_feature(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        GOOD.replace("key: pickup_zone", "key: pikup_zone")
        .replace("source: {topic: rides.trips, event_type: trip_requested}",
                 "source: {topic: rides.trips, event_type: trip_requested, filter: 'distance_km + 1'}")
        + "  - {name: bad_window, agg: sum, expr: distance_km, window: 10x}\n"
        + "  - {name: str_mean, agg: mean, expr: lower(city), window: 1h}\n"
        + "  - {name: no_expr, agg: max, window: 1h}\n"
        + "  - {name: evil, expr: \"__import__('os').system('x')\"}\n"
    )  # fmt: skip
    (tmp_path / "b.yaml").write_text("group: [unclosed\n")
    with pytest.raises(DefinitionError) as info:
        load_groups([tmp_path])
    text = str(info.value)
    problems = info.value.problems
    assert len(problems) == 7, text
    assert "a.yaml:6: group 'g': key 'pikup_zone'" in text and "did you mean 'pickup_zone'" in text
    assert "source.filter 'distance_km + 1'" in text and "bool" in text
    assert "feature 'bad_window': window: expected a duration" in text and "got '10x'" in text
    assert "feature 'str_mean': mean needs a numeric expr" in text
    assert "feature 'no_expr'" in text and "needs `expr`" in text
    assert "feature 'evil'" in text
    assert any(p.file.endswith("b.yaml") and p.line == 2 and "invalid YAML" in p.message for p in problems)
    lines = {p.feature: p.line for p in problems if p.feature}
    assert lines["bad_window"] == 10 and lines["no_expr"] == 12


def test_duplicates_and_unknown_event_types(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD + "  - {name: n_10m, agg: count, window: 10m}\n")
    (tmp_path / "b.yaml").write_text(GOOD.replace("trip_requested", "trip_teleported"))
    (tmp_path / "c.yaml").write_text(GOOD)
    with pytest.raises(DefinitionError) as info:
        load_groups([tmp_path])
    text = str(info.value)
    assert "feature name used twice" in text
    assert "unknown event type 'trip_teleported'" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DefinitionError, match=r"no \.yaml or \.yml files"):
        load_groups([empty])


def test_cli_apply_dry_run_reports_problems_and_exit_code(tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "300", "NO_COLOR": "1"})
    (tmp_path / "bad.yaml").write_text(GOOD.replace("window: 10m", "window: forever"))
    bad = runner.invoke(app, ["features", "apply", "--dry-run", str(tmp_path)])
    assert bad.exit_code == 2 and "expected a duration" in bad.output and "bad.yaml:9" in bad.output
    ok = runner.invoke(app, ["features", "apply", "--dry-run", str(DEMO)])
    assert ok.exit_code == 0 and "ok zone_demand:v1" in ok.output


@pytest.mark.parametrize(("text", "ms"), [("500ms", 500), ("30s", 30_000), ("10m", 600_000), ("7d", 604_800_000)])
def test_durations(text: str, ms: int) -> None:
    assert parse_duration(text) == ms
    assert parse_duration(format_duration(ms)) == ms


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "0m", "-5m", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="expected a"):
        parse_duration(text)


def test_feature_names_may_not_shadow_the_history_columns() -> None:
    from processors.definitions import compile_spec

    doc = {
        "group": "g", "version": 1, "owner": "o", "description": "d", "entity": "zone", "key": "pickup_zone",
        "source": {"topic": "t", "event_type": "trip_requested"},
        "features": [{"name": "revision", "agg": "count", "window": "10m"}],
    }  # fmt: skip
    group, problems = compile_spec(doc, "g.yaml")
    assert group is None and ["'revision' is a column of every row" in p.message for p in problems] == [True]
