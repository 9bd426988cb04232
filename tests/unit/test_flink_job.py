"""The Flink engine without Flink: the launcher's errors, and the job's steps against the bytewax path's engine.

The job itself (PyFlink, in the flink venv) is run by tests/integration/test_flink_parity.py.
"""

from __future__ import annotations

import http.server
import json
import socket
import stat
import threading
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from affresco.cli import app
from processors.engine import GroupEngine, GroupState, SourceRow
from processors.flink.launcher import FlinkJobError, FlinkOptions, run_flink_job
from processors.flink.steps import DecodeStep, EntityStep, JobConfig, RawRecord
from processors.runtime.outputs import merge_summaries
from streams.settings import KafkaSettings
from tests.integration.processor_helpers import compile_groups, group_docs

T0 = 1_767_225_600_000


def _fake_venv(root: Path, script: str) -> Path:
    """A venv whose python is `script` (bash), with the pyflink layout the launcher checks."""
    (root / "lib" / "python3.11" / "site-packages" / "pyflink" / "bin").mkdir(parents=True)
    python = root / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/bash\n" + script)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return root


def _options(tmp_path: Path, venv: Path, jar: Path) -> FlinkOptions:
    return FlinkOptions(run_dir=tmp_path / "run", flink_venv=venv, connector_jar=jar, parallelism=1)


def _groups() -> list:
    return compile_groups(group_docs("test.trips.abc", "test.pings.abc"))


def test_a_missing_flink_venv_is_named_with_the_command_that_makes_it(tmp_path: Path) -> None:
    with pytest.raises(FlinkJobError, match=r"flink venv is missing.*make flink-venv"):
        run_flink_job(_groups(), KafkaSettings(), {}, _options(tmp_path, tmp_path / "nope", tmp_path / "k.jar"))


def test_a_missing_connector_jar_is_named(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path / "venv", "exit 0\n")
    with pytest.raises(FlinkJobError, match=r"Kafka connector jar is missing: .*k\.jar"):
        run_flink_job(_groups(), KafkaSettings(), {}, _options(tmp_path, venv, tmp_path / "k.jar"))


def test_a_failing_job_fails_the_run_with_its_exception_and_log_tail(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path / "venv", 'echo "starting"\necho "ValueError: the job broke" >&2\nexit 3\n')
    jar = tmp_path / "k.jar"
    jar.write_bytes(b"")
    with pytest.raises(FlinkJobError, match=r"(?s)failed \(exit 3\).*ValueError: the job broke"):
        run_flink_job(_groups(), KafkaSettings(), {"test.trips.abc": 1}, _options(tmp_path, venv, jar))


def test_a_job_whose_subtasks_did_not_all_report_is_not_a_success(tmp_path: Path) -> None:
    run = tmp_path / "run"  # an active decode subtask that never wrote its summary; the entity one did
    script = f"touch {run}/active-decode-0 {run}/active-entity-0\necho '{{}}' > {run}/summary-entity-0.json\nexit 0\n"
    venv = _fake_venv(tmp_path / "venv", script)
    jar = tmp_path / "k.jar"
    jar.write_bytes(b"")
    with pytest.raises(FlinkJobError, match=r"not every subtask reported its end \(active \['decode-0', 'entity-0'\]"):
        run_flink_job(_groups(), KafkaSettings(), {"test.trips.abc": 1}, _options(tmp_path, venv, jar))


def test_the_cli_refuses_an_embedded_store_and_an_unknown_target_before_starting() -> None:
    runner = CliRunner()
    args = ["process", "run", "--engine", "flink", "--until-idle", "zone_demand"]
    done = runner.invoke(app, [*args, "--store", "rocksdb"])
    assert done.exit_code != 0
    assert "needs --store cassandra" in done.output
    done = runner.invoke(app, [*args, "--store", "cassandra", "--target", "yarn"])
    assert done.exit_code != 0
    assert "expected local or cluster" in done.output


