"""Monitoring's pure parts: drift and calibration equal scipy's and scikit-learn's; the
prediction/outcome join counts everything once, pairs exactly the brute-force pairs whatever the
arrival order within the lateness, and survives a snapshot and restore at any point."""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from sklearn.calibration import calibration_curve

from models.distributions import SAMPLE_POINTS, numeric_distribution
from models.metrics import regression_metrics, reliability_bins
from monitoring.alerts import AlertBook
from monitoring.drift import ks_statistic, psi, two_sample_ks
from monitoring.join import Outcome, PairJoin, Prediction
from monitoring.spec import AlertRule, MonitorSpecError, load_monitor_spec
from monitoring.windows import JoinedPair, WindowedMetrics, WindowMetric

# -- drift and calibration -----------------------------------------------------------------------

_VALUES = st.lists(st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]) | st.floats(-1e6, 1e6), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(a=_VALUES, b=_VALUES)
def test_the_ks_statistic_is_scipy_s(a: list[float], b: list[float]) -> None:
    with warnings.catch_warnings():  # scipy's p-value (not compared) warns on degenerate samples
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = ks_2samp(a, b, method="asymp").statistic
    assert two_sample_ks(np.array(a), np.array(b)) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    p=st.lists(st.floats(0, 1) | st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), min_size=1, max_size=80),
    seed=st.integers(0, 1000),
    bins=st.integers(1, 12),
)
def test_reliability_bins_are_scikit_learn_s_calibration_curve(p: list[float], seed: int, bins: int) -> None:
    rng = np.random.default_rng(seed)
    probabilities = np.array(p)
    y = (rng.random(len(p)) < probabilities).astype(float)
    observed, predicted = calibration_curve(y, probabilities, n_bins=bins, strategy="uniform")
    found = reliability_bins(y, probabilities, bins)
    assert [b["observed_rate"] for b in found] == pytest.approx(observed.tolist())
    assert [b["mean_predicted"] for b in found] == pytest.approx(predicted.tolist())
    assert sum(b["count"] for b in found) == len(p)


def test_drift_is_found_on_a_shift_and_not_on_the_same_distribution() -> None:
    rng = np.random.default_rng(7)
    training = numeric_distribution(rng.normal(10, 2, 20_000))
    assert len(training["sample"]) == SAMPLE_POINTS
    same, shifted = rng.normal(10, 2, 5_000), rng.normal(11.5, 2, 5_000)
    assert psi(training, same) < 0.02 and ks_statistic(training, same) < 0.03  # type: ignore[operator]
    assert psi(training, shifted) > 0.25 and ks_statistic(training, shifted) > 0.25  # type: ignore[operator]
    # KS against the stored sample is scipy's on the same two samples.
    scipy_ks = ks_2samp(training["sample"], shifted, method="asymp").statistic
    assert ks_statistic(training, shifted) == pytest.approx(scipy_ks)
    # PSI by its definition, computed here independently over the same bins.
    edges = [-np.inf, *training["edges"], np.inf]
    live = np.histogram(shifted, bins=edges)[0] / len(shifted)
    expected = np.maximum(np.array(training["shares"]), 1e-4)
    assert psi(training, shifted) == pytest.approx(float(np.sum((live - expected) * np.log(live / expected))))
    assert psi(training, np.array([np.nan])) is None and ks_statistic({"sample": []}, shifted) is None


# -- the join -----------------------------------------------------------------------------------

H = 1_000  # the horizon, ms


def _events(draw: Any) -> tuple[list[Prediction], list[Outcome]]:
    keys = [f"k{i}" for i in range(draw(st.integers(1, 8)))]
    predictions = [
        Prediction(f"p{i}", draw(st.sampled_from(keys)), draw(st.integers(0, 5_000)), draw(st.sampled_from("ab")))
        for i in range(draw(st.integers(0, 25)))
    ]
    outcomes = [Outcome(k, draw(st.integers(0, 6_000)), float(i)) for i, k in enumerate(keys) if draw(st.booleans())]
    return predictions, outcomes