def _cluster_options(tmp_path: Path, rest_url: str, parallelism: int = 2) -> FlinkOptions:
    venv = _fake_venv(tmp_path / "venv", "exit 0\n")
    jar = tmp_path / "k.jar"
    jar.write_bytes(b"")
    log = tmp_path / "flink.log"
    log.write_text("starting the JobManager\nERROR the JobManager stopped: disk full\n")
    return FlinkOptions(
        run_dir=tmp_path / "run", flink_venv=venv, connector_jar=jar, parallelism=parallelism,
        target="cluster", rest_url=rest_url, cluster_log=log,
    )  # fmt: skip


def test_a_cluster_that_is_down_is_named_with_its_log_tail(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    options = _cluster_options(tmp_path, f"http://127.0.0.1:{port}")
    with pytest.raises(FlinkJobError, match=r"(?s)no Flink cluster answers at http://127.0.0.1:\d+.*disk full"):
        run_flink_job(_groups(), KafkaSettings(), {"test.trips.abc": 1}, options)


def test_a_cluster_without_enough_free_slots_is_refused_before_submission(tmp_path: Path) -> None:
    class Overview(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"taskmanagers": 1, "slots-total": 2, "slots-available": 1, "jobs-running": 1})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Overview)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        options = _cluster_options(tmp_path, f"http://127.0.0.1:{server.server_address[1]}", parallelism=2)
        with pytest.raises(FlinkJobError, match=r"has 1 free task slot\(s\) of 2 .* the job needs 2"):
            run_flink_job(_groups(), KafkaSettings(), {"test.trips.abc": 1}, options)
    finally:
        server.shutdown()
        server.server_close()


def test_summaries_of_subtasks_add_up() -> None:
    a = {"topics": {"t": {"read": 2, "dead_lettered": {"x": 1}}}, "updates": 1, "dead_letters": {"x": 1}}
    b = {"topics": {"t": {"read": 3, "dead_lettered": {}}, "u": {"read": 1}}, "updates": 2, "dead_letters": {}}
    assert merge_summaries([a, b]) == {
        "topics": {"t": {"read": 5, "dead_lettered": {"x": 1}}, "u": {"read": 1}},
        "updates": 3,
        "dead_letters": {"x": 1},
    }


def test_the_job_config_compiles_the_same_groups(tmp_path: Path) -> None:
    groups = _groups()
    config = JobConfig(
        groups=[g.spec.model_dump(mode="json") for g in groups], kafka=KafkaSettings().model_dump(mode="json"),
        store={}, partitions={}, run_dir=str(tmp_path), jar="k.jar", python="python",
    )  # fmt: skip
    config.dump(tmp_path / "job.json")
    again = JobConfig.load(tmp_path / "job.json").feature_groups()
    assert [g.spec for g in again] == [g.spec for g in groups]


def test_decoding_and_applying_record_by_record_equals_the_engine_on_the_batch() -> None:
    [demand, _] = _groups()
    topic = demand.topic
    events = [
        {"event_time": T0 + i * 40_000 - (400_000 if i % 7 == 3 else 0), "trip_id": f"t{i}", "rider_id": f"r{i % 5}",
         "pickup_zone": f"z{i % 3}", "dropoff_zone": "z9", "city": "c", "country": "IT", "distance_km": 1.0 + i,
         "surge": 1.0 + i / 10}
        for i in range(40)
    ]  # fmt: skip
    decode = DecodeStep([demand], KafkaSettings())
    step = EntityStep([demand], {topic: 1})
    states: dict[str, GroupState] = {}
    rows: list[SourceRow] = []
    maxima: dict[str, int] | None = None
    late = 0
    for offset, fields in enumerate(events):
        value = orjson.dumps({**fields, "event_type": "trip_requested"})
        record = RawRecord(topic, 0, offset, b"k", value, [("event_type", b"trip_requested")], fields["event_time"])
        routed = decode.decode(record, maxima)
        maxima = routed.maxima
        for key, ref, row in routed.rows:
            rows.append(row)
            states[key], out = step.apply(ref, states.get(key), row)
            late += out.late
    assert late > 0
    assert len(states) == 3
    reference = GroupState(1)
    GroupEngine(demand).apply(reference, rows)
    flink_entities = {e: s for state in states.values() for e, s in state.entities.items()}
    assert {e: s.to_bytes() for e, s in flink_entities.items()} == {
        e: s.to_bytes() for e, s in reference.entities.items()
    }