@st.composite
def streams(draw: Any) -> tuple[list[Prediction], list[Outcome], int, list[int]]:
    predictions, outcomes = _events(draw)
    lateness = draw(st.sampled_from([0, 100, 2_000]))
    jitter = [draw(st.integers(0, lateness)) for _ in range(len(predictions) + len(outcomes))]
    return predictions, outcomes, lateness, jitter


def _arrivals(predictions: list[Prediction], outcomes: list[Outcome], jitter: list[int]) -> list[Any]:
    """Arrival order: by event time plus a delay within the lateness (predictions first on ties)."""
    events: list[Any] = [*predictions, *outcomes]
    order = sorted(range(len(events)), key=lambda i: (events[i].time_ms + jitter[i], i))
    return [events[i] for i in order]


def _run(join: PairJoin, arrivals: list[Any]) -> set[tuple[str, str]]:
    pairs = set()
    for event in arrivals:
        found = join.add_prediction(event) if isinstance(event, Prediction) else join.add_outcome(event)
        pairs |= {(p.prediction.prediction_id, p.outcome.join_key) for p in found}
    join.close()
    return pairs


def _brute_force(predictions: list[Prediction], outcomes: list[Outcome]) -> set[tuple[str, str]]:
    return {(p.prediction_id, o.join_key) for p in predictions for o in outcomes
            if p.join_key == o.join_key and p.time_ms <= o.time_ms <= p.time_ms + H}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(streams())
def test_within_the_lateness_any_arrival_order_pairs_exactly_the_brute_force_pairs(
    stream: tuple[list[Prediction], list[Outcome], int, list[int]],
) -> None:
    predictions, outcomes, lateness, jitter = stream
    join = PairJoin(H, lateness)
    pairs = _run(join, _arrivals(predictions, outcomes, jitter))
    assert pairs == _brute_force(predictions, outcomes)
    counts = join.counts()
    # Everything counted once: every prediction and every outcome lands in exactly one bucket.
    assert sum(counts["predictions"].values()) == len(predictions)
    assert sum(counts["outcomes"].values()) == len(outcomes)
    assert counts["predictions"].get("paired", 0) == len(pairs)
    assert counts["outcomes"].get("matched", 0) == len({key for _, key in pairs})
    assert not counts["predictions"].get("late") and not counts["outcomes"].get("late")


@settings(max_examples=200, deadline=None)
@given(streams(), st.integers(0, 60))
def test_a_snapshot_restored_anywhere_counts_and_pairs_as_an_uninterrupted_run(
    stream: tuple[list[Prediction], list[Outcome], int, list[int]], cut: int
) -> None:
    predictions, outcomes, lateness, jitter = stream
    arrivals = _arrivals(predictions, outcomes, jitter)
    whole = PairJoin(H, lateness)
    expected = _run(whole, arrivals)
    first = PairJoin(H, lateness)
    cut = min(cut, len(arrivals))
    pairs = _run_open(first, arrivals[:cut])
    restored = PairJoin.from_json(first.to_json())  # what a restart reads back
    pairs |= _run(restored, arrivals[cut:])
    assert pairs == expected and restored.counts() == whole.counts()


def _run_open(join: PairJoin, arrivals: list[Any]) -> set[tuple[str, str]]:
    pairs = set()
    for event in arrivals:
        found = join.add_prediction(event) if isinstance(event, Prediction) else join.add_outcome(event)
        pairs |= {(p.prediction.prediction_id, p.outcome.join_key) for p in found}
    return pairs


def test_duplicates_late_and_unmatched_are_counted_not_lost() -> None:
    join = PairJoin(H, lateness_ms=0)
    prod, shadow = Prediction("p1", "trip-1", 100, "prod"), Prediction("s1", "trip-1", 100, "shadow")
    assert join.add_prediction(prod) == []
    assert join.add_prediction(prod) == []  # the same id again
    assert [p.prediction.payload for p in join.add_outcome(Outcome("trip-1", 600, 420.0))] == ["prod"]
    assert [p.prediction.payload for p in join.add_prediction(shadow)] == ["shadow"]  # the outcome waited for it
    assert join.add_outcome(Outcome("trip-1", 650, 421.0)) == []  # a second outcome for the trip
    join.add_prediction(Prediction("p2", "trip-2", 700, "prod"))  # its outcome never comes
    join.add_outcome(Outcome("trip-9", 800, 1.0))  # no prediction for it
    join.add_outcome(Outcome("trip-x", 5_000, 1.0))  # moves the watermark: trip-2 expires
    join.add_outcome(Outcome("trip-2", 1_500, 300.0))  # it fits p2, which had already expired unmatched: late
    join.add_prediction(Prediction("p3", "trip-3", 1_000, "prod"))  # behind the watermark by more than H
    join.close()
    assert join.counts() == {
        "predictions": {"paired": 2, "duplicate": 1, "unmatched": 1, "late": 1},
        "outcomes": {"matched": 1, "duplicate": 1, "unmatched": 2, "late": 1},
    }


def test_a_restored_join_keeps_its_deadlines() -> None:
    join = PairJoin(H)
    join.add_prediction(Prediction("p1", "trip-1", 0))
    restored = PairJoin.from_json(join.to_json())
    restored.add_outcome(Outcome("other", 5_000, 0.0))  # far past the horizon
    assert restored.counts()["predictions"] == {"unmatched": 1} and not restored.waiting


def test_a_random_long_stream_stays_consistent() -> None:
    rng = random.Random(3)
    predictions = [Prediction(f"p{i}", f"k{rng.randrange(2_000)}", rng.randrange(600_000)) for i in range(20_000)]
    outcomes = [Outcome(f"k{k}", rng.randrange(600_000), 1.0) for k in rng.sample(range(2_000), 1_500)]
    jitter = [rng.randrange(500) for _ in range(len(predictions) + len(outcomes))]
    join = PairJoin(H, 500)
    assert _run(join, _arrivals(predictions, outcomes, jitter)) == _brute_force(predictions, outcomes)
    assert not join.waiting and not join.slots  # closed: nothing left behind


# -- the spec, windows and alerts -----------------------------------------------------------------

SPEC = Path(__file__).parents[2] / "monitoring" / "specs" / "eta.yaml"
T0 = 1_767_225_600_000  # a whole hour


def test_the_demo_monitoring_spec_loads() -> None:
    definition = load_monitor_spec(SPEC, {"eta": "regression"})
    assert (definition.horizon_ms, definition.windows_ms) == (7_200_000, (600_000, 3_600_000))
    assert definition.label.evaluate({"eta_s": 420.0}) == 420.0


def test_a_bad_monitoring_spec_names_every_problem_with_its_line(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "model: eta\n"
        "outcomes:\n"
        "  topic: rides.trips\n"
        "  event_type: trip_completed\n"
        "  join_key: trip_number\n"
        "  label: city\n"
        "windows: [10m]\n"
        "alerts:\n"
        "  - {name: a, metric: auc, above: 1, window: 10m}\n"
        "  - {name: b, metric: mae, above: 1, window: 1h}\n"
        "  - {name: b, metric: mae, above: 2, window: 10m}\n"
    )
    with pytest.raises(MonitorSpecError) as caught:
        load_monitor_spec(spec, {"eta": "regression"})
    found = {(p.line, p.message.split(":")[0]) for p in caught.value.problems}
    assert found == {(5, "outcomes.join_key"), (6, "outcomes.label"), (9, "alerts[0] (a)"), (10, "alerts[1] (b)"),
                     (8, "alerts")}  # fmt: skip
    text = str(caught.value)
    assert "no field 'trip_number'" in text and "unknown metric 'auc' for a regression model" in text
    with pytest.raises(MonitorSpecError, match="no model 'eta' is registered"):
        load_monitor_spec(SPEC, {"other": "binary"})
    spec.write_text(SPEC.read_text().replace("above: 0.3", "above: 0.3\n    below: 0.1"))
    with pytest.raises(MonitorSpecError, match="exactly one of `above` or `below`"):
        load_monitor_spec(spec, {"eta": "regression"})


def _pairs(seed: int, n: int) -> list[JoinedPair]:
    rng = np.random.default_rng(seed)
    return [JoinedPair("eta", int(rng.integers(1, 3)), str(rng.choice(["global/US", "global/GB"])),
                       T0 + int(rng.integers(0, 3_600_000)), float(rng.normal(600, 50)), float(rng.normal(600, 80)))
            for _ in range(n)]  # fmt: skip


def test_window_metrics_are_the_training_metrics_of_the_pairs_in_each_window_and_scope() -> None:
    pairs = _pairs(1, 2_000)
    windows = WindowedMetrics("regression", (600_000, 3_600_000))
    for pair in pairs:
        windows.add(pair)
    assert windows.close(watermark_ms=T0 + 599_999) == []  # no window has ended yet
    metrics = windows.close(watermark_ms=T0 + 600_000)
    assert {m.window_start for m in metrics} == {T0} and {m.window_ms for m in metrics} == {600_000}
    metrics += windows.close()
    assert not windows.open
    for m in metrics:
        inside = [p for p in pairs if m.window_start <= p.outcome_time_ms < m.window_end
                  and (m.version is None or p.version == m.version)
                  and (m.partition is None or p.partition == m.partition)]  # fmt: skip
        expected = {
            "count": float(len(inside)),
            **regression_metrics(np.array([p.label for p in inside]), np.array([p.prediction for p in inside])),
        }
        # The model's and versions' windows are merged from their nodes' windows: the same pairs,
        # summed in another order, so equal to the last bits only on a node's own window.
        exact = m.scope == "partition"
        assert m.value == (expected[m.metric] if exact else pytest.approx(expected[m.metric], rel=1e-12)), m
        assert m.count == len(inside), m
        assert m.event().value == m.value  # a valid MonitoringMetric event
    model_counts = [m.count for m in metrics if m.scope == "model" and m.metric == "count" and m.window_ms == 600_000]
    assert sum(model_counts) == len(pairs)


def test_an_alert_fires_once_while_breached_and_resolves_when_the_metric_recovers() -> None:
    rule = AlertRule(name="mae_high", metric="mae", above=100, window="10m", min_count=5, scope="partition")
    book = AlertBook([rule], {"mae_high": 600_000})

    def window(start: int, error: float, n: int = 10, partition: str = "global/BR/sao") -> list[WindowMetric]:
        w = WindowedMetrics("regression", (600_000,))
        for i in range(n):
            w.add(JoinedPair("eta", 1, partition, T0 + start + i, 600.0 + error, 600.0))
        return w.close()

    assert book.judge(window(0, 50)) == []
    fired = book.judge(window(600_000, 150))
    assert [(c.state, c.metric.partition) for c in fired] == [("firing", "global/BR/sao")]
    assert book.judge(window(1_200_000, 160)) == []  # still firing: not again
    assert book.judge(window(1_800_000, 10, n=3)) == []  # too few pairs to judge
    assert book.judge(window(2_400_000, 170, partition="global/US")) != []  # another partition, its own alert
    resolved = book.judge(window(3_000_000, 20))
    assert [(c.state, c.metric.partition) for c in resolved] == [("resolved", "global/BR/sao")]
    event = fired[0].event()
    assert (event.state, event.partition, event.rule, event.threshold) == ("firing", "global/BR/sao", "mae_high", 100)
    assert "above 100" in event.message and event.window_end == T0 + 1_200_000


def test_the_report_draws_each_metric_escapes_every_name_and_says_when_there_is_no_data() -> None:
    from monitoring.report import render_report
    from streams.events.platform import Alert, MonitoringMetric

    hostile = "<script>alert(1)</script>"
    metrics = [MonitoringMetric(event_time=T0 + (k + 1) * 600_000, model="eta", model_version=v, partition=p,
                                metric=name, value=value + k, window_start=T0 + k * 600_000,
                                window_end=T0 + (k + 1) * 600_000, count=40)
               for k in range(6) for v in (1, 2) for p, name, value in
               ((f"global/{hostile}", "mae", 100.0), ("global/US", "mae", 90.0), (None, "psi:distance_km", 0.3),
                (None, "predictions", 50.0))]  # fmt: skip
    alert = Alert(event_time=T0 + 600_000, model="eta", rule="eta_mae_high", severity="warning",
                  message=f"mae on {hostile}", state="firing", partition=f"global/{hostile}")  # fmt: skip
    page = render_report("eta", metrics, [alert])
    assert page.count("<svg") >= 3 and page.count("class='series'") >= 4  # a line per version and partition
    assert hostile not in page and "&lt;script&gt;" in page
    assert "Versions (champion vs challenger" in page and "distance_km" in page
    empty = render_report("eta", [], [])
    assert "No monitoring data for model eta" in empty and "<svg" not in empty


def test_versions_are_compared_on_the_windows_both_have() -> None:
    from monitoring.compare import compare_versions
    from streams.events.platform import MonitoringMetric

    def metric(version: int, k: int, value: float, count: int, name: str = "mae") -> MonitoringMetric:
        return MonitoringMetric(event_time=T0 + (k + 1) * 600_000, model="eta", model_version=version,
                                partition="global/BR/sao", metric=name, value=value, count=count,
                                window_start=T0 + k * 600_000, window_end=T0 + (k + 1) * 600_000)  # fmt: skip

    metrics = [metric(1, 0, 100, 10), metric(1, 1, 200, 30), metric(2, 1, 150, 30), metric(2, 2, 10, 50),
               metric(1, 1, -40, 30, "bias"), metric(2, 1, 20, 30, "bias")]  # fmt: skip
    by_metric = {c.metric: c for c in compare_versions(metrics)}
    mae = by_metric["mae"]
    assert (mae.windows, mae.values, mae.pairs, mae.winner) == (1, {1: 200.0, 2: 150.0}, {1: 30, 2: 30}, 2)
    assert by_metric["bias"].winner == 2  # closer to 0


# -- the whole monitor: snapshot / restore, and its Prometheus view ---------------------------------


def _monitor_inputs(seed: int, n: int) -> list[tuple[int, Any]]:
    from streams.events.platform import Prediction as PredictionEvent

    rnd = random.Random(seed)
    out: list[tuple[int, Any]] = []
    for i in range(n):
        t = T0 + i * 5_000
        guess = rnd.uniform(200, 900)
        out.append((0, PredictionEvent(event_time=t, request_id=f"r{i}", model="eta", model_version=1,
                                       partition=("global/BR/sao", "global/US/nyc")[i % 2], prediction=guess,
                                       join_key=f"t{i}")))  # fmt: skip
        if i % 10:
            out.append((1, {"trip_id": f"t{i}", "event_time": t + rnd.randint(1, 900_000),
                            "eta_s": guess + rnd.gauss(0, 400 if i % 2 == 0 else 30)}))  # fmt: skip
    return sorted(out, key=lambda e: (e[1].event_time if e[0] == 0 else e[1]["event_time"], e[0]))


def _feed(monitor: Any, inputs: list[tuple[int, Any]]) -> list[str]:
    outputs = []
    for kind, item in inputs:
        outputs += monitor.prediction(item) if kind == 0 else monitor.outcome(item)
    return [o.model_dump_json() for o in outputs]


def test_a_restored_monitor_continues_exactly_as_an_uninterrupted_one() -> None:
    from monitoring.monitor import Monitor

    definition = load_monitor_spec(SPEC, {"eta": "regression"})
    inputs = _monitor_inputs(3, 3000)
    whole = Monitor(definition)
    expected = _feed(whole, inputs) + [o.model_dump_json() for o in whole.close()]
    assert any('"alert"' in e for e in expected)  # the noisy partition fires: the state carries it over
    for cut in (1, 1234, len(inputs) - 5):
        first = Monitor(definition)
        got = _feed(first, inputs[:cut])
        second = Monitor(definition)
        second.restore(first.snapshot())
        got += _feed(second, inputs[cut:]) + [o.model_dump_json() for o in second.close()]
        assert got == expected, cut
        assert second.counts() == whole.counts()


def test_the_monitor_s_prometheus_metrics_are_its_counts_and_latest_windows() -> None:
    from monitoring.monitor import Monitor
    from processors.runtime.metrics import MonitorCollector
    from processors.runtime.monitor_flow import MonitorCounters

    definition = load_monitor_spec(SPEC, {"eta": "regression"})
    monitor = Monitor(definition)
    counters = MonitorCounters(monitor=monitor)
    _feed(monitor, _monitor_inputs(4, 1000))
    counters.last[("eta", "1", "global/BR/sao", "mae", 600_000)] = 321.5
    counters.firing[("eta", "eta_mae_high", "1", "global/BR/sao")] = True
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in MonitorCollector(counters).collect() for s in family.samples}  # fmt: skip
    join = monitor.join.counts()
    assert samples[("affresco_monitor_predictions_total", (("model", "eta"), ("outcome", "paired")))] == \
        join["predictions"]["paired"] > 0  # fmt: skip
    waiting = sum(len(p) for p in monitor.join.waiting.values())
    assert samples[("affresco_monitor_waiting", (("kind", "predictions"), ("model", "eta")))] == waiting
    labels = (("metric", "mae"), ("model", "eta"), ("partition", "global/BR/sao"), ("version", "1"), ("window", "10m"))
    assert samples[("affresco_monitor_metric", labels)] == 321.5
    fired = (("model", "eta"), ("partition", "global/BR/sao"), ("rule", "eta_mae_high"), ("version", "1"))
    assert samples[("affresco_monitor_alert_firing", fired)] == 1.0


def test_a_binary_model_s_windows_carry_scikit_learn_s_auc_log_loss_and_calibration() -> None:
    from sklearn.metrics import log_loss, roc_auc_score

    rng = np.random.default_rng(6)
    p = rng.uniform(0, 1, 3_000)
    y = (rng.uniform(0, 1, 3_000) < p**1.5).astype(float)  # miscalibrated on purpose
    windows = WindowedMetrics("binary", (3_600_000,))
    for i in range(len(p)):
        windows.add(JoinedPair("churn", 1, "global", T0 + i * 1000, float(p[i]), float(y[i])))
    found = {m.metric: m.value for m in windows.close() if m.scope == "model"}
    assert found["auc"] == pytest.approx(roc_auc_score(y, p), rel=1e-12)
    assert found["log_loss"] == pytest.approx(log_loss(y, p), rel=1e-9)
    observed, predicted = calibration_curve(y, p, n_bins=10)
    counts = np.histogram(p, bins=np.linspace(0, 1, 11))[0]
    lows = [f"{k / 10:.1f}" for k in range(10) if counts[k]]
    assert [found[f"reliability:{low}"] for low in lows] == pytest.approx(list(observed), rel=1e-12)
    assert [found[f"reliability_mean:{low}"] for low in lows] == pytest.approx(list(predicted), rel=1e-12)
    assert [found[f"reliability_count:{low}"] for low in lows] == list(counts[counts > 0])
    expected = float(np.sum(counts[counts > 0] * np.abs(observed - predicted)) / len(p))
    assert found["calibration_error"] == pytest.approx(expected, rel=1e-12) and expected > 0.02
